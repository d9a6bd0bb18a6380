"""KnowPrompt's relation template on a real tokenizer: the added tokens and the token ids.

`add_relation_tokens` adds the official special tokens (data/dataset.py:14-21: the four entity
markers, [class1..R], [sub], [obj], [T1..5]) to the backbone's tokenizer and resizes its embedding
table (new rows: the model's own initialiser, as `resize_token_embeddings` in the official code).
`encode_relation_texts` turns relation records (data/sources/relations.py) into the token ids of

    <s> [sub] SUBJ [sub] <mask> [obj] OBJ [obj] . </s></s> ... [subject_start] SUBJ [subject_end] ... </s>

(the pair (prompt, marked sentence), truncated with the markers kept: relation.build_relation_prompt).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prompt_bench.backbones import BackboneAdapter
from prompt_bench.data.sources.relations import relation_example
from prompt_bench.errors import ConfigError
from prompt_bench.methods.bayesprompt.relation import (
    OBJECT_TYPE,
    SUBJECT_TYPE,
    build_relation_prompt,
    special_tokens,
)


@dataclass(frozen=True)
class RelationVocab:
    """Ids of the added tokens: label_ids ([class1..R], (R,)), subject/object type words."""

    label_ids: tuple[int, ...]
    subject_type_id: int
    object_type_id: int

    @property
    def virtual_ids(self) -> tuple[int, int]:
        return self.subject_type_id, self.object_type_id


def relation_support(adapter: BackboneAdapter) -> str | None:
    """None when the backbone can run the relation path (an MLM head and a mask token), else why not."""
    reason = adapter.supports_verbalizer() if adapter.family == "encoder" else None
    if adapter.family != "encoder":
        reason = f"backbone '{adapter.name}' is a {adapter.family} model"
    if reason:
        return (
            f"{reason}; the relation path (KnowPrompt template, MLM logits at <mask> restricted to the [class_i] "
            "tokens) needs an encoder with an MLM head: backbone=tiny_bert, tiny_roberta, bert_base, roberta_base, "
            "roberta_large (official)"
        )
    return None


def add_relation_tokens(adapter: BackboneAdapter, num_relations: int) -> RelationVocab:
    """Add the official tokens (once; a second call adds nothing) and resize the embedding table."""
    reason = relation_support(adapter)
    if reason:
        raise ConfigError(reason + ".")
    tokenizer = adapter.tokenizer
    tokens = special_tokens(num_relations)
    new = [token for token in tokens if token not in tokenizer.get_vocab()]
    if new:
        tokenizer.add_tokens(tokens, special_tokens=True)
        adapter.model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    ids = tokenizer.convert_tokens_to_ids
    return RelationVocab(
        label_ids=tuple(ids(f"[class{i}]") for i in range(1, num_relations + 1)),
        subject_type_id=ids(SUBJECT_TYPE),
        object_type_id=ids(OBJECT_TYPE),
    )


def encode_relation_texts(adapter: BackboneAdapter, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Relation records -> token ids of the templated pair, at most max_length ids each."""
    tokenizer = adapter.tokenizer

    def pieces(word: str) -> list[str]:
        return tokenizer.tokenize(" " + word)  # BPE marks word starts with a space; WordPiece ignores it

    around = pair_specials(adapter)
    specials = sum(len(part) for part in around)
    rows = []
    for text in texts:
        prompt = build_relation_prompt(
            relation_example(text), max_length, tokenizer.mask_token, pieces, num_special_tokens=specials
        )
        first = tokenizer.convert_tokens_to_ids(list(prompt.prompt))
        second = tokenizer.convert_tokens_to_ids(list(prompt.sentence))
        rows.append([*around[0], *first, *around[1], *second, *around[2]])
    return rows


def pair_specials(adapter: BackboneAdapter) -> tuple[list[int], list[int], list[int]]:
    """The special ids the tokenizer puts before, between and after a pair (BERT: [CLS] | [SEP] | [SEP];
    RoBERTa: <s> | </s></s> | </s>), read off its encoding of a pair of one-token texts."""
    tokenizer = adapter.tokenizer
    first, second = tokenizer.mask_token_id, tokenizer.convert_tokens_to_ids(SUBJECT_TYPE)
    ids = tokenizer(tokenizer.mask_token, SUBJECT_TYPE)["input_ids"]
    if ids.count(first) != 1 or ids.count(second) != 1:
        raise ConfigError(f"backbone '{adapter.name}': cannot read the special tokens of a pair off {ids}.")
    a, b = ids.index(first), ids.index(second)
    return ids[:a], ids[a + 1 : b], ids[b + 1 :]
