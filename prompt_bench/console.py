"""What the console shows of a finished run: a rich table (a single run) or one line (each run of a sweep)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from prompt_bench.scores import percent


def summary_rows(record: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs: what ran, zero-shot vs tuned scores, efficiency."""
    config, metrics = record.get("config", {}), record.get("metrics", {})
    efficiency = record.get("efficiency", {})
    rows = [
        ("method", str(config.get("method", {}).get("name"))),
        ("backbone", str(config.get("backbone", {}).get("name"))),
        ("dataset", f"{config.get('dataset', {}).get('name')} (k_shot={config.get('dataset', {}).get('k_shot')})"),
        ("seed", str(config.get("seed"))),
        ("primary metric", str(metrics.get("primary_metric", "-"))),
        ("zero-shot acc / F1", f"{percent(metrics.get('zero_shot/acc'))} / {percent(metrics.get('zero_shot/f1'))}"),
        ("test acc / F1", f"{percent(metrics.get('test/acc'))} / {percent(metrics.get('test/f1'))}"),
    ]
    if "test/hmean" in metrics:  # base-to-new runs (dual encoders)
        rows += [
            (
                f"{prefix} base / new / H",
                " / ".join(percent(metrics.get(f"{split}/{name}")) for name in ("base_acc", "new_acc", "hmean")),
            )
            for prefix, split in (("zero-shot", "zero_shot"), ("test", "test"))
        ]
    if efficiency:
        rows += [
            (
                "trainable params",
                f"{efficiency['trainable_params']:,} ({efficiency['trainable_pct_of_backbone']:.3f}% of backbone)",
            ),
            (
                "train time",
                f"{efficiency['train_seconds']:.0f} s ({efficiency['train_samples_per_s'] or 0:.1f} samples/s)",
            ),
            ("peak RSS", f"{efficiency['peak_rss_mb']:.0f} MiB"),
        ]
    return rows


def print_summary(record: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    status = record.get("status")
    table = Table(title=f"prompt_bench run {record.get('run_key')} [{status}]", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for label, value in summary_rows(record):
        table.add_row(label, value)
    console.print(table)
    if status != "ok":
        console.print(f"[red]failed:[/red] {record.get('error')}")
    console.print(f"record: {record.get('run_dir')}/record.json", soft_wrap=True)


def wall_seconds(record: dict[str, Any]) -> float | None:
    """finished_at - started_at of the record (whole seconds), None when either is missing."""
    try:
        start, end = (datetime.strptime(record[k], "%Y-%m-%dT%H:%M:%S%z") for k in ("started_at", "finished_at"))
    except (KeyError, TypeError, ValueError):
        return None
    return (end - start).total_seconds()


def run_line(record: dict[str, Any], status: str | None = None) -> str:
    """One line per run of a sweep: status, run key, test and dev primary score, wall time, run dir.

        ok       8213d3c6b575c56c  test acc 25.0  dev 31.2      3 s  0_prompt_tuning_tiny_bert_synthetic_s13
        failed   1f0c...           ValueError: k_shot=1000 is more than ...   2 s  1_prompt_tuning_...
    `status` overrides the record's (a run skipped because its record is already ok). A run that went on from a
    killed attempt's checkpoint ends with `(resumed from step N)`; its time is this attempt's.
    """
    status = status or str(record.get("status"))
    metrics = record.get("metrics") or {}
    primary = metrics.get("primary_metric")
    if status == "failed":
        score = str(record.get("error") or "").splitlines()[0][:100] if record.get("error") else "failed"
    elif primary:
        already = "already ok  " if status == "skipped" else ""
        score = f"{already}test {primary} {percent(metrics.get('test/primary'))}"
        if f"val/{primary}_best" in metrics:
            score += f"  dev {percent(metrics[f'val/{primary}_best'])}"
    else:
        score = "held by another launcher" if record.get("held_by") else "-"
    seconds = wall_seconds(record) if status != "skipped" else None
    duration = f"{seconds:.0f} s" if seconds is not None else "-"
    line = f"{status:<8} {record.get('run_key', '-'):<16}  {score:<28}  {duration:>6}  {Path(str(record.get('run_dir'))).name}"
    if status != "skipped" and record.get("resumed_from_step") is not None:
        line += f"  (resumed from step {record['resumed_from_step']})"
    return line
