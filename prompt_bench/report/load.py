"""Records on disk -> one flat pandas row per record, and the names report columns go by.

A column is a dotted path into the record (`efficiency.train_seconds`, `config.dataset.k_shot`);
the short names in `SHORT_NAMES` stand for the config entries a report groups by most.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from prompt_bench.records import CORRUPT_SUFFIX, RECORD_NAME, read_record

log = logging.getLogger("prompt_bench.report")

SHORT_NAMES = {
    "method": "config.method.name",
    "backbone": "config.backbone.name",
    "dataset": "config.dataset.name",
    "head": "config.head.name",
    "seed": "config.seed",
    "sweep": "config.sweep_name",
    "transfer": "config.transfer.name",
}
SEED_COLUMN = SHORT_NAMES["seed"]
# Class counts of packaged tasks whose config does not state them.
KNOWN_CLASS_COUNTS = {"bbc_news": 5}
TWEET_CLASS_COUNT = 3  # negative / neutral / positive for every tweets_* task


def iter_records(root: Path, include_corrupt: bool = False) -> Iterator[tuple[Path, dict[str, Any]]]:
    """(record file, record) for every readable record.json under root, in path order.

    include_corrupt: also a stand-in `{"status": "corrupt", "run_dir": ...}` for each record.json
    that cannot be read, and for each run dir whose record was moved aside (record.json.corrupt-*)
    and not yet replaced by a readable one.
    """
    root = Path(root)
    paths = sorted(
        {*root.rglob(RECORD_NAME), *(p.with_name(RECORD_NAME) for p in root.rglob(f"{RECORD_NAME}{CORRUPT_SUFFIX}*"))}
    )
    for path in paths:
        record = read_record(path.parent)
        if record is None:
            if path.exists():
                log.warning("%s is not valid JSON: counted as corrupt", path)
            if include_corrupt:
                yield path, {"status": "corrupt", "run_dir": str(path.parent)}
            continue
        yield path, record


def chance_level(record: dict[str, Any]) -> float | None:
    """1 / number of classes: the record's own `metrics.chance` if set, else from the dataset config.

    Also used as the bound for macro-F1 (a constant predictor scores below it), so a run at or under
    it has learned nothing. None when the class count cannot be told from the record.
    """
    stated = (record.get("metrics") or {}).get("chance")
    if stated is not None:
        return float(stated)
    dataset = (record.get("config") or {}).get("dataset") or {}
    task = dataset.get("task") or {}
    name = str(dataset.get("name", ""))
    if task.get("n_classes"):
        n_classes = int(task["n_classes"])
    elif isinstance(task.get("label_names"), list) and task["label_names"]:
        n_classes = len(task["label_names"])
    elif name in KNOWN_CLASS_COUNTS:
        n_classes = KNOWN_CLASS_COUNTS[name]
    elif name.startswith("tweets_"):
        n_classes = TWEET_CLASS_COUNT
    else:
        return None
    return 1.0 / n_classes


def load_records(root: Path) -> pd.DataFrame:
    """One row per record.json under root, nested fields flattened to dotted columns.

    Besides the record's own fields (`status`, `config.method.name`, `metrics.test/acc`, ...) each
    row has `record_path`, `sweep_dir` (the directory holding the run directory) and `chance`.
    An empty frame (no columns) when there is no record.
    """
    paths, records = [], []
    for path, record in iter_records(root, include_corrupt=True):
        paths.append(path)
        records.append(record)
    if not records:
        return pd.DataFrame()
    frame = pd.json_normalize(records, sep=".")
    frame["record_path"] = [str(path) for path in paths]
    frame["sweep_dir"] = [str(path.parent.parent) for path in paths]
    frame["chance"] = [chance_level(record) for record in records]
    frame["status"] = frame["status"].fillna("unknown") if "status" in frame else "unknown"
    return frame


def column_path(name: str) -> str:
    """The flat column a report name stands for: a short name, or the dotted path itself."""
    return SHORT_NAMES.get(name, name)


def metric_path(metric: str) -> str:
    """`primary` -> metrics.test/primary; `test/acc` or `metrics.test/acc` -> metrics.test/acc."""
    if metric == "primary":
        return "metrics.test/primary"
    return metric if metric.startswith("metrics.") else f"metrics.{metric}"


def require_column(frame: pd.DataFrame, name: str, what: str) -> str:
    """column_path(name), or a ValueError naming the columns there are."""
    path = column_path(name)
    if path in frame.columns:
        return path
    prefix = path.rsplit(".", 1)[0] + "." if "." in path else ""
    near = sorted(col for col in frame.columns if prefix and col.startswith(prefix))[:12]
    hint = f"columns under '{prefix}': {near}" if near else f"short names: {sorted(SHORT_NAMES)}"
    shown = f"'{name}'" if path == name else f"'{name}' (column '{path}')"
    raise ValueError(f"{what} {shown} is in no record; use a short name or a dotted path into record.json ({hint}).")
