"""Which config keys tell the runs of a report apart, so a row never averages two configs.

A row of the report is one config over its seeds. The config keys that differ between records are
found here (every flat `config.*` column but the seed, what the seed sets, and bookkeeping such as
output paths, the sweep name or the logger) and added to the grouping, so a sweep over
`method.optimizer.lr=0.03,3.0 seed=13,21` gives one row per lr with n=2 each, not one row with n=4.
An explicit `--group-by` is kept as given; a group that then holds more than one config is named in
a warning with the keys that differ inside it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pandas as pd

from prompt_bench.records import VOLATILE_KEYS, VOLATILE_NESTED
from prompt_bench.report.load import SEED_COLUMN, SHORT_NAMES, column_path

# Config keys that change how a run is shown or where it writes, not what it computes.
DISPLAY_KEYS = (
    "zero_shot",
    "save_prompt",
    "checkpoint_every_epoch",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
)
BOOKKEEPING_PREFIXES = tuple(
    f"config.{key}" for key in (*VOLATILE_KEYS, *(".".join(path) for path in VOLATILE_NESTED), *DISPLAY_KEYS)
)
# The cell a setting is chosen in: these short names, when grouped by, name what is compared.
CELL_NAMES = ("method", "backbone", "dataset", "transfer", "head", "sweep")


def is_bookkeeping(column: str) -> bool:
    return any(column == prefix or column.startswith(prefix + ".") for prefix in BOOKKEEPING_PREFIXES)


def comparable(values: pd.Series) -> pd.Series:
    """Values that pandas can group on: lists and dicts as their JSON text, missing as None."""

    def text(value: Any) -> Any:
        if isinstance(value, (list, dict)):
            return json.dumps(value, sort_keys=True, default=str)
        return None if value is None or (isinstance(value, float) and pd.isna(value)) else value

    return values.map(text).astype(object)


def seed_derived(frame: pd.DataFrame, column: str) -> bool:
    """True when the column equals the run's seed wherever it is set (`dataset.split_seed: ${seed}`)."""
    if SEED_COLUMN not in frame:
        return False
    values = pd.to_numeric(frame[column], errors="coerce")
    seeds = pd.to_numeric(frame[SEED_COLUMN], errors="coerce")
    present = frame[column].notna()
    return bool(present.any()) and bool((values[present] == seeds[present]).all())


def config_keys(frame: pd.DataFrame) -> list[str]:
    """Flat `config.*` columns that can tell two runs apart: not the seed, what follows it, or bookkeeping."""
    keys = []
    for column in frame.columns:
        if not column.startswith("config.") or column == SEED_COLUMN or is_bookkeeping(column):
            continue
        if seed_derived(frame, column):
            continue
        keys.append(column)
    return keys


def configured(frame: pd.DataFrame) -> pd.DataFrame:
    """The records that carry a config (a corrupt record has none)."""
    return frame[~frame["status"].eq("corrupt")] if "status" in frame else frame


def differing_keys(group: pd.DataFrame, keys: Sequence[str]) -> dict[str, list[str]]:
    """key -> its distinct values (as text) for each key that takes more than one value in `group`."""
    differing = {}
    for key in keys:
        values = comparable(group[key]).map(lambda value: "-" if value is None else str(value))
        distinct = sorted(set(values))
        if len(distinct) > 1:
            differing[key] = distinct
    return differing


def varying_keys(frame: pd.DataFrame, group_by: Sequence[str]) -> list[str]:
    """The config keys to add to `group_by` so that no group holds two configs: every key that takes
    two values inside some group of `group_by`, in column order.

    Keys that only follow the group-by columns (a backbone's size, a method's defaults) are not added,
    nor a key whose values copy a key already added (`method.head_lr: ${method.optimizer.lr}`).
    """
    frame = configured(frame)
    if frame.empty:
        return []
    chosen = [column_path(name) for name in group_by if column_path(name) in frame]
    candidates = [key for key in config_keys(frame) if key not in chosen]
    table = pd.DataFrame({column: comparable(frame[column]) for column in [*chosen, *candidates]})
    # Missing as the text "-", so missing keys group together and count as a value: pandas 3's str dtype
    # keeps NaN as missing, which groupby would drop (a transfer column is missing for target-only runs).
    table = table.astype(object).fillna("-").astype(str)
    added: list[str] = []
    for key in candidates:
        groups = table.groupby(chosen, sort=False)[key] if chosen else [(None, table[key])]
        varies = any(values.nunique() > 1 for _, values in groups)
        if varies and not any(table[key].equals(table[other]) for other in added):
            added.append(key)
    return added


def mixed_groups(frame: pd.DataFrame, group_by: Sequence[str]) -> list[str]:
    """One sentence per group of `group_by` whose runs differ in config (besides the seed)."""
    frame = configured(frame)
    columns = [column_path(name) for name in group_by]
    if frame.empty or not all(column in frame for column in columns):
        return []
    keys = [key for key in config_keys(frame) if key not in columns]
    groups = frame.assign(**{c: comparable(frame[c]) for c in columns}).groupby(columns, dropna=False, sort=True)
    sentences = []
    for values, group in groups:
        differing = differing_keys(group, keys)
        if not differing:
            continue
        where = ", ".join(f"{name}={value}" for name, value in zip(group_by, values))
        what = "; ".join(f"{key.removeprefix('config.')}: {', '.join(seen)}" for key, seen in differing.items())
        sentences.append(
            f"the group {where} holds {len(group)} runs of different configs ({what}); its score averages "
            f"them. Add those keys to --group-by, or leave --group-by out to split every config."
        )
    return sentences


def resolve_group_by(frame: pd.DataFrame, group_by: Sequence[str] | None, base: Sequence[str]) -> list[str]:
    """The columns a report groups by: `group_by` as given, or `base` plus every differing config key."""
    if group_by is not None:
        return list(group_by)
    return [*base, *varying_keys(frame, base)]


def setting_columns(group_by: Sequence[str]) -> tuple[list[str], list[str]]:
    """(cell columns, setting columns) of a grouping: the cell names what is compared (method, backbone,
    dataset, ...), the settings are the other keys (lr, n_tokens) among which dev chooses."""
    cells = [name for name in group_by if name in CELL_NAMES]
    settings = [name for name in group_by if name not in CELL_NAMES and name != "seed"]
    return cells, settings


def column_label(name: str, names: Sequence[str]) -> str:
    """A short header for a group-by column: its last dotted part (`lr`) unless two columns share it."""
    if name in SHORT_NAMES:
        return name
    last = name.rsplit(".", 1)[-1]
    clashes = [other for other in names if other != name and other.rsplit(".", 1)[-1] == last]
    if clashes or last in SHORT_NAMES:
        return name.removeprefix("config.")
    return last
