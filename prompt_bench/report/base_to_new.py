"""Base-to-new tables: base / new accuracy and H per method, backbone and dataset, with zero-shot.

A row per (method, backbone, dataset) over the ok runs that logged test/hmean: base and new as
mean ± sample std over seeds, H = 2·base·new / (base + new) of the two means (as the CoCoOp and
DePT papers report it), and, for a `<base>+dept` row, ΔH against its base method. Each backbone ×
dataset also gets a `zero-shot` row from the runs' zero_shot/* scores (the hand-crafted prompt).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from prompt_bench.report.formats import markdown_table
from prompt_bench.report.load import SHORT_NAMES
from prompt_bench.report.tables import latest_per_run
from prompt_bench.scores import harmonic_mean

GROUPS = ("method", "backbone", "dataset")
SCORES = {"base": "base_acc", "new": "new_acc"}
NOTE = (
    "Base / new: mean ± sample std over seeds of test accuracy on each half's own classes; "
    "H = harmonic mean of the mean base and new accuracies; ΔH = H(+DePT) − H(its base method)."
)


def has_base_to_new(frame: pd.DataFrame) -> bool:
    return "metrics.test/hmean" in frame and frame["metrics.test/hmean"].notna().any()


def base_to_new_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Records frame -> rows of method, backbone, dataset, base, base_std, new, new_std, H, dH, n."""
    frame = latest_per_run(frame)
    frame = frame[frame["status"].eq("ok") & frame["metrics.test/hmean"].notna()]
    columns = [SHORT_NAMES[name] for name in GROUPS]
    rows = []
    for keys, group in frame.groupby(columns[1:], sort=True):
        rows.append(_row("zero-shot", keys, group, "zero_shot"))
        for method, runs in group.groupby(columns[0], sort=True):
            rows.append(_row(method, keys, runs, "test"))
    summary = pd.DataFrame(rows)
    plain = {(row.method, row.backbone, row.dataset): row.H for row in summary.itertuples()}
    summary["dH"] = [
        row.H - plain.get((row.method.removesuffix("+dept"), row.backbone, row.dataset), float("nan"))
        if row.method.endswith("+dept")
        else float("nan")
        for row in summary.itertuples()
    ]
    return summary


def _row(method: str, keys: tuple, runs: pd.DataFrame, prefix: str) -> dict:
    row = {"method": method, "backbone": keys[0], "dataset": keys[1], "n": len(runs)}
    for name, metric in SCORES.items():
        values = pd.to_numeric(runs.get(f"metrics.{prefix}/{metric}"), errors="coerce")
        row[name], row[f"{name}_std"] = values.mean(), values.std(ddof=1)
    row["H"] = harmonic_mean(row["base"], row["new"])
    return row


def display(summary: pd.DataFrame) -> pd.DataFrame:
    """Percent strings: base and new as 'mean ± std', H and ΔH to one decimal."""

    def score(mean: float, std: float) -> str:
        return f"{100 * mean:.1f}" + ("" if pd.isna(std) else f" ± {100 * std:.1f}")

    return pd.DataFrame(
        {
            "method": summary["method"],
            "backbone": summary["backbone"],
            "dataset": summary["dataset"],
            "base (%)": [score(m, s) for m, s in zip(summary["base"], summary["base_std"])],
            "new (%)": [score(m, s) for m, s in zip(summary["new"], summary["new_std"])],
            "H (%)": [f"{100 * h:.1f}" for h in summary["H"]],
            "ΔH vs base method": ["" if pd.isna(d) else f"{100 * d:+.1f}" for d in summary["dH"]],
            "n": summary["n"].astype(str),
        }
    )


def write_base_to_new(frame: pd.DataFrame, out_dir: Path) -> tuple[pd.DataFrame, dict[str, Path]]:
    """base2new.md and base2new.csv (raw fractions) in out_dir; returns the display table and the files."""
    summary = base_to_new_summary(frame)
    table = display(summary)
    out_dir = Path(out_dir)
    files = {"base2new csv": out_dir / "base2new.csv", "base2new md": out_dir / "base2new.md"}
    summary.to_csv(files["base2new csv"], index=False)
    files["base2new md"].write_text(f"# Base-to-new\n\n{markdown_table(table, 3)}\n\n{NOTE}\n")
    return table, files
