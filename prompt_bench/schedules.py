"""Learning-rate schedules stepped once per epoch."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine(
    optimizer: torch.optim.Optimizer, max_epochs: int, warmup_epochs: int = 1, warmup_lr: float = 1e-5
) -> LambdaLR:
    """Dassl's cosine with a constant warm-up (the CoOp family's official schedule), per epoch:
    lr_e = warmup_lr for e < warmup_epochs, else base_lr · ½(1 + cos(π·e / max_epochs)).

    As in Dassl, the cosine counts epochs from 0, so it resumes at e = warmup_epochs, not at its top.
    Every parameter group keeps its own base rate (DePT's CAT head runs at 6.5× the prompt's).
    """

    def factor(base_lr: float):
        def at_epoch(epoch: int) -> float:
            if epoch < warmup_epochs:
                return warmup_lr / base_lr
            return 0.5 * (1.0 + math.cos(math.pi * epoch / max(1, max_epochs)))

        return at_epoch

    return LambdaLR(optimizer, [factor(group["lr"]) for group in optimizer.param_groups])
