"""Learning-rate schedules: Dassl's warm-up cosine (per epoch) and the Hugging Face Trainer's linear decay
(per optimizer step)."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from prompt_bench.errors import ConfigError


def linear_decay(optimizer: torch.optim.Optimizer, total_steps: int | None, warmup_steps: int = 0) -> LambdaLR:
    """The Hugging Face Trainer's default schedule (`get_linear_schedule_with_warmup`), per optimizer step t:
    lr_t = base_lr · t / W for t < W, else base_lr · max(0, (T − t) / max(1, T − W)),
    with T = total_steps (the run's optimizer steps, filled in by the Lightning module when None) and
    W = warmup_steps (0 by default, as the Trainer's `warmup_steps`). Step once per optimizer step.
    """
    if total_steps is None or total_steps < 1:
        raise ConfigError(f"method.scheduler.total_steps must be >= 1 (the run's optimizer steps), got {total_steps}.")

    def at_step(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return LambdaLR(optimizer, at_step)


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    max_epochs: int,
    warmup_epochs: int = 1,
    warmup_lr: float = 1e-5,
    warmup_recount: bool = True,
) -> LambdaLR:
    """Dassl's cosine with a constant warm-up (the CoOp family's official schedule), per epoch e:

        lr_e = warmup_lr                                          for e < warmup_epochs
        lr_e = base_lr · ½(1 + cos(π·(e − warmup_epochs) / E))    for e ≥ warmup_epochs (warmup_recount=True)

    With Dassl's default ``WARMUP_RECOUNT=True`` the cosine restarts after the warm-up, so the first epoch
    after it runs at the full rate (Dassl.pytorch dassl/optim/lr_scheduler.py:27-32, 133-135).
    ``warmup_recount=False`` counts the cosine from epoch 0 through the warm-up, ``cos(π·e / E)``: the
    project's schedule before it was corrected, 18% less summed rate over 10 epochs.
    Every parameter group keeps its own base rate (DePT's CAT head runs at 6.5× the prompt's).
    """
    offset = warmup_epochs if warmup_recount else 0

    def factor(base_lr: float):
        def at_epoch(epoch: int) -> float:
            if epoch < warmup_epochs:
                return warmup_lr / base_lr
            return 0.5 * (1.0 + math.cos(math.pi * (epoch - offset) / max(1, max_epochs)))

        return at_epoch

    return LambdaLR(optimizer, [factor(group["lr"]) for group in optimizer.param_groups])
