"""The two containers every data source returns: labelled `Examples` and a `Task`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prompt_bench.errors import ConfigError, DataError

METRICS = ("acc", "f1", "micro_f1")
TASK_KINDS = ("classification", "relation")


@dataclass(frozen=True)
class Examples:
    """N texts with N integer labels (indices into `Task.label_names`).

    Lists, numpy ints and other sequences are accepted and stored as tuples of str / int.
    fields: for a task read from several text fields (premise and hypothesis, ...), each example's
    cells in field order (N tuples of F >= 2 strings, "" where a cell is empty), from which the text
    is the non-empty cells joined with a space; None for one field. An encoder can then encode the
    example as a text pair (`prompt_bench.data.inputs`).
    """

    texts: tuple[str, ...]
    labels: tuple[int, ...]
    fields: tuple[tuple[str, ...], ...] | None = None

    def __post_init__(self) -> None:
        texts = tuple(str(text) for text in self.texts)
        labels = tuple(int(label) for label in self.labels)
        if len(texts) != len(labels):
            raise DataError(
                f"Examples got {len(texts)} texts but {len(labels)} labels; pass exactly one label per text."
            )
        object.__setattr__(self, "texts", texts)
        object.__setattr__(self, "labels", labels)
        if self.fields is not None:
            fields = tuple(tuple(str(cell) for cell in cells) for cells in self.fields)
            if len(fields) != len(texts) or any(len(cells) < 2 for cells in fields):
                raise DataError(
                    f"Examples got {len(fields)} field tuples for {len(texts)} texts; pass one tuple of at least "
                    "two cells per text, or fields=None for single-field texts."
                )
            object.__setattr__(self, "fields", fields)

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int]) -> Examples:
        """The examples at `indices` (M ints), in that order -> Examples of length M."""
        return Examples(
            texts=tuple(self.texts[i] for i in indices),
            labels=tuple(self.labels[i] for i in indices),
            fields=None if self.fields is None else tuple(self.fields[i] for i in indices),
        )


@dataclass(frozen=True)
class Task:
    """A classification task: class names, a train pool to draw few-shot samples from, a test split.

    `metric` is the primary metric runs select on: "acc" (accuracy), "f1" (macro-F1) or, for a
    relation task, "micro_f1" (micro-F1 without the no-relation class).
    kind: "classification", or "relation": each text is a KnowPrompt JSON record with entity spans
    (prompt_bench/data/sources/relations.py) and `dev` holds the dataset's own dev set.
    """

    name: str
    label_names: tuple[str, ...]
    train: Examples
    test: Examples
    metric: str = "acc"
    kind: str = "classification"
    dev: Examples | None = None

    def __post_init__(self) -> None:
        label_names = tuple(str(name) for name in self.label_names)
        object.__setattr__(self, "label_names", label_names)
        if len(label_names) < 2:
            raise DataError(
                f"task '{self.name}' has label_names {list(label_names)}; a classification task "
                "needs at least 2 classes, so check the label column of the data."
            )
        duplicates = sorted({name for name in label_names if label_names.count(name) > 1})
        if duplicates:
            raise DataError(
                f"task '{self.name}' repeats the label names {duplicates} in {list(label_names)}; "
                "give each class one distinct name."
            )
        if self.metric not in METRICS:
            raise ConfigError(
                f"task '{self.name}' has metric '{self.metric}'; use one of {list(METRICS)} "
                "('acc' = accuracy, 'f1' = macro-F1, 'micro_f1' = relation micro-F1 without no-relation)."
            )
        if self.kind not in TASK_KINDS:
            raise ConfigError(f"task '{self.name}' has kind '{self.kind}'; use one of {list(TASK_KINDS)}.")
        if (self.metric == "micro_f1") != (self.kind == "relation"):
            raise ConfigError(
                f"task '{self.name}' ({self.kind}) has metric '{self.metric}'; micro_f1 is the relation tasks' "
                "metric and theirs only."
            )
        splits = (("train", self.train), ("test", self.test)) + ((("dev", self.dev),) if self.dev is not None else ())
        for split_name, examples in splits:
            self._check_split(split_name, examples)

    def _check_split(self, split_name: str, examples: Examples) -> None:
        if len(examples) == 0:
            raise DataError(
                f"the {split_name} split of task '{self.name}' is empty; check the data file or the split fractions."
            )
        bad_labels = sorted({label for label in examples.labels if not 0 <= label < len(self.label_names)})
        if bad_labels:
            raise DataError(
                f"the {split_name} split of task '{self.name}' has labels {bad_labels[:10]} outside "
                f"0..{len(self.label_names) - 1} (label_names: {list(self.label_names)}); "
                "labels must be indices into label_names."
            )

    @property
    def num_classes(self) -> int:
        return len(self.label_names)
