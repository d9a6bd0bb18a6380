"""The paper table: rows are methods, columns are datasets x scales, each cell the mean ± std over seeds
of the primary metric, the best per column marked, a zero-shot row for context, and each method's cost.

    table = paper_table(load_records("outputs/sweeps/all_methods_x_scales"))
    table.cells    # one row per (row, dataset, scale): mean, std, n, best
    table.costs    # one row per (row, scale): trainable params, train seconds and peak memory per run

A **scale** is a backbone with its dual-encoder twin: `minilm` and `minilm_dual` are one scale (the
name without `_dual`), so CoOp on `minilm_dual` sits in the `minilm` column beside prompt tuning on
`minilm`. A **row** is one config over its seeds, never two: it is a method plus any config key that
differs between its runs (grouping.resolve_group_by, as the main report), and when one row would
still put two runs configs in one cell (two transfer sources for one target, two backbones of one
scale), the row is split by the transfer pair, then by the backbone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from prompt_bench.report.grouping import resolve_group_by, setting_columns
from prompt_bench.report.load import SHORT_NAMES
from prompt_bench.report.plots import setting_label
from prompt_bench.report.tables import latest_per_run, per_run_scores, summarize
from prompt_bench.report.transfer import has_transfer_runs

ZERO_SHOT_ROW = "zero-shot"
ZERO_SHOT_METHOD = "prompt_tuning"  # whose runs the zero-shot row reads first: the backbone and head, no prompt
DUAL_SUFFIX = "_dual"
# Rows in this order (references first), then any other method alphabetically.
METHOD_ORDER = (
    "linear_probe",
    "fine_tuning",
    "prompt_tuning",
    "p_tuning_v2",
    "vip",
    "bayesprompt",
    "metapt",
    "ppt",
    "spot",
    "panda",
    "coop",
    "cocoop",
    "kgcoop",
    "coop+dept",
    "cocoop+dept",
    "kgcoop+dept",
)
PARAMS_COLUMN = "config.backbone.params_m"
FAMILY_COLUMN = "config.backbone.family"
MEMORY_COLUMN = "efficiency.peak_memory_mb"  # derived per run: the GPU peak where measured, else the peak RSS
COSTS = {  # cost name -> record column (mean over a row's ok runs at one scale)
    "trainable_params": "efficiency.trainable_params",
    "train_seconds": "efficiency.train_seconds",
    "peak_memory_mb": MEMORY_COLUMN,
}


@dataclass
class PaperTable:
    """cells: row, method, dataset, scale, backbone, metric, mean, std, n, best (one per filled cell);
    costs: row, scale and COSTS per row and scale; columns: (dataset, scale) in display order;
    rows: labels, zero-shot first; scales: (name, params_m) by size; notes: sentences for the caption."""

    cells: pd.DataFrame
    costs: pd.DataFrame
    columns: list[tuple[str, str]]
    rows: list[str]
    scales: list[tuple[str, float]]
    metrics: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def scale_of(backbone: str) -> str:
    """The scale a backbone stands for: its name, less a `_dual` suffix (minilm_dual -> minilm)."""
    return backbone.removesuffix(DUAL_SUFFIX) if isinstance(backbone, str) else str(backbone)


def peak_memory(frame: pd.DataFrame) -> pd.Series:
    """Per run: peak GPU memory (MiB) where measured, else the peak RSS (the run's own where the record's
    efficiency.peak_rss_scope is `run`; older records and other systems: the process's so far)."""
    memory = pd.Series(math.nan, index=frame.index, dtype=float)
    for column in ("efficiency.peak_rss_mb", "efficiency.peak_gpu_mb"):
        if column in frame:
            values = pd.to_numeric(frame[column], errors="coerce")
            memory = values.where(values.notna(), memory)
    return memory


def method_rank(method: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(method), method) if method in METHOD_ORDER else (len(METHOD_ORDER), str(method))


def row_labels(summary: pd.DataFrame, settings: list[str]) -> pd.Series:
    """method + its settings (those it has); split further by transfer pair, then backbone, where a cell
    would hold two configs."""
    labels = pd.Series(
        [
            f"{row['method']}{setting_label(row, [name for name in settings if pd.notna(row[name])])}"
            for _, row in summary.iterrows()
        ],
        index=summary.index,
    )
    for extra in ("transfer", "backbone"):
        clash = pd.DataFrame({"row": labels, "dataset": summary["dataset"], "scale": summary["scale"]}).duplicated(
            keep=False
        )
        if not clash.any() or extra not in summary:
            continue
        methods = set(summary.loc[clash, "method"])
        split = summary["method"].isin(methods)
        labels[split] = labels[split] + [f" [{extra}={value}]" for value in summary.loc[split, extra]]
    return labels


def zero_shot_cells(frame: pd.DataFrame, scores: pd.DataFrame) -> tuple[list[dict], str]:
    """The zero-shot row: per (dataset, scale), mean ± std of the zero-shot scores of ZERO_SHOT_METHOD's
    runs there (else of the first method, alphabetically, that has zero-shot scores there)."""
    runs = pd.DataFrame(
        {
            "method": frame[SHORT_NAMES["method"]],
            "dataset": frame[SHORT_NAMES["dataset"]],
            "scale": frame[SHORT_NAMES["backbone"]].map(scale_of),
            "backbone": frame[SHORT_NAMES["backbone"]],
            "metric": scores["metric"],
            "zero_shot": scores["zero_shot"],
        }
    ).dropna(subset=["zero_shot"])
    cells, used = [], set()
    for (dataset, scale), column in runs.groupby(["dataset", "scale"], sort=True):
        methods = sorted(set(column["method"]), key=lambda name: (name != ZERO_SHOT_METHOD, name))
        chosen = column[column["method"] == methods[0]]
        used.add(methods[0])
        values = chosen["zero_shot"].astype(float)
        cells.append(
            {
                "row": ZERO_SHOT_ROW,
                "method": ZERO_SHOT_ROW,
                "dataset": dataset,
                "scale": scale,
                "backbone": ", ".join(sorted(set(chosen["backbone"]))),
                "metric": chosen["metric"].iloc[0],
                "mean": values.mean(),
                "std": values.std(ddof=1),
                "n": len(values),
            }
        )
    return cells, ", ".join(sorted(used))


def paper_table(frame: pd.DataFrame, metric: str = "primary") -> PaperTable:
    """Records frame (load_records) -> the paper table; see the module docstring."""
    frame = latest_per_run(frame)
    frame = frame[~frame["status"].eq("corrupt")]
    frame = frame.assign(**{MEMORY_COLUMN: peak_memory(frame)})
    base = ["method", "backbone", "dataset", *(["transfer"] if has_transfer_runs(frame) else [])]
    group_by = resolve_group_by(frame, None, base)
    settings = setting_columns(group_by)[1]
    costs = [column for column in COSTS.values() if column in frame]
    summary = summarize(frame, group_by, metric, costs)
    summary = summary[summary["n_ok"] > 0].reset_index(drop=True)
    summary["scale"] = summary["backbone"].map(scale_of)
    summary["row"] = row_labels(summary, settings)

    cells = summary.rename(columns={"n_ok": "n"})[
        ["row", "method", "dataset", "scale", "backbone", "metric", "mean", "std", "n"]
    ]
    zero_shot, zero_shot_from = zero_shot_cells(frame, per_run_scores(frame, metric))
    cells = pd.concat([pd.DataFrame(zero_shot, columns=cells.columns), cells], ignore_index=True)
    cells["metric"] = cells["metric"].str.removeprefix("test/")
    best = cells[cells["row"] != ZERO_SHOT_ROW].groupby(["dataset", "scale"])["mean"].transform("max")
    cells["best"] = (cells["row"] != ZERO_SHOT_ROW) & (cells["mean"] >= best.reindex(cells.index) - 1e-12)

    scales = scale_sizes(frame)
    scale_order = {name: i for i, (name, _) in enumerate(scales)}
    columns = sorted(
        {(d, s) for d, s in zip(cells["dataset"], cells["scale"])}, key=lambda c: (c[0], scale_order.get(c[1], 1e9))
    )
    methods = summary.drop_duplicates("row").set_index("row")["method"]
    rows = [ZERO_SHOT_ROW] if zero_shot else []
    rows += sorted(methods.index, key=lambda row: (*method_rank(methods[row]), row))

    cost_frame = summary.assign(**{name: summary[column] for name, column in COSTS.items() if column in summary})
    cost_names = [name for name, column in COSTS.items() if column in summary]
    cost_table = cost_frame.groupby(["row", "scale"], sort=False)[cost_names].mean().reset_index()
    metrics = cells.drop_duplicates("dataset").set_index("dataset")["metric"].to_dict()
    notes = paper_notes(frame, summary, zero_shot_from)
    return PaperTable(cells, cost_table, columns, rows, scales, metrics, notes)


def scale_sizes(frame: pd.DataFrame) -> list[tuple[str, float]]:
    """(scale, params_m) for every scale in the records, smallest first (no size: after the sized ones, by name)."""
    names = frame[SHORT_NAMES["backbone"]].map(scale_of)
    sizes = pd.to_numeric(frame.get(PARAMS_COLUMN, pd.Series(math.nan, index=frame.index)), errors="coerce")
    per_scale = sizes.groupby(names).mean()
    return sorted(
        ((name, float(size)) for name, size in per_scale.items()),
        key=lambda item: (math.isnan(item[1]), item[1] if not math.isnan(item[1]) else 0.0, item[0]),
    )


def paper_notes(frame: pd.DataFrame, summary: pd.DataFrame, zero_shot_from: str) -> list[str]:
    """Caption sentences: what a cell is, what the zero-shot row reads, which transfer sources were used."""
    notes = [
        "Cells: mean ± sample std over seeds of the test score (%) on the primary metric named under each "
        "dataset; (n=k) when a cell has fewer seeds than the most any cell has. Best per column in bold "
        "(the zero-shot row is context, never marked).",
        "A scale is a backbone and its dual-encoder twin (minilm_dual counts as minilm): CoOp, CoCoOp, KgCoOp "
        "and DePT run on the twin.",
        "Cost per run, mean over the row's ok runs at each scale: trainable parameters, training seconds "
        "(the fit alone: shared artefacts such as source prompts, teachers and meta-inits are made once and "
        "not counted) and peak memory in MiB (GPU peak on CUDA, else the run's own peak RSS).",
    ]
    if zero_shot_from:
        notes.append(f"Zero-shot: the backbone and head with no prompt, from the runs of {zero_shot_from}.")
    if "transfer" in summary and summary["transfer"].notna().any():
        pairs = summary.dropna(subset=["transfer"]).drop_duplicates(["dataset", "transfer"])
        listed = "; ".join(f"{row.dataset}: {row.transfer}" for row in pairs.sort_values("dataset").itertuples())
        notes.append(f"Transfer pairs (source prompt for SPoT, teacher for PANDA): {listed}.")
    return notes
