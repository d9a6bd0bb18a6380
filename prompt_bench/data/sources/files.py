"""User files (CSV, JSONL) -> a `Task`; the label handling (`_encode_labels`) the hub source shares.

String labels are class names, integer labels are indices into `label_names`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from prompt_bench.data.splits import stratified_holdout
from prompt_bench.data.tasks import Examples, Task
from prompt_bench.data.templates import format_rows
from prompt_bench.errors import DataError

if TYPE_CHECKING:  # pandas (~0.5 s) is imported by the readers that use it, not by `import prompt_bench.run`
    import pandas as pd


def csv_file(
    path,
    text_column: str | list[str],
    label_column: str,
    label_names: list[str] | None = None,
    test_path: str | None = None,
    test_fraction: float = 0.2,
    holdout_seed: int = 0,
    metric: str = "acc",
    name: str | None = None,
    delimiter: str = ",",
    encoding: str = "utf-8",
    template: str | None = None,
) -> Task:
    """A task from a CSV file with a header; several text columns are joined with a space, or filled
    into `template` ({a}, {b}, ... or the column names; prompt_bench/data/templates.py).

    Without `test_path`, a stratified `test_fraction` of the file is held out as test.
    Without `label_names`, the class names are the sorted distinct labels.
    """

    def read(file_path, option):
        return _read_csv(file_path, option, delimiter, encoding)

    frames = _read_files(read, path, test_path)
    examples_by_file, label_names = _examples_from_frames(
        frames, _as_list(text_column), label_column, label_names, ("text_column", "label_column"), template
    )
    return _task_from_files(examples_by_file, label_names, test_fraction, holdout_seed, metric, name or Path(path).stem)


def jsonl_file(
    path,
    text_field: str | list[str],
    label_field: str,
    label_names: list[str] | None = None,
    test_path: str | None = None,
    test_fraction: float = 0.2,
    holdout_seed: int = 0,
    metric: str = "acc",
    name: str | None = None,
    template: str | None = None,
) -> Task:
    """A task from a JSON-lines file (one object per line); same rules as `csv_file`."""
    frames = _read_files(_read_jsonl, path, test_path)
    examples_by_file, label_names = _examples_from_frames(
        frames, _as_list(text_field), label_field, label_names, ("text_field", "label_field"), template
    )
    return _task_from_files(examples_by_file, label_names, test_fraction, holdout_seed, metric, name or Path(path).stem)


def _read_files(read, path, test_path) -> dict[str, pd.DataFrame]:
    """{file: DataFrame} for the data file and, when given, the test file; `read(path, option)` reads one."""
    frames = {str(path): read(path, "path")}
    if test_path is not None:
        frames[str(test_path)] = read(test_path, "test_path")
    return frames


def _examples_from_frames(frames, text_columns, label_column, label_names, options, template=None):
    """({file: Examples}, label_names) with one label encoding shared by all files."""
    text_option, label_option = options
    texts = {where: _texts_from(frame, text_columns, where, text_option, template) for where, frame in frames.items()}
    raw_labels = {where: _raw_labels(frame, label_column, where, label_option) for where, frame in frames.items()}
    label_names, labels = _encode_labels(raw_labels, label_names, f"label column '{label_column}'")
    examples = {
        where: Examples(texts[where], labels[where], _fields_from(frame, text_columns))
        for where, frame in frames.items()
    }
    return examples, label_names


def _task_from_files(
    examples_by_file: dict[str, Examples], label_names, test_fraction, holdout_seed, metric, name
) -> Task:
    """The first file is the train pool; the second the test split, else a stratified holdout of the first."""
    (data_file, pool), *test_files = examples_by_file.items()
    if test_files:
        train, test = pool, test_files[0][1]
    else:
        train, test = stratified_holdout(pool, test_fraction, holdout_seed, data_file)
    return Task(name, label_names, train, test, metric=metric)


def _existing_file(path, option: str) -> Path:
    file_path = Path(os.path.expanduser(str(path)))
    if not file_path.is_file():
        raise DataError(
            f"data file '{path}' does not exist (looked at {file_path.resolve()}); "
            f"set dataset.task.{option}=/path/to/your/file."
        )
    return file_path


def _read_csv(path, option: str, delimiter: str, encoding: str) -> pd.DataFrame:
    import pandas as pd

    file_path = _existing_file(path, option)
    try:
        return pd.read_csv(file_path, sep=delimiter, encoding=encoding)
    except UnicodeDecodeError as error:
        raise DataError(
            f"{path} is not valid {encoding} ({error}); set dataset.task.encoding, e.g. to latin-1."
        ) from error
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise DataError(
            f"{path} could not be read as CSV with delimiter {delimiter!r} ({error}); "
            "check the file or set dataset.task.delimiter."
        ) from error


def _read_jsonl(path, option: str) -> pd.DataFrame:
    import pandas as pd

    file_path = _existing_file(path, option)
    records = []
    with file_path.open(encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(
                    f"line {line_number} of {path} is not valid JSON ({error}); fix or remove it."
                ) from error
            if not isinstance(record, dict):
                raise DataError(
                    f"line {line_number} of {path} is a {type(record).__name__}, not a JSON object; "
                    'write one object per line, e.g. {"text": "...", "label": "..."}.'
                )
            records.append(record)
    if not records:
        raise DataError(f"{path} has no JSON lines; point dataset.task.{option} at a non-empty file.")
    return pd.DataFrame.from_records(records)


def _require_columns(columns_found: Sequence[str], columns: Sequence[str], where: str, option: str) -> None:
    for column in columns:
        if column not in columns_found:
            found = ", ".join(map(str, columns_found)) or "none"
            raise DataError(
                f"column '{column}' is not in {where} (columns found: {found}); "
                f"set dataset.task.{option} to one of them."
            )


def _texts_from(
    frame: pd.DataFrame, text_columns: list[str], where: str, option: str, template: str | None = None
) -> list[str]:
    """One text per row: the non-empty cells of `text_columns`, stripped and joined with a space, or,
    with a `template` (dataset.template), the cells filled into it (prompt_bench/data/templates.py)."""
    _require_columns(list(frame.columns), text_columns, where, option)
    cells_by_column = [frame[column].map(_cell_text).tolist() for column in text_columns]
    if template is not None:
        return format_rows(template, text_columns, list(zip(*cells_by_column)))
    return [" ".join(cell for cell in row_cells if cell) for row_cells in zip(*cells_by_column)]


def _fields_from(frame: pd.DataFrame, text_columns: list[str]) -> tuple[tuple[str, ...], ...] | None:
    """Each row's stripped cells of `text_columns` ("" where empty), or None for a single column."""
    if len(text_columns) < 2:
        return None
    cells_by_column = [frame[column].map(_cell_text).tolist() for column in text_columns]
    return tuple(zip(*cells_by_column))


def _cell_text(value) -> str:
    return "" if _is_missing(value) else str(value).strip()


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _raw_labels(frame: pd.DataFrame, label_column: str, where: str, option: str) -> list[int | str]:
    """Labels as ints (indices) or strings (names); whole floats like 2.0 count as ints."""
    _require_columns(list(frame.columns), [label_column], where, option)
    labels: list[int | str] = []
    for row, value in enumerate(frame[label_column].tolist()):
        if _is_missing(value) or (isinstance(value, str) and not value.strip()):
            raise DataError(
                f"row {row} of {where} (counting data rows from 0) has no value in label column "
                f"'{label_column}'; fill in its label or drop the row."
            )
        if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
            labels.append(int(value))
        elif isinstance(value, (float, np.floating)) and float(value).is_integer():
            labels.append(int(value))
        else:
            labels.append(str(value).strip())
    return labels


def _encode_labels(
    raw_labels: dict[str, list[int | str]], label_names, what: str
) -> tuple[tuple[str, ...], dict[str, list[int]]]:
    """Map each source's raw labels to indices -> (label_names, {source: indices}).

    Strings are looked up in `label_names`, ints are indices into it. Without `label_names`, the
    names are the distinct labels as strings, ints first (numerically), then strings (sorted).
    """
    all_labels = [label for labels in raw_labels.values() for label in labels]
    if label_names is None:
        first_seen = {}
        for label in all_labels:
            first_seen.setdefault(str(label), label)

        def sort_key(name: str):
            return (0, first_seen[name], "") if isinstance(first_seen[name], int) else (1, 0, name)

        names = tuple(sorted(first_seen, key=sort_key))
        index_of = {name: index for index, name in enumerate(names)}
        return names, {where: [index_of[str(label)] for label in labels] for where, labels in raw_labels.items()}

    names = tuple(str(name) for name in label_names)
    sources = ", ".join(raw_labels)
    unknown = sorted({label for label in all_labels if isinstance(label, str) and label not in names})
    if unknown:
        raise DataError(
            f"the {what} of {sources} has labels {unknown[:20]} that are not in label_names {list(names)}; "
            "add them to dataset.task.label_names (or set it to null to use the labels found) or fix the data."
        )
    out_of_range = sorted({label for label in all_labels if isinstance(label, int) and not 0 <= label < len(names)})
    if out_of_range:
        raise DataError(
            f"the {what} of {sources} has integer labels {out_of_range[:20]} outside 0..{len(names) - 1}, "
            f"but integer labels are indices into the {len(names)} label_names {list(names)}; "
            "fix dataset.task.label_names or the data."
        )
    index_of = {name: index for index, name in enumerate(names)}
    return names, {
        where: [label if isinstance(label, int) else index_of[label] for label in labels]
        for where, labels in raw_labels.items()
    }


def _as_list(columns) -> list[str]:
    """A column name or a list of them (plain or OmegaConf ListConfig) -> list of names."""
    return [columns] if isinstance(columns, str) else [str(column) for column in columns]
