"""Display tables as text: GitHub Markdown and LaTeX."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd


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
