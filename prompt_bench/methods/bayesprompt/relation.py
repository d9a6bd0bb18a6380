"""Relation extraction pieces of BayesPrompt that need no model.

Data: the KnowPrompt/TACRED JSON records BayesPrompt reads (data/processor.py:119-163), one per
line or as one JSON array:

    {"token": [...words...], "h": {"name": ..., "pos": [start, end]},
     "t": {"name": ..., "pos": [start, end]}, "relation": "org:founded_by"}

spans are [start, end) word indices (h: the subject, t: the object). The original TACRED keys
(subj_start/subj_end/obj_start/obj_end, inclusive ends) are read too.

Template (processor.py:233-283, RoBERTa, `use_template_words`):

    prompt   = [sub] SUBJ [sub] <mask> [obj] OBJ [obj] .
    sentence = ... [subject_start] SUBJ [subject_end] ... [object_start] OBJ [object_end] ...

tokenised as the pair (prompt, sentence). Three differences from the official code, all so that
the markers wrap the right tokens: (1) an entity that ends at the last word gets its end marker
(the official loop only closes a span before a following word, so it is left open); (2) where one
entity ends on the word the other starts, the end marker comes first (officially the start of the
other one is written first, crossing the markers); (3) truncation to max_length (official 256,
`truncation="longest_first"`, which cuts the end of the longer segment and can cut a marker or an
entity off) only removes sentence pieces outside the marked entities: first after the last
marker, then before the first, then from the middle of the gap between the two entities. The
prompt is never cut.

Few-shot splits (generate_k_shot.py:58-82): for each seed the training list is shuffled with
`np.random.seed(seed); np.random.shuffle(...)` and the first k examples of every relation are kept,
relations in order of first appearance. The script shuffles the SAME list for seeds 1..5 in turn,
so the split for seed s depends on the shuffles of the seeds before it; `carry_shuffle=True`
reproduces that (checked against the SemEval splits shipped in the official repo), False gives
each seed its own shuffle of the original order. K ∈ {1, 5, 16}, seeds 1-5 (the scripts and the
shipped dataset/semeval/k-shot/ folders). Dev and test are the full sets.

Metric (lit_models/util.py:100-154, `f1_score`): micro-F1 over relations, the no-relation class
excluded: a prediction counts as a guess unless it is no-relation, a gold label counts unless it
is no-relation, a guess is correct when it equals a (non-no-relation) gold label.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

NO_RELATION_LABELS = ("NA", "no_relation", "Other")  # transformer_full.py:33-37
SUBJECT_START, SUBJECT_END = "[subject_start]", "[subject_end]"
OBJECT_START, OBJECT_END = "[object_start]", "[object_end]"
SUBJECT_TYPE, OBJECT_TYPE = "[sub]", "[obj]"  # the virtual type words BayesPrompt fills
ENTITY_MARKERS = (OBJECT_START, OBJECT_END, SUBJECT_START, SUBJECT_END)
OFFICIAL_SHOTS = (1, 5, 16)
OFFICIAL_SPLIT_SEEDS = (1, 2, 3, 4, 5)  # generate_k_shot.py:41-43
OFFICIAL_MAX_LENGTH = 256  # scripts/*.sh --max_seq_length
ROBERTA_PAIR_SPECIALS = 4  # <s> A </s></s> B </s>


@dataclass(frozen=True)
class RelationExample:
    """One sentence with a subject (head) and object (tail) span, [start, end) word indices."""

    tokens: tuple[str, ...]
    head: tuple[int, int]
    tail: tuple[int, int]
    relation: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", tuple(self.tokens))
        object.__setattr__(self, "head", tuple(int(i) for i in self.head))
        object.__setattr__(self, "tail", tuple(int(i) for i in self.tail))
        for name, (start, end) in (("head", self.head), ("tail", self.tail)):
            if not 0 <= start < end <= len(self.tokens):
                raise ValueError(
                    f"{name} span [{start}, {end}) does not fit a sentence of "
                    f"{len(self.tokens)} tokens: {' '.join(self.tokens)[:120]!r}"
                )

    @property
    def head_words(self) -> tuple[str, ...]:
        return self.tokens[self.head[0] : self.head[1]]

    @property
    def tail_words(self) -> tuple[str, ...]:
        return self.tokens[self.tail[0] : self.tail[1]]

    @classmethod
    def from_record(cls, record: dict) -> RelationExample:
        """From a KnowPrompt record (token, h.pos, t.pos, relation) or a TACRED one."""
        if "h" in record and "t" in record:
            return cls(record["token"], record["h"]["pos"], record["t"]["pos"], record["relation"])
        if "subj_start" in record:
            return cls(
                record["token"],
                (record["subj_start"], record["subj_end"] + 1),
                (record["obj_start"], record["obj_end"] + 1),
                record["relation"],
            )
        raise ValueError(
            f"record has neither h/t spans (KnowPrompt) nor subj_start/obj_start (TACRED): keys {sorted(record)}"
        )

    def to_record(self) -> dict:
        """The KnowPrompt record of this example."""
        return {
            "token": list(self.tokens),
            "h": {"name": " ".join(self.head_words), "pos": list(self.head)},
            "t": {"name": " ".join(self.tail_words), "pos": list(self.tail)},
            "relation": self.relation,
        }


def read_relation_file(path: str | Path) -> list[RelationExample]:
    """Examples from a JSON-lines file (KnowPrompt's train/val/test.txt) or a JSON array file."""
    text = Path(path).read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        records = json.loads(text)
    else:
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}:{number} is not a JSON record: {error}") from None
    return [RelationExample.from_record(record) for record in records]


def write_relation_file(examples: Iterable[RelationExample], path: str | Path) -> None:
    """Write examples as KnowPrompt JSON lines."""
    lines = [json.dumps(example.to_record()) for example in examples]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_rel2id(path: str | Path) -> dict[str, int]:
    """The relation → class id map (KnowPrompt's rel2id.json)."""
    return {str(k): int(v) for k, v in json.loads(Path(path).read_text(encoding="utf-8")).items()}


def no_relation_id(rel2id: dict[str, int], fallback: int | None = 0) -> int | None:
    """Id of the first of NA / no_relation / Other found in rel2id's order, else `fallback`.

    The official fallback is 0 (transformer_full.py:33), so class 0 is excluded from the F1 even
    in a dataset without a no-relation class; pass fallback=None to exclude nothing then.
    """
    for label, class_id in rel2id.items():
        if label in NO_RELATION_LABELS:
            return class_id
    return fallback


def relation_label_words(relation: str) -> str:
    """The words a relation's label token starts from (get_label_word.py:13-21).

    "org:founded_by" → "organization founded by", "per:title" → "person title",
    "Cause-Effect(e1,e2)" → "cause-effect"; no_relation and NA → "no relation".
    """
    if relation in ("no_relation", "NA"):
        return "no relation"
    words = relation.lower().split("(")[0]
    words = words.replace(":", " ").replace("_", " ")
    return words.replace("per", "person").replace("org", "organization")


def special_tokens(num_relations: int) -> list[str]:
    """The tokens the official data module adds (data/dataset.py:14-21), in its order."""
    return [
        *ENTITY_MARKERS,
        *(f"[class{i}]" for i in range(1, num_relations + 1)),
        SUBJECT_TYPE,
        OBJECT_TYPE,
        *(f"[T{i}]" for i in range(1, 6)),
    ]


# ----------------------------------------------------------------------------------- template


@dataclass(frozen=True)
class RelationPrompt:
    """The two segments of a templated example, as pieces (no model special tokens).

    prompt: [sub] SUBJ [sub] <mask> [obj] OBJ [obj] .       sentence: pieces with entity markers.
    dropped_*: sentence pieces removed by truncation after the last marker, before the first
    marker and from the gap between the entities.
    """

    prompt: tuple[str, ...]
    sentence: tuple[str, ...]
    dropped_right: int = 0
    dropped_left: int = 0
    dropped_middle: int = 0

    @property
    def dropped(self) -> int:
        return self.dropped_right + self.dropped_left + self.dropped_middle

    def text_pair(self) -> tuple[str, str]:
        """Both segments joined with spaces (for a tokenizer that splits on spaces)."""
        return " ".join(self.prompt), " ".join(self.sentence)


def _pieces(words: Iterable[str], tokenize: Callable[[str], list[str]]) -> list[str]:
    return [piece for word in words for piece in tokenize(word)]


def _marked_sentence(
    example: RelationExample, tokenize: Callable[[str], list[str]]
) -> tuple[list[str], dict[str, int]]:
    """Sentence pieces with the four markers; returns them and each marker's piece index."""
    spans = {"subject": example.head, "object": example.tail}
    opener = {"subject": SUBJECT_START, "object": OBJECT_START}
    closer = {"subject": SUBJECT_END, "object": OBJECT_END}
    pieces: list[str] = []
    where: dict[str, int] = {}

    def close_at(position: int) -> None:
        ending = [name for name, (_, end) in spans.items() if end == position]
        for name in sorted(ending, key=lambda n: -spans[n][0]):  # inner span closes first
            where[closer[name]] = len(pieces)
            pieces.append(closer[name])

    for position, word in enumerate(example.tokens):
        close_at(position)
        starting = [name for name, (start, _) in spans.items() if start == position]
        for name in sorted(starting, key=lambda n: -spans[n][1]):  # outer span opens first
            where[opener[name]] = len(pieces)
            pieces.append(opener[name])
        pieces.extend(tokenize(word))
    close_at(len(example.tokens))
    return pieces, where


def build_relation_prompt(
    example: RelationExample,
    max_length: int = OFFICIAL_MAX_LENGTH,
    mask_token: str = "<mask>",
    tokenize: Callable[[str], list[str]] | None = None,
    num_special_tokens: int = ROBERTA_PAIR_SPECIALS,
    end_token: str = ".",
) -> RelationPrompt:
    """KnowPrompt's template for one example, truncated to max_length with the markers kept.

    tokenize: maps ONE word to its pieces (e.g. lambda w: tokenizer.tokenize(" " + w) for
        RoBERTa); None keeps words whole. Markers, type words and the mask are never split:
        they are added tokens, so convert the pieces with tokenizer.convert_tokens_to_ids.
    num_special_tokens: what the tokenizer adds around the pair (RoBERTa: 4).
    """
    tokenize = tokenize or (lambda word: [word])
    prompt = [
        SUBJECT_TYPE,
        *_pieces(example.head_words, tokenize),
        SUBJECT_TYPE,
        mask_token,
        OBJECT_TYPE,
        *_pieces(example.tail_words, tokenize),
        OBJECT_TYPE,
        *tokenize(end_token),
    ]
    sentence, where = _marked_sentence(example, tokenize)
    budget = max_length - num_special_tokens - len(prompt)
    first = min(where[SUBJECT_START], where[OBJECT_START])
    last = max(where[SUBJECT_END], where[OBJECT_END])
    excess = len(sentence) - budget
    if excess <= 0:
        return RelationPrompt(tuple(prompt), tuple(sentence))

    dropped_right = min(excess, len(sentence) - 1 - last)
    sentence = sentence[: len(sentence) - dropped_right]
    excess -= dropped_right
    dropped_left = min(excess, first)
    sentence = sentence[dropped_left:]
    excess -= dropped_left
    dropped_middle = 0
    if excess > 0:
        # The gap between the end marker of the entity that comes first and the start marker of
        # the other; empty when the entities overlap.
        shift = dropped_left
        if where[SUBJECT_END] < where[OBJECT_START]:
            gap_start, gap_end = where[SUBJECT_END] + 1, where[OBJECT_START]
        elif where[OBJECT_END] < where[SUBJECT_START]:
            gap_start, gap_end = where[OBJECT_END] + 1, where[SUBJECT_START]
        else:
            gap_start = gap_end = 0
        gap = max(gap_end - gap_start, 0)
        dropped_middle = min(excess, gap)
        cut_from = gap_start - shift + (gap - dropped_middle) // 2
        sentence = sentence[:cut_from] + sentence[cut_from + dropped_middle :]
        excess -= dropped_middle
    if excess > 0:
        raise ValueError(
            f"max_length={max_length} cannot hold this example's prompt ({len(prompt)} pieces), "
            f"{num_special_tokens} special tokens and its two marked entities "
            f"({' '.join(example.head_words)!r}, {' '.join(example.tail_words)!r}); raise "
            f"max_length (official 256) or drop the example"
        )
    return RelationPrompt(tuple(prompt), tuple(sentence), dropped_right, dropped_left, dropped_middle)


# ------------------------------------------------------------------------------------ k-shot


def _k_per_relation(examples: Sequence[RelationExample], k: int) -> list[RelationExample]:
    by_relation: dict[str, list[RelationExample]] = {}
    for example in examples:
        by_relation.setdefault(example.relation, []).append(example)
    return [example for group in by_relation.values() for example in group[:k]]


def k_shot_splits(
    examples: Sequence[RelationExample],
    k: int,
    seeds: Sequence[int] = OFFICIAL_SPLIT_SEEDS,
    carry_shuffle: bool = True,
) -> dict[int, list[RelationExample]]:
    """{seed: the first k examples of each relation after that seed's shuffle}.

    carry_shuffle=True (official): one list is shuffled by each seed in turn, so a split depends
    on the seeds before it in `seeds`. A relation with fewer than k examples keeps all of them.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1 (official: 1, 5 or 16), got {k}")
    order = list(examples)
    splits = {}
    for seed in seeds:
        if not carry_shuffle:
            order = list(examples)
        np.random.RandomState(seed).shuffle(order)  # = np.random.seed(seed); np.random.shuffle
        splits[seed] = _k_per_relation(order, k)
    return splits


def k_shot_split(
    examples: Sequence[RelationExample],
    k: int,
    seed: int,
    seeds: Sequence[int] = OFFICIAL_SPLIT_SEEDS,
    carry_shuffle: bool = True,
) -> list[RelationExample]:
    """The split for one seed, as `k_shot_splits(examples, k, seeds)[seed]`."""
    if not carry_shuffle:
        return k_shot_splits(examples, k, (seed,), carry_shuffle=False)[seed]
    if seed not in seeds:
        raise ValueError(
            f"split seed {seed} is not in the shuffle sequence {tuple(seeds)}; with "
            f"carry_shuffle=True a split is defined by the seeds before it (official: 1-5); use "
            f"one of them or carry_shuffle=False"
        )
    preceding = tuple(seeds)[: tuple(seeds).index(seed) + 1]
    return k_shot_splits(examples, k, preceding)[seed]


# ------------------------------------------------------------------------------------ metric


def micro_f1(
    predictions: Sequence[int] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    no_relation: int | None,
) -> dict[str, float]:
    """Micro precision/recall/F1 over relations, the no_relation class id excluded.

    predictions: (N,) class ids, or (N, C) scores (argmax is taken); labels: (N,) class ids.
    Returns zeros when nothing non-no-relation is guessed or nothing is right (util.py:148-152).
    """
    predictions = np.asarray(predictions)
    labels = np.asarray(labels)
    if predictions.ndim == 2:
        predictions = predictions.argmax(axis=-1)
    if predictions.shape != labels.shape:
        raise ValueError(f"predictions {predictions.shape} and labels {labels.shape} differ in shape")
    guessed = predictions != no_relation
    gold = labels != no_relation
    correct = int((guessed & gold & (predictions == labels)).sum())
    num_guessed, num_gold = int(guessed.sum()), int(gold.sum())
    if correct == 0:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    precision, recall = correct / num_guessed, correct / num_gold
    return {
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall),
    }


# --------------------------------------------------------------------------------- synthetic

SYNTHETIC_ENTITIES = {
    "person": ("Alice Moreau", "Bram Okafor", "Chen Wei", "Dana Ruiz", "Emil Novak",
               "Farah Haddad", "Goran Ilic", "Hana Sato", "Ivo Petrov", "Jun Park"),
    "organization": ("Acme Corp", "Borealis Labs", "Cobalt Bank", "Delta Freight",
                     "Ember Media", "Fjord Energy", "Granite Systems", "Helix Pharma"),
    "city": ("Lisbon", "Nairobi", "Osaka", "Quito", "Tallinn", "Porto Alegre", "San Jose",
             "Cape Town"),
}  # fmt: skip
# relation: (subject type, object type, patterns with {h} and {t}); no_relation takes any pair.
SYNTHETIC_RELATIONS = {
    "no_relation": (None, None, ("{h} and {t} appeared in the same report",
                                 "{h} was mentioned next to {t}",
                                 "nobody linked {t} with {h}")),
    "per:employee_of": ("person", "organization", ("{h} works for {t}",
                                                   "{h} joined {t} last year",
                                                   "{t} employs {h}")),
    "per:city_of_birth": ("person", "city", ("{h} was born in {t}",
                                             "{t} is the birthplace of {h}")),
    "org:founded_by": ("organization", "person", ("{h} was founded by {t}",
                                                  "{t} started {h}")),
    "org:city_of_headquarters": ("organization", "city", ("{h} is headquartered in {t}",
                                                          "{t} hosts the head office of {h}")),
}  # fmt: skip
SYNTHETIC_OPENINGS = ("", "yesterday ,", "according to the report ,", "as expected ,",
                      "in a brief statement ,")  # fmt: skip
SYNTHETIC_CLOSINGS = (".", ", officials said .", ", sources confirmed .")
SYNTHETIC_FILLER = ("the", "committee", "noted", "that", "during", "a", "long", "meeting",
                    "several", "people", "said", "again")  # fmt: skip


class RelationSplits(NamedTuple):
    train: list[RelationExample]
    val: list[RelationExample]
    test: list[RelationExample]
    rel2id: dict[str, int]


def synthetic_rel2id(relations: Sequence[str] = tuple(SYNTHETIC_RELATIONS)) -> dict[str, int]:
    """Class ids in the given order; no_relation (first by default) gets id 0."""
    return {relation: class_id for class_id, relation in enumerate(relations)}


def _synthetic_example(relation: str, rng: random.Random, filler_words: int) -> RelationExample:
    head_type, tail_type, patterns = SYNTHETIC_RELATIONS[relation]
    if head_type is None:
        head_type, tail_type = rng.sample(sorted(SYNTHETIC_ENTITIES), 2)
    head = rng.choice(SYNTHETIC_ENTITIES[head_type]).split()
    tail = rng.choice([e for e in SYNTHETIC_ENTITIES[tail_type] if e.split() != head]).split()
    tokens = rng.choice(SYNTHETIC_OPENINGS).split()
    tokens += [rng.choice(SYNTHETIC_FILLER) for _ in range(rng.randint(0, filler_words))]
    spans = {}
    for part in rng.choice(patterns).split():
        if part in ("{h}", "{t}"):
            words = head if part == "{h}" else tail
            spans[part] = (len(tokens), len(tokens) + len(words))
            tokens += words
        else:
            tokens.append(part)
    tokens += rng.choice(SYNTHETIC_CLOSINGS).split()
    return RelationExample(tuple(tokens), spans["{h}"], spans["{t}"], relation)


def synthetic_relation_examples(
    num_per_relation: int,
    seed: int = 0,
    relations: Sequence[str] = tuple(SYNTHETIC_RELATIONS),
    filler_words: int = 3,
) -> list[RelationExample]:
    """num_per_relation sentences per relation with typed entity pairs, shuffled; same seed, same
    list. The relation is decided by the words between or around the entities, so it is
    learnable; `filler_words` (up to that many random words before the pattern) varies lengths.
    """
    unknown = [r for r in relations if r not in SYNTHETIC_RELATIONS]
    if unknown:
        raise ValueError(f"unknown synthetic relations {unknown}; known: {list(SYNTHETIC_RELATIONS)}")
    rng = random.Random(seed)
    examples = [
        _synthetic_example(relation, rng, filler_words) for relation in relations for _ in range(num_per_relation)
    ]
    rng.shuffle(examples)
    return examples


def synthetic_relation_splits(
    seed: int = 0,
    train_per_relation: int = 32,
    val_per_relation: int = 8,
    test_per_relation: int = 16,
    relations: Sequence[str] = tuple(SYNTHETIC_RELATIONS),
) -> RelationSplits:
    """Train/val/test lists of the synthetic task and its rel2id (no_relation = 0)."""
    examples = synthetic_relation_examples(train_per_relation + val_per_relation + test_per_relation, seed, relations)
    by_relation: dict[str, list[RelationExample]] = {r: [] for r in relations}
    for example in examples:
        by_relation[example.relation].append(example)
    cut = (train_per_relation, train_per_relation + val_per_relation)
    train = [e for group in by_relation.values() for e in group[: cut[0]]]
    val = [e for group in by_relation.values() for e in group[cut[0] : cut[1]]]
    test = [e for group in by_relation.values() for e in group[cut[1] :]]
    return RelationSplits(train, val, test, synthetic_rel2id(relations))
