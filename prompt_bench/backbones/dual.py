"""Dual encoders: an input tower and a class-text tower that meet in one feature space (D).

- `ClipAdapter` (image–text): CLIP's vision tower encodes images, its text tower class texts
  (`clip_vit_b16`, `clip_vit_b32` from the hub; `tiny_clip`, random, for tests).
- `SentencePairAdapter` (text–text): one sentence encoder (MiniLM, MPNet) is both towers,
  mean-pooled.

Prompts enter the text tower only (CoOp, Zhou et al. 2022): `class_features` splices M context
vectors after the start token of each class text, `[SOS] v_1 .. v_M <class name>. [EOS]`, and the
frozen tower turns the sequence into one feature. Both towers stay frozen and in eval mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from prompt_bench.backbones.base import AdapterBase, last_positions
from prompt_bench.errors import ConfigError

INPUT_KINDS = ("image", "text")


@dataclass
class DualOutput:
    """What the towers give a head: input_features f (B, D); class_features T (C, D) shared by the
    batch, or (B, C, D) per input (CoCoOp). Not normalised."""

    input_features: Tensor
    class_features: Tensor


class DualEncoderAdapter(AdapterBase):
    """A frozen dual encoder: `input_features(batch) -> (B, D)`, `class_features(...) -> (N, D)`;
    the prompt goes in front of the class texts (the `class` prompt site).

    `logit_scale` is exp(s), the temperature of z = exp(s) · cos(f, t) (CLIP's learned one, ≈ 100,
    or the configured one of a sentence encoder). `class_template` ("a photo of a {}.") makes the
    hand-crafted class texts of zero-shot scoring and KgCoOp.
    """

    family = "dual_encoder"
    default_head = "itm"
    input_kind = ""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        name: str,
        class_template: str = "{}",
        params_m: float | None = None,
        image_processor: Any = None,
    ) -> None:
        if "{}" not in class_template:
            raise ConfigError(f"backbone.class_template '{class_template}' has no '{{}}' where the class name goes.")
        super().__init__(model, tokenizer, name, params_m)
        self.class_template = class_template
        self.image_processor = image_processor
        self.requires_grad_(False)
        self.model.eval()

    # ---- frozen, always in eval mode (no dropout noise in the class features) ----------------
    def set_trainable(self, trainable: bool) -> None:
        if trainable:
            raise ConfigError(f"backbone '{self.name}' is a frozen dual encoder; its towers cannot be fine-tuned.")

    def set_dropout(self, in_training: bool) -> None:
        if in_training:
            raise ConfigError(
                f"backbone '{self.name}' is a frozen dual encoder kept in eval mode (its input features are cached "
                "without dropout); set method.backbone_dropout=false."
            )
        super().set_dropout(False)

    # ---- shape facts ----------------------------------------------------------------------------
    @property
    def token_embedding(self) -> nn.Embedding:
        """The text tower's word-embedding table (V, d); context vectors live in its space."""
        raise NotImplementedError

    @property
    def input_embeddings(self) -> nn.Embedding:
        """The text tower's table: d (`hidden_size`) is the width of a context vector."""
        return self.token_embedding

    @property
    def feature_size(self) -> int:
        """D, the width of the joint feature space."""
        raise NotImplementedError

    def logit_scale(self) -> Tensor:
        """exp(s), a scalar."""
        raise NotImplementedError

    # ---- class texts ------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str], max_length: int = 77) -> tuple[Tensor, Tensor]:
        """N texts -> right-padded ids (N, L) and mask (N, L), with the start and end tokens."""
        encoded = self.tokenizer(list(texts), truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        device = self.token_embedding.weight.device
        return encoded["input_ids"].to(device), encoded["attention_mask"].to(device)

    def class_features(self, input_ids: Tensor, attention_mask: Tensor, context: Tensor | None = None) -> Tensor:
        """Class texts (N, L) with context (N, M, d) spliced after the start token -> (N, D) features.

        context None (or M = 0) encodes the texts as they are (hand-crafted prompts).
        Features are not normalised (DePT's CAT head reads them raw).
        """
        embeds = self.token_embedding(input_ids)
        if context is not None and context.shape[1] > 0:
            context = context.to(embeds.dtype)
            embeds = torch.cat([embeds[:, :1], context, embeds[:, 1:]], dim=1)
            ones = attention_mask.new_ones(attention_mask.shape[0], context.shape[1])
            attention_mask = torch.cat([attention_mask[:, :1], ones, attention_mask[:, 1:]], dim=1)
        return self.text_features(embeds, attention_mask).float()

    @torch.no_grad()
    def template_features(self, class_names: Sequence[str]) -> Tensor:
        """(C, D) features of the hand-crafted texts `class_template.format(name)`."""
        ids, mask = self.tokenize([self.class_template.format(name) for name in class_names])
        return self.class_features(ids, mask)

    def text_features(self, embeds: Tensor, attention_mask: Tensor) -> Tensor:
        """(N, L, d) token embeddings, (N, L) mask -> (N, D) text-tower features."""
        raise NotImplementedError

    def input_features(self, batch: dict[str, Tensor]) -> Tensor:
        """A batch (pixel_values, or input_ids + attention_mask) -> (B, D) input-tower features."""
        raise NotImplementedError


def causal_mask(attention_mask: Tensor, dtype: torch.dtype) -> Tensor:
    """(N, L) padding mask -> (N, 1, L, L) additive mask: a query sees itself and real keys before it."""
    length = attention_mask.shape[1]
    allowed = torch.ones(length, length, dtype=torch.bool, device=attention_mask.device).tril()
    allowed = allowed.unsqueeze(0) & attention_mask.bool().unsqueeze(1)
    allowed = allowed | torch.eye(length, dtype=torch.bool, device=attention_mask.device)  # padded rows stay finite
    additive = torch.zeros(allowed.shape, dtype=dtype, device=attention_mask.device)
    return additive.masked_fill(~allowed, torch.finfo(dtype).min).unsqueeze(1)


class ClipAdapter(DualEncoderAdapter):
    """CLIP: f = visual_projection(ViT(x)[CLS]), t = text_projection(causal Transformer(text)[EOS])."""

    input_kind = "image"

    @property
    def token_embedding(self) -> nn.Embedding:
        return self.model.text_model.embeddings.token_embedding

    @property
    def feature_size(self) -> int:
        return self.model.text_projection.out_features

    def logit_scale(self) -> Tensor:
        return self.model.logit_scale.detach().float().exp()

    def text_features(self, embeds: Tensor, attention_mask: Tensor) -> Tensor:
        text = self.model.text_model
        hidden = text.embeddings(inputs_embeds=embeds)
        hidden = text.encoder(inputs_embeds=hidden, attention_mask=causal_mask(attention_mask, hidden.dtype))
        hidden = text.final_layer_norm(hidden.last_hidden_state)
        eos = hidden[torch.arange(hidden.shape[0], device=hidden.device), last_positions(attention_mask)]
        return self.model.text_projection(eos)

    def input_features(self, batch: dict[str, Tensor]) -> Tensor:
        pixel_values = batch["pixel_values"].to(self.model.visual_projection.weight.dtype)
        pooled = self.model.vision_model(pixel_values=pixel_values).pooler_output
        return self.model.visual_projection(pooled).float()


class SentencePairAdapter(DualEncoderAdapter):
    """A sentence encoder as both towers: f = mean-pool(Enc(x)), t = mean-pool(Enc(class text))."""

    input_kind = "text"

    def __init__(self, *args: Any, logit_scale: float = 20.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register_buffer("fixed_logit_scale", torch.tensor(float(logit_scale)), persistent=False)

    @property
    def token_embedding(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    @property
    def feature_size(self) -> int:
        return self.model.config.hidden_size

    def logit_scale(self) -> Tensor:
        return self.fixed_logit_scale

    def text_features(self, embeds: Tensor, attention_mask: Tensor) -> Tensor:
        hidden = self.model(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)

    def input_features(self, batch: dict[str, Tensor]) -> Tensor:
        embeds = self.token_embedding(batch["input_ids"])
        return self.text_features(embeds, batch["attention_mask"]).float()


def cosine_logits(input_features: Tensor, class_features: Tensor, scale: Tensor) -> Tensor:
    """ITM head: z = exp(s) · norm(f) · norm(T)ᵀ.

    input_features (B, D); class_features (C, D) shared by the batch, or (B, C, D) per input
    (CoCoOp) -> (B, C) logits.
    """
    inputs = F.normalize(input_features, dim=-1)
    classes = F.normalize(class_features, dim=-1)
    if classes.dim() == 2:
        return scale * inputs @ classes.T
    return scale * torch.einsum("bd,bcd->bc", inputs, classes)
