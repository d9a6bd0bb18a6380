"""Hugging Face hub datasets -> a `Task`, failing within seconds when the hub cannot be reached."""

from __future__ import annotations

from pathlib import Path

from prompt_bench.data.sources.files import (
    _as_list,
    _encode_labels,
    _fields_from,
    _raw_labels,
    _require_columns,
    _texts_from,
)
from prompt_bench.data.splits import TEST_SUBSAMPLE_SEED, stratified_subsample
from prompt_bench.data.tasks import Examples, Task
from prompt_bench.errors import DataError, HubUnavailableError
from prompt_bench.hub import hub_is_reachable


def hf_dataset(
    path: str,
    name: str | None = None,
    text_fields: str | list[str] = "text",
    label_field: str = "label",
    train_split: str = "train",
    test_split: str = "test",
    label_names=None,
    metric: str = "acc",
    max_test_examples: int | None = None,
    template: str | None = None,
) -> Task:
    """A task from `datasets.load_dataset(path, name)`; label names from its ClassLabel feature if any.

    `label_names` overrides the ClassLabel names (same count), e.g. with words a verbalizer can use.
    Several text fields are joined with a space, or filled into `template` (dataset.template).
    """
    import pandas as pd

    dataset_dict = load_hub_dataset(path, name)
    where = path if name is None else f"{path}/{name}"
    text_columns = _as_list(text_fields)
    frames, raw_labels = {}, {}
    for option, split_name in (("train_split", train_split), ("test_split", test_split)):
        if split_name not in dataset_dict:
            raise DataError(
                f"split '{split_name}' is not in the dataset '{where}' (splits found: {', '.join(dataset_dict)}); "
                f"set dataset.task.{option} to one of them."
            )
        split = dataset_dict[split_name]
        split_where = f"split '{split_name}' of '{where}'"
        _require_columns(split.column_names, text_columns, split_where, "text_fields")
        _require_columns(split.column_names, [label_field], split_where, "label_field")
        frames[split_name] = pd.DataFrame({column: list(split[column]) for column in text_columns + [label_field]})
        raw_labels[split_name] = _raw_labels(frames[split_name], label_field, split_where, "label_field")
        if -1 in raw_labels[split_name]:
            raise DataError(
                f"{split_where} has unlabelled examples (label -1, as in GLUE test sets); "
                f"set dataset.task.{option} to a labelled split (splits found: {', '.join(dataset_dict)})."
            )
    label_names = _hub_label_names(dataset_dict[train_split].features.get(label_field), label_names, where)
    label_names, labels = _encode_labels(raw_labels, label_names, f"label field '{label_field}'")
    train, test = (
        Examples(
            _texts_from(frames[split], text_columns, where, "text_fields", template),
            labels[split],
            _fields_from(frames[split], text_columns),
        )
        for split in (train_split, test_split)
    )
    test = stratified_subsample(test, max_test_examples, TEST_SUBSAMPLE_SEED, f"split '{test_split}' of '{where}'")
    source_name = Path(path).name if Path(path).exists() else path.replace("/", "_")
    task_name = source_name if name is None else f"{source_name}_{name}"
    return Task(task_name, label_names, train, test, metric=metric)


def _hub_label_names(label_feature, label_names, where: str):
    """ClassLabel names (or `label_names` overriding them), else `label_names` as given (maybe None)."""
    class_names = getattr(label_feature, "names", None)
    if class_names is None or label_names is None:
        return class_names if label_names is None else label_names
    if len(label_names) != len(class_names):
        raise DataError(
            f"label_names {list(label_names)} has {len(label_names)} names but '{where}' has "
            f"{len(class_names)} classes {list(class_names)}; give one name per class or set label_names=null."
        )
    return label_names


def load_hub_dataset(path: str, name: str | None):
    """`datasets.load_dataset(path, name)`, failing within seconds when the hub cannot be reached."""
    import datasets

    is_local = Path(path).exists()
    offline_mode = bool(datasets.config.HF_HUB_OFFLINE)
    # datasets retries an unreachable hub for ~25 s; the probe (prompt_bench/hub.py) fails faster.
    if not is_local and not offline_mode and not hub_is_reachable():
        raise _hub_unavailable(path, "no connection to the hub")
    try:
        return datasets.load_dataset(path, name)
    except datasets.exceptions.DatasetNotFoundError as error:
        if offline_mode or is_local:
            raise _hub_unavailable(path, error) from error
        raise DataError(
            f"the dataset '{path}' was not found on the Hugging Face hub ({error}); "
            "check dataset.task.path (and dataset.task.name for its configuration)."
        ) from error
    except (ConnectionError, TimeoutError, OSError) as error:
        raise _hub_unavailable(path, error) from error


def _hub_unavailable(path: str, cause) -> HubUnavailableError:
    return HubUnavailableError(
        f"the dataset '{path}' could not be loaded from the Hugging Face hub or its local cache "
        f"(offline? {cause}); to fix: run once where the hub is reachable (it is then cached), set "
        "HF_DATASETS_OFFLINE=1 to use the cache, or point at local files with "
        "`dataset=csv dataset.task.path=...` or `dataset=jsonl dataset.task.path=...`."
    )
