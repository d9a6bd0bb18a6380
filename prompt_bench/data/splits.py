"""Splitting: stratified holdouts, k-shot train/dev sampling and the content hash of a split.

Few-shot sampling seeds in this project follow LM-BFF (Gao et al., 2021): 13, 21, 42, 87, 100.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from prompt_bench.data.tasks import Examples, Task
from prompt_bench.errors import ConfigError, DataError

# Seed of the test subsample (`max_test_examples`): fixed, so every few-shot seed is scored on the
# same test examples and runs stay comparable.
TEST_SUBSAMPLE_SEED = 0
# Share of the pool kept as dev when k_shot is None (full data).
FULL_DATA_DEV_FRACTION = 0.1


@dataclass(frozen=True)
class FewShotSplit:
    """The train / dev / test examples one run uses, with a hash of their content."""

    task_name: str
    label_names: tuple[str, ...]
    metric: str
    train: Examples
    dev: Examples
    test: Examples
    content_hash: str  # first 16 hex chars of a sha256 over label names + train/dev/test texts and labels
    kind: str = "classification"  # or "relation" (texts are KnowPrompt records, see data/relation_split.py)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def test_metric(self) -> str:
        """The headline test metric: the selection metric (a base-to-new split's is hmean)."""
        return self.metric


def stratified_holdout(examples: Examples, test_fraction: float, seed: int, what: str) -> tuple[Examples, Examples]:
    """Split N examples into (train, test), class shares kept; test has about test_fraction * N.

    `what` names the data in error messages ("BBC News", "data.csv").
    """
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(
            f"test_fraction={test_fraction} for {what} is not between 0 and 1; "
            "set dataset.task.test_fraction to e.g. 0.2."
        )
    train_indices, test_indices = _stratified_indices(examples, test_fraction, seed, what)
    return examples.subset(train_indices), examples.subset(test_indices)


def stratified_subsample(examples: Examples, max_examples: int | None, seed: int, what: str) -> Examples:
    """At most `max_examples` of the N examples, class shares kept; all N when None or N <= max."""
    if max_examples is None or max_examples >= len(examples):
        return examples
    if isinstance(max_examples, bool) or not isinstance(max_examples, int) or max_examples < 1:
        raise ConfigError(
            f"max_test_examples={max_examples!r} for {what} is not a positive integer; "
            "set it to e.g. 2000, or null to keep the whole test split."
        )
    _, kept_indices = _stratified_indices(examples, max_examples, seed, what)
    return examples.subset(kept_indices)


def _stratified_indices(examples: Examples, test_size: float | int, seed: int, what: str):
    """(kept, held-out) index arrays, each sorted so the data keeps its original order."""
    from sklearn.model_selection import train_test_split  # ~1 s of imports (scipy, pandas): only when splitting

    try:
        kept, held_out = train_test_split(
            np.arange(len(examples)), test_size=test_size, stratify=examples.labels, random_state=seed
        )
    except ValueError as error:  # a class too small to stratify, or test_size < number of classes
        raise DataError(
            f"cannot make a stratified split of {what} ({len(examples)} examples, "
            f"test_size={test_size}): {error}; add examples to the small classes or "
            "give a separate test file (dataset.task.test_path=...)."
        ) from error
    return np.sort(kept), np.sort(held_out)


def make_split(task: Task, k_shot: int | None, split_seed: int, max_test_examples: int | None = None) -> FewShotSplit:
    """Sample k_shot train + k_shot dev examples per class (no overlap) from the task's train pool.

    k_shot=None uses the whole pool: a stratified 90/10 train/dev split. The test split is the task's
    full test split, or a stratified subsample of `max_test_examples` (same for every seed).
    Train holds k_shot * C examples (class by class, in label order), dev the same.
    """
    if k_shot is None:
        pool_name = f"the train pool of task '{task.name}'"
        train, dev = stratified_holdout(task.train, FULL_DATA_DEV_FRACTION, split_seed, pool_name)
    else:
        train, dev = _sample_k_shot(task, k_shot, split_seed)
    test_name = f"the test split of task '{task.name}'"
    test = stratified_subsample(task.test, max_test_examples, TEST_SUBSAMPLE_SEED, test_name)
    return FewShotSplit(
        task_name=task.name,
        label_names=task.label_names,
        metric=task.metric,
        train=train,
        dev=dev,
        test=test,
        content_hash=content_hash(task.label_names, train, dev, test),
    )


def _sample_k_shot(task: Task, k_shot: int, split_seed: int) -> tuple[Examples, Examples]:
    if isinstance(k_shot, bool) or not isinstance(k_shot, int) or k_shot < 1:
        raise ConfigError(
            f"k_shot={k_shot!r} is not a positive integer; set dataset.k_shot to e.g. 16, or to null for the full data."
        )
    rng = np.random.default_rng(split_seed)
    pool_labels = np.asarray(task.train.labels)
    train_indices: list[int] = []
    dev_indices: list[int] = []
    for class_index, class_name in enumerate(task.label_names):
        class_pool = np.flatnonzero(pool_labels == class_index)
        if len(class_pool) < 2 * k_shot:
            raise DataError(
                f"k_shot={k_shot} needs {2 * k_shot} examples per class ({k_shot} train + {k_shot} dev) "
                f"but class '{class_name}' has only {len(class_pool)} in the train pool of task "
                f"'{task.name}'; lower dataset.k_shot or use k_shot=null for the full data."
            )
        drawn = rng.choice(class_pool, size=2 * k_shot, replace=False)
        train_indices.extend(drawn[:k_shot].tolist())
        dev_indices.extend(drawn[k_shot:].tolist())
    return task.train.subset(train_indices), task.train.subset(dev_indices)


def content_hash(label_names: tuple[str, ...], train: Examples, dev: Examples, test: Examples) -> str:
    """First 16 hex chars of sha256 over the label names and every text and label of the splits."""
    content = {
        "label_names": list(label_names),
        **{
            split_name: [list(examples.texts), list(examples.labels)]
            for split_name, examples in (("train", train), ("dev", dev), ("test", test))
        },
    }
    encoded = json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(encoded).hexdigest()[:16]
