"""report.html: one self-contained page (tables as HTML, plots as base64 PNG, inline CSS), readable
offline and from a mail attachment: no server, no script, nothing fetched."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f2f2f2; }
td.label { text-align: left; }
p.caption { color: #555; max-width: 60em; }
p.warning { color: #8a5300; background: #fff6e0; padding: 0.4em 0.6em; max-width: 60em; }
img { max-width: 100%; border: 1px solid #eee; margin-bottom: 1.5em; }
"""


def table_html(table: pd.DataFrame, n_label_columns: int) -> str:
    """A display table (strings) as an HTML table; the first n_label_columns cells left-aligned."""
    head = "".join(f"<th>{html.escape(str(name))}</th>" for name in table.columns)
    rows = []
    for values in table.itertuples(index=False):
        cells = "".join(
            f'<td class="label">{html.escape(str(value))}</td>'
            if i < n_label_columns
            else f"<td>{html.escape(str(value))}</td>"
            for i, value in enumerate(values)
        )
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def image_html(path: Path, title: str) -> str:
    """A PNG embedded as a data URI."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(title)}" title="{html.escape(title)}" src="data:image/png;base64,{data}">'


def write_html(
    path: Path,
    caption: str,
    warnings: Sequence[str],
    tables: Sequence[tuple[str, pd.DataFrame, int, str]],
    images: Sequence[tuple[str, Path]],
) -> Path:
    """Write the page: the warnings, then each (heading, table, label columns, note), then each (title, PNG)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>prompt_bench report</title>',
        f"<style>{STYLE}</style></head><body>",
        "<h1>prompt_bench report</h1>",
        f'<p class="caption">{html.escape(caption)}</p>',
    ]
    parts += [f'<p class="warning">warning: {html.escape(sentence)}</p>' for sentence in warnings]
    for heading, table, n_labels, note in tables:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        if note:
            parts.append(f'<p class="caption">{html.escape(note)}</p>')
        parts.append(table_html(table, n_labels))
    for title, image in images:
        parts += [f"<h2>{html.escape(title)}</h2>", image_html(image, title)]
    parts.append("</body></html>")
    Path(path).write_text("\n".join(parts), encoding="utf-8")
    return Path(path)
