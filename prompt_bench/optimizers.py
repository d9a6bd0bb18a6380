"""Adafactor as t5x implements it, with the settings of the prompt-tuning gin files (Lester et al., 2021).

transformers' `Adafactor` (kept as `method/optimizer=adafactor_hf`) differs from it in three ways that move
numbers: it factors every matrix, it decays weights by lr·wd, and its step count starts at 1 for every run.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor


class T5XAdafactor(torch.optim.Optimizer):
    """Adafactor without momentum and without parameter scaling (t5x/adafactor.py, `apply_param_gradient`).

    For a parameter p with gradient g at its k-th update (k = 0, 1, ...), with s = initial_step + k:

        β₂ = 1 − (s + 1)^(−decay_rate)                  second-moment decay (t5x `_decay_rate_pow`)
        G  = g² + eps1
        factored (the two largest dims both >= min_dim_size_to_factor; rows = the smaller of the two):
            R ← β₂·R + (1 − β₂)·mean_cols(G),  C ← β₂·C + (1 − β₂)·mean_rows(G)
            y = g / sqrt(R / mean(R)) / sqrt(C)
        else:
            V ← β₂·V + (1 − β₂)·G,  y = g / sqrt(V)
        y ← y / max(1, RMS(y) / clipping_threshold)     update clipping over the whole tensor
        p ← (1 − weight_decay_rate)·p − lr·y             decay not multiplied by lr (t5x `weight_decay_rate`)

    There is no bias correction: a run that starts at a large `initial_step` (t5x keeps counting from the
    checkpoint's step, 1_100_000 for the T5 1.1 LM-adapted models) begins with β₂ ≈ 1, so V starts tiny,
    y is large and the clipping makes every early update an RMS-1 step of size lr.

    Args:
        params: parameters or parameter groups (a group may set its own `lr`).
        lr: the absolute step size (0.3 in the prompt-tuning gin; no relative step).
        decay_rate: the exponent of the β₂ schedule (0.8).
        initial_step: the step count of the first update (t5x: the restored checkpoint's step).
        clipping_threshold: the RMS bound of an update before lr; None turns clipping off.
        weight_decay_rate: p is multiplied by (1 − rate) at every update; None or 0 turns it off.
        min_dim_size_to_factor: factor the second moment only if two dims are at least this large.
        eps1: added to g² before it enters the moments.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.3,
        decay_rate: float = 0.8,
        initial_step: int = 0,
        clipping_threshold: float | None = 1.0,
        weight_decay_rate: float | None = 1.0e-5,
        min_dim_size_to_factor: int = 128,
        eps1: float = 1.0e-30,
    ) -> None:
        if lr <= 0:
            raise ValueError(f"T5XAdafactor lr must be positive, got {lr}.")
        if initial_step < 0:
            raise ValueError(f"T5XAdafactor initial_step must be >= 0, got {initial_step}.")
        if clipping_threshold is not None and clipping_threshold <= 0:
            raise ValueError(f"T5XAdafactor clipping_threshold must be positive or null, got {clipping_threshold}.")
        if weight_decay_rate is not None and not 0.0 <= weight_decay_rate < 1.0:
            raise ValueError(f"T5XAdafactor weight_decay_rate must be in [0, 1) or null, got {weight_decay_rate}.")
        defaults = {
            "lr": lr,
            "decay_rate": decay_rate,
            "initial_step": initial_step,
            "clipping_threshold": clipping_threshold,
            "weight_decay_rate": weight_decay_rate,
            "min_dim_size_to_factor": min_dim_size_to_factor,
            "eps1": eps1,
        }
        super().__init__(params, defaults)

    @staticmethod
    def factored_dims(shape: torch.Size | tuple[int, ...], min_dim_size_to_factor: int) -> tuple[int, int] | None:
        """(row dim, column dim) of the factored estimate, or None: t5x `_factored_dims` sorts the dims by size
        (ties keep their order) and factors only if the second largest is >= min_dim_size_to_factor."""
        if len(shape) < 2:
            return None
        by_size = sorted(range(len(shape)), key=lambda dim: shape[dim])
        row_dim, col_dim = by_size[-2], by_size[-1]
        if shape[row_dim] < min_dim_size_to_factor:
            return None
        return row_dim, col_dim

    @staticmethod
    def beta2(step: int, decay_rate: float) -> float:
        """β₂ of the update made at step count `step` (t5x: 1 − (step + 1)^(−decay_rate))."""
        return 1.0 - (step + 1.0) ** (-decay_rate)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                if param.grad.is_sparse:
                    raise RuntimeError("T5XAdafactor does not support sparse gradients.")
                self._update(param, group)
        return loss

    def _update(self, param: Tensor, group: dict[str, Any]) -> None:
        grad = param.grad.float()
        state = self.state[param]
        dims = self.factored_dims(param.shape, group["min_dim_size_to_factor"])
        if not state:
            state["step"] = int(group["initial_step"])
            if dims is None:
                state["v"] = torch.zeros_like(grad)
            else:
                row_dim, col_dim = dims
                state["v_row"] = torch.zeros_like(grad).mean(dim=col_dim)
                state["v_col"] = torch.zeros_like(grad).mean(dim=row_dim)
        beta2 = self.beta2(state["step"], group["decay_rate"])
        grad_sqr = grad * grad + group["eps1"]
        if dims is None:
            state["v"].mul_(beta2).add_(grad_sqr, alpha=1.0 - beta2)
            update = grad * state["v"].rsqrt()
        else:
            row_dim, col_dim = dims
            state["v_row"].mul_(beta2).add_(grad_sqr.mean(dim=col_dim), alpha=1.0 - beta2)
            state["v_col"].mul_(beta2).add_(grad_sqr.mean(dim=row_dim), alpha=1.0 - beta2)
            row_dim_in_v_row = row_dim - (1 if col_dim < row_dim else 0)
            row_factor = (state["v_row"] / state["v_row"].mean(dim=row_dim_in_v_row, keepdim=True)).rsqrt()
            col_factor = state["v_col"].rsqrt()
            update = grad * row_factor.unsqueeze(col_dim) * col_factor.unsqueeze(row_dim)
        if group["clipping_threshold"] is not None:
            rms = update.pow(2).mean().sqrt()
            update.div_(torch.clamp(rms / group["clipping_threshold"], min=1.0))
        new_param = param.float()
        if group["weight_decay_rate"]:
            new_param = new_param * (1.0 - group["weight_decay_rate"])
        new_param = new_param - group["lr"] * update
        param.copy_(new_param.to(param.dtype))
        state["step"] += 1
