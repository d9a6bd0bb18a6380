"""Summary -> report.md / .csv / .tex / .html, the PNG plots, and rich tables on the console."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from prompt_bench.report.base_to_new import NOTE as BASE_TO_NEW_NOTE
from prompt_bench.report.base_to_new import has_base_to_new, write_base_to_new
from prompt_bench.report.formats import latex_table, markdown_table
from prompt_bench.report.grouping import mixed_groups, resolve_group_by, setting_columns
from prompt_bench.report.html import write_html
from prompt_bench.report.load import SEED_COLUMN
from prompt_bench.report.plots import plot_heatmap, plot_scaling
from prompt_bench.report.selection import display_selection, select_on_dev
from prompt_bench.report.tables import COLLAPSE_MARGIN, DEFAULT_GROUP_BY, display_table, seed_text, summarize
from prompt_bench.report.transfer import has_transfer_runs, write_transfer_view

FLAG_COLUMNS = ("missing", "failed", "running", "collapsed")
SELECTION_NOTE = (
    "Per cell, the setting with the best mean dev score (val/<selection metric>_best over its ok seeds) "
    "and the test score of that setting: what tuning on dev picks, never the best test score."
)


@dataclass
class Section:
    """A further table of the report (selected on dev, base-to-new): heading, display table, note."""

    heading: str
    table: pd.DataFrame
    n_label_columns: int
    note: str = ""


@dataclass
class Report:
    """What write_report made: the summary, its display form, the files written (name -> path),
    the group-by columns used, warnings (groups that mix configs) and further sections."""

    summary: pd.DataFrame
    table: pd.DataFrame
    files: dict[str, Path] = field(default_factory=dict)
    caption: str = ""
    n_label_columns: int = len(DEFAULT_GROUP_BY)  # leading columns that name the group
    group_by: list[str] = field(default_factory=lambda: list(DEFAULT_GROUP_BY))
    warnings: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    selection: pd.DataFrame | None = None


def status_counts(frame: pd.DataFrame) -> str:
    counts = frame["status"].value_counts()
    shown = ("ok", "failed", "running", "corrupt") if counts.get("corrupt", 0) else ("ok", "failed", "running")
    return ", ".join(f"{counts.get(status, 0)} {status}" for status in shown)


def caption(frame: pd.DataFrame, source: str) -> str:
    seeds = sorted(frame[SEED_COLUMN].dropna()) if SEED_COLUMN in frame else []
    return (
        f"{source}: {len(frame)} records ({status_counts(frame)}). One row per config; scores are mean ± "
        f"sample std over its ok seeds; missing = expected seeds ({seed_text(sorted(set(seeds))) or 'none'}: "
        f"every seed seen here) without an ok result; collapsed = ok runs at or below chance + {COLLAPSE_MARGIN}."
    )


def rich_table(title: str, table: pd.DataFrame, n_label_columns: int, note: str = "") -> Table:
    """A display table for the console, rows with anything missing, failed or collapsed in yellow."""
    shown = Table(title=title, caption=note or None)
    for i, name in enumerate(table.columns):
        shown.add_column(name, justify="left" if i < n_label_columns else "right")
    for row in table.to_dict("records"):
        flagged = any(row.get(name, "0") != "0" for name in FLAG_COLUMNS)
        shown.add_row(*map(str, row.values()), style="yellow" if flagged else None)
    return shown


def print_table(report: Report, console: Console | None = None) -> None:
    """The report's tables on the console, its warnings, then the files written."""
    console = console or Console()
    console.print(rich_table("prompt_bench report", report.table, report.n_label_columns, report.caption))
    for section in report.sections:
        console.print(rich_table(section.heading, section.table, section.n_label_columns, section.note))
    for sentence in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {sentence}", soft_wrap=True, markup=True, highlight=False)
    for name, path in report.files.items():
        console.print(f"{name}: {path}", soft_wrap=True)


def markdown_page(report: Report) -> str:
    parts = ["# prompt_bench report\n", *(f"> warning: {sentence}\n" for sentence in report.warnings)]
    parts += [markdown_table(report.table, report.n_label_columns), "", report.caption, ""]
    for section in report.sections:
        parts += [f"## {section.heading}\n", markdown_table(section.table, section.n_label_columns), ""]
        parts += [section.note, ""] if section.note else []
    return "\n".join(parts)


def write_report(
    frame: pd.DataFrame,
    out_dir: Path,
    group_by: Sequence[str] | None = None,
    metric: str = "primary",
    columns: Sequence[str] = (),
    source: str = "records",
    base: Sequence[str] = DEFAULT_GROUP_BY,
) -> Report:
    """Summarize `frame` and write report.{md,csv,tex,html}, scaling.png (≥ 2 backbone sizes),
    heatmap.png, base2new.{md,csv} for base-to-new runs and, with transfer runs, the transfer view.

    group_by None: `base` plus every config key that differs between the records (seed aside), so
    no row mixes configs; given: kept as is, with a warning per group that holds several configs.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    explicit = group_by is not None
    group_by = resolve_group_by(frame, group_by, base)
    summary = summarize(frame, group_by, metric, columns)
    table = display_table(summary, group_by, columns)
    n_labels = len(group_by) + ("metric" in table.columns)
    report = Report(
        summary=summary,
        table=table,
        caption=caption(frame, source),
        n_label_columns=n_labels,
        group_by=list(group_by),
        warnings=mixed_groups(frame, group_by) if explicit else [],
    )
    report.selection = select_on_dev(summary, group_by)
    if report.selection is not None:
        cells, settings = setting_columns(group_by)
        score_header = next(name for name in table.columns if name.endswith("(%)"))
        report.sections.append(
            Section(
                "selected on dev",
                display_selection(report.selection, group_by, score_header),
                len(cells) + len(settings),
                SELECTION_NOTE,
            )
        )
        report.files["selection csv"] = out_dir / "selected_on_dev.csv"
        report.selection.to_csv(report.files["selection csv"], index=False)

    report.files["csv"] = out_dir / "report.csv"
    summary.to_csv(report.files["csv"], index=False)
    settings = setting_columns(group_by)[1]
    for name, plot in (("scaling", plot_scaling), ("heatmap", plot_heatmap)):
        written = plot(frame, out_dir / f"{name}.png", metric, settings)
        if written is not None:
            report.files[name] = written
    if has_base_to_new(frame):  # base-to-new runs: a base / new / H table next to the report
        b2n_table, b2n_files = write_base_to_new(frame, out_dir)
        report.sections.append(Section("base-to-new", b2n_table, 3, BASE_TO_NEW_NOTE))
        report.files.update(b2n_files)
    if has_transfer_runs(frame):
        report.files.update(write_transfer_view(frame, out_dir, metric, Path(source)))
    report.files["md"] = out_dir / "report.md"
    report.files["md"].write_text(markdown_page(report))
    report.files["tex"] = out_dir / "report.tex"
    report.files["tex"].write_text(latex_table(table, report.caption))
    images = [(name, path) for name, path in report.files.items() if Path(path).suffix == ".png"]
    tables = [("results", table, n_labels, report.caption)]
    tables += [(section.heading, section.table, section.n_label_columns, section.note) for section in report.sections]
    report.files["html"] = write_html(out_dir / "report.html", report.caption, report.warnings, tables, images)
    return report
