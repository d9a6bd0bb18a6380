"""Relation-extraction tasks (BayesPrompt / KnowPrompt): a `Task` of kind "relation".

Each text is one KnowPrompt JSON record (`token`, `h`/`t` with `pos`, `relation`; see
methods/bayesprompt/relation.py), written canonically by `relation_text`, so the split, its content
hash and the token cache work as for any text; the relation template (encoding.py of the
BayesPrompt package) reads the spans back with `relation_example`. Labels index the relations in
rel2id order; the metric is micro-F1 without the no-relation class.

Sources: `relation_dir` (a KnowPrompt data folder: TACRED, TACREV, Re-TACRED; licensed, so local),
`semeval_hub` (SemEval-2010 Task 8 from the hub) and `synthetic_relations` (the offline demo).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from prompt_bench.data.sources.hub import load_hub_dataset
from prompt_bench.data.splits import stratified_holdout
from prompt_bench.data.tasks import Examples, Task
from prompt_bench.errors import ConfigError, DataError
from prompt_bench.methods.bayesprompt.relation import (
    RelationExample,
    read_rel2id,
    read_relation_file,
    synthetic_relation_splits,
)

RELATION_METRIC = "micro_f1"
KNOWPROMPT_FILES = {"train": "train.txt", "dev": "val.txt", "test": "test.txt"}  # KnowPrompt's data folders
SEMEVAL_DEV_SIZE = 1493  # KnowPrompt's semeval val.txt holds 1493 of the 8000 training sentences


def relation_text(example: RelationExample) -> str:
    """The canonical JSON text of one example (sorted keys, no spaces)."""
    return json.dumps(example.to_record(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def relation_example(text: str) -> RelationExample:
    """Inverse of `relation_text`; a clear error for a text that is not a relation record."""
    try:
        return RelationExample.from_record(json.loads(text))
    except (json.JSONDecodeError, TypeError, KeyError, ValueError) as error:
        raise DataError(
            f"text {text[:80]!r} is not a KnowPrompt relation record ({error}); relation runs need a "
            "relation dataset (dataset=synthetic_relation, semeval, tacred, tacrev, retacred)."
        ) from None


def relation_examples(examples: Sequence[RelationExample], rel2id: dict[str, int], where: str) -> Examples:
    unknown = sorted({e.relation for e in examples} - rel2id.keys())
    if unknown:
        raise DataError(f"{where} has relations {unknown[:10]} that rel2id does not list ({len(rel2id)} relations).")
    return Examples(tuple(relation_text(e) for e in examples), tuple(rel2id[e.relation] for e in examples))


def relation_task(
    name: str,
    train: Sequence[RelationExample],
    dev: Sequence[RelationExample] | None,
    test: Sequence[RelationExample],
    rel2id: dict[str, int],
) -> Task:
    """A relation Task; rel2id's ids must be 0..R-1 (they become the class indices)."""
    if sorted(rel2id.values()) != list(range(len(rel2id))):
        raise DataError(f"rel2id of '{name}' must number the relations 0..{len(rel2id) - 1}, got {rel2id}.")
    label_names = tuple(sorted(rel2id, key=rel2id.get))
    return Task(
        name,
        label_names,
        relation_examples(train, rel2id, f"the train split of '{name}'"),
        relation_examples(test, rel2id, f"the test split of '{name}'"),
        metric=RELATION_METRIC,
        kind="relation",
        dev=relation_examples(dev, rel2id, f"the dev split of '{name}'") if dev is not None else None,
    )


def relation_dir(path: str | None, name: str, rel2id: str | None = None) -> Task:
    """A KnowPrompt data folder: train.txt, val.txt, test.txt (JSON lines) and rel2id.json.

    path: the folder (dataset.task.path). rel2id: its rel2id.json; None = <path>/rel2id.json, or,
    when absent, the relations in order of first appearance in train.txt.
    """
    if path in (None, "", "???"):
        raise ConfigError(
            f"dataset '{name}' is read from local files (it is licensed): set dataset.task.path to a KnowPrompt "
            "data folder holding train.txt, val.txt, test.txt and rel2id.json (JSON lines with token, h, t, relation)."
        )
    folder = Path(path).expanduser()
    missing = [file for file in KNOWPROMPT_FILES.values() if not (folder / file).is_file()]
    if missing:
        raise ConfigError(
            f"dataset.task.path={path} for '{name}' lacks {', '.join(missing)}; point dataset.task.path at a "
            "KnowPrompt data folder (train.txt, val.txt, test.txt, rel2id.json)."
        )
    splits = {part: read_relation_file(folder / file) for part, file in KNOWPROMPT_FILES.items()}
    rel2id_path = Path(rel2id) if rel2id else folder / "rel2id.json"
    if rel2id_path.is_file():
        relations = read_rel2id(rel2id_path)
    elif rel2id:
        raise ConfigError(f"dataset.task.rel2id={rel2id} is not a file; give rel2id.json or null.")
    else:
        relations = {}
        for example in splits["train"]:
            relations.setdefault(example.relation, len(relations))
    return relation_task(name, splits["train"], splits["dev"], splits["test"], relations)


def synthetic_relations(
    seed: int = 0, train_per_relation: int = 32, val_per_relation: int = 8, test_per_relation: int = 16
) -> Task:
    """The synthetic relation task (typed entity pairs, 5 relations with no_relation = 0), offline."""
    splits = synthetic_relation_splits(seed, train_per_relation, val_per_relation, test_per_relation)
    return relation_task("synthetic_relation", splits.train, splits.val, splits.test, splits.rel2id)


_SEMEVAL_TAG = re.compile(r"(</?e[12]>)")


def semeval_example(sentence: str, relation: str) -> RelationExample:
    """A SemEval-2010 Task 8 sentence with <e1>..</e1> <e2>..</e2> tags -> a RelationExample
    (e1 the subject, e2 the object, as KnowPrompt's semeval files)."""
    words: list[str] = []
    starts: dict[str, int] = {}
    spans: dict[str, tuple[int, int]] = {}
    for part in _SEMEVAL_TAG.split(sentence.strip().strip('"')):
        if part in ("<e1>", "<e2>"):
            starts[part[1:3]] = len(words)
        elif part in ("</e1>", "</e2>"):
            spans[part[2:4]] = (starts[part[2:4]], len(words))
        else:
            words.extend(re.findall(r"\w+|[^\w\s]", part))
    if set(spans) != {"e1", "e2"}:
        raise DataError(f"SemEval sentence without both <e1> and <e2> spans: {sentence[:100]!r}")
    return RelationExample(tuple(words), spans["e1"], spans["e2"], relation)


def semeval_hub(
    path: str = "SemEvalWorkshop/sem_eval_2010_task_8", name: str | None = None, dev_size: int = SEMEVAL_DEV_SIZE
) -> Task:
    """SemEval-2010 Task 8 from the hub (train 8000, test 2717; 19 relations, Other the no-relation).

    The hub has no dev split: `dev_size` training sentences are held out, stratified, seed 0
    (KnowPrompt's own val.txt holds 1493 sentences; its exact split is not on the hub).
    """
    dataset = load_hub_dataset(path, name)
    label_names = dataset["train"].features["relation"].names
    rel2id = {relation: index for index, relation in enumerate(label_names)}
    parts = {
        split: [semeval_example(row["sentence"], label_names[row["relation"]]) for row in dataset[split]]
        for split in ("train", "test")
    }
    pool = relation_examples(parts["train"], rel2id, "SemEval train")
    train, dev = stratified_holdout(pool, dev_size / len(pool), 0, "SemEval train")
    decode = [relation_example(text) for text in train.texts], [relation_example(text) for text in dev.texts]
    return relation_task("semeval", decode[0], decode[1], parts["test"], rel2id)
