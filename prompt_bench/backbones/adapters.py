"""Family adapters: one interface over encoder, seq2seq and causal Hugging Face models.

Everything that differs between model families lives here, once: where the input embeddings
are, how soft prompts are prepended, how per-layer key/value prefixes (deep prompts) reach the
attention layers (the plumbing is in `prefixes.py`), where the FFN activations are, how a
sentence vector is pooled, and how label words are scored. Methods and
heads never branch on the family.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from prompt_bench.backbones.base import AdapterBase
from prompt_bench.backbones.prefixes import (
    PrefixGeometry,
    cache_keyword,
    key_side_mask,
    mpnet_prefixed_attention,
    pre_hooks_passing_cache,
    prefix_cache,
    transformers_version,
)
from prompt_bench.errors import ConfigError

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
            families = ", ".join(family for family, adapter in ADAPTERS.items() if adapter.takes_layer_prefixes)
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
        modules = [module for name, module in self.model.named_modules() if self.ffn_down_projection and pattern.search(name)]
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
        if not add_mask:
            return ids
        mask_id = self.tokenizer.mask_token_id
        closing = {self.tokenizer.sep_token_id, self.tokenizer.eos_token_id} - {None}
        return [row[:-1] + [mask_id, row[-1]] if row and row[-1] in closing else row + [mask_id] for row in ids]

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
    ) -> BackboneOutput:
        """Run the body on [P; E(x)] (Lester et al. 2021, eq. 1): prompt (B, n, d) goes first.

        layer_prefixes (P-tuning v2, Liu et al. 2022): (n_layers, 2, B, n_heads, m, head_dim), the
        keys ([:, 0]) and values ([:, 1]) prepended to every self-attention layer's own (see
        `prefix_geometry`). Only the key side grows: the queries, so the hidden states and the
        returned mask, stay the T = n + L positions above.
        Prompts and prefixes are kept in fp32 by their owner and cast to the backbone dtype here.
        """
        inputs_embeds = self.embed(input_ids)
        n_prompt = 0
        if prompt is not None:
            n_prompt = prompt.shape[1]
            inputs_embeds = torch.cat([prompt.to(inputs_embeds.dtype), inputs_embeds], dim=1)
            prompt_mask = attention_mask.new_ones(attention_mask.shape[0], n_prompt)
            attention_mask = torch.cat([prompt_mask, attention_mask], dim=1)
        if layer_prefixes is None:
            hidden = self.body(inputs_embeds, attention_mask)
        else:
            expected = self.prefix_geometry.prefix_shape(inputs_embeds.shape[0], layer_prefixes.shape[-2])
            if tuple(layer_prefixes.shape) != expected:
                raise ValueError(
                    f"layer_prefixes of shape {tuple(layer_prefixes.shape)} do not fit backbone '{self.name}', "
                    f"which takes (n_layers, 2, B, n_heads, m, head_dim) = {expected}."
                )
            hidden = self.body_with_prefixes(inputs_embeds, attention_mask, layer_prefixes.to(inputs_embeds.dtype))
        return BackboneOutput(hidden=hidden, attention_mask=attention_mask, n_prompt=n_prompt)

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


def last_positions(attention_mask: Tensor) -> Tensor:
    """(B, T) right-padded mask -> (B,) index of the last unmasked position."""
    return attention_mask.sum(dim=1).long() - 1


class EncoderAdapter(BackboneAdapter):
    """BERT / RoBERTa / MPNet / MiniLM. The verbalizer reads the MLM head at the [MASK] token."""

    family = "encoder"
    ffn_down_projection = r"encoder\.layer\.\d+\.output\.dense$"  # BERT, RoBERTa, MPNet (not attention.output)
    takes_layer_prefixes = True

    def body(self, inputs_embeds: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model.base_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state

    def _prefix_obstacle(self) -> str | None:
        if self._is_mpnet() or self._base_cache_keyword is not None:
            return None
        return self._no_cache_sentence(self.model.base_model, "its attention layers")

    def _is_mpnet(self) -> bool:
        return self.model.config.model_type == "mpnet"

    def body_with_prefixes(self, inputs_embeds: Tensor, attention_mask: Tensor, layer_prefixes: Tensor) -> Tensor:
        """BERT/RoBERTa/MiniLM take the prefixes as a prefilled cache (Hugging Face's own prefix
        path); MPNet's attention takes no cache, so `mpnet_prefixed_attention` stands in for it."""
        n_prefix, length = layer_prefixes.shape[-2], inputs_embeds.shape[1]
        base = self.model.base_model
        inputs = {
            "inputs_embeds": inputs_embeds,
            "attention_mask": key_side_mask(attention_mask, n_prefix),
            "position_ids": self._shifted_position_ids(n_prefix, length, inputs_embeds.device),
        }
        if self._is_mpnet():
            with mpnet_prefixed_attention(base.encoder, layer_prefixes, length):
                return base(**inputs).last_hidden_state
        return base(**inputs, **{self._base_cache_keyword: prefix_cache(layer_prefixes)}).last_hidden_state

    def _shifted_position_ids(self, n_prefix: int, length: int, device: torch.device) -> Tensor:
        """(1, T) absolute positions of the input after m prefix positions. RoBERTa-style embeddings
        (which carry a padding_idx) number positions from padding_idx + 1, BERT-style from 0."""
        first = getattr(self.model.base_model.embeddings, "padding_idx", -1) + 1
        return torch.arange(first + n_prefix, first + n_prefix + length, device=device).unsqueeze(0)

    def supports_verbalizer(self) -> str | None:
        if not self.has_lm_head or self._mlm_head() is None:
            return (
                f"backbone '{self.name}' has no MLM head, so the verbalizer head cannot score label words; "
                "use head=label_similarity or head=linear (or a backbone with lm_head: true)"
            )
        if self.tokenizer.mask_token_id is None:
            return f"backbone '{self.name}' has no mask token, so the MLM verbalizer cannot be used"
        return None

    def verbalizer_needs_mask(self) -> bool:
        return True

    def _mlm_head(self) -> nn.Module | None:
        for attribute in ("cls", "lm_head"):  # BERT-style, RoBERTa/MPNet-style
            if hasattr(self.model, attribute):
                return getattr(self.model, attribute)
        return None

    def label_word_scores(self, output: BackboneOutput, input_ids: Tensor, label_token_ids: list[list[int]]) -> Tensor:
        """MLM log-probabilities at the mask position of each class's first label-word token."""
        mask_positions = (input_ids == self.tokenizer.mask_token_id).int().argmax(dim=1) + output.n_prompt
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        vocab_logits = self._mlm_head()(output.hidden[rows, mask_positions])  # (B, V)
        first_tokens = torch.tensor([ids[0] for ids in label_token_ids], device=input_ids.device)
        return vocab_logits.float().log_softmax(-1)[:, first_tokens]


class Seq2SeqAdapter(BackboneAdapter):
    """T5-style encoder-decoder: prompts enter the encoder; label words are decoded."""

    family = "seq2seq"
    ffn_down_projection = r"encoder\.block\.\d+\.layer\.1\.\w+\.wo$"  # T5 encoder FFN (ReLU or gated)
    takes_layer_prefixes = True

    def body(self, inputs_embeds: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model.get_encoder()(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state

    @cached_property
    def _encoder_self_attentions(self) -> list[nn.Module] | None:
        """Each T5-style encoder block's self-attention, or None for another layout (probed once)."""
        blocks = getattr(self.model.get_encoder(), "block", None)
        if blocks is None:
            return None
        attentions = [getattr(block.layer[0], "SelfAttention", None) for block in blocks]
        return None if any(attention is None for attention in attentions) else attentions

    @cached_property
    def _attention_cache_keyword(self) -> str | None:
        """The one keyword every encoder self-attention takes a cache under, or None."""
        keywords = {cache_keyword(attention.forward) for attention in self._encoder_self_attentions or []}
        return keywords.pop() if len(keywords) == 1 else None

    def _prefix_obstacle(self) -> str | None:
        attentions = self._encoder_self_attentions
        if attentions is None:
            return f"backbone '{self.name}' has no T5-style encoder blocks, so deep prompts cannot reach its encoder"
        if self._attention_cache_keyword is None:
            return self._no_cache_sentence(attentions[0], "its encoder's self-attention layers")
        return None

    def body_with_prefixes(self, inputs_embeds: Tensor, attention_mask: Tensor, layer_prefixes: Tensor) -> Tensor:
        """Encoder self-attention prefixes (the decoder is untouched). T5's encoder stack drops any
        cache it is given, so the prefilled cache is handed to each self-attention directly; T5's
        relative position bias then places the prefix at positions 0..m-1 by itself."""
        encoder = self.model.get_encoder()
        cache = prefix_cache(layer_prefixes)
        with pre_hooks_passing_cache(self._encoder_self_attentions, self._attention_cache_keyword, cache):
            return encoder(
                inputs_embeds=inputs_embeds, attention_mask=key_side_mask(attention_mask, layer_prefixes.shape[-2])
            ).last_hidden_state

    def label_word_scores(self, output: BackboneOutput, input_ids: Tensor, label_token_ids: list[list[int]]) -> Tensor:
        """Sum of decoder token log-probs of each label word (rank classification, teacher forced).

        All C label sequences are decoded in one (B*C)-row batch against the shared encoder states.
        """
        batch, classes = output.hidden.shape[0], len(label_token_ids)
        pad_id = self.tokenizer.pad_token_id
        length = max(len(ids) for ids in label_token_ids)
        targets = torch.full((classes, length), -100, dtype=torch.long, device=input_ids.device)
        for c, ids in enumerate(label_token_ids):
            targets[c, : len(ids)] = torch.tensor(ids, device=input_ids.device)
        start_id = self.model.config.decoder_start_token_id
        start_id = pad_id if start_id is None else start_id
        decoder_inputs = torch.cat([targets.new_full((classes, 1), start_id), targets[:, :-1]], dim=1)
        decoder_inputs = decoder_inputs.masked_fill(decoder_inputs == -100, pad_id)
        hidden = output.hidden.repeat_interleave(classes, dim=0)
        mask = output.attention_mask.repeat_interleave(classes, dim=0)
        logits = self.model(
            encoder_outputs=(hidden,),
            attention_mask=mask,
            decoder_input_ids=decoder_inputs.repeat(batch, 1),
        ).logits.float()  # (B*C, length, V)
        tiled_targets = targets.repeat(batch, 1)
        token_logp = logits.log_softmax(-1).gather(-1, tiled_targets.clamp_min(0).unsqueeze(-1)).squeeze(-1)
        token_logp = token_logp.masked_fill(tiled_targets == -100, 0.0)
        return token_logp.sum(-1).view(batch, classes)


class CausalAdapter(BackboneAdapter):
    """GPT-2 / OPT / Llama-style decoder: the verbalizer reads the next token after the input."""

    family = "causal"
    ffn_down_projection = r"\.h\.\d+\.mlp\.c_proj$"  # GPT-2
    takes_layer_prefixes = True

    def body(self, inputs_embeds: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model.base_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state

    def _prefix_obstacle(self) -> str | None:
        if self._base_cache_keyword is not None:
            return None
        return self._no_cache_sentence(self.model.base_model, "its attention layers")

    def body_with_prefixes(self, inputs_embeds: Tensor, attention_mask: Tensor, layer_prefixes: Tensor) -> Tensor:
        """The prefixes as a prefilled cache: a decoder's causal mask and positions already account
        for cached keys, so the input attends to all m prefix positions and sits at m..m+T-1."""
        return self.model.base_model(
            inputs_embeds=inputs_embeds,
            attention_mask=key_side_mask(attention_mask, layer_prefixes.shape[-2]),
            **{self._base_cache_keyword: prefix_cache(layer_prefixes)},
        ).last_hidden_state

    def label_word_scores(self, output: BackboneOutput, input_ids: Tensor, label_token_ids: list[list[int]]) -> Tensor:
        """Next-token log-probs, after the last input token, of each class's first label-word token."""
        rows = torch.arange(output.hidden.shape[0], device=output.hidden.device)
        last_hidden = output.hidden[rows, last_positions(output.attention_mask)]
        vocab_logits = self.model.get_output_embeddings()(last_hidden)
        first_tokens = torch.tensor([ids[0] for ids in label_token_ids], device=last_hidden.device)
        return F.log_softmax(vocab_logits.float(), dim=-1)[:, first_tokens]


ADAPTERS: dict[str, type[BackboneAdapter]] = {
    "encoder": EncoderAdapter,
    "seq2seq": Seq2SeqAdapter,
    "causal": CausalAdapter,
}
