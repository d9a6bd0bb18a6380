"""The `class` prompt site: learned context in front of a dual encoder's class texts (CoOp, CoCoOp,
KgCoOp, DePT), both towers frozen.

Per batch: f = input tower (B, D); T = text tower over [SOS] context <name>. [EOS] (C, D), or
(B, C, D) when the context depends on the input (CoCoOp); z_itm = exp(s)·cos(f, T) (B, C) from
the ITM head. Training uses the training classes; each test loader is scored over its own class
set (base, new), and base-to-new runs also log H = 2·base·new / (base + new).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from prompt_bench.backbones.dual import DualEncoderAdapter, DualOutput
from prompt_bench.heads import Head
from prompt_bench.lit.base import PromptLightningModule
from prompt_bench.methods.coop import ClassPromptMethod

CLASS_TEXT_LENGTH = 77  # CLIP's context length; class names are short


class ClassSiteModule(PromptLightningModule):
    """Trains `method` on `backbone` over `class_names["train"]`; scores every set in `test_sets`.

    class_names: set name -> class names ("train" is the training classes; "base", "new" or "all"
    the test sets, a set equal to the training classes being scored with DePT's fusion). The
    scheduler steps every epoch (Dassl's schedule) unless method.scheduler_interval says otherwise.
    """

    default_scheduler_interval = "epoch"

    def __init__(
        self,
        backbone: DualEncoderAdapter,
        method: ClassPromptMethod,
        head: Head,
        class_names: dict[str, tuple[str, ...]],
        test_sets: tuple[str, ...],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        primary_metric: str = "acc",
        scheduler_interval: str | None = None,
        gradient_clip_norm: float | None = None,
        backbone_dropout: bool = False,
    ) -> None:
        super().__init__(
            backbone=backbone,
            method=method,
            head=head,
            num_classes=len(class_names["train"]),
            test_sets={name: len(class_names[name]) for name in test_sets},
            optimizer=optimizer,
            scheduler=scheduler,
            scheduler_interval=scheduler_interval,
            primary_metric=primary_metric,
            gradient_clip_norm=gradient_clip_norm,
            backbone_dropout=backbone_dropout,
        )
        self.class_names = class_names
        for set_name, names in class_names.items():
            ids, mask = backbone.tokenize([f"{name}." for name in names], CLASS_TEXT_LENGTH)
            self.register_buffer(f"class_ids_{set_name}", ids, persistent=False)
            self.register_buffer(f"class_mask_{set_name}", mask, persistent=False)
        self._template_features: dict[str, Tensor] = {}

    # ---- features ------------------------------------------------------------------------------
    def features(self, batch: dict[str, Tensor], class_set: str) -> tuple[Tensor, Tensor]:
        """(f (B, D), T (C, D) or (B, C, D)) for the classes of `class_set`, with the learned context."""
        input_features = self.input_features(batch)
        ids, mask = getattr(self, f"class_ids_{class_set}"), getattr(self, f"class_mask_{class_set}")
        n_classes = ids.shape[0]
        context = self.method.context(input_features, n_classes)
        if not self.method.per_input:  # (M, d) shared, or (C, M, d) class-specific
            context = context.expand(n_classes, -1, -1) if context.dim() == 2 else context
            return input_features, self.backbone.class_features(ids, mask, context)
        batch_size = input_features.shape[0]  # (B, M, d): one context per input, B·C class texts
        per_class = (
            context.unsqueeze(1).expand(-1, n_classes, -1, -1).reshape(batch_size * n_classes, *context.shape[1:])
        )
        class_features = self.backbone.class_features(ids.repeat(batch_size, 1), mask.repeat(batch_size, 1), per_class)
        return input_features, class_features.view(batch_size, n_classes, -1)

    def input_features(self, batch: dict[str, Tensor]) -> Tensor:
        """(B, D): cached by the datamodule (frozen tower, no augmentation) or computed here."""
        if "input_features" in batch:
            return batch["input_features"]
        return self.backbone.input_features(batch)

    def template_features(self, class_set: str) -> Tensor:
        """(C, D) hand-crafted class features (zero-shot), computed once per set and device."""
        cached = self._template_features.get(class_set)
        if cached is None or cached.device != self.device:
            cached = self.backbone.template_features(self.class_names[class_set])
            self._template_features[class_set] = cached
        return cached

    def itm_logits(self, input_features: Tensor, class_features: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """(B, C) z_itm from the ITM head."""
        return self.head(DualOutput(input_features, class_features), batch, self.backbone)

    # ---- scores ---------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Tensor], class_set: str = "train", use_prompt: bool = True) -> Tensor:
        """(B, C) scores over `class_set`: the method's (fused for DePT on its trained classes), or
        zero-shot z_itm with the hand-crafted template (use_prompt=False)."""
        if not use_prompt:
            return self.itm_logits(self.input_features(batch), self.template_features(class_set), batch)
        input_features, class_features = self.features(batch, class_set)
        itm_logits = self.itm_logits(input_features, class_features, batch)
        trained = self.class_names[class_set] == self.class_names["train"]
        return self.method.scores(itm_logits, input_features, training_classes=trained)

    def training_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """L = Σ the method's terms (CE(z_itm, y) + any regulariser; DePT's weighted CEs); every term
        is logged. Train metrics read z_itm."""
        input_features, class_features = self.features(batch, "train")
        itm_logits = self.itm_logits(input_features, class_features, batch)
        terms = self.method.loss(itm_logits, batch["labels"], input_features, class_features)
        return itm_logits, sum(terms.values()), terms

    def set_logits(self, batch: dict[str, Tensor], test_set: str, use_prompt: bool = True) -> Tensor:
        return self(batch, test_set, use_prompt=use_prompt)
