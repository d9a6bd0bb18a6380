"""The base-to-new protocol (CoCoOp, Zhou et al. 2022): split the classes, train on one half, test both.

`dataset.classes`: `base` trains on the first `n_base` classes (default ceil(C/2), as CoOp's
`subsample_classes`) and tests on the base and the new test split, each scored over its own
classes: test/base_acc, test/new_acc and H = 2·base·new / (base + new). `all` trains and tests on
every class; `new` trains and tests on the second half (an upper bound for the new classes).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from prompt_bench.data.splits import TEST_SUBSAMPLE_SEED, make_split, stratified_subsample
from prompt_bench.data.tasks import Task
from prompt_bench.errors import ConfigError

CLASS_SETS = ("all", "base", "new")


@dataclass(frozen=True)
class BaseToNewSplit:
    """Few-shot train/dev over the training classes and one test split per class set.

    label_names: the training classes. tests: set name ("base", "new" or "all") -> (its class
    names, its test examples labelled 0..C_set-1). metric: what dev selection monitors ("acc" or
    "f1"); test_metric: the headline ("hmean" for base-to-new, else `metric`).
    """

    task_name: str
    label_names: tuple[str, ...]
    metric: str
    test_metric: str
    train: object
    dev: object
    tests: dict[str, tuple[tuple[str, ...], object]]
    content_hash: str

    @property
    def num_classes(self) -> int:
        return len(self.label_names)


def base_class_count(n_classes: int, n_base: int | None) -> int:
    """How many of the first classes are base: n_base, or ceil(C/2) when None."""
    if n_base is None:
        return math.ceil(n_classes / 2)
    if not 1 <= n_base < n_classes:
        raise ConfigError(
            f"dataset.n_base={n_base} must be between 1 and {n_classes - 1} (the task has {n_classes} classes)."
        )
    return n_base


def class_halves(label_names: tuple[str, ...], n_base: int | None) -> dict[str, list[int]]:
    """{"all": every index, "base": the first n_base, "new": the rest}."""
    count = base_class_count(len(label_names), n_base)
    indices = list(range(len(label_names)))
    return {"all": indices, "base": indices[:count], "new": indices[count:]}


def restrict(examples, class_indices: list[int]):
    """The examples of `class_indices` only, relabelled 0..k-1 in that order."""
    new_label = {old: new for new, old in enumerate(class_indices)}
    kept = [i for i, label in enumerate(examples.labels) if label in new_label]
    subset = examples.subset(kept)
    return type(subset)(**{**vars(subset), "labels": tuple(new_label[label] for label in subset.labels)})


def restrict_task(task: Task, class_indices: list[int]) -> Task:
    names = tuple(task.label_names[i] for i in class_indices)
    return Task(task.name, names, restrict(task.train, class_indices), restrict(task.test, class_indices), task.metric)


def make_base_to_new_split(
    task: Task,
    classes: str,
    n_base: int | None,
    k_shot: int | None,
    split_seed: int,
    max_test_examples: int | None = None,
) -> BaseToNewSplit:
    """Few-shot train/dev over the `classes` half; a test split per scored class set (capped at
    `max_test_examples` each, stratified, the same for every seed)."""
    if classes not in CLASS_SETS:
        raise ConfigError(f"dataset.classes '{classes}' is not one of {', '.join(CLASS_SETS)}.")
    halves = class_halves(task.label_names, n_base)
    trained = make_split(restrict_task(task, halves[classes]), k_shot, split_seed, max_test_examples)
    tests = {classes: (trained.label_names, trained.test)}
    hashes = [trained.content_hash]
    if classes == "base":
        new_task = restrict_task(task, halves["new"])
        new_test = stratified_subsample(
            new_task.test, max_test_examples, TEST_SUBSAMPLE_SEED, f"the new classes of '{task.name}'"
        )
        tests["new"] = (new_task.label_names, new_test)
        hashes.append(hashlib.sha256("\n".join([*new_task.label_names, *new_test.texts]).encode()).hexdigest())
    return BaseToNewSplit(
        task_name=task.name,
        label_names=trained.label_names,
        metric=task.metric,
        test_metric="hmean" if classes == "base" else task.metric,
        train=trained.train,
        dev=trained.dev,
        tests=tests,
        content_hash=hashlib.sha256("|".join(hashes).encode()).hexdigest()[:16],
    )
