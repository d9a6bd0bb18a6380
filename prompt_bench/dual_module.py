"""The LightningModule of the dual-encoder path: a CoOp-family learner (+ DePT) on frozen towers.

Per batch: f = input tower (B, D); T = text tower over [SOS] context <name>. [EOS] (C, D), or
(B, C, D) when the context depends on the input (CoCoOp); z_itm = exp(s)·cos(f, T) (B, C).
Training uses the training classes; each test loader is scored over its own class set (base,
new), and base-to-new runs also log H = 2·base·new / (base + new).

Logged: train/loss and its terms, train/acc, val/acc, val/f1, val/acc_best, val/f1_best,
test/acc + test/f1 (one class set) or test/{base,new}_{acc,f1} + test/hmean (base-to-new).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from prompt_bench.backbones.dual_encoder import DualEncoderAdapter, cosine_logits
from prompt_bench.base_to_new import harmonic_mean
from prompt_bench.methods.coop import ClassPromptMethod
from prompt_bench.module import split_metrics

CLASS_TEXT_LENGTH = 77  # CLIP's context length; class names are short


class DualEncoderModule(pl.LightningModule):
    """Trains `method` on `backbone` over `class_names["train"]`; scores every set in `test_sets`.

    class_names: set name -> class names ("train" is the training classes; "base", "new" or "all"
    the test sets, a set equal to the training classes being scored with DePT's fusion).
    """

    def __init__(
        self,
        backbone: DualEncoderAdapter,
        method: ClassPromptMethod,
        class_names: dict[str, tuple[str, ...]],
        test_sets: tuple[str, ...],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        primary_metric: str = "acc",
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.method = method
        self.class_names = class_names
        self.test_sets = test_sets
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.primary_metric = primary_metric
        for set_name, names in class_names.items():
            ids, mask = backbone.tokenize([f"{name}." for name in names], CLASS_TEXT_LENGTH)
            self.register_buffer(f"class_ids_{set_name}", ids, persistent=False)
            self.register_buffer(f"class_mask_{set_name}", mask, persistent=False)
        self.num_classes = len(class_names["train"])
        self.val_metrics = split_metrics(self.num_classes).clone(prefix="val/")
        self.test_metrics = torch.nn.ModuleList(split_metrics(len(class_names[name])) for name in test_sets)
        self.train_accuracy = split_metrics(self.num_classes)["acc"].clone()
        self.val_best = {"acc": 0.0, "f1": 0.0}
        self._val_seen = False
        self._template_features: dict[str, Tensor] = {}
        self.strict_loading = False

    # ---- forward -----------------------------------------------------------------------------
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
        per_class = context.unsqueeze(1).expand(-1, n_classes, -1, -1).reshape(batch_size * n_classes, *context.shape[1:])
        class_features = self.backbone.class_features(ids.repeat(batch_size, 1), mask.repeat(batch_size, 1), per_class)
        return input_features, class_features.view(batch_size, n_classes, -1)

    def forward(self, batch: dict[str, Tensor], class_set: str = "train", use_prompt: bool = True) -> Tensor:
        """(B, C) scores over `class_set`: the method's (fused for DePT on its trained classes), or
        zero-shot z_itm with the hand-crafted template (use_prompt=False)."""
        scale = self.backbone.logit_scale()
        if not use_prompt:
            return cosine_logits(self.input_features(batch), self.template_features(class_set), scale)
        input_features, class_features = self.features(batch, class_set)
        itm_logits = cosine_logits(input_features, class_features, scale)
        trained = self.class_names[class_set] == self.class_names["train"]
        return self.method.scores(itm_logits, input_features, training_classes=trained)

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

    # ---- steps ---------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        labels = batch["labels"]
        input_features, class_features = self.features(batch, "train")
        itm_logits = cosine_logits(input_features, class_features, self.backbone.logit_scale())
        terms = self.method.loss(itm_logits, labels, input_features, class_features)
        loss = sum(terms.values())
        self.log("train/loss", loss, prog_bar=True, batch_size=labels.shape[0])
        for name, value in terms.items():
            self.log(f"train/{name}", value, batch_size=labels.shape[0])
        self.train_accuracy.update(itm_logits.detach(), labels)
        return loss

    def on_train_epoch_end(self) -> None:
        self.log("train/acc", self.train_accuracy.compute())
        self.train_accuracy.reset()

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.val_metrics.update(self(batch, "train"), batch["labels"])

    def on_validation_epoch_end(self) -> None:
        values = self.val_metrics.compute()
        self.val_metrics.reset()
        self.log_dict(values, prog_bar=True)
        self._val_seen = True
        for name in self.val_best:
            self.val_best[name] = max(self.val_best[name], float(values[f"val/{name}"]))
            self.log(f"val/{name}_best", self.val_best[name])

    def test_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self.test_metrics[dataloader_idx].update(self(batch, self.test_sets[dataloader_idx]), batch["labels"])

    def on_test_epoch_end(self) -> None:
        values = {}
        for set_name, metrics in zip(self.test_sets, self.test_metrics):
            values.update(self.set_scores(set_name, metrics.compute()))
            metrics.reset()
        for name, value in with_hmean(values).items():
            self.log(f"test/{name}", value, add_dataloader_idx=False)

    def set_scores(self, set_name: str, computed: dict[str, Tensor]) -> dict[str, float]:
        """{acc, f1} for a lone class set; {base_acc, ..., new_f1, hmean} for base-to-new."""
        if len(self.test_sets) == 1:
            return {name: float(value) for name, value in computed.items()}
        return {f"{set_name}_{name}": float(value) for name, value in computed.items()}

    def best_validation_scores(self) -> dict[str, float]:
        return {f"val/{name}_best": value for name, value in self.val_best.items()} if self._val_seen else {}

    @torch.no_grad()
    def evaluate(self, loaders: Iterable | Any, use_prompt: bool = True) -> dict[str, float]:
        """Scores outside the trainer over the test loaders (one per test set), e.g. zero-shot:
        {"acc", "f1"} or {"base_acc", "base_f1", "new_acc", "new_f1", "hmean"}."""
        loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
        was_training = self.training
        self.eval()
        scores: dict[str, float] = {}
        for set_name, loader in zip(self.test_sets, loaders):
            metrics = split_metrics(len(self.class_names[set_name])).to(self.device)
            for batch in loader:
                batch = {key: value.to(self.device) for key, value in batch.items()}
                metrics.update(self(batch, set_name, use_prompt=use_prompt), batch["labels"])
            scores.update(self.set_scores(set_name, metrics.compute()))
        self.train(was_training)
        return with_hmean(scores)

    # ---- optimisation ------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        base_lr = self.optimizer_factory.keywords["lr"]
        optimizer = self.optimizer_factory(params=self.method.param_groups(base_lr))
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer=optimizer), "interval": "epoch"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("backbone.")}


def with_hmean(scores: dict[str, float]) -> dict[str, float]:
    """Adds hmean = H(base_acc, new_acc) when both are there."""
    if "base_acc" in scores and "new_acc" in scores:
        scores["hmean"] = harmonic_mean(scores["base_acc"], scores["new_acc"])
    return scores
