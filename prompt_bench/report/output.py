"""Summary -> report.md / report.csv / report.tex, the PNG plots, and a rich table on the console."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from prompt_bench.report.load import SEED_COLUMN
from prompt_bench.report.plots import plot_heatmap, plot_scaling
from prompt_bench.report.tables import COLLAPSE_MARGIN, DEFAULT_GROUP_BY, display_table, seed_text, summarize
from prompt_bench.report.transfer import has_transfer_runs, write_transfer_view

FLAG_COLUMNS = ("missing", "failed", "running", "collapsed")


@dataclass
class Report:
    """What write_report made: the summary, its display form, and the files written (name -> path)."""

    summary: pd.DataFrame
    table: pd.DataFrame
    files: dict[str, Path] = field(default_factory=dict)
    caption: str = ""
    n_label_columns: int = len(DEFAULT_GROUP_BY)  # leading columns that name the group


def status_counts(frame: pd.DataFrame) -> str:
    counts = frame["status"].value_counts()
    shown = ("ok", "failed", "running", "corrupt") if counts.get("corrupt", 0) else ("ok", "failed", "running")
    return ", ".join(f"{counts.get(status, 0)} {status}" for status in shown)


def caption(frame: pd.DataFrame, source: str) -> str:
    seeds = sorted(frame[SEED_COLUMN].dropna()) if SEED_COLUMN in frame else []
    return (
        f"{source}: {len(frame)} records ({status_counts(frame)}). Scores are mean ± sample std over "
        f"ok seeds; missing = expected seeds ({seed_text(sorted(set(seeds))) or 'none'}: every seed seen "
        f"here) without an ok result; collapsed = ok runs at or below chance + {COLLAPSE_MARGIN}."
    )


def markdown_table(table: pd.DataFrame, n_label_columns: int) -> str:
    """GitHub Markdown; label columns left-aligned, the rest right-aligned."""

    def cells(values: Sequence[object]) -> str:
        return "| " + " | ".join(str(value).replace("|", "\\|") for value in values) + " |"

    align = [":---" if i < n_label_columns else "---:" for i in range(len(table.columns))]
    lines = [cells(table.columns), "|" + "|".join(align) + "|"]
    lines += [cells(row) for row in table.itertuples(index=False)]
    return "\n".join(lines)


LATEX_SPECIALS = {"\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$"}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIALS.get(char, char) for char in text)


def latex_table(table: pd.DataFrame, text: str) -> str:
    """A table with _ % & escaped (cells by pandas, the caption here) and ± as $\\pm$."""
    latex = table.to_latex(index=False, escape=True, caption=latex_escape(text), label="tab:prompt_bench")
    return latex.replace("±", r"$\pm$")


def print_table(report: Report, console: Console | None = None) -> None:
    """The display table on the console, rows with anything missing, failed or collapsed in yellow."""
    console = console or Console()
    rich_table = Table(title="prompt_bench report", caption=report.caption)
    for i, name in enumerate(report.table.columns):
        rich_table.add_column(name, justify="left" if i < report.n_label_columns else "right")
    for row in report.table.to_dict("records"):
        flagged = any(row.get(name, "0") != "0" for name in FLAG_COLUMNS)
        rich_table.add_row(*map(str, row.values()), style="yellow" if flagged else None)
    console.print(rich_table)
    for name, path in report.files.items():
        console.print(f"{name}: {path}", soft_wrap=True)


def write_report(
    frame: pd.DataFrame,
    out_dir: Path,
    group_by: Sequence[str] = DEFAULT_GROUP_BY,
    metric: str = "primary",
    columns: Sequence[str] = (),
    source: str = "records",
) -> Report:
    """Summarize `frame` and write report.{md,csv,tex}, scaling.png (≥ 2 backbone sizes), heatmap.png,
    and, when there are transfer runs, the transfer view (transfer.md, gain heatmaps, correlations)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(frame, group_by, metric, columns)
    table = display_table(summary, group_by, columns)
    text = caption(frame, source)
    n_labels = len(group_by) + ("metric" in table.columns)
    report = Report(summary=summary, table=table, caption=text, n_label_columns=n_labels)

    report.files["csv"] = out_dir / "report.csv"
    summary.to_csv(report.files["csv"], index=False)
    report.files["md"] = out_dir / "report.md"
    report.files["md"].write_text(f"# prompt_bench report\n\n{markdown_table(table, n_labels)}\n\n{text}\n")
    report.files["tex"] = out_dir / "report.tex"
    report.files["tex"].write_text(latex_table(table, text))
    for name, plot in (("scaling", plot_scaling), ("heatmap", plot_heatmap)):
        written = plot(frame, out_dir / f"{name}.png", metric)
        if written is not None:
            report.files[name] = written
    if has_transfer_runs(frame):
        report.files.update(write_transfer_view(frame, out_dir, metric, Path(source)))
    return report
