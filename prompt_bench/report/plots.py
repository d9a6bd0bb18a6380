"""PNG plots over a records frame: scaling curves over backbone size and method × dataset heatmaps.

Figures are drawn on `matplotlib.figure.Figure` with the Agg canvas, never through pyplot, so no
display or global backend is touched.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from prompt_bench.report.tables import summarize

PARAMS_COLUMN = "config.backbone.params_m"
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


def plot_scaling(frame: pd.DataFrame, path: Path, metric: str = "primary") -> Path | None:
    """Mean score (± std) over backbone size (log x), one line per method, one panel per dataset.

    Returns None (and writes nothing) when fewer than 2 backbone sizes have a score.
    """
    if PARAMS_COLUMN not in frame:
        return None
    points = summarize(frame, ("method", "backbone", "dataset"), metric, columns=(PARAMS_COLUMN,))
    points = points[points["mean"].notna() & points[PARAMS_COLUMN].notna()]
    if points[PARAMS_COLUMN].nunique() < 2:
        return None
    datasets = sorted(points["dataset"].unique(), key=str)
    figure, axes = _panel_grid(len(datasets), (5.0, 3.8))
    for axis, dataset in zip(axes, datasets):
        panel = points[points["dataset"] == dataset]
        for method, line in panel.groupby("method", sort=True):
            line = line.sort_values(PARAMS_COLUMN)
            axis.errorbar(
                line[PARAMS_COLUMN],
                100 * line["mean"],
                yerr=100 * line["std"].fillna(0.0),
                marker="o",
                capsize=3,
                label=str(method),
            )
        sizes = panel.drop_duplicates(PARAMS_COLUMN).sort_values(PARAMS_COLUMN)
        axis.set_xscale("log")
        axis.set_xticks(sizes[PARAMS_COLUMN], [f"{b}\n{p:g}M" for b, p in zip(sizes["backbone"], sizes[PARAMS_COLUMN])])
        axis.minorticks_off()
        axis.set_title(str(dataset))
        axis.set_xlabel("backbone parameters")
        axis.set_ylabel(f"{' | '.join(sorted(set(panel['metric'])))} (%)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    figure.savefig(path, dpi=120)
    return path


def plot_heatmap(frame: pd.DataFrame, path: Path, metric: str = "primary") -> Path | None:
    """Method × dataset grid of mean scores, numbers written in the cells, one panel per backbone.

    Returns None (and writes nothing) when no group has a score.
    """
    cells = summarize(frame, ("method", "dataset", "backbone"), metric)
    cells = cells.fillna({"method": "-", "dataset": "-", "backbone": "-"})
    if cells["mean"].isna().all():
        return None
    backbones = sorted(cells["backbone"].unique(), key=str)
    methods = sorted(cells["method"].unique(), key=str)
    datasets = sorted(cells["dataset"].unique(), key=str)
    low, high = 100 * cells["mean"].min(), 100 * cells["mean"].max()
    scored = cells[cells["mean"].notna()]
    metric_names = scored.drop_duplicates("dataset").set_index("dataset")["metric"]
    panel_size = (1.4 * len(datasets) + 2.5, 0.5 * len(methods) + 1.8)
    figure, axes = _panel_grid(len(backbones), panel_size)
    for axis, backbone in zip(axes, backbones):
        panel = cells[cells["backbone"] == backbone]
        grid = panel.pivot_table(index="method", columns="dataset", values="mean", dropna=False)
        values = 100 * grid.reindex(index=methods, columns=datasets).to_numpy(dtype=float)
        image = axis.imshow(np.ma.masked_invalid(values), cmap="viridis", vmin=low, vmax=high, aspect="auto")
        for (row, col), value in np.ndenumerate(values):
            text, colour = ("n/a", "grey") if np.isnan(value) else (f"{value:.1f}", _text_colour(value, low, high))
            axis.text(col, row, text, ha="center", va="center", color=colour, fontsize="small")
        axis.set_xticks(range(len(datasets)), [f"{d}\n{metric_names.get(d, '')}" for d in datasets], fontsize="small")
        axis.set_yticks(range(len(methods)), [str(m) for m in methods])
        axis.set_title(f"{backbone} (mean %, over seeds)")
        figure.colorbar(image, ax=axis, shrink=0.8)
    figure.savefig(path, dpi=120)
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
