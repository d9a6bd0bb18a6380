"""A rich table summarising one run's record at the end of the run."""

from __future__ import annotations

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
