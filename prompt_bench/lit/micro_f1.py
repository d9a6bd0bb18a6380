"""Micro-F1 over relations without the no-relation class, as a torchmetrics Metric.

The official f1_score (BayesPrompt / KnowPrompt lit_models/util.py:100-154; model-free twin:
methods/bayesprompt/relation.py `micro_f1`): a prediction is a guess unless it is no-relation, a
gold label counts unless it is no-relation, a guess is correct when it equals its gold label.

    P = correct / guessed,  R = correct / gold,  F1 = 2PR / (P + R)   (0 when nothing is correct)
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class MicroF1NoRelation(Metric):
    """update(logits (N, C) or class ids (N,), labels (N,)); compute() -> F1 (scalar)."""

    full_state_update = False

    def __init__(self, no_relation: int) -> None:
        super().__init__()
        self.no_relation = int(no_relation)
        for name in ("correct", "guessed", "gold"):
            self.add_state(name, default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, predictions: Tensor, labels: Tensor) -> None:
        if predictions.ndim == 2:
            predictions = predictions.argmax(dim=-1)
        guessed = predictions != self.no_relation
        gold = labels != self.no_relation
        self.correct += (guessed & gold & (predictions == labels)).sum()
        self.guessed += guessed.sum()
        self.gold += gold.sum()

    def compute(self) -> Tensor:
        if int(self.correct) == 0:
            return torch.zeros((), dtype=torch.float32)
        precision = self.correct.float() / self.guessed.float()
        recall = self.correct.float() / self.gold.float()
        return 2 * precision * recall / (precision + recall)
