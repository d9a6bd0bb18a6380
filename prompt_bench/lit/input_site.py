"""The `input` prompt site: the prompt goes in front of the input tokens (prompt tuning, deep
prefixes, VIP, SPoT/PANDA, fine-tuning and linear probing with no prompt at all).

Per batch: logits = head(backbone([P; E(x)], prefixes)) (B, C); loss = CE(logits, y) + Σ the
method's extra terms (commitment, KD, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from prompt_bench.backbones import BackboneAdapter, BackboneOutput
from prompt_bench.heads import Head
from prompt_bench.lit.base import PromptLightningModule
from prompt_bench.methods.base import PromptMethod

ALL_CLASSES = "all"  # the one test set of the input site: every class of the task


class InputSiteModule(PromptLightningModule):
    """Trains `method` (and `head`) on a frozen-or-not `backbone`; the scheduler steps every batch
    unless method.scheduler_interval says otherwise.

    Logged beside train/loss: train/ce and each extra term by name, when the method adds any.
    """

    default_scheduler_interval = "step"

    def __init__(
        self,
        backbone: BackboneAdapter,
        method: PromptMethod,
        head: Head,
        num_classes: int,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        head_lr: float | None = None,
        primary_metric: str = "acc",
        scheduler_interval: str | None = None,
        no_relation: int | None = None,
        gradient_clip_norm: float | None = None,
        backbone_dropout: bool = False,
    ) -> None:
        super().__init__(
            backbone=backbone,
            method=method,
            head=head,
            num_classes=num_classes,
            test_sets={ALL_CLASSES: num_classes},
            optimizer=optimizer,
            scheduler=scheduler,
            scheduler_interval=scheduler_interval,
            head_lr=head_lr,
            primary_metric=primary_metric,
            gradient_clip_norm=gradient_clip_norm,
            no_relation=no_relation,
            backbone_dropout=backbone_dropout,
        )

    def encode(self, batch: dict[str, Tensor], use_prompt: bool = True) -> BackboneOutput:
        """The backbone on [P; E(x)] (and the method's prefixes); use_prompt=False: on E(x) alone."""
        prompt = self.method.prompt(batch) if use_prompt else None
        layer_prefixes = self.method.layer_prefixes(batch) if use_prompt else None
        return self.backbone(
            batch["input_ids"],
            batch["attention_mask"],
            prompt=prompt,
            layer_prefixes=layer_prefixes,
            token_type_ids=batch.get("token_type_ids"),
        )

    def forward(self, batch: dict[str, Tensor], use_prompt: bool = True) -> Tensor:
        """batch -> (B, C) logits. use_prompt=False gives the zero-shot backbone + head."""
        return self.head(self.encode(batch, use_prompt), batch, self.backbone)

    def training_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """L = CE(logits, y) + Σ extra, or the head's own loss in place of the CE (head=generate: the
        token loss on the label text + EOS); with no extra terms train/ce equals train/loss and is not
        logged."""
        return self.loss_from_output(batch, self.encode(batch))

    def loss_from_output(
        self, batch: dict[str, Tensor], output: BackboneOutput
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """`training_loss` from the backbone's output on this batch, already computed (a packed run
        computes many runs' outputs in one backbone pass, prompt_bench/packing)."""
        logits, head_loss = self.head.training_scores(output, batch, self.backbone)
        cross_entropy = F.cross_entropy(logits, batch["labels"]) if head_loss is None else head_loss
        extra = self.method.extra_loss(batch, logits, backbone=self.backbone)
        loss = cross_entropy + sum(extra.values(), torch.zeros((), device=logits.device))
        terms = {"ce": cross_entropy, **extra} if extra else {}
        return logits, loss, terms

    def set_logits(self, batch: dict[str, Tensor], test_set: str, use_prompt: bool = True) -> Tensor:
        return self(batch, use_prompt=use_prompt)

    @torch.no_grad()
    def evaluate_logits(self, batches: Iterable[dict[str, Tensor]], use_prompt: bool = True) -> Tensor:
        """(N, C) logits over `batches` in their order, in eval mode, on the CPU (a teacher's cached
        outputs): the head's finite `class_scores` (a generating head's label log-likelihoods)."""
        was_training = self.training
        self.eval()
        logits = []
        for batch in batches:
            batch = {k: v.to(self.device) for k, v in batch.items()}
            scores = self.head.class_scores(self.encode(batch, use_prompt), batch, self.backbone)
            logits.append(scores.float().cpu())
        self.train(was_training)
        return torch.cat(logits)
