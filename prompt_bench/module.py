"""The one LightningModule: backbone (frozen unless fine-tuning) + method + head."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.nn import functional as F
from torchmetrics import MaxMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from prompt_bench.backbones import BackboneAdapter
from prompt_bench.heads import Head
from prompt_bench.methods.base import PromptMethod


def split_metrics(num_classes: int) -> MetricCollection:
    """Accuracy and macro-F1 over C classes (macro-F1 is primary for imbalanced tasks)."""
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes=num_classes, average="micro"),
            "f1": MulticlassF1Score(num_classes=num_classes, average="macro"),
        }
    )


class PromptModule(pl.LightningModule):
    """Trains `method` (and `head`) on a frozen `backbone` with cross-entropy + method losses.

    Logged: train/loss, train/ce, train/<extra>, val/acc, val/f1, val/acc_best, val/f1_best,
    test/acc, test/f1. `primary_metric` ("acc" or "f1") is what best-on-dev selection monitors.
    """

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
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.method = method
        self.head = head
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.head_lr = head_lr
        self.primary_metric = primary_metric
        self.num_classes = num_classes
        self.backbone.set_trainable(method.trains_backbone)
        self.train_metrics = split_metrics(num_classes).clone(prefix="train/")
        self.val_metrics = split_metrics(num_classes).clone(prefix="val/")
        self.test_metrics = split_metrics(num_classes).clone(prefix="test/")
        self.val_best = torch.nn.ModuleDict({"acc": MaxMetric(), "f1": MaxMetric()})
        # Checkpoints hold trainable state only, so loading them into a fresh module is non-strict.
        self.strict_loading = False

    # ---- forward -----------------------------------------------------------------------
    def forward(self, batch: dict[str, Tensor], use_prompt: bool = True) -> Tensor:
        """batch -> (B, C) logits. use_prompt=False gives the zero-shot backbone + head."""
        prompt = self.method.prompt(batch) if use_prompt else None
        layer_prefixes = self.method.layer_prefixes(batch) if use_prompt else None
        output = self.backbone(
            batch["input_ids"], batch["attention_mask"], prompt=prompt, layer_prefixes=layer_prefixes
        )
        return self.head(output, batch, self.backbone)

    # ---- steps ----------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        logits = self(batch)
        cross_entropy = F.cross_entropy(logits, batch["labels"])
        extra = self.method.extra_loss(batch, logits)
        loss = cross_entropy + sum(extra.values(), torch.zeros((), device=logits.device))
        batch_size = batch["labels"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        if extra:  # with no extra terms train/ce equals train/loss; logging costs ~1 ms a step
            self.log("train/ce", cross_entropy, batch_size=batch_size)
        for name, value in extra.items():
            self.log(f"train/{name}", value, batch_size=batch_size)
        self.train_metrics.update(logits.detach(), batch["labels"])
        return loss

    def on_train_epoch_end(self) -> None:
        self.log_dict(self.train_metrics.compute())
        self.train_metrics.reset()
        diagnostics = self.method.epoch_diagnostics()
        if diagnostics:
            self.log_dict({f"train/{name}": value for name, value in diagnostics.items()})

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.val_metrics.update(self(batch), batch["labels"])

    def on_validation_epoch_end(self) -> None:
        values = self.val_metrics.compute()
        self.val_metrics.reset()
        self.log_dict(values, prog_bar=True)
        for name, best in self.val_best.items():
            best.update(values[f"val/{name}"])
            self.log(f"val/{name}_best", best.compute())

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.test_metrics.update(self(batch), batch["labels"])

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_metrics.compute())
        self.test_metrics.reset()

    def evaluate(self, batches: Iterable[dict[str, Tensor]], use_prompt: bool = True) -> dict[str, float]:
        """Accuracy and macro-F1 over `batches` outside the trainer (used for zero-shot)."""
        batches = list(batches)
        logits = self.evaluate_logits(batches, use_prompt=use_prompt)
        labels = torch.cat([batch["labels"] for batch in batches])
        metrics = split_metrics(self.num_classes)
        metrics.update(logits, labels)
        return {name: float(value) for name, value in metrics.compute().items()}

    def best_validation_scores(self) -> dict[str, float]:
        """val/acc_best and val/f1_best over the epochs validated so far (empty if none were)."""
        return {f"val/{name}_best": float(best.compute()) for name, best in self.val_best.items() if best.update_called}

    @torch.no_grad()
    def evaluate_logits(self, batches: Iterable[dict[str, Tensor]], use_prompt: bool = True) -> Tensor:
        """(N, C) logits over `batches` in their order, in eval mode (zero-shot scores, a teacher's
        cached outputs)."""
        was_training = self.training
        self.eval()
        logits = [
            self({k: v.to(self.device) for k, v in batch.items()}, use_prompt=use_prompt).float().cpu()
            for batch in batches
        ]
        self.train(was_training)
        return torch.cat(logits)

    # ---- optimisation ---------------------------------------------------------------------
    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def configure_optimizers(self) -> Any:
        base_lr = self.optimizer_factory.keywords["lr"]  # a functools.partial from `_partial_: true`
        groups = self.method.param_groups(base_lr)
        head_params = [p for p in self.head.parameters() if p.requires_grad]
        if head_params:
            groups.append({"params": head_params, "lr": self.head_lr or base_lr, "name": "head"})
        if self.method.trains_backbone:
            groups.append({"params": list(self.backbone.parameters()), "name": "backbone"})
        optimizer = self.optimizer_factory(params=groups)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ---- checkpoints: trainable state only ---------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if not self.method.trains_backbone:
            checkpoint["state_dict"] = {
                key: value for key, value in checkpoint["state_dict"].items() if not key.startswith("backbone.")
            }
