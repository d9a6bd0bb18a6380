"""The synthetic keyword task for tiny models (deterministic from its seed, no files)."""

from __future__ import annotations

import numpy as np

from prompt_bench.data.tasks import Examples, Task
from prompt_bench.errors import ConfigError

# Class keywords of the synthetic task: ordinary words, each one WordPiece token in bert-base-uncased.
SYNTHETIC_LABEL_WORDS = (
    "red",
    "green",
    "blue",
    "yellow",
    "black",
    "white",
    "brown",
    "orange",
    "pink",
    "purple",
    "gray",
    "silver",
    "gold",
)
# Neutral filler the synthetic texts are made of (no colour words).
SYNTHETIC_FILLER_WORDS = (
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "it",
    "was",
    "on",
    "with",
    "for",
    "this",
    "that",
    "is",
    "at",
    "by",
    "from",
    "we",
    "they",
    "some",
    "day",
    "time",
    "people",
    "place",
    "thing",
    "way",
    "then",
    "there",
    "here",
    "about",
    "over",
    "after",
    "before",
    "just",
    "also",
    "very",
    "into",
    "more",
    "other",
    "same",
    "each",
    "only",
    "still",
    "again",
    "often",
    "around",
    "because",
    "while",
    "where",
    "when",
)


def synthetic(
    n_classes: int = 4,
    n_per_class: int = 64,
    n_test_per_class: int = 32,
    seed: int = 0,
    filler_words: tuple[int, int] = (2, 4),
    keyword_repeats: tuple[int, int] = (2, 2),
) -> Task:
    """A keyword task for tiny models: filler words (a count in `filler_words`, inclusive) with the
    class's colour word inserted a number of times in `keyword_repeats` (inclusive).

    A bag-of-words linear probe separates it perfectly; deterministic from `seed`.
    """
    if not 2 <= n_classes <= len(SYNTHETIC_LABEL_WORDS):
        raise ConfigError(
            f"n_classes={n_classes} for the synthetic task is not between 2 and {len(SYNTHETIC_LABEL_WORDS)}; "
            "set dataset.task.n_classes in that range."
        )
    for option, count in (("n_per_class", n_per_class), ("n_test_per_class", n_test_per_class)):
        if count < 1:
            raise ConfigError(f"{option}={count} for the synthetic task must be at least 1; set dataset.task.{option}.")
    label_names = SYNTHETIC_LABEL_WORDS[:n_classes]
    rng = np.random.default_rng(seed)
    shape = (tuple(filler_words), tuple(keyword_repeats))
    train = _synthetic_examples(rng, label_names, n_per_class, *shape)
    test = _synthetic_examples(rng, label_names, n_test_per_class, *shape)
    return Task("synthetic", label_names, train, test, metric="acc")


def _synthetic_examples(
    rng: np.random.Generator,
    label_names: tuple[str, ...],
    n_per_class: int,
    filler_words: tuple[int, int],
    keyword_repeats: tuple[int, int],
) -> Examples:
    texts, labels = [], []
    for _ in range(n_per_class):
        for label, keyword in enumerate(label_names):
            words = rng.choice(
                SYNTHETIC_FILLER_WORDS, size=int(rng.integers(filler_words[0], filler_words[1] + 1))
            ).tolist()
            for _ in range(int(rng.integers(keyword_repeats[0], keyword_repeats[1] + 1))):
                words.insert(int(rng.integers(0, len(words) + 1)), keyword)
            texts.append(" ".join(words))
            labels.append(label)
    return Examples(texts, labels)
