"""The text backbone adapter base: one interface over encoder, seq2seq and causal Hugging Face models.

Everything that differs between model families lives in the family adapters, once (encoder.py,
seq2seq.py, causal.py): where the input embeddings are, how soft prompts are prepended, how
per-layer key/value prefixes (deep prompts) reach the attention layers (the plumbing is in
`prefixes.py`), where the FFN activations are, how a sentence vector is pooled, and how label
words are scored. Methods and heads never branch on the family.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from prompt_bench.backbones.base import AdapterBase, last_positions
from prompt_bench.backbones.prefixes import (
    PrefixGeometry,
    cache_keyword,
    transformers_version,
)
from prompt_bench.errors import ConfigError

TEXT_FAMILIES = ("encoder", "seq2seq", "causal")
"""The text families, in the order sentences list them."""

POOLINGS = ("mean", "cls", "last")


@dataclass
class BackboneOutput:
    """What a forward pass returns to the head.

    hidden: (B, n+L, d) last hidden states (the encoder's for seq2seq), prompt positions first.
    attention_mask: (B, n+L) the input mask extended with ones for the n prompt positions.
    n_prompt: n, the number of input-level prompt positions in front of the input tokens.
    Deep-prompt prefixes add keys and values inside the layers, never positions here.
    """

    hidden: Tensor
    attention_mask: Tensor
    n_prompt: int


class BackboneAdapter(AdapterBase):
    """A frozen-or-not Hugging Face model behind the family-independent interface: the prompt goes
    in front of the input tokens (the `input` prompt site)."""

    takes_layer_prefixes: bool = False
    """Whether this family's forward accepts `layer_prefixes` (deep prompts)."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        name: str,
        pooling: str = "mean",
        default_head: str = "label_similarity",
        params_m: float | None = None,
        lm_head: bool = False,
    ) -> None:
        if pooling not in POOLINGS:
            raise ConfigError(f"backbone.pooling '{pooling}' is not one of {', '.join(POOLINGS)}.")
        super().__init__(model, tokenizer, name, params_m)
        self.pooling = pooling
        self.default_head = default_head
        self.has_lm_head = lm_head

    # ---- shape facts -------------------------------------------------------------------
    @property
    def input_embeddings(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    @property
    def prefix_geometry(self) -> PrefixGeometry:
        """Layers, key/value heads and head size of the self-attention layers deep prompts reach."""
        config = self.model.config
        n_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        return PrefixGeometry(n_layers=config.num_hidden_layers, n_heads=n_heads, head_dim=head_dim)

    def layer_prefix_support(self) -> str | None:
        """None when this backbone takes deep prompts, else a sentence saying why not."""
        if not self.takes_layer_prefixes:
            families = ", ".join(prefix_taking_families())
            return (
                f"backbone '{self.name}' is a {self.family} model, which takes no per-layer prefixes; deep prompts "
                f"work with backbone families {families}"
            )
        return self._prefix_obstacle()

    def _prefix_obstacle(self) -> str | None:
        """Why this model, in a family that takes prefixes, cannot take them (its layout), or None."""
        return None

    @cached_property
    def _base_cache_keyword(self) -> str | None:
        """The keyword the base model's forward takes a key/value cache under (probed once)."""
        return cache_keyword(self.model.base_model.forward)

    def _no_cache_sentence(self, module: nn.Module, reach: str) -> str:
        return (
            f"backbone '{self.name}' ({type(module).__name__}, transformers {transformers_version()}) takes no "
            f"key/value cache (neither `cache` nor `past_key_values`), so deep prompts cannot reach {reach}"
        )

    ffn_down_projection: str = ""
    """Regex (searched in module names) of each layer's FFN output projection, whose input is the
    layer's FFN activations (the `intermediate` outputs of BERT-style encoders)."""

    def ffn_down_projections(self) -> list[nn.Module]:
        """Every layer's FFN output projection, in layer order (hook their inputs to read the
        FFN activations, as PANDA's stimulation similarity does)."""
        pattern = re.compile(self.ffn_down_projection)
        modules = [
            module for name, module in self.model.named_modules() if self.ffn_down_projection and pattern.search(name)
        ]
        if not modules:
            raise ConfigError(
                f"backbone '{self.name}' ({type(self.model).__name__}) has no module matching the {self.family} "
                f"FFN pattern '{self.ffn_down_projection}'; activation-based transferability needs one per layer."
            )
        return modules

    # ---- tokenising -----------------------------------------------------------------------
    def encode_texts(self, texts: Sequence[str], max_length: int, add_mask: bool = False) -> list[list[int]]:
        """Texts -> token ids, truncated to max_length (the prompt comes on top).

        add_mask puts the tokenizer's mask token at the end of the text (before a final
        separator), for the MLM verbalizer: "<text> [MASK] [SEP]".
        """
        budget = max_length - 1 if add_mask else max_length
        ids = self.tokenizer(list(texts), truncation=True, max_length=budget)["input_ids"]
        return self._with_mask_token(ids) if add_mask else ids

    def _with_mask_token(self, ids: list[list[int]]) -> list[list[int]]:
        """The mask token before each row's closing separator (or at its end)."""
        mask_id = self.tokenizer.mask_token_id
        closing = {self.tokenizer.sep_token_id, self.tokenizer.eos_token_id} - {None}
        return [row[:-1] + [mask_id, row[-1]] if row and row[-1] in closing else row + [mask_id] for row in ids]

    takes_text_pairs: bool = False
    """Whether the tokenizer builds text pairs (`encode_text_pairs`); else two fields are joined."""

    @property
    def token_type_sep_id(self) -> int | None:
        """The separator after which token types turn 1 in a pair, or None: the model has no token types."""
        return None

    def encode_text_pairs(
        self, firsts: Sequence[str], seconds: Sequence[str], max_length: int, add_mask: bool = False
    ) -> list[list[int]]:
        """N (a, b) pairs -> `tokenizer(a, b)` token ids, truncated longest-first to max_length; add_mask
        as in `encode_texts` (the mask goes before the closing separator, in b)."""
        raise NotImplementedError(f"backbone '{self.name}' ({self.family}) builds no text pairs; join the fields.")

    # ---- forward ---------------------------------------------------------------------------
    def embed(self, input_ids: Tensor) -> Tensor:
        """(B, L) token ids -> (B, L, d) word embeddings (no positions)."""
        return self.input_embeddings(input_ids)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        prompt: Tensor | None = None,
        layer_prefixes: Tensor | None = None,
        token_type_ids: Tensor | None = None,
    ) -> BackboneOutput:
        """Run the body on [P; E(x)] (Lester et al. 2021, eq. 1): prompt (B, n, d) goes first.

        token_type_ids (B, L): segment ids of text pairs, for a model with token types (the n prompt
        positions get type 0); None = all 0.

        layer_prefixes (P-tuning v2, Liu et al. 2022): (n_layers, 2, B, n_heads, m, head_dim), the
        keys ([:, 0]) and values ([:, 1]) prepended to every self-attention layer's own (see
        `prefix_geometry`). Only the key side grows: the queries, so the hidden states and the
        returned mask, stay the T = n + L positions above.
        Prompts and prefixes are kept in fp32 by their owner and cast to the backbone dtype here.
        """
        inputs_embeds, attention_mask, segments, n_prompt = self.prompted_inputs(
            self.embed(input_ids), attention_mask, prompt, token_type_ids
        )
        if layer_prefixes is None:
            hidden = self.body(inputs_embeds, attention_mask, **segments)
        else:
            expected = self.prefix_geometry.prefix_shape(inputs_embeds.shape[0], layer_prefixes.shape[-2])
            if tuple(layer_prefixes.shape) != expected:
                raise ValueError(
                    f"layer_prefixes of shape {tuple(layer_prefixes.shape)} do not fit backbone '{self.name}', "
                    f"which takes (n_layers, 2, B, n_heads, m, head_dim) = {expected}."
                )
            hidden = self.body_with_prefixes(
                inputs_embeds, attention_mask, layer_prefixes.to(inputs_embeds.dtype), **segments
            )
        return BackboneOutput(hidden=hidden, attention_mask=attention_mask, n_prompt=n_prompt)

    def prompted_inputs(
        self,
        inputs_embeds: Tensor,
        attention_mask: Tensor,
        prompt: Tensor | None = None,
        token_type_ids: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, dict[str, Tensor], int]:
        """(B, L, d) word embeddings -> the body's inputs for [P; E(x)]: (B, n+L, d) embeddings, the (B, n+L)
        mask, {"token_type_ids": (B, n+L)} when given (type 0 for the prompt), and n (packed runs build their
        rows with it too, prompt_bench/packing/forward.py)."""
        n_prompt = 0
        if prompt is not None:
            n_prompt = prompt.shape[1]
            inputs_embeds = torch.cat([prompt.to(inputs_embeds.dtype), inputs_embeds], dim=1)
            prompt_mask = attention_mask.new_ones(attention_mask.shape[0], n_prompt)
            attention_mask = torch.cat([prompt_mask, attention_mask], dim=1)
        segments = {}
        if token_type_ids is not None:
            if self.token_type_sep_id is None:
                raise ValueError(f"backbone '{self.name}' has no token types, but token_type_ids were given.")
            segments["token_type_ids"] = torch.cat(
                [token_type_ids.new_zeros(token_type_ids.shape[0], n_prompt), token_type_ids], dim=1
            )
        return inputs_embeds, attention_mask, segments, n_prompt

    def body(self, inputs_embeds: Tensor, attention_mask: Tensor) -> Tensor:
        """(B, T, d) embeddings -> (B, T, d) last hidden states."""
        raise NotImplementedError

    def body_with_prefixes(self, inputs_embeds: Tensor, attention_mask: Tensor, layer_prefixes: Tensor) -> Tensor:
        """`body` with m key/value prefixes in front of every self-attention layer's keys and values.

        The prefixes are always attended to (the key-side mask is [1_m; attention_mask]) and sit at
        positions 0..m-1, the input at m..m+T-1, as after m input-level prompt tokens (and as in the
        P-tuning v2 code, where Hugging Face shifted positions by the cache length).
        """
        raise NotImplementedError(self.layer_prefix_support())

    def pool(self, output: BackboneOutput) -> Tensor:
        """(B, T, d) hidden -> (B, d) sentence vector: mean over unmasked positions (prompt
        included), the first input token (after the prompt), or the last unmasked one."""
        hidden, mask = output.hidden, output.attention_mask
        if self.pooling == "mean":
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        if self.pooling == "cls":
            return hidden[:, output.n_prompt]
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last_positions(mask)]

    # ---- label-word scores (verbalizer) ------------------------------------------------------
    def supports_verbalizer(self) -> str | None:
        """None when label words can be scored, else a sentence saying why not."""
        return None

    def verbalizer_needs_mask(self) -> bool:
        return False

    def label_word_scores(self, output: BackboneOutput, input_ids: Tensor, label_token_ids: list[list[int]]) -> Tensor:
        """(B, C) log-likelihood-style scores of each class's label word."""
        raise NotImplementedError

    # ---- label texts generated by a decoder (head=generate) ---------------------------------
    def generation_support(self) -> str | None:
        """None when this backbone's decoder can generate label texts, else a sentence saying why not."""
        return (
            f"backbone '{self.name}' is a {self.family} model; head=generate decodes the label text with an "
            "encoder-decoder (seq2seq, T5) backbone"
        )


def prefix_taking_families() -> list[str]:
    """The text families whose adapters take deep prompts, in TEXT_FAMILIES order (every family
    module subclasses BackboneAdapter, so no registry import is needed here)."""
    adapters = list(BackboneAdapter.__subclasses__())
    for adapter in adapters:
        adapters.extend(adapter.__subclasses__())
    taking = {adapter.family for adapter in adapters if adapter.family and adapter.takes_layer_prefixes}
    return sorted(taking, key=lambda family: (TEXT_FAMILIES + (family,)).index(family))
