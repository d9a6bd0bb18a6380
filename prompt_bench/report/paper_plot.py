"""The paper's scaling plot: the primary metric over backbone size, one panel per dataset, one line per
method and ladder, the zero-shot score dashed and the chance level dotted.

A **ladder** is what one line climbs: backbones whose name starts with the same word (bert_base,
bert_large; gpt2, gpt2_medium) when that word has two or more sizes in the records, else the backbone
family (minilm and mpnet are the offline `encoder` ladder, their dual twins the `dual_encoder` one).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps

from prompt_bench.report.load import SHORT_NAMES
from prompt_bench.report.paper import FAMILY_COLUMN, PARAMS_COLUMN, ZERO_SHOT_ROW, PaperTable
from prompt_bench.report.plots import _panel_grid

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def ladders(backbones: pd.DataFrame) -> dict[str, str]:
    """backbone -> ladder, from a frame of unique backbone, family, params_m (see the module docstring)."""
    prefix = backbones["backbone"].map(lambda name: str(name).split("_")[0])
    sizes = backbones.assign(prefix=prefix).groupby(["family", "prefix"])["params_m"].nunique()
    return {
        row.backbone: (row.prefix if sizes.get((row.family, row.prefix), 0) >= 2 else str(row.family))
        for row in backbones.assign(prefix=prefix).itertuples()
    }


def scaling_points(frame: pd.DataFrame, table: PaperTable) -> pd.DataFrame:
    """The table's cells with the backbone's size, family and ladder, and the dataset's chance level."""
    names = SHORT_NAMES["backbone"]
    backbones = pd.DataFrame(
        {
            "backbone": frame[names],
            "family": frame.get(FAMILY_COLUMN, pd.Series("-", index=frame.index)).fillna("-"),
            "params_m": pd.to_numeric(
                frame.get(PARAMS_COLUMN, pd.Series(math.nan, index=frame.index)), errors="coerce"
            ),
        }
    ).drop_duplicates("backbone")
    backbones = backbones[backbones["params_m"].notna()]
    ladder = ladders(backbones)
    chance = frame.groupby(SHORT_NAMES["dataset"])["chance"].mean() if "chance" in frame else pd.Series(dtype=float)
    points = table.cells.copy()
    points["backbone"] = points["backbone"].str.split(", ").str[0]  # the zero-shot row may name several
    points = points.merge(backbones, on="backbone", how="inner")
    points["ladder"] = points["backbone"].map(ladder)
    points["chance"] = points["dataset"].map(chance)
    return points[points["mean"].notna()]


def plot_paper_scaling(frame: pd.DataFrame, table: PaperTable, path: Path) -> Path | None:
    """paper_scaling.png; None (nothing written) when fewer than two backbone sizes have a score."""
    points = scaling_points(frame, table)
    if points["params_m"].nunique() < 2:
        return None
    datasets = sorted(points["dataset"].unique())
    figure, axes = _panel_grid(len(datasets), (6.0, 4.5))
    methods = [row for row in table.rows if row != ZERO_SHOT_ROW]
    colours = colormaps["tab20"](np.linspace(0, 1, max(len(methods), 1)))
    style = {row: (colours[i], MARKERS[i % len(MARKERS)]) for i, row in enumerate(methods)}
    for axis, dataset in zip(axes, datasets):
        panel = points[points["dataset"] == dataset]
        several = panel.groupby("row")["ladder"].nunique()
        for (row, ladder), line in panel[panel["row"] != ZERO_SHOT_ROW].groupby(["row", "ladder"], sort=False):
            line = line.sort_values("params_m")
            colour, marker = style[row]
            label = f"{row} ({ladder})" if several.get(row, 1) > 1 else row
            axis.errorbar(
                line["params_m"],
                100 * line["mean"],
                yerr=100 * line["std"].fillna(0.0),
                color=colour,
                marker=marker,
                capsize=3,
                label=label,
            )
        zero_shot = panel[panel["row"] == ZERO_SHOT_ROW]
        for (ladder, line), dash in zip(zero_shot.groupby("ladder"), itertools.cycle(("--", "-.", ":"))):
            line = line.sort_values("params_m")
            axis.plot(
                line["params_m"], 100 * line["mean"], dash, color="grey", marker="x", label=f"zero-shot ({ladder})"
            )
        chance = panel["chance"].dropna()
        if not chance.empty:
            axis.axhline(100 * chance.mean(), linestyle=":", color="black", label=f"chance ({100 * chance.mean():.1f})")
        sizes = panel.drop_duplicates("params_m").sort_values("params_m")
        axis.set_xscale("log")
        axis.set_xticks(sizes["params_m"], [f"{s}\n{p:g}M" for s, p in zip(sizes["scale"], sizes["params_m"])])
        axis.minorticks_off()
        axis.set_title(f"{dataset} ({table.metrics.get(dataset, '')})")
        axis.set_xlabel("backbone parameters")
        axis.set_ylabel("test score (%, mean ± std over seeds)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize="x-small", ncol=2)
    figure.savefig(path, dpi=120)
    return path
