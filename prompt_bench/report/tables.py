"""Records frame -> one summary row per group: mean ± std over seeds, and what is missing or wrong.

Seeds are counted against the union of seeds seen in the whole frame: a group without an `ok` result
for one of them is missing it (whether that run failed, still runs or never started). An `ok` run
whose score is at or below chance + COLLAPSE_MARGIN learned nothing and is counted as collapsed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from prompt_bench.report.grouping import column_label, comparable
from prompt_bench.report.load import SEED_COLUMN, metric_path, require_column
from prompt_bench.scores import percent

DEFAULT_GROUP_BY = ("method", "backbone", "dataset")
COLLAPSE_MARGIN = 0.01
STATUS_RANK = {"ok": 0, "running": 1, "failed": 2, "corrupt": 3}
SCORE_KINDS = ("acc", "f1", "hmean")  # metrics that have a zero-shot counterpart `zero_shot/<kind>`
STAT_COLUMNS = (
    "metric",
    "mean",
    "std",
    "n_ok",
    "n_missing",
    "missing_seeds",
    "n_failed",
    "n_corrupt",
    "n_running",
    "n_collapsed",
    "zero_shot",
    "dev",
)


def latest_per_run(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per run key: a relaunch's `ok` record wins over the failed one it replaced."""
    if frame.empty or "run_key" not in frame:
        return frame
    rank = frame["status"].map(STATUS_RANK).fillna(len(STATUS_RANK))
    started = frame["started_at"].fillna("").astype(str) if "started_at" in frame else ""
    ordered = frame.assign(_rank=rank, _started=started).sort_values(
        ["_rank", "_started"], ascending=[True, False], kind="stable"
    )
    keyed = ordered[ordered["run_key"].notna()].drop_duplicates("run_key")
    unkeyed = ordered[ordered["run_key"].isna()]
    return pd.concat([keyed, unkeyed]).drop(columns=["_rank", "_started"]).sort_index()


def _numeric(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame:
        return pd.Series(math.nan, index=frame.index, dtype=float)
    return pd.to_numeric(frame[column], errors="coerce").astype(float)


def per_run_scores(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """score, zero_shot, dev (best dev score) and metric name per row; NaN scores where the run is not `ok`.

    `primary` takes each run's `test/primary` and names it after its own `primary_metric`
    (acc for BBC, f1 for tweets); the zero-shot score is the matching `zero_shot/<acc|f1>`.
    """
    path = metric_path(metric)
    if path not in frame and frame["status"].eq("ok").any():
        known = sorted(
            col.removeprefix("metrics.") for col in frame.columns if col.startswith("metrics.") and "/" in col
        )
        raise ValueError(f"metric '{metric}' is in no record; use 'primary' or one of {known}.")
    if metric == "primary":
        kind = frame.get("metrics.primary_metric", pd.Series(None, index=frame.index, dtype=object))
        name = kind.map(lambda primary: f"test/{primary}" if isinstance(primary, str) else None)
    else:
        name = pd.Series(path.removeprefix("metrics."), index=frame.index, dtype=object)
        kind = name.str.rsplit("/", n=1).str[-1].str.removesuffix("_best")
    zero_shot = pd.Series(math.nan, index=frame.index, dtype=float)
    for score_kind in SCORE_KINDS:
        zero_shot = zero_shot.where(kind != score_kind, _numeric(frame, f"metrics.zero_shot/{score_kind}"))
    ok = frame["status"].eq("ok")
    return pd.DataFrame(
        {
            "score": _numeric(frame, path).where(ok),
            "zero_shot": zero_shot.where(ok),
            "dev": dev_scores(frame).where(ok),
            "metric": name,
        },
        index=frame.index,
    )


def dev_scores(frame: pd.DataFrame) -> pd.Series:
    """Each run's best dev score on its selection metric (scores.dev_score over the flat columns)."""
    dev = _numeric(frame, "metrics.val/primary_best")
    primary = frame.get("metrics.primary_metric", pd.Series(None, index=frame.index, dtype=object))
    for kind in SCORE_KINDS:
        dev = dev.where(dev.notna() | (primary != kind), _numeric(frame, f"metrics.val/{kind}_best"))
    return dev


def seed_text(seeds: Sequence[Any]) -> str:
    """Seeds as '13 21 42' (floats from columns with gaps shown as ints)."""
    return " ".join(str(int(seed)) if float(seed).is_integer() else str(seed) for seed in seeds)


def _column_value(values: pd.Series) -> Any:
    """Mean of a numeric column; the distinct values, comma-joined, of any other."""
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().any() or values.isna().all():
        return numbers.mean()
    return ", ".join(sorted({str(value) for value in values.dropna()}))


def summarize(
    frame: pd.DataFrame,
    group_by: Sequence[str] = DEFAULT_GROUP_BY,
    metric: str = "primary",
    columns: Sequence[str] = (),
) -> pd.DataFrame:
    """Records frame (from load_records) -> one row per group.

    Columns: the group_by names, then STAT_COLUMNS (mean/std over ok seeds with ddof=1, so std is
    NaN for one seed; missing_seeds as '21 42'), then the mean over ok runs of each of `columns`.
    """
    frame = latest_per_run(frame)
    # A corrupt record has no config to group by: it is counted in every group of its sweep dir.
    corrupt = frame[frame["status"].eq("corrupt")]
    corrupt_per_sweep = corrupt["sweep_dir"].value_counts() if "sweep_dir" in corrupt else pd.Series(dtype=int)
    frame = frame[~frame["status"].eq("corrupt")]
    group_columns = [require_column(frame, name, "group-by column") for name in group_by]
    frame = frame.assign(**{column: comparable(frame[column]) for column in group_columns})  # lists group as text
    extra_columns = [require_column(frame, name, "column") for name in columns]
    scores = per_run_scores(frame, metric)
    seeds = frame[SEED_COLUMN] if SEED_COLUMN in frame else pd.Series(math.nan, index=frame.index)
    all_seeds = set(seeds.dropna())
    default_name = "test/primary" if metric == "primary" else metric_path(metric).removeprefix("metrics.")
    rows = []
    for keys, group in frame.groupby(group_columns, dropna=False, sort=True):
        scored = group[scores.loc[group.index, "score"].notna()]
        group_scores = scores.loc[scored.index]
        expected = set(seeds[group.index].dropna()) if SEED_COLUMN in group_columns else all_seeds
        missing = sorted(expected - set(seeds[scored.index].dropna()))
        names = sorted(set(group_scores["metric"].dropna()))
        collapsed = group_scores["score"] <= scored["chance"].astype(float) + COLLAPSE_MARGIN
        row = dict(zip(group_by, keys))
        row.update(
            metric="|".join(names) or default_name,
            mean=group_scores["score"].mean(),
            std=group_scores["score"].std(ddof=1),
            n_ok=len(scored),
            n_missing=len(missing),
            missing_seeds=seed_text(missing),
            n_failed=int(group["status"].eq("failed").sum()),
            n_running=int(group["status"].eq("running").sum()),
            n_corrupt=int(sum(corrupt_per_sweep.get(sweep, 0) for sweep in set(group.get("sweep_dir", ())))),
            n_collapsed=int(collapsed.sum()),
            zero_shot=group_scores["zero_shot"].mean(),
            dev=group_scores["dev"].mean(),
        )
        for name, column in zip(columns, extra_columns):
            row[name] = _column_value(scored[column])
        rows.append(row)
    return pd.DataFrame(rows, columns=[*group_by, *STAT_COLUMNS, *columns])


def number_text(value: Any) -> str:
    """A table cell: text as is, '-' for missing, integers with thousands separators, else 3 digits."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value).lower()
    if pd.isna(value):
        return "-"
    if float(value).is_integer() and abs(value) >= 1:
        return f"{int(value):,}"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def display_table(summary: pd.DataFrame, group_by: Sequence[str], columns: Sequence[str] = ()) -> pd.DataFrame:
    """The summary as strings for reading: scores in percent as 'mean ± std', flags as counts."""
    metrics = sorted(set(summary["metric"]))
    score_header = f"{metrics[0]} (%)" if len(metrics) == 1 else "score (%)"
    table = pd.DataFrame(index=summary.index)
    for name in group_by:
        table[column_label(name, group_by)] = [number_text(value) for value in summary[name]]
    if len(metrics) > 1:
        table["metric"] = summary["metric"]
    table[score_header] = [
        "-" if pd.isna(mean) else f"{percent(mean)} ± {percent(std)}"
        for mean, std in zip(summary["mean"], summary["std"])
    ]
    if summary["zero_shot"].notna().any():
        table["zero-shot (%)"] = [percent(value) for value in summary["zero_shot"]]
    table["n"] = summary["n_ok"].astype(str)
    table["missing"] = [
        f"{count} ({seeds})" if count else "0" for count, seeds in zip(summary["n_missing"], summary["missing_seeds"])
    ]
    for label in ("failed", "corrupt", "running", "collapsed"):
        table[label] = summary[f"n_{label}"].astype(str)
    for name in columns:  # headed by the path's last part (train_seconds) unless that is taken
        header = name.rsplit(".", 1)[-1]
        table[name if header in table else header] = [number_text(value) for value in summary[name]]
    return table.reset_index(drop=True)
