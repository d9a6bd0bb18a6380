"""The LightningModule base both prompt sites share: metrics, best-on-dev tracking, evaluation outside
the trainer, the optimizer and its schedule, and checkpoints that hold trainable state only.

A site (lit/input_site.py, lit/class_site.py) adds how a batch becomes logits and a loss.
Logged: train/loss and its named terms, train/acc, train/f1, val/acc, val/f1, val/acc_best,
val/f1_best (+ val/invalid_rate and test/invalid_rate for a head that can name no class, head=generate);
test/acc + test/f1 for one test set, or test/{base,new}_{acc,f1} + test/hmean when
a base-to-new run scores the base and the new classes, H = 2·base·new / (base + new).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torchmetrics import MaxMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from prompt_bench.backbones import AdapterBase
from prompt_bench.errors import ConfigError
from prompt_bench.heads import Head
from prompt_bench.lit.exact_match import exact_match_metrics, predicted_ids
from prompt_bench.lit.micro_f1 import MicroF1NoRelation
from prompt_bench.methods.base import Method
from prompt_bench.scores import harmonic_mean

SCHEDULER_INTERVALS = ("step", "epoch")
BEST_TRACKED = ("acc", "f1")


def split_metrics(num_classes: int, no_relation: int | None = None, abstains: bool = False) -> MetricCollection:
    """Accuracy and macro-F1 over C classes (macro-F1 is primary for imbalanced tasks); with a
    no_relation class id (a relation task), also micro_f1: micro-F1 without that class. abstains: the
    head's predictions can name no class (head=generate); the metrics then read class ids from
    `metric_inputs`, count those wrong and add invalid_rate (lit/exact_match.py)."""
    if abstains:
        metrics = exact_match_metrics(num_classes)
    else:
        metrics = {
            "acc": MulticlassAccuracy(num_classes=num_classes, average="micro"),
            "f1": MulticlassF1Score(num_classes=num_classes, average="macro"),
        }
    if no_relation is not None:
        metrics["micro_f1"] = MicroF1NoRelation(no_relation)
    return MetricCollection(metrics)


def with_hmean(scores: dict[str, float]) -> dict[str, float]:
    """Adds hmean = H(base_acc, new_acc) when both are there."""
    if "base_acc" in scores and "new_acc" in scores:
        scores["hmean"] = harmonic_mean(scores["base_acc"], scores["new_acc"])
    return scores


class PromptLightningModule(pl.LightningModule):
    """Trains `method` (and a trainable `head`) on `backbone` with cross-entropy + the method's terms.

    num_classes: C of the training classes (train and dev). test_sets: test-set name -> its C, in
    test-loader order ({"all": C} for one set; {"base": C_b, "new": C_n} for base-to-new).
    primary_metric ("acc", "f1", or a relation task's "micro_f1") is what best-on-dev selection monitors;
    no_relation: a relation task's no-relation class id (adds micro_f1 to every split's metrics). The scheduler steps every
    `scheduler_interval` ("step" or "epoch"; None = the site's `default_scheduler_interval`); a scheduler factory
    taking `total_steps=None` gets the run's optimizer steps. gradient_clip_norm (method.gradient_clip_norm):
    the gradients' global L2 norm is clipped to it before every optimizer step (the Hugging Face Trainer's
    max_grad_norm); None = no clipping. A Trainer's own gradient_clip_val, when set, wins.
    backbone_dropout (method.backbone_dropout): whether the backbone's own dropout is on in training
    steps; the adapter's `train()` applies it (AdapterBase), so every mode switch agrees with it.
    """

    default_scheduler_interval: str = "step"

    def __init__(
        self,
        backbone: AdapterBase,
        method: Method,
        head: Head,
        num_classes: int,
        test_sets: dict[str, int],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        scheduler_interval: str | None = None,
        head_lr: float | None = None,
        primary_metric: str = "acc",
        no_relation: int | None = None,
        gradient_clip_norm: float | None = None,
        backbone_dropout: bool = False,
    ) -> None:
        super().__init__()
        interval = scheduler_interval or self.default_scheduler_interval
        if interval not in SCHEDULER_INTERVALS:
            raise ConfigError(
                f"method.scheduler_interval '{interval}' is not one of {', '.join(SCHEDULER_INTERVALS)} "
                "(how often the learning-rate schedule steps)."
            )
        self.backbone = backbone
        self.method = method
        self.head = head
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = interval
        if gradient_clip_norm is not None and gradient_clip_norm <= 0:
            raise ConfigError(
                f"method.gradient_clip_norm must be > 0 (or null for no clipping), got {gradient_clip_norm}."
            )
        self.gradient_clip_norm = gradient_clip_norm
        self.head_lr = head_lr
        self.primary_metric = primary_metric
        self.num_classes = num_classes
        self.test_sets = tuple(test_sets)
        self.test_set_sizes = dict(test_sets)
        self.backbone.set_trainable(method.trains_backbone)
        self.backbone.set_dropout(backbone_dropout)
        self.no_relation = no_relation
        # Train metrics read the training logits (finite: a generating head's are rank scores).
        self.train_metrics = split_metrics(num_classes, no_relation).clone(prefix="train/")
        self.val_metrics = split_metrics(num_classes, no_relation, head.abstains).clone(prefix="val/")
        self.test_metrics = torch.nn.ModuleList(
            split_metrics(count, no_relation, head.abstains) for count in test_sets.values()
        )
        tracked = BEST_TRACKED + (("micro_f1",) if no_relation is not None else ())
        self.val_best = torch.nn.ModuleDict({name: MaxMetric() for name in tracked})
        # Checkpoints hold trainable state only, so loading them into a fresh module is non-strict.
        self.strict_loading = False

    # ---- what a site provides ----------------------------------------------------------------
    def training_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """(logits (B, C) for the train metrics, the loss to minimise, named terms logged beside it)."""
        raise NotImplementedError

    def set_logits(self, batch: dict[str, Tensor], test_set: str, use_prompt: bool = True) -> Tensor:
        """(B, C_set) logits of a batch of test set `test_set`; use_prompt=False scores zero-shot."""
        raise NotImplementedError

    # ---- steps ----------------------------------------------------------------------------
    def on_train_start(self) -> None:
        """Train mode for the whole module: Lightning never calls train() itself, and code run before
        fit (a transferability probe, a zero-shot score) may have left parts in eval mode. The
        backbone's dropout then follows backbone_dropout (AdapterBase.train)."""
        self.train()

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        logits, loss, terms = self.training_loss(batch)
        batch_size = batch["labels"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        for name, value in terms.items():
            self.log(f"train/{name}", value, batch_size=batch_size)
        self.train_metrics.update(logits.detach(), batch["labels"])
        return loss

    def on_train_epoch_end(self) -> None:
        self.log_dict(self.train_metrics.compute())
        self.train_metrics.reset()
        diagnostics = self.method.epoch_diagnostics()
        if diagnostics:
            self.log_dict({f"train/{name}": value for name, value in diagnostics.items()})

    def metric_inputs(self, logits: Tensor) -> Tensor:
        """What the val / test metrics read: the (B, C) logits, or, for a head that can name no class,
        (B,) class ids with C for no class (lit/exact_match.py `predicted_ids`)."""
        return predicted_ids(logits) if self.head.abstains else logits

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.val_metrics.update(self.metric_inputs(self(batch)), batch["labels"])

    def on_validation_epoch_end(self) -> None:
        values = self.val_metrics.compute()
        self.val_metrics.reset()
        self.log_dict(values, prog_bar=True)
        for name, best in self.val_best.items():
            best.update(values[f"val/{name}"])
            self.log(f"val/{name}_best", best.compute())

    def test_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        logits = self.set_logits(batch, self.test_sets[dataloader_idx])
        self.test_metrics[dataloader_idx].update(self.metric_inputs(logits), batch["labels"])

    def on_test_epoch_end(self) -> None:
        values: dict[str, float] = {}
        for set_name, metrics in zip(self.test_sets, self.test_metrics):
            values.update(self.set_scores(set_name, metrics.compute()))
            metrics.reset()
        for name, value in with_hmean(values).items():
            self.log(f"test/{name}", value, add_dataloader_idx=False)

    # ---- scores ------------------------------------------------------------------------------
    def set_scores(self, set_name: str, computed: dict[str, Tensor]) -> dict[str, float]:
        """{acc, f1} for a lone test set; {base_acc, ..., new_f1} when there are several."""
        if len(self.test_sets) == 1:
            return {name: float(value) for name, value in computed.items()}
        return {f"{set_name}_{name}": float(value) for name, value in computed.items()}

    def best_validation_scores(self) -> dict[str, float]:
        """val/acc_best and val/f1_best over the epochs validated so far (empty if none were)."""
        return {f"val/{name}_best": float(best.compute()) for name, best in self.val_best.items() if best.update_called}

    @torch.no_grad()
    def evaluate(self, loaders: Iterable | Any, use_prompt: bool = True) -> dict[str, float]:
        """Scores outside the trainer, in eval mode, over one loader per test set (a lone loader for
        one set), e.g. zero-shot: {"acc", "f1"} or {"base_acc", "base_f1", "new_acc", "new_f1", "hmean"}."""
        loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
        was_training = self.training
        self.eval()
        scores: dict[str, float] = {}
        for set_name, loader in zip(self.test_sets, loaders):
            metrics = split_metrics(self.test_set_sizes[set_name], self.no_relation, self.head.abstains).to(self.device)
            for batch in loader:
                batch = {key: value.to(self.device) for key, value in batch.items()}
                logits = self.set_logits(batch, set_name, use_prompt=use_prompt)
                metrics.update(self.metric_inputs(logits), batch["labels"])
            scores.update(self.set_scores(set_name, metrics.compute()))
        self.train(was_training)
        return with_hmean(scores)

    # ---- optimisation ---------------------------------------------------------------------
    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def configure_optimizers(self) -> Any:
        return self.optimizers_for(lambda: int(self.trainer.estimated_stepping_batches))

    def optimizers_for(self, run_steps: Callable[[], int]) -> Any:
        """The optimizer (and its schedule) of this run; run_steps() gives the run's optimizer steps, asked
        only by a schedule taking total_steps=None (a packed run counts them itself, prompt_bench/packing)."""
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
        keywords = getattr(self.scheduler_factory, "keywords", {})  # a functools.partial's own keywords
        run_length = {"total_steps": run_steps()} if keywords.get("total_steps", 0) is None else {}
        scheduler = self.scheduler_factory(optimizer=optimizer, **run_length)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval}}

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip to the Trainer's gradient_clip_val when it sets one, else to method.gradient_clip_norm (L2 norm)."""
        if gradient_clip_val is None and self.gradient_clip_norm is not None:
            gradient_clip_val, gradient_clip_algorithm = self.gradient_clip_norm, "norm"
        self.clip_gradients(
            optimizer, gradient_clip_val=gradient_clip_val, gradient_clip_algorithm=gradient_clip_algorithm
        )

    # ---- checkpoints: trainable state only ---------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if not self.method.trains_backbone:
            checkpoint["state_dict"] = {
                key: value for key, value in checkpoint["state_dict"].items() if not key.startswith("backbone.")
            }
