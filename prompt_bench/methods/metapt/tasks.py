"""MetaPT step 2: auxiliary tasks from clusters, and support/query episodes from tasks.

An auxiliary task is a list of `Example(text, label)` (text: one string, or a (text_a, text_b)
pair) with its label names. Formats:

    labels                   the corpus's own labels, one task per cluster (the paper's Yelp-5
                             setting [summary]: same label space, different data subset)
    next_sentence            PPT's sentence-pair format, one task per cluster: (s_i, s_j) with
                             "yes" (j = i±1), "maybe" (same document, |i-j| > 1) or "no" (another
                             document), each drawn with probability 1/3
                             [code: thu-coai/PPT tools/preprocess_pretrain_data_nsp.py]
    next_sentence_selection  PPT's multiple-choice format, one task per cluster: which of 6
                             options follows s_i: the true neighbour, 1 non-adjacent sentence of
                             the same document, 4 sentences of other documents, shuffled, labels
                             A-F [code: PPT tools/preprocess_pretrain_data_nss.py]
    sentence_order           RECONSTRUCTED, not a PPT format: an adjacent pair (s_i, s_i+1),
                             swapped with probability 1/2; "yes" = in order, "no" = swapped
    pseudo_label             RECONSTRUCTED: the cluster id as the label. PPT's single-sentence
                             format labels OpenWebText with a sentiment classifier's pseudo labels
                             (5-way terrible..great); such pre-labelled text is the `labels`
                             format. Here a task spans several clusters (one cluster alone would
                             have a single label): all of them (one K-way task), or, with
                             `pseudo_label_ways`, several tasks of `ways` clusters each
                             (CACTUs-style, Hsu et al. 2019)

A document is one corpus text: a string (split into sentences by a regex) or a list of sentences.
PPT keeps a document for the sentence formats only when it has >= 5 sentences, each >= 5
characters (it counts tokens and characters; here only characters, the tokenizer comes later, and
PPT's token truncation and length-ratio filters are left to it).

Episodes (step 2 of Prompt-MAML): m support and m query examples, drawn without replacement from
one task, so no query example is in the support set; deterministic for a torch.Generator or seed.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

TASK_FORMATS = (
    "labels",
    "next_sentence",
    "next_sentence_selection",
    "sentence_order",
    "pseudo_label",
)
SENTENCE_FORMATS = ("next_sentence", "next_sentence_selection", "sentence_order")
NEXT_SENTENCE_LABELS = ("yes", "maybe", "no")  # PPT's verbaliser words for the three pair classes
SENTENCE_ORDER_LABELS = ("yes", "no")  # yes: text_b follows text_a
OPTION_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

Text = str | tuple[str, str]
Document = str | Sequence[str]


class Example(NamedTuple):
    """One auxiliary-task example: a text or a (text_a, text_b) pair, and its label index."""

    text: Text
    label: int


@dataclass
class AuxiliaryTask:
    """One task of the meta-training distribution."""

    name: str
    examples: list[Example]
    label_names: tuple[str, ...]
    format: str
    clusters: tuple[int, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.examples)


class Episode(NamedTuple):
    """m support and m query examples of one task, disjoint."""

    task: AuxiliaryTask
    support: list[Example]
    query: list[Example]


@dataclass
class TaskConfig:
    """How clusters become tasks. PPT values are marked; the rest is reconstructed."""

    # None: ("labels",) when the corpus has labels, else ("next_sentence",). Several formats give
    # one task per cluster per format, each with its own label names.
    formats: tuple[str, ...] | None = None
    seed: int = 0  # draws of the self-supervised pairs and of pseudo-label cluster groups
    # Where next_sentence's "no" partners and next_sentence_selection's other-document options
    # come from: "corpus" (PPT: a shuffled copy of the whole corpus) or "cluster" (same cluster).
    negatives_from: str = "corpus"
    min_sentences: int = 5  # PPT: documents with fewer sentences are skipped
    min_sentence_chars: int = 5  # PPT (nsp): a document with a shorter sentence is skipped
    selection_easy_negatives: int = 1  # PPT nss: non-adjacent sentences of the same document
    selection_hard_negatives: int = 4  # PPT nss: one sentence from each of 4 other documents
    pseudo_label_ways: int | None = None  # None: one K-way task over all non-empty clusters
    pseudo_label_tasks: int = 10  # with pseudo_label_ways: how many cluster groups to draw
    min_task_examples: int = 2  # tasks with fewer examples are dropped (an episode needs 2m)

    def __post_init__(self) -> None:
        if self.formats is not None:
            self.formats = tuple(self.formats)
            unknown = [f for f in self.formats if f not in TASK_FORMATS]
            if unknown or not self.formats:
                raise ValueError(f"task formats {unknown or '()'} are not in {TASK_FORMATS}")
        if self.negatives_from not in ("corpus", "cluster"):
            raise ValueError(f"negatives_from must be 'corpus' (PPT) or 'cluster', got {self.negatives_from!r}")
        if self.min_sentences < 4:
            raise ValueError(
                f"min_sentences must be >= 4 so every sentence has a non-adjacent one ('maybe'), "
                f"got {self.min_sentences} (PPT: 5)"
            )
        if self.selection_easy_negatives < 0 or self.selection_hard_negatives < 0:
            raise ValueError("selection_easy_negatives and selection_hard_negatives must be >= 0")
        options = 1 + self.selection_easy_negatives + self.selection_hard_negatives
        if options > len(OPTION_LETTERS):
            raise ValueError(f"{options} selection options exceed the {len(OPTION_LETTERS)} letters")
        if self.selection_easy_negatives > self.min_sentences - 3:
            raise ValueError(
                f"selection_easy_negatives={self.selection_easy_negatives} needs documents of at "
                f"least {self.selection_easy_negatives + 3} sentences; raise min_sentences"
            )
        if self.pseudo_label_ways is not None and self.pseudo_label_ways < 2:
            raise ValueError(f"pseudo_label_ways must be >= 2 or None, got {self.pseudo_label_ways}")
        if self.pseudo_label_tasks < 1 or self.min_task_examples < 1:
            raise ValueError("pseudo_label_tasks and min_task_examples must be >= 1")


def split_sentences(text: str) -> list[str]:
    """Split at whitespace after . ! or ? (a plain regex: no abbreviation handling)."""
    return [part.strip() for part in re.split(r"(?<=[.!?])\s+", text.strip()) if part.strip()]


def document_sentences(document: Document) -> list[str]:
    """A document's sentences: a string is split, a list is taken as already split."""
    if isinstance(document, str):
        return split_sentences(document)
    return [str(sentence).strip() for sentence in document if str(sentence).strip()]


def document_text(document: Document) -> str:
    """A document as one string (sentences joined by spaces)."""
    return document if isinstance(document, str) else " ".join(document_sentences(document))


def build_auxiliary_tasks(
    documents: Sequence[Document],
    cluster_ids: Sequence[int] | np.ndarray | torch.Tensor,
    config: TaskConfig | None = None,
    labels: Sequence[int] | None = None,
    label_names: Sequence[str] | None = None,
    cluster_names: Sequence[str] | None = None,
) -> list[AuxiliaryTask]:
    """Auxiliary tasks from a clustered corpus.

    Args:
        documents: N corpus texts (strings, or lists of sentences).
        cluster_ids: (N,) cluster of each document, in [0, K).
        config: formats and their options (default TaskConfig()).
        labels: (N,) corpus labels, for the `labels` format.
        label_names: names of the corpus labels (index = label), with `labels`.
        cluster_names: K names for the pseudo_label format (e.g. LDA top terms); default
            "cluster {k}".

    Returns:
        The tasks in a fixed order (format, then cluster), without those below
        `config.min_task_examples`.
    """
    config = config or TaskConfig()
    ids = [int(c) for c in (cluster_ids.tolist() if hasattr(cluster_ids, "tolist") else cluster_ids)]
    if len(ids) != len(documents):
        raise ValueError(f"{len(ids)} cluster ids for {len(documents)} documents; they must match")
    if ids and min(ids) < 0:
        raise ValueError(f"cluster ids must be >= 0, got {min(ids)}")
    formats = config.formats or (("labels",) if labels is not None else ("next_sentence",))
    members: dict[int, list[int]] = {}
    for index, cluster in enumerate(ids):
        members.setdefault(cluster, []).append(index)
    clusters = sorted(members)
    rng = random.Random(config.seed)

    tasks: list[AuxiliaryTask] = []
    for task_format in formats:
        if task_format == "labels":
            tasks += _label_tasks(documents, members, clusters, labels, label_names)
        elif task_format == "pseudo_label":
            tasks += _pseudo_label_tasks(documents, members, clusters, config, rng, cluster_names)
        else:
            sentences = [_kept_sentences(doc, config) for doc in documents]
            kept = [i for i in range(len(ids)) if sentences[i]]  # documents PPT's filter keeps
            for cluster in clusters:
                others = kept
                if config.negatives_from == "cluster":
                    others = [i for i in members[cluster] if sentences[i]]
                tasks.append(_sentence_task(task_format, cluster, members[cluster], sentences, others, config, rng))
    return [task for task in tasks if len(task) >= config.min_task_examples]


def _label_tasks(documents, members, clusters, labels, label_names) -> list[AuxiliaryTask]:
    if labels is None or label_names is None:
        raise ValueError("the 'labels' format needs labels=... and label_names=... of the corpus")
    if len(labels) != len(documents):
        raise ValueError(f"{len(labels)} labels for {len(documents)} documents; they must match")
    names = tuple(str(name) for name in label_names)
    bad = sorted({int(y) for y in labels if not 0 <= int(y) < len(names)})
    if bad:
        raise ValueError(f"labels {bad} fall outside the {len(names)} label_names {names}")
    return [
        AuxiliaryTask(
            name=f"labels/cluster_{cluster}",
            examples=[Example(document_text(documents[i]), int(labels[i])) for i in members[cluster]],
            label_names=names,
            format="labels",
            clusters=(cluster,),
        )
        for cluster in clusters
    ]


def _pseudo_label_tasks(documents, members, clusters, config, rng, cluster_names):
    if cluster_names is not None and len(cluster_names) <= max(clusters, default=-1):
        raise ValueError(f"{len(cluster_names)} cluster_names for cluster ids up to {max(clusters)}")
    if config.pseudo_label_ways is None:
        groups = [tuple(clusters)]
    else:
        if config.pseudo_label_ways > len(clusters):
            raise ValueError(
                f"pseudo_label_ways={config.pseudo_label_ways} exceeds the {len(clusters)} "
                f"non-empty clusters; lower it or raise num_clusters"
            )
        groups = [
            tuple(sorted(rng.sample(clusters, config.pseudo_label_ways))) for _ in range(config.pseudo_label_tasks)
        ]
    tasks = []
    for group in groups:
        examples = [
            Example(document_text(documents[i]), label) for label, cluster in enumerate(group) for i in members[cluster]
        ]
        names = tuple(str(cluster_names[c]) if cluster_names is not None else f"cluster {c}" for c in group)
        tasks.append(
            AuxiliaryTask(
                name="pseudo_label/clusters_" + "_".join(map(str, group)),
                examples=examples,
                label_names=names,
                format="pseudo_label",
                clusters=group,
            )
        )
    return tasks


def _kept_sentences(document: Document, config: TaskConfig) -> list[str]:
    """The document's sentences, or [] when PPT's filter would skip the document."""
    sentences = document_sentences(document)
    if len(sentences) < config.min_sentences:
        return []
    if min(len(s) for s in sentences) < config.min_sentence_chars:
        return []
    return sentences


def _neighbour(rng: random.Random, i: int, count: int) -> int:
    """PPT's true partner: the next or the previous sentence (the only one at either end)."""
    if i == 0:
        return 1
    if i == count - 1:
        return i - 1
    return i + 1 if rng.random() < 0.5 else i - 1


def _non_adjacent(rng: random.Random, i: int, count: int, exclude: Sequence[int] = ()) -> int:
    """A sentence index r of the same document with |r - i| > 1 (and not in `exclude`)."""
    choices = [r for r in range(count) if abs(r - i) > 1 and r not in exclude]
    return rng.choice(choices)


def _other_document_sentence(rng, document: int, others: Sequence[int], sentences) -> str:
    """A random sentence of a random document in `others` other than `document`."""
    if not any(j != document for j in others[:2]):  # others holds distinct ids
        raise ValueError(
            f"document {document} has no other document to draw a negative from; use "
            f"negatives_from='corpus' or bigger clusters"
        )
    other = document
    while other == document:  # rejection: O(1) expected, the pool can be the whole corpus
        other = rng.choice(others)
    return rng.choice(sentences[other])


def _sentence_task(task_format, cluster, member_ids, sentences, others, config, rng):
    examples: list[Example] = []
    for document in member_ids:
        doc = sentences[document]
        for i, sentence in enumerate(doc):
            if task_format == "next_sentence":
                draw = rng.random()
                if draw < 1 / 3:  # PPT: "no", a sentence of another document
                    partner, label = _other_document_sentence(rng, document, others, sentences), 2
                elif draw < 2 / 3:  # "maybe": same document, not adjacent
                    partner, label = doc[_non_adjacent(rng, i, len(doc))], 1
                else:  # "yes": the previous or next sentence
                    partner, label = doc[_neighbour(rng, i, len(doc))], 0
                examples.append(Example((sentence, partner), label))
            elif task_format == "sentence_order":
                if i + 1 == len(doc):
                    continue
                if rng.random() < 0.5:
                    examples.append(Example((sentence, doc[i + 1]), 0))
                else:
                    examples.append(Example((doc[i + 1], sentence), 1))
            else:  # next_sentence_selection
                examples.append(_selection_example(rng, document, i, doc, others, sentences, config))
    label_names = {
        "next_sentence": NEXT_SENTENCE_LABELS,
        "sentence_order": SENTENCE_ORDER_LABELS,
        "next_sentence_selection": tuple(
            OPTION_LETTERS[: 1 + config.selection_easy_negatives + config.selection_hard_negatives]
        ),
    }[task_format]
    return AuxiliaryTask(
        name=f"{task_format}/cluster_{cluster}",
        examples=examples,
        label_names=label_names,
        format=task_format,
        clusters=(cluster,),
    )


def _selection_example(rng, document, i, doc, others, sentences, config) -> Example:
    """PPT nss: the neighbour among easy (same document) and hard (other documents) negatives."""
    true_index = _neighbour(rng, i, len(doc))
    easy: list[int] = []
    for _ in range(config.selection_easy_negatives):
        easy.append(_non_adjacent(rng, i, len(doc), exclude=easy))
    hard = [_other_document_sentence(rng, document, others, sentences) for _ in range(config.selection_hard_negatives)]
    options = [doc[true_index]] + [doc[r] for r in easy] + hard
    order = list(range(len(options)))
    rng.shuffle(order)
    label = order.index(0)
    rendered = " ".join(f"{OPTION_LETTERS[k]}. {options[j]}" for k, j in enumerate(order))
    return Example((doc[i], rendered), label)


def as_generator(generator: torch.Generator | int) -> torch.Generator:
    """A torch.Generator, made from a seed when an int is given."""
    if isinstance(generator, torch.Generator):
        return generator
    return torch.Generator().manual_seed(int(generator))


def sample_episode(task: AuxiliaryTask, m: int, generator: torch.Generator | int) -> Episode:
    """m support and m query examples of `task`, drawn without replacement (disjoint).

    Deterministic for the generator's state (an int seeds a fresh one); advances the generator.
    """
    if m < 1:
        raise ValueError(f"m must be >= 1, got {m}")
    if len(task) < 2 * m:
        raise ValueError(
            f"task {task.name!r} has {len(task)} examples, fewer than the 2m = {2 * m} a "
            f"disjoint support and query set need; lower m or drop small tasks (usable_tasks)"
        )
    order = torch.randperm(len(task), generator=as_generator(generator)).tolist()
    support = [task.examples[i] for i in order[:m]]
    query = [task.examples[i] for i in order[m : 2 * m]]
    return Episode(task, support, query)


def usable_tasks(tasks: Sequence[AuxiliaryTask], m: int) -> list[AuxiliaryTask]:
    """The tasks with at least 2m examples (enough for one episode)."""
    return [task for task in tasks if len(task) >= 2 * m]


def sample_task_batch(
    tasks: Sequence[AuxiliaryTask], tasks_per_step: int, generator: torch.Generator | int
) -> list[AuxiliaryTask]:
    """`tasks_per_step` distinct tasks, drawn uniformly without replacement."""
    if not 1 <= tasks_per_step <= len(tasks):
        raise ValueError(
            f"tasks_per_step={tasks_per_step} but there are {len(tasks)} usable tasks; lower "
            f"tasks_per_step, raise num_clusters, or lower m"
        )
    order = torch.randperm(len(tasks), generator=as_generator(generator)).tolist()
    return [tasks[i] for i in order[:tasks_per_step]]


def sample_episodes(
    tasks: Sequence[AuxiliaryTask], tasks_per_step: int, m: int, generator: torch.Generator | int
) -> list[Episode]:
    """One meta-batch: `tasks_per_step` tasks, one disjoint support/query episode each."""
    generator = as_generator(generator)
    return [sample_episode(task, m, generator) for task in sample_task_batch(tasks, tasks_per_step, generator)]
