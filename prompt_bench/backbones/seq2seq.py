"""Seq2seq family (T5-style encoder-decoder): prompts enter the encoder; label words are decoded."""

from __future__ import annotations

from functools import cached_property

import torch
from torch import Tensor, nn

from prompt_bench.backbones.prefixes import (
    cache_keyword,
    key_side_mask,
    pre_hooks_passing_cache,
    prefix_cache,
)
from prompt_bench.backbones.text import BackboneAdapter, BackboneOutput


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
