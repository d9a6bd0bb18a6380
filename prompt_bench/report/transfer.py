"""The report's transfer view: realised gain of each transfer method over target-only prompt
tuning per (source, target), and how well each transferability metric ranks those gains.

    gain(method, s, t) = mean_seeds score(method, s -> t) - mean_seeds score(prompt_tuning on t)

per backbone, in points of the primary metric. Correlations (Spearman ρ and Kendall τ) pair every
off-diagonal (s, t) cell's gain with the metric's value in `transferability.csv` (written by
`prompt-bench-transferability`), per backbone, method and metric.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from scipy.stats import kendalltau, spearmanr

from prompt_bench.report.load import SHORT_NAMES
from prompt_bench.report.plots import matrix_heatmap
from prompt_bench.report.tables import latest_per_run, per_run_scores

TRANSFER_COLUMN = SHORT_NAMES["transfer"]
SOURCE_COLUMN = "config.transfer.source.name"
BASELINE_METHOD = "prompt_tuning"
MIN_PAIRS = 3  # fewer cells than this give no meaningful rank correlation
CSV_NAME = "transferability.csv"  # written by `prompt-bench-transferability` (prompt_bench.transfer.matrix)


def metric_matrices(frame: pd.DataFrame) -> dict[tuple[str, str, str], pd.DataFrame]:
    """(backbone, depth, metric) -> source x target matrix of a transferability.csv frame, averaged over seeds."""
    matrices = {}
    for (backbone, depth, metric), part in frame.groupby(["backbone", "depth", "metric"], sort=True):
        matrices[(backbone, depth, metric)] = part.pivot_table(
            index="source", columns="target", values="value", aggfunc="mean"
        )
    return matrices


def has_transfer_runs(frame: pd.DataFrame) -> bool:
    return TRANSFER_COLUMN in frame and frame[TRANSFER_COLUMN].notna().any()


def transfer_gains(frame: pd.DataFrame, metric: str = "primary") -> pd.DataFrame:
    """One row per (backbone, method, source, target): score, baseline and gain (points), n seeds."""
    frame = latest_per_run(frame)
    scored = frame.assign(score=per_run_scores(frame, metric)["score"])
    scored = scored[scored["score"].notna()]
    names = {"config.backbone.name": "backbone", "config.method.name": "method", "config.dataset.name": "target"}
    is_transfer = scored[TRANSFER_COLUMN].notna()
    baseline = (
        scored[~is_transfer & scored["config.method.name"].eq(BASELINE_METHOD)]
        .rename(columns=names)
        .groupby(["backbone", "target"])["score"]
        .mean()
        .rename("baseline")
    )
    transfer = scored[is_transfer].rename(columns={**names, SOURCE_COLUMN: "source"})
    cells = transfer.groupby(["backbone", "method", "source", "target"])["score"].agg(["mean", "count"])
    cells = cells.rename(columns={"mean": "score", "count": "seeds"}).reset_index()
    cells = cells.join(baseline, on=["backbone", "target"])
    cells["gain"] = 100 * (cells["score"] - cells["baseline"])
    return cells


def metric_correlations(gains: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """Spearman and Kendall between each metric and the realised gain, over off-diagonal cells,
    per (backbone, method, metric); metric values are averaged over seeds and prompt depths."""
    values = metrics.groupby(["backbone", "metric", "source", "target"])["value"].mean().reset_index()
    joined = gains.dropna(subset=["gain"]).merge(values, on=["backbone", "source", "target"])
    joined = joined[joined["source"] != joined["target"]]
    rows = []
    for (backbone, method, metric), cells in joined.groupby(["backbone", "method", "metric"], sort=True):
        row = {"backbone": backbone, "method": method, "metric": metric, "pairs": len(cells)}
        if len(cells) >= MIN_PAIRS and cells["value"].nunique() > 1 and cells["gain"].nunique() > 1:
            row["spearman"], row["spearman_p"] = spearmanr(cells["value"], cells["gain"])
            row["kendall"], row["kendall_p"] = kendalltau(cells["value"], cells["gain"])
        rows.append(row)
    columns = ["backbone", "method", "metric", "pairs", "spearman", "spearman_p", "kendall", "kendall_p"]
    return pd.DataFrame(rows).reindex(columns=columns)


def find_transferability_csv(*directories: Path) -> Path | None:
    for directory in directories:
        if (Path(directory) / CSV_NAME).exists():
            return Path(directory) / CSV_NAME
    return None


def write_transfer_view(frame: pd.DataFrame, out_dir: Path, metric: str, sweep_dir: Path) -> dict[str, Path]:
    """transfer.md (+ transfer_gains.csv) and a gain heatmap per (backbone, method); with a
    transferability.csv (from `prompt-bench-transferability`) also transfer_correlations.csv and
    the metric matrices with their heatmaps."""
    out_dir = Path(out_dir)
    gains = transfer_gains(frame, metric)
    files = {"transfer_gains": out_dir / "transfer_gains.csv"}
    gains.to_csv(files["transfer_gains"], index=False)
    sections = [
        "# Transfer view\n",
        f"Gain = mean score of the method on source -> target minus target-only {BASELINE_METHOD}, in points "
        f"of the {'primary metric' if metric == 'primary' else metric}, mean over seeds.\n",
    ]
    for (backbone, method), cells in gains.groupby(["backbone", "method"], sort=True):
        matrix = cells.pivot_table(index="source", columns="target", values="gain", aggfunc="mean", dropna=False)
        title = f"gain over target-only prompt tuning · {method} · {backbone}"
        sections.append(f"## {title}\n\n{matrix.round(1).to_markdown()}\n")
        files[f"transfer_gain_{method}_{backbone}"] = matrix_heatmap(
            matrix, title + " (points)", out_dir / f"transfer_gain_{method}_{backbone}.png", ".1f", diverging=True
        )
    metrics_csv = find_transferability_csv(sweep_dir, out_dir)
    if metrics_csv is None:
        sections.append(
            f"No {CSV_NAME} here: run `prompt-bench-transferability {sweep_dir}` for the metric matrices "
            "and their correlation with the gains.\n"
        )
    else:
        metrics = pd.read_csv(metrics_csv)
        correlations = metric_correlations(gains, metrics)
        files["transfer_correlations"] = out_dir / "transfer_correlations.csv"
        correlations.to_csv(files["transfer_correlations"], index=False)
        sections.append(
            f"## Metric vs realised gain (off-diagonal pairs; metrics from {metrics_csv})\n\n"
            f"{correlations.round(3).to_markdown(index=False)}\n"
        )
        for (backbone, depth, metric_name), matrix in metric_matrices(metrics).items():
            title = f"predicted transferability: {metric_name} · {backbone} · {depth} prompts"
            sections.append(f"## {title}\n\n{matrix.round(3).to_markdown()}\n")
            name = f"transferability_{metric_name}_{backbone}_{depth}"
            files[name] = matrix_heatmap(matrix, title, out_dir / f"{name}.png", ".2f")
    files["transfer_md"] = out_dir / "transfer.md"
    files["transfer_md"].write_text("\n".join(sections))
    return files
