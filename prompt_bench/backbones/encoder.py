"""Encoder family (BERT / RoBERTa / MPNet / MiniLM): prompts in front of the tokens; MLM verbalizer."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from prompt_bench.backbones.prefixes import (
    key_side_mask,
    mpnet_prefixed_attention,
    prefix_cache,
)
from prompt_bench.backbones.text import BackboneAdapter, BackboneOutput


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
