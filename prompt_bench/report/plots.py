"""PNG plots over a records frame: scaling curves over backbone size and method × dataset heatmaps.

`draw_*` make a figure from the points `scaling_points` / `heatmap_cells` compute (tests read
both); `plot_*` write it.

Figures are drawn on `matplotlib.figure.Figure` with the Agg canvas, never through pyplot, so no
display or global backend is touched.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from prompt_bench.report.grouping import column_label
from prompt_bench.report.tables import number_text, summarize

PARAMS_COLUMN = "config.backbone.params_m"
FAMILY_COLUMN = "config.backbone.family"
ZERO_SHOT_STYLES = (("--", "grey"), ("-.", "black"), (":", "dimgrey"))  # one per backbone family
PANELS_PER_ROW = 3


def _panel_grid(n_panels: int, panel_size: tuple[float, float]) -> tuple[Figure, list]:
    n_cols = min(n_panels, PANELS_PER_ROW)
    n_rows = math.ceil(n_panels / n_cols)
    figure = Figure(figsize=(panel_size[0] * n_cols, panel_size[1] * n_rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(n_rows, n_cols, squeeze=False).ravel()
    for unused in axes[n_panels:]:
        unused.set_visible(False)
    return figure, list(axes[:n_panels])


def setting_label(row: pd.Series, settings: Sequence[str]) -> str:
    """' lr=0.03 n_tokens=5' for a row's setting columns ('' without any)."""
    return "".join(f" {column_label(name, settings)}={number_text(row[name])}" for name in settings)


def scaling_points(frame: pd.DataFrame, metric: str = "primary", settings: Sequence[str] = ()) -> pd.DataFrame:
    """One row per (method, backbone, dataset, *settings) with a score: mean, std, n_ok, zero_shot, the
    backbone's size and family, and the dataset's chance level."""
    columns = (PARAMS_COLUMN, FAMILY_COLUMN, "chance")
    present = tuple(column for column in columns if column in frame)
    points = summarize(frame, ("method", "backbone", "dataset", *settings), metric, columns=present)
    for column in columns:
        if column not in points:
            points[column] = math.nan
    points[FAMILY_COLUMN] = points[FAMILY_COLUMN].replace({math.nan: "-"}).fillna("-")
    return points[points["mean"].notna() & points[PARAMS_COLUMN].notna()]


def draw_scaling(points: pd.DataFrame, settings: Sequence[str] = ()) -> Figure:
    """Mean score ± std (error bars) over backbone size (log x), one line per (method, backbone family,
    setting), `n=` beside each point; per family the zero-shot score (dashed) and the chance level
    (dotted); one panel per dataset."""
    datasets = sorted(points["dataset"].unique(), key=str)
    figure, axes = _panel_grid(len(datasets), (5.5, 4.2))
    for axis, dataset in zip(axes, datasets):
        panel = points[points["dataset"] == dataset]
        lines = panel.groupby(["method", FAMILY_COLUMN, *settings], sort=True, dropna=False)
        for _, line in lines:
            line = line.sort_values(PARAMS_COLUMN)
            first = line.iloc[0]
            label = f"{first['method']} ({first[FAMILY_COLUMN]}){setting_label(first, settings)}"
            bars = axis.errorbar(
                line[PARAMS_COLUMN],
                100 * line["mean"],
                yerr=100 * line["std"].fillna(0.0),
                marker="o",
                capsize=3,
                label=label,
            )
            for x, y, n in zip(line[PARAMS_COLUMN], 100 * line["mean"], line["n_ok"]):
                axis.annotate(
                    f"n={n}",
                    (x, y),
                    xytext=(4, 4),
                    textcoords="offset points",
                    fontsize="x-small",
                    color=bars.lines[0].get_color(),
                )
        for (family, runs), style in zip(panel.groupby(FAMILY_COLUMN, sort=True), itertools.cycle(ZERO_SHOT_STYLES)):
            zero_shot = runs.groupby(PARAMS_COLUMN)["zero_shot"].mean().dropna()
            if not zero_shot.empty:
                axis.plot(
                    zero_shot.index,
                    100 * zero_shot.to_numpy(),
                    linestyle=style[0],
                    color=style[1],
                    marker="x",
                    label=f"zero-shot ({family})",
                )
        chance = panel["chance"].dropna()
        if not chance.empty:
            axis.axhline(100 * chance.mean(), linestyle=":", color="black", label=f"chance ({100 * chance.mean():.1f})")
        sizes = panel.drop_duplicates(PARAMS_COLUMN).sort_values(PARAMS_COLUMN)
        axis.set_xscale("log")
        axis.set_xticks(sizes[PARAMS_COLUMN], [f"{b}\n{p:g}M" for b, p in zip(sizes["backbone"], sizes[PARAMS_COLUMN])])
        axis.minorticks_off()
        axis.set_title(str(dataset))
        axis.set_xlabel("backbone parameters")
        axis.set_ylabel(f"{' | '.join(sorted(set(panel['metric'])))} (%, mean ± std over seeds)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize="x-small")
    return figure


def plot_scaling(frame: pd.DataFrame, path: Path, metric: str = "primary", settings: Sequence[str] = ()) -> Path | None:
    """draw_scaling written to `path`; None (nothing written) when fewer than 2 backbone sizes have a score."""
    if PARAMS_COLUMN not in frame:
        return None
    points = scaling_points(frame, metric, settings)
    if points[PARAMS_COLUMN].nunique() < 2:
        return None
    draw_scaling(points, settings).savefig(path, dpi=120)
    return path


def heatmap_cells(frame: pd.DataFrame, metric: str = "primary", settings: Sequence[str] = ()) -> pd.DataFrame:
    """One row per (method, dataset, backbone, *settings): mean, std, n_ok, metric, and `row`, the
    heatmap row it goes in (the method and its setting)."""
    cells = summarize(frame, ("method", "dataset", "backbone", *settings), metric)
    cells = cells.fillna({"method": "-", "dataset": "-", "backbone": "-"})
    cells["row"] = [f"{row['method']}{setting_label(row, settings)}" for _, row in cells.iterrows()]
    return cells


def draw_heatmap(cells: pd.DataFrame) -> Figure:
    """Method (and setting) × dataset grid of mean scores, 'mean ± std' and 'n=' in each cell, one
    panel per backbone."""
    backbones = sorted(cells["backbone"].unique(), key=str)
    rows = sorted(cells["row"].unique(), key=str)
    datasets = sorted(cells["dataset"].unique(), key=str)
    low, high = 100 * cells["mean"].min(), 100 * cells["mean"].max()
    scored = cells[cells["mean"].notna()]
    metric_names = scored.drop_duplicates("dataset").set_index("dataset")["metric"]
    panel_size = (1.8 * len(datasets) + 3.0, 0.7 * len(rows) + 1.8)
    figure, axes = _panel_grid(len(backbones), panel_size)
    for axis, backbone in zip(axes, backbones):
        panel = cells[cells["backbone"] == backbone].set_index(["row", "dataset"])
        values = np.full((len(rows), len(datasets)), np.nan)
        for (i, row), (j, dataset) in itertools.product(enumerate(rows), enumerate(datasets)):
            if (row, dataset) not in panel.index:
                continue
            cell = panel.loc[(row, dataset)]
            values[i, j] = 100 * cell["mean"]
            if np.isnan(values[i, j]):
                continue
            spread = "" if pd.isna(cell["std"]) else f" ± {100 * cell['std']:.1f}"
            text = f"{values[i, j]:.1f}{spread}\nn={int(cell['n_ok'])}"
            axis.text(
                j, i, text, ha="center", va="center", color=_text_colour(values[i, j], low, high), fontsize="small"
            )
        image = axis.imshow(np.ma.masked_invalid(values), cmap="viridis", vmin=low, vmax=high, aspect="auto")
        for i, j in zip(*np.where(np.isnan(values))):
            axis.text(j, i, "n/a", ha="center", va="center", color="grey", fontsize="small")
        axis.set_xticks(range(len(datasets)), [f"{d}\n{metric_names.get(d, '')}" for d in datasets], fontsize="small")
        axis.set_yticks(range(len(rows)), rows)
        axis.set_title(f"{backbone} (mean ± std %, n seeds)")
        figure.colorbar(image, ax=axis, shrink=0.8)
    return figure


def plot_heatmap(frame: pd.DataFrame, path: Path, metric: str = "primary", settings: Sequence[str] = ()) -> Path | None:
    """draw_heatmap written to `path`; None (nothing written) when no group has a score."""
    cells = heatmap_cells(frame, metric, settings)
    if cells["mean"].isna().all():
        return None
    draw_heatmap(cells).savefig(path, dpi=120)
    return path


def _text_colour(value: float, low: float, high: float) -> str:
    """Dark text on the bright end of viridis, white on the dark end."""
    middle = (low + high) / 2
    return "black" if value > middle or high == low else "white"


def matrix_heatmap(
    matrix: pd.DataFrame, title: str, path: Path, value_format: str = ".2f", diverging: bool = False
) -> Path:
    """One labelled matrix (rows x columns, e.g. source x target) with its values in the cells.

    diverging=True centres a red-blue map on 0 (gains); else viridis over the value range.
    """
    values = matrix.to_numpy(dtype=float)
    figure, (axis,) = _panel_grid(1, (1.2 * len(matrix.columns) + 3.0, 0.6 * len(matrix.index) + 2.0))
    finite = values[np.isfinite(values)]
    if diverging:
        bound = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0
        low, high, cmap = -bound, bound, "RdBu"
    else:
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        cmap = "viridis"
    image = axis.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=low, vmax=high, aspect="auto")
    for (row, col), value in np.ndenumerate(values):
        if np.isnan(value):
            text, colour = "n/a", "grey"
        else:
            text = format(value, value_format)
            if diverging:  # the saturated ends of RdBu are dark
                colour = "white" if abs(value) > 0.6 * high else "black"
            else:
                colour = _text_colour(value, low, high)
        axis.text(col, row, text, ha="center", va="center", color=colour, fontsize="small")
    axis.set_xticks(
        range(len(matrix.columns)), [str(c) for c in matrix.columns], rotation=30, ha="right", fontsize="small"
    )
    axis.set_yticks(range(len(matrix.index)), [str(r) for r in matrix.index], fontsize="small")
    axis.set_xlabel(str(matrix.columns.name or "target"))
    axis.set_ylabel(str(matrix.index.name or "source"))
    axis.set_title(title, fontsize="medium", wrap=True)
    figure.colorbar(image, ax=axis, shrink=0.8)
    figure.savefig(path, dpi=120)
    return path
