"""Causal family (GPT-2 / OPT / Llama-style decoders): the verbalizer reads the next token."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from prompt_bench.backbones.base import last_positions
from prompt_bench.backbones.prefixes import (
    key_side_mask,
    prefix_cache,
)
from prompt_bench.backbones.text import BackboneAdapter, BackboneOutput


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
