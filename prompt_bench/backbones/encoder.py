"""Encoder family (BERT / RoBERTa / MPNet / MiniLM): prompts in front of the tokens; MLM verbalizer."""

from __future__ import annotations

from collections.abc import Sequence

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

    @property
    def takes_text_pairs(self) -> bool:
        """[CLS] a [SEP] b [SEP] (<s> a </s></s> b </s> for RoBERTa) needs a separator token."""
        return self.tokenizer.sep_token_id is not None

    @property
    def token_type_sep_id(self) -> int | None:
        """BERT-style models (a token type embedding of 2+ rows) mark the second text with type 1."""
        has_types = getattr(self.model.config, "type_vocab_size", 0) > 1
        return self.tokenizer.sep_token_id if has_types and self.takes_text_pairs else None

    def encode_text_pairs(
        self, firsts: Sequence[str], seconds: Sequence[str], max_length: int, add_mask: bool = False
    ) -> list[list[int]]:
        budget = max_length - 1 if add_mask else max_length
        ids = self.tokenizer(list(firsts), list(seconds), truncation=True, max_length=budget)["input_ids"]
        return self._with_mask_token(ids) if add_mask else ids

    def body(self, inputs_embeds: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        return self.model.base_model(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state

    def _prefix_obstacle(self) -> str | None:
        if self._is_mpnet() or self._base_cache_keyword is not None:
            return None
        return self._no_cache_sentence(self.model.base_model, "its attention layers")

    def _is_mpnet(self) -> bool:
        return self.model.config.model_type == "mpnet"

    def body_with_prefixes(
        self,
        inputs_embeds: Tensor,
        attention_mask: Tensor,
        layer_prefixes: Tensor,
        token_type_ids: Tensor | None = None,
    ) -> Tensor:
        """BERT/RoBERTa/MiniLM take the prefixes as a prefilled cache (Hugging Face's own prefix
        path); MPNet's attention takes no cache, so `mpnet_prefixed_attention` stands in for it."""
        n_prefix, length = layer_prefixes.shape[-2], inputs_embeds.shape[1]
        base = self.model.base_model
        inputs = {
            "inputs_embeds": inputs_embeds,
            "attention_mask": key_side_mask(attention_mask, n_prefix),
            "position_ids": self._shifted_position_ids(n_prefix, length, inputs_embeds.device),
        }
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
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
