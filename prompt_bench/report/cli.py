"""`prompt-bench-report DIR`: tables and plots over every record.json under DIR; `--status` counts.

    prompt-bench-report outputs/sweeps/2025-01-01_12-00-00 --metric primary \
        --columns efficiency.train_seconds,efficiency.trainable_params --out reports/
    prompt-bench-report outputs/sweeps --status
    prompt-bench-report outputs/sweeps/all_methods_x_scales --paper      # + the paper table and scaling plot
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from prompt_bench.report.load import iter_records, load_records
from prompt_bench.report.output import print_table, write_report
from prompt_bench.report.paper_output import rich_paper, write_paper
from prompt_bench.report.tables import DEFAULT_GROUP_BY
from prompt_bench.report.transfer import has_transfer_runs
from prompt_bench.report.versions import version_mixes

STATUSES = ("ok", "failed", "running", "corrupt")
PIPE_WIDTH = 200  # rich's 80 columns squeeze a wide table when the output is a file or a pipe


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="prompt-bench-report",
        description="Tables (md/csv/tex) and plots over the record.json files of runs and sweeps.",
    )
    parser.add_argument("dir", type=Path, help="a run or sweep directory (searched recursively for record.json)")
    parser.add_argument(
        "--group-by",
        default=None,
        help="comma-separated columns: method, backbone, dataset, head, seed, sweep, or a dotted record path "
        "such as config.dataset.k_shot (default: method,backbone,dataset plus every config key that differs "
        "between the records, seed aside, so a row never averages two configs; given, it is used as is and "
        "a group holding several configs is named in a warning)",
    )
    parser.add_argument(
        "--metric",
        default="primary",
        help="'primary' (each task's own test metric: acc for BBC, macro-F1 for tweets) or a metrics key "
        "such as test/acc, test/f1, val/acc_best (default: %(default)s)",
    )
    parser.add_argument(
        "--columns",
        default="",
        help="extra comma-separated dotted paths to average over ok runs, e.g. "
        "efficiency.train_seconds,efficiency.trainable_params",
    )
    parser.add_argument("--out", type=Path, default=None, help="where to write report.* and *.png (default: DIR)")
    parser.add_argument("--status", action="store_true", help="only count ok/failed/running records per sweep dir")
    parser.add_argument(
        "--paper",
        action="store_true",
        help="also the paper table: methods x (dataset x scale), mean ± std over seeds, best per column in bold, "
        "a zero-shot row and a cost column per method (paper.{md,csv,tex,html}, paper_scaling.png)",
    )
    return parser.parse_args(argv)


def split_names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def print_status(root: Path, console: Console) -> int:
    """Per sweep dir (the parent of each run dir): ok / failed / running counts; then each failed run."""
    counts: dict[Path, Counter] = defaultdict(Counter)
    failures: list[tuple[str, str]] = []
    for path, record in iter_records(root, include_corrupt=True):
        status = record.get("status", "unknown")
        counts[path.parent.parent][status if status in STATUSES else "other"] += 1
        if status == "corrupt":
            failures.append(
                (str(path.parent), "corrupt: record.json unreadable (moved aside or to be moved aside on relaunch)")
            )
        if status == "failed":
            error = str(record.get("error") or "(no error text)").strip().splitlines() or ["(no error text)"]
            failures.append((str(record.get("run_dir") or path.parent), error[0]))
    if not counts:
        console.print(f"no record.json under {root} yet.")
        return 0
    table = Table(title=f"prompt_bench status: {root}")
    table.add_column("sweep dir")
    for name in (*STATUSES, "other", "total"):
        table.add_column(name, justify="right")
    for sweep_dir, sweep_counts in sorted(counts.items()):
        cells = [str(sweep_counts[name]) for name in (*STATUSES, "other")]
        table.add_row(str(sweep_dir), *cells, str(sum(sweep_counts.values())))
    console.print(table)
    if failures:
        console.print(f"[red]{len(failures)} failed run(s):[/red]")
        for run_dir, first_line in failures:
            console.print(f"  {run_dir}: {first_line}", soft_wrap=True, markup=False)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console script `prompt-bench-report`; returns the exit code (1: no records, 2: bad column)."""
    args = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else PIPE_WIDTH)
    if not args.dir.is_dir():
        console.print(f"[red]error:[/red] {args.dir} is not a directory; pass a run or sweep directory.")
        return 1
    if args.status:
        return print_status(args.dir, console)
    frame = load_records(args.dir)
    if frame.empty:
        console.print(
            f"[red]error:[/red] no record.json under {args.dir}; pass a directory that holds finished or "
            "running runs (e.g. outputs/sweeps/<date>), or check the path."
        )
        return 1
    for sentence in version_mixes(frame):
        console.print(f"[yellow]warning:[/yellow] {sentence}", soft_wrap=True)
    base = [*DEFAULT_GROUP_BY, *(["transfer"] if has_transfer_runs(frame) else [])]  # spot/panda rows differ by pair
    try:
        report = write_report(
            frame,
            args.out or args.dir,
            None if args.group_by is None else split_names(args.group_by),
            args.metric,
            split_names(args.columns),
            source=str(args.dir),
            base=base,
        )
    except ValueError as error:
        console.print(f"[red]error:[/red] {error}", markup=True)
        return 2
    print_table(report, console)
    if args.paper:
        table, files = write_paper(frame, args.out or args.dir, args.metric)
        console.print(rich_paper(table))
        for name, path in files.items():
            console.print(f"{name}: {path}", soft_wrap=True)
    return 0
