"""Metrics for a head whose prediction can name no class (head=generate: a generated text that is no
label text). Its (N, C) scores mark such a row by having no finite entry; `predicted_ids` maps it to
the extra id C, and the metrics below count it wrong:

- acc: exact match, correct / N (T5's accuracy after `string_label_to_class_id(default=-1)`);
- f1: macro-F1 over the C classes, an invalid prediction a false negative of its gold class and a
  false positive of none (sklearn's f1 with labels = range(C), as T5's `mean_multiclass_f1`);
  classes with no true positive, false positive or false negative are left out of the mean, as
  torchmetrics' macro average does, so with no invalid prediction it equals `MulticlassF1Score`;
- invalid_rate: the share of invalid predictions.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy


def predicted_ids(scores: Tensor) -> Tensor:
    """(N, C) scores -> (N,) argmax class ids, C for a row without a finite entry (no class)."""
    ids = scores.argmax(dim=-1)
    return ids.masked_fill(~torch.isfinite(scores).any(dim=-1), scores.shape[-1])


class MacroF1WithInvalid(Metric):
    """update(ids (N,) in 0..C, labels (N,)); compute() -> macro-F1 over the C classes (module docstring)."""

    full_state_update = False

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        for name in ("tp", "fp", "fn"):
            self.add_state(name, default=torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, ids: Tensor, labels: Tensor) -> None:
        predicted = F.one_hot(ids, self.num_classes + 1)[:, : self.num_classes].bool()
        gold = F.one_hot(labels, self.num_classes).bool()
        self.tp += (predicted & gold).sum(0)
        self.fp += (predicted & ~gold).sum(0)
        self.fn += (~predicted & gold).sum(0)

    def compute(self) -> Tensor:
        denominator = (2 * self.tp + self.fp + self.fn).float()
        f1 = torch.where(denominator > 0, 2 * self.tp.float() / denominator.clamp_min(1), 0.0)
        present = denominator > 0
        return f1[present].mean() if bool(present.any()) else torch.zeros(())


class InvalidRate(Metric):
    """update(ids (N,) in 0..C, labels (N,)); compute() -> the share of ids equal to C (no class)."""

    full_state_update = False

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.add_state("invalid", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, ids: Tensor, labels: Tensor) -> None:
        self.invalid += (ids == self.num_classes).sum()
        self.total += ids.numel()

    def compute(self) -> Tensor:
        return self.invalid.float() / self.total.clamp_min(1)


def exact_match_metrics(num_classes: int) -> dict[str, Metric]:
    """{acc, f1, invalid_rate} over ids from `predicted_ids` (C + 1 ids: the C classes and no class)."""
    return {
        "acc": MulticlassAccuracy(num_classes=num_classes + 1, average="micro"),
        "f1": MacroF1WithInvalid(num_classes),
        "invalid_rate": InvalidRate(num_classes),
    }
