"""Selected on dev: per cell (method, backbone, dataset, ...), the setting with the best mean dev score,
and its test score.

When a report's rows differ by settings (lr, n_tokens: the config keys the grouping added, or extra
`--group-by` keys), the honest headline per cell is not its best test score but the test score of the
setting that was best on dev, which is what a sweeper tuning on dev (hparams_search) would pick:

    chosen(cell) = argmax_setting mean_seeds dev(setting),   reported: test(chosen) as mean ± std, n
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from prompt_bench.report.grouping import column_label, setting_columns
from prompt_bench.report.tables import number_text
from prompt_bench.scores import percent

SELECTION_COLUMNS = ("settings", "chosen_dev", "mean", "std", "n_ok")


def select_on_dev(summary: pd.DataFrame, group_by: Sequence[str]) -> pd.DataFrame | None:
    """summary (from tables.summarize) -> one row per cell: its columns, the chosen setting's values,
    `settings` (how many were tried), `chosen_dev`, and the chosen setting's test `mean`, `std`, `n_ok`.

    None when the rows hold no setting column, or no cell has more than one setting with a dev score.
    """
    cells, settings = setting_columns(group_by)
    if not settings:
        return None
    scored = summary[summary["dev"].notna()]
    if scored.empty:
        return None
    grouped = scored.groupby(cells, dropna=False, sort=True) if cells else [((), scored)]
    rows = []
    for _, group in grouped:
        best = group.loc[group["dev"].idxmax()]  # the first of equal best devs, in summary order
        row = {name: best[name] for name in [*cells, *settings]}
        row.update(settings=len(group), chosen_dev=best["dev"], mean=best["mean"], std=best["std"], n_ok=best["n_ok"])
        rows.append(row)
    selection = pd.DataFrame(rows, columns=[*cells, *settings, *SELECTION_COLUMNS])
    if not (selection["settings"] > 1).any():
        return None
    return selection


def display_selection(selection: pd.DataFrame, group_by: Sequence[str], metric_header: str) -> pd.DataFrame:
    """The selection as strings: chosen settings, how many were tried, dev (%) and test 'mean ± std' (%)."""
    cells, settings = setting_columns(group_by)
    table = pd.DataFrame(index=selection.index)
    for name in [*cells, *settings]:
        table[column_label(name, group_by)] = [number_text(value) for value in selection[name]]
    table["settings tried"] = selection["settings"].astype(str)
    table["dev (%)"] = [percent(value) for value in selection["chosen_dev"]]
    table[metric_header] = [
        "-" if pd.isna(mean) else f"{percent(mean)} ± {percent(std)}"
        for mean, std in zip(selection["mean"], selection["std"])
    ]
    table["n"] = selection["n_ok"].astype(str)
    return table.reset_index(drop=True)
