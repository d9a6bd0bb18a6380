"""A rich table summarising one run's record at the end of the run."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def print_summary(record: dict[str, Any], console: Console | None = None) -> None:
    """Method, backbone, dataset, zero-shot vs tuned test scores, efficiency, status."""
    console = console or Console()
    config, metrics = record.get("config", {}), record.get("metrics", {})
    efficiency = record.get("efficiency", {})
    table = Table(title=f"prompt_bench run {record.get('run_key')} [{record.get('status')}]")
    for column in ("method", "backbone", "dataset", "seed", "zero-shot acc", "zero-shot F1", "test acc", "test F1",
                   "trainable", "train s"):
        table.add_column(column, justify="right" if column not in ("method", "backbone", "dataset") else "left")
    trainable = efficiency.get("trainable_params")
    table.add_row(
        str(config.get("method", {}).get("name")),
        str(config.get("backbone", {}).get("name")),
        str(config.get("dataset", {}).get("name")),
        str(config.get("seed")),
        _percent(metrics.get("zero_shot/acc")),
        _percent(metrics.get("zero_shot/f1")),
        _percent(metrics.get("test/acc")),
        _percent(metrics.get("test/f1")),
        "-" if trainable is None else f"{trainable:,} ({efficiency.get('trainable_pct_of_backbone', 0):.3f}%)",
        "-" if efficiency.get("train_seconds") is None else f"{efficiency['train_seconds']:.0f}",
    )
    console.print(table)
    if record.get("status") != "ok":
        console.print(f"[red]failed:[/red] {record.get('error')}")
    console.print(f"record: {record.get('run_dir')}/record.json")
