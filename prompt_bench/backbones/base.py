"""What every backbone adapter shares, whichever family: the wrapped model, its tokenizer, the
word-embedding table prompts live in, freezing, and the facts records and caches name it by.

`BackboneAdapter` (encoder, seq2seq, causal: the prompt goes in front of the input) and
`DualEncoderAdapter` (the prompt goes in front of the class texts) both derive from it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase


class AdapterBase(nn.Module):
    """A Hugging Face model + tokenizer behind the family-independent facts.

    hidden_size is d, the width of one word embedding (and so of one prompt vector); params_m the
    backbone size in millions (given by the config, or counted).

    Mode: `train(mode)` is the one place that decides the wrapped model's mode. The model follows
    `mode` only when `dropout_in_training` (method.backbone_dropout) is on; otherwise it stays in
    eval mode (dropout off) while everything around it trains, as OpenPrompt's plm_eval_mode does.
    Every caller that flips the adapter (Lightning's loops, evaluate(), a head caching label
    vectors) goes through it, so none can switch the backbone's dropout on by accident.
    """

    family: str = ""
    default_head: str = ""
    """The head `head=auto` picks when the method requires none."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        name: str,
        params_m: float | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.trainable = False
        self.dropout_in_training = False
        self.params_m = params_m if params_m is not None else self.num_parameters() / 1e6

    def set_trainable(self, trainable: bool) -> None:
        """Freeze (prompt methods) or unfreeze (fine-tuning) every backbone weight."""
        self.requires_grad_(trainable)
        self.trainable = trainable

    def set_dropout(self, in_training: bool) -> None:
        """Whether the backbone's own dropout is on while training (method.backbone_dropout); in
        eval mode it is always off. Applies at once to the adapter's current mode."""
        self.dropout_in_training = in_training
        self.train(self.training)

    def train(self, mode: bool = True) -> AdapterBase:
        super().train(mode)
        if mode and not self.dropout_in_training:
            self.model.eval()
        return self

    # ---- shape facts -------------------------------------------------------------------
    @property
    def input_embeddings(self) -> nn.Embedding:
        """The word-embedding table (V, d) prompt vectors live in."""
        raise NotImplementedError

    @property
    def hidden_size(self) -> int:
        """d, the width of a word embedding and so of a prompt vector."""
        return self.input_embeddings.embedding_dim

    @property
    def dtype(self) -> torch.dtype:
        return self.input_embeddings.weight.dtype

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def tokenizer_id(self) -> str:
        """A stable string naming the tokenizer, for cache keys."""
        return f"{self.name}:{getattr(self.tokenizer, 'name_or_path', '')}:{len(self.tokenizer)}"

    # ---- tokenising -----------------------------------------------------------------------
    def encode_texts(self, texts: Sequence[str], max_length: int) -> list[list[int]]:
        """N texts -> N token-id lists with the tokenizer's special tokens, truncated to max_length."""
        return self.tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]


def last_positions(attention_mask: Tensor) -> Tensor:
    """(B, T) right-padded mask -> (B,) index of the last unmasked position (CLIP's [EOS] for its text tower)."""
    return attention_mask.sum(dim=1).long() - 1
