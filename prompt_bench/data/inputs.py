"""How a two-field example becomes one input: a text pair or one joined text (`dataset.pair_encoding`).

pair (default): `tokenizer(a, b)`, i.e. [CLS] a [SEP] b [SEP] with token type ids 0 through the first
[SEP] and 1 after, as the official P-tuning v2 / PANDA code encodes sentence-pair tasks (and BERT was
pre-trained); taken where the backbone's tokenizer builds pairs (encoders: `takes_text_pairs`) and the
model has token types only where it has a type embedding (BERT, MiniLM; RoBERTa and MPNet have none).
joined: the non-empty cells joined with a space, one text, token types all 0 (the older behaviour, and
what every other backbone family gets).

With more than two fields, a is every field but the last, joined with a space, and b the last.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from prompt_bench.data.tasks import Examples
from prompt_bench.errors import ConfigError

PAIR_ENCODINGS = ("pair", "joined")

EncodeTexts = Callable[[Sequence[str]], list[list[int]]]
EncodePairs = Callable[[Sequence[str], Sequence[str]], list[list[int]]]


@dataclass(frozen=True)
class PairInputs:
    """encode(firsts, seconds) -> N token-id lists; type_sep_id: the [SEP] id after which token
    types turn 1, or None when the model takes no token types."""

    encode: EncodePairs
    type_sep_id: int | None = None


def pair_inputs(
    adapter,
    pair_encoding: str,
    max_length: int,
    add_mask: bool = False,
    examples: Examples | None = None,
    template: str | None = None,
) -> PairInputs | None:
    """The pair encoding of `adapter` for dataset.pair_encoding, or None for joined texts: asked for,
    a backbone whose tokenizer builds no pairs, `examples` (a split's training examples, when given)
    with a single text field, or a dataset.template (it already made one text of the fields)."""
    if pair_encoding not in PAIR_ENCODINGS:
        raise ConfigError(f"dataset.pair_encoding '{pair_encoding}' is not one of {', '.join(PAIR_ENCODINGS)}.")
    single_field = examples is not None and examples.fields is None
    if pair_encoding == "joined" or single_field or template or not getattr(adapter, "takes_text_pairs", False):
        return None

    def encode(firsts: Sequence[str], seconds: Sequence[str]) -> list[list[int]]:
        return adapter.encode_text_pairs(firsts, seconds, max_length=max_length, add_mask=add_mask)

    return PairInputs(encode=encode, type_sep_id=adapter.token_type_sep_id)


def segments(cells: Sequence[str]) -> tuple[str, str]:
    """(a, b) of one example's F >= 2 cells: a = the first F - 1 non-empty cells joined, b = the last."""
    return " ".join(cell for cell in cells[:-1] if cell), cells[-1]


def encode_examples(examples: Examples, encode: EncodeTexts, pairs: PairInputs | None) -> list[list[int]]:
    """N token-id lists: text pairs where `pairs` is given and the examples have fields, else texts."""
    if pairs is None or examples.fields is None:
        return encode(list(examples.texts))
    firsts, seconds = zip(*(segments(cells) for cells in examples.fields))
    return pairs.encode(list(firsts), list(seconds))


def token_type_ids(input_ids: Tensor, attention_mask: Tensor, sep_id: int) -> Tensor:
    """(B, L) token types of right-padded pairs: 0 through the first [SEP], 1 after it, 0 on padding
    (what the tokenizer returns for [CLS] a [SEP] b [SEP]; all 0 for a single text)."""
    is_sep = (input_ids == sep_id).long()
    after_first_sep = (torch.cumsum(is_sep, dim=1) - is_sep) > 0
    return (after_first_sep.long() * attention_mask).long()
