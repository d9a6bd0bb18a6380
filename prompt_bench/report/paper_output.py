"""The paper table as files: paper.md, paper.csv (raw fractions, one line per cell), paper.tex (booktabs),
paper.html (self-contained, with the scaling plot) and paper_scaling.png; best cells in bold."""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from rich.table import Table
from rich.text import Text

from prompt_bench.report.formats import latex_escape
from prompt_bench.report.html import STYLE, image_html
from prompt_bench.report.paper import ZERO_SHOT_ROW, PaperTable, paper_table
from prompt_bench.report.paper_plot import plot_paper_scaling

COST_HEADERS = {
    "trainable_params": "trainable params",
    "train_seconds": "train s / run",
    "peak_memory_mb": "peak MiB / run",
}


def compact(value: float) -> str:
    """1234567 -> '1.23M', 20480 -> '20.5k', 3.2 -> '3.2', NaN -> '-'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    for bound, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= bound:
            return f"{value / bound:.3g}{suffix}"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def cell_text(cell: pd.Series | None, full_n: int) -> str:
    """'85.1 ± 1.2' in percent; ' (n=3)' when the cell has fewer seeds than full_n; '-' when empty."""
    if cell is None or pd.isna(cell["mean"]):
        return "-"
    text = f"{100 * cell['mean']:.1f}" + ("" if pd.isna(cell["std"]) else f" ± {100 * cell['std']:.1f}")
    return text + (f" (n={int(cell['n'])})" if int(cell["n"]) < full_n else "")


def grid(table: PaperTable) -> tuple[list[list[str]], list[list[bool]], list[str]]:
    """(text per row and column, bold per row and column, cost column names): score columns, then costs,
    each cost cell the values per scale joined by ' / ' in scale order."""
    cells = table.cells.set_index(["row", "dataset", "scale"])
    full_n = int(table.cells["n"].max()) if len(table.cells) else 0
    costs = table.costs.set_index(["row", "scale"])
    cost_names = [name for name in COST_HEADERS if name in table.costs]
    scales = [name for name, _ in table.scales if any(s == name for _, s in table.columns)]
    texts, bold = [], []
    for row in table.rows:
        line, marks = [], []
        for dataset, scale in table.columns:
            cell = cells.loc[(row, dataset, scale)] if (row, dataset, scale) in cells.index else None
            line.append(cell_text(cell, full_n))
            marks.append(bool(cell is not None and cell["best"]))
        for name in cost_names:
            values = [costs.loc[(row, s), name] if (row, s) in costs.index else math.nan for s in scales]
            line.append("-" if row == ZERO_SHOT_ROW else " / ".join(compact(value) for value in values))
            marks.append(False)
        texts.append(line)
        bold.append(marks)
    return texts, bold, cost_names


def scale_names(table: PaperTable) -> list[str]:
    return [name for name, _ in table.scales if any(s == name for _, s in table.columns)]


def headers(table: PaperTable, cost_names: list[str]) -> list[str]:
    """One-line headers: 'bbc_news (acc) · minilm', then 'trainable params (minilm / mpnet)'."""
    scales = " / ".join(scale_names(table))
    scores = [f"{dataset} ({table.metrics.get(dataset, '')}) · {scale}" for dataset, scale in table.columns]
    return ["method", *scores, *(f"{COST_HEADERS[name]} ({scales})" for name in cost_names)]


def markdown(table: PaperTable) -> str:
    texts, bold, cost_names = grid(table)
    head = headers(table, cost_names)
    lines = ["| " + " | ".join(head) + " |", "|:---|" + "---:|" * (len(head) - 1)]
    for row, line, marks in zip(table.rows, texts, bold):
        shown = [f"**{text}**" if mark else text for text, mark in zip(line, marks)]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in [row, *shown]) + " |")
    return "\n".join(["# Paper table", "", *lines, "", *(f"- {note}" for note in table.notes), ""])


def dataset_spans(table: PaperTable) -> list[tuple[str, int]]:
    """[(dataset, how many scale columns it spans)] in column order: the header row over the scales."""
    spans: list[tuple[str, int]] = []
    for dataset, _ in table.columns:
        if spans and spans[-1][0] == dataset:
            spans[-1] = (dataset, spans[-1][1] + 1)
        else:
            spans.append((dataset, 1))
    return spans


def latex(table: PaperTable) -> str:
    """A booktabs table: datasets over their scales, then the cost columns; needs \\usepackage{booktabs}."""
    texts, bold, cost_names = grid(table)
    datasets = dataset_spans(table)
    spec = "l" + "".join("r" * width for _, width in datasets) + "r" * len(cost_names)
    top, rules, start = [""], [], 2
    for dataset, width in datasets:
        metric = table.metrics.get(dataset, "")
        top.append(f"\\multicolumn{{{width}}}{{c}}{{{latex_escape(dataset)} ({latex_escape(metric)})}}")
        rules.append(f"\\cmidrule(lr){{{start}-{start + width - 1}}}")
        start += width
    if cost_names:
        scales = " / ".join(scale_names(table))
        top.append(f"\\multicolumn{{{len(cost_names)}}}{{c}}{{cost per run ({latex_escape(scales)})}}")
        rules.append(f"\\cmidrule(lr){{{start}-{start + len(cost_names) - 1}}}")
    second = ["method", *(latex_escape(scale) for _, scale in table.columns)]
    second += [latex_escape(COST_HEADERS[name]) for name in cost_names]

    def tex(text: str, mark: bool) -> str:
        text = latex_escape(text).replace("±", "$\\pm$")
        return f"\\textbf{{{text}}}" if mark else text

    body = []
    for row, line, marks in zip(table.rows, texts, bold):
        body.append(" & ".join([latex_escape(row), *(tex(t, m) for t, m in zip(line, marks))]) + " \\\\")
        if row == ZERO_SHOT_ROW:
            body.append("\\midrule")
    caption = latex_escape(" ".join(table.notes)).replace("±", "$\\pm$")
    return "\n".join(
        [
            "\\begin{table}[t]",
            "\\centering",
            f"\\caption{{{caption}}}",
            "\\label{tab:prompt_bench_paper}",
            f"\\begin{{tabular}}{{{spec}}}",
            "\\toprule",
            " & ".join(top) + " \\\\",
            " ".join(rules),
            " & ".join(second) + " \\\\",
            "\\midrule",
            *body,
            "\\bottomrule",
            "\\end{tabular}",
            "\\end{table}",
            "",
        ]
    )


def html_page(table: PaperTable, plot: Path | None) -> str:
    texts, bold, cost_names = grid(table)
    esc = html.escape
    datasets = dataset_spans(table)
    scales = " / ".join(scale_names(table))
    top = ['<th rowspan="2">method</th>']
    top += [f'<th colspan="{w}">{esc(d)} ({esc(table.metrics.get(d, ""))})</th>' for d, w in datasets]
    if cost_names:
        top.append(f'<th colspan="{len(cost_names)}">cost per run ({esc(scales)})</th>')
    second = [f"<th>{esc(scale)}</th>" for _, scale in table.columns]
    second += [f"<th>{esc(COST_HEADERS[name])}</th>" for name in cost_names]
    rows = []
    for row, line, marks in zip(table.rows, texts, bold):
        cells = "".join(f"<td>{'<strong>' + esc(t) + '</strong>' if m else esc(t)}</td>" for t, m in zip(line, marks))
        rows.append(f'<tr><td class="label">{esc(row)}</td>{cells}</tr>')
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>prompt_bench paper table</title>',
        f"<style>{STYLE}</style></head><body>",
        "<h1>Paper table</h1>",
        f"<table><thead><tr>{''.join(top)}</tr><tr>{''.join(second)}</tr></thead><tbody>{''.join(rows)}</tbody></table>",
        *(f'<p class="caption">{esc(note)}</p>' for note in table.notes),
    ]
    if plot is not None:
        parts += ["<h2>scaling</h2>", image_html(plot, "primary metric vs backbone size")]
    parts.append("</body></html>")
    return "\n".join(parts)


def long_csv(table: PaperTable) -> pd.DataFrame:
    """One line per cell (raw fractions) with the row's cost at that scale."""
    return table.cells.merge(table.costs, on=["row", "scale"], how="left").sort_values(["row", "dataset", "scale"])


def write_paper(
    frame: pd.DataFrame, out_dir: Path, metric: str = "primary", plot: Callable = plot_paper_scaling
) -> tuple[PaperTable, dict[str, Path]]:
    """paper.{md,csv,tex,html} and paper_scaling.png (when there are two or more backbone sizes) in out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = paper_table(frame, metric)
    files: dict[str, Path] = {}
    scaling = plot(frame, table, out_dir / "paper_scaling.png")
    if scaling is not None:
        files["paper scaling"] = scaling
    files["paper csv"] = out_dir / "paper.csv"
    long_csv(table).to_csv(files["paper csv"], index=False)
    files["paper md"] = out_dir / "paper.md"
    files["paper md"].write_text(markdown(table))
    files["paper tex"] = out_dir / "paper.tex"
    files["paper tex"].write_text(latex(table))
    files["paper html"] = out_dir / "paper.html"
    files["paper html"].write_text(html_page(table, scaling), encoding="utf-8")
    return table, files


def rich_paper(table: PaperTable) -> Table:
    """The paper table for the console, best cells in bold."""
    texts, bold, cost_names = grid(table)
    shown = Table(title="paper table", caption=" ".join(table.notes[:1]))
    for i, name in enumerate(headers(table, cost_names)):
        shown.add_column(name, justify="left" if i == 0 else "right")
    for row, line, marks in zip(table.rows, texts, bold):
        shown.add_row(row, *(Text(t, style="bold" if m else "") for t, m in zip(line, marks)))
    return shown
