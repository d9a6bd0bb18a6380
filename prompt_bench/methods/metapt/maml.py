"""MetaPT step 3: Prompt-MAML (and Reptile) over auxiliary tasks; PPT's multi-task baseline.

Only the meta-parameters are learned: the soft prompt P (n, d) and the head's parameters if the
head has any, held in a dict `params: dict[str, Tensor]`. The frozen backbone lives inside the
model function `loss_fn(params, batch) -> scalar loss`, e.g. a closure calling
`torch.func.functional_call(backbone, frozen_state, ...)` with the prompt prepended. Gradients are
taken with `torch.autograd.grad` with respect to `params` only, so a frozen weight never gets a
`.grad` and is never updated, whatever its `requires_grad`.

Per task T_i of a meta-batch (episode: support S_i, query Q_i, m examples each), with inner
learning rate α, `inner_steps` = k and outer learning rate β:

    inner   P_i^(0) = P,   P_i^(t+1) = P_i^(t) − α ∇ L_{S_i}(P_i^(t)),   P_i' = P_i^(k)
    maml    second order: g_i = ∇_P L_{Q_i}(P_i')     through the inner steps (Hessian-vector
                                                       products, create_graph=True)
            first order:  g_i = (∇ L_{Q_i})(P_i')     FOMAML: the inner steps held constant
    reptile g_i = P − P_i'                             Nichol et al. 2018: P ← P + β (P_i' − P)
    outer   P ← P − β · reduce_i g_i                  reduce: mean, or sum as MAML writes it

The MetaPT paper (Huang, Qian, Yu 2022) describes "Prompt-MAML" as the MAML update above with
P as the only meta-learned parameter [summary]; it has no public code, and the order, inner
steps, α, β, m, tasks per step and the number of meta-steps are [not found]. Everything in
`PromptMAMLConfig` is therefore RECONSTRUCTED except where marked; the Reptile variant is an
addition, not part of MetaPT.

PPT baseline (Gu et al., ACL 2022): no inner loop, the prompt is trained on the same tasks with
the plain multi-task loss L(P) = mean_i L_{T_i}(P) (`multitask_loss`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from prompt_bench.methods.metapt.tasks import AuxiliaryTask, Episode, Example, as_generator, sample_episodes

Params = dict[str, Tensor]
LossFn = Callable[[Mapping[str, Tensor], Any], Tensor]
Collate = Callable[[Sequence[Example], AuxiliaryTask], Any]

ALGORITHMS = ("maml", "reptile")
ORDERS = ("first", "second")
REDUCTIONS = ("mean", "sum")
OUTER_OPTIMIZERS = ("adafactor", "adam", "sgd")


@dataclass
class PromptMAMLConfig:
    """Prompt-MAML settings. All values are reconstructed defaults ([not found] in MetaPT)."""

    algorithm: str = "maml"  # "maml" (MetaPT) or "reptile" (an alternative, not in the paper)
    # "second": the full MAML gradient through the inner steps, as the paper's update is written;
    # "first": FOMAML (no Hessian-vector products: about half the memory; use it on CPU).
    order: str = "second"
    inner_steps: int = 1  # k SGD steps on the support set (MAML's few-shot default is 1-5)
    # α, plain SGD on the prompt. PPT prompt-tunes with lr 0.05 (CB) / 0.1 (pre-training).
    inner_lr: float = 0.1
    outer_lr: float = 0.3  # β; with outer_optimizer=adafactor: Lester et al.'s prompt lr 0.3
    # The outer optimizer the training loop should build (build_outer_optimizer). METHODS.md
    # suggests Adafactor, as Lester's prompt tuning: relative_step=False, scale_parameter=False.
    outer_optimizer: str = "adafactor"
    tasks_per_step: int = 4  # tasks per meta-batch
    m: int = 16  # support and query size per task; METHODS.md suggests 16-32
    meta_steps: int = 1000  # outer updates
    # How the per-task meta-gradients combine: "mean" keeps β independent of tasks_per_step (as
    # the reference MAML code averages); "sum" is Σ_i as the update is usually written.
    task_reduction: str = "mean"
    # Reptile only: after the k support steps, take k more on the query batch (Reptile has no
    # support/query split; True uses all 2m examples). False: the query set is only evaluated.
    reptile_query: bool = False

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm {self.algorithm!r} is not one of {ALGORITHMS}")
        if self.order not in ORDERS:
            raise ValueError(f"order {self.order!r} is not one of {ORDERS} (MAML: second)")
        if self.inner_steps < 1:
            raise ValueError(f"inner_steps must be >= 1, got {self.inner_steps}")
        if self.inner_lr <= 0 or self.outer_lr <= 0:
            raise ValueError(f"inner_lr and outer_lr must be positive, got {self.inner_lr} and {self.outer_lr}")
        if self.outer_optimizer not in OUTER_OPTIMIZERS:
            raise ValueError(f"outer_optimizer {self.outer_optimizer!r} is not one of {OUTER_OPTIMIZERS}")
        if self.tasks_per_step < 1 or self.m < 1 or self.meta_steps < 0:
            raise ValueError(
                f"tasks_per_step and m must be >= 1 and meta_steps >= 0, got "
                f"{self.tasks_per_step}, {self.m}, {self.meta_steps}"
            )
        if self.task_reduction not in REDUCTIONS:
            raise ValueError(f"task_reduction {self.task_reduction!r} is not one of {REDUCTIONS}")


def _leaves(params: Mapping[str, Tensor]) -> Params:
    """Fresh leaf copies that require grad, sharing storage with `params` (never written)."""
    return {name: value.detach().requires_grad_(True) for name, value in params.items()}


def _grads(loss: Tensor, params: Params, create_graph: bool) -> Params:
    """∂loss/∂params as a dict; a parameter the loss does not use gets zeros."""
    if loss.dim() != 0:
        raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
    values = list(params.values())
    grads = torch.autograd.grad(loss, values, create_graph=create_graph, allow_unused=True)
    return {
        name: torch.zeros_like(value) if grad is None else grad
        for (name, value), grad in zip(params.items(), grads, strict=True)
    }


def inner_loop(
    params: Mapping[str, Tensor],
    batches: Sequence[Any],
    loss_fn: LossFn,
    steps: int,
    lr: float,
    create_graph: bool,
) -> Params:
    """`steps` SGD steps of each batch in turn: P ← P − lr ∇ loss_fn(P, batch).

    With create_graph the result stays a differentiable function of `params` (second order);
    without, every step starts from detached leaves (first order, Reptile), and `params` must
    require grad only in the second-order case.
    """
    current: Params = dict(params) if create_graph else _leaves(params)
    for batch in batches:
        for _ in range(steps):
            grads = _grads(loss_fn(current, batch), current, create_graph)
            current = {name: value - lr * grads[name] for name, value in current.items()}
            if not create_graph:
                current = _leaves(current)
    return current


def task_meta_gradient(
    params: Mapping[str, Tensor],
    support: Any,
    query: Any,
    loss_fn: LossFn,
    config: PromptMAMLConfig,
) -> tuple[Params, float]:
    """One task's meta-gradient g_i (module docstring) and its query loss after adaptation."""
    if config.algorithm == "reptile":
        batches = [support, query] if config.reptile_query else [support]
        adapted = inner_loop(params, batches, loss_fn, config.inner_steps, config.inner_lr, False)
        with torch.no_grad():
            query_loss = float(loss_fn(adapted, query))
        return {name: params[name].detach() - adapted[name].detach() for name in params}, query_loss
    if config.order == "second":
        leaves = _leaves(params)
        adapted = inner_loop(leaves, [support], loss_fn, config.inner_steps, config.inner_lr, True)
        loss = loss_fn(adapted, query)
        grads = _grads(loss, leaves, create_graph=False)
    else:
        adapted = inner_loop(params, [support], loss_fn, config.inner_steps, config.inner_lr, False)
        loss = loss_fn(adapted, query)
        grads = _grads(loss, adapted, create_graph=False)
    return {name: grad.detach() for name, grad in grads.items()}, float(loss.detach())


def meta_step(
    params: Mapping[str, Tensor],
    tasks_batch: Sequence[tuple[Any, Any]],
    loss_fn: LossFn,
    config: PromptMAMLConfig,
    stats: dict[str, Any] | None = None,
) -> Params:
    """The meta-gradient of one meta-batch; `params` are read, not changed.

    Args:
        params: the meta-parameters {name: tensor} (prompt, head).
        tasks_batch: one (support_batch, query_batch) per task, batches as `loss_fn` takes them.
        loss_fn: loss_fn(params, batch) -> scalar tensor, differentiable in params.
        config: algorithm, order, inner steps and lr, task reduction.
        stats: if given, receives "query_loss" (mean over tasks, after adaptation) and
            "query_losses" (per task).

    Returns:
        {name: meta-gradient} with each parameter's shape; apply it with `outer_update`.
    """
    if not tasks_batch:
        raise ValueError("meta_step needs at least one (support, query) pair")
    total: Params = {}
    losses = []
    for support, query in tasks_batch:
        grads, query_loss = task_meta_gradient(params, support, query, loss_fn, config)
        losses.append(query_loss)
        for name, grad in grads.items():
            total[name] = grad if name not in total else total[name] + grad
    if config.task_reduction == "mean":
        total = {name: grad / len(tasks_batch) for name, grad in total.items()}
    if stats is not None:
        stats["query_losses"] = losses
        stats["query_loss"] = sum(losses) / len(losses)
    return total


@torch.no_grad()
def outer_update(
    params: Mapping[str, Tensor],
    meta_grads: Mapping[str, Tensor],
    outer_lr: float | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> None:
    """Apply meta-gradients in place: SGD P ← P − outer_lr · g, or optimizer.step() with .grad = g.

    With an optimizer, `params` must be the tensors it holds (e.g. nn.Parameters); their .grad is
    overwritten with the meta-gradient before the step.
    """
    if (outer_lr is None) == (optimizer is None):
        raise ValueError("pass exactly one of outer_lr (plain SGD) or optimizer")
    missing = sorted(set(params) - set(meta_grads))
    if missing:
        raise ValueError(f"no meta-gradient for parameters {missing}")
    if optimizer is None:
        for name, value in params.items():
            value.sub_(outer_lr * meta_grads[name].to(value.dtype))
        return
    for name, value in params.items():
        value.grad = meta_grads[name].to(value.dtype).clone()
    optimizer.step()


def build_outer_optimizer(parameters: Iterable[Tensor], config: PromptMAMLConfig) -> torch.optim.Optimizer:
    """The outer optimizer named by config.outer_optimizer, at lr config.outer_lr.

    adafactor: transformers' Adafactor as in Lester et al. prompt tuning (relative_step=False,
    scale_parameter=False, warmup_init=False); adam: torch Adam; sgd: torch SGD (what
    outer_update(outer_lr=...) does by hand).
    """
    parameters = list(parameters)
    if config.outer_optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=config.outer_lr)
    if config.outer_optimizer == "adam":
        return torch.optim.Adam(parameters, lr=config.outer_lr)
    from transformers.optimization import Adafactor

    return Adafactor(
        parameters,
        lr=config.outer_lr,
        relative_step=False,
        scale_parameter=False,
        warmup_init=False,
    )


def multitask_loss(
    params: Mapping[str, Tensor],
    task_batches: Sequence[Any],
    loss_fn: LossFn,
    reduction: str = "mean",
) -> Tensor:
    """PPT baseline: the multi-task loss, mean (or sum) over tasks of loss_fn(params, batch_i)."""
    if not task_batches:
        raise ValueError("multitask_loss needs at least one task batch")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction {reduction!r} is not one of {REDUCTIONS}")
    total = sum(loss_fn(params, batch) for batch in task_batches)
    return total / len(task_batches) if reduction == "mean" else total


def step_gradients(
    params: Mapping[str, Tensor],
    tasks_batch: Sequence[tuple[Any, Any]],
    loss_fn: LossFn,
    config: PromptMAMLConfig,
    baseline: bool,
    stats: dict[str, Any],
) -> Params:
    """One outer step's gradient: `meta_step` (MetaPT), or with baseline=True PPT's gradient of
    `multitask_loss` over every support and query batch as training batches (stats["loss"])."""
    if not baseline:
        return meta_step(params, tasks_batch, loss_fn, config, stats)
    leaves = _leaves(params)
    flat = [batch for pair in tasks_batch for batch in pair]
    loss = multitask_loss(leaves, flat, loss_fn, config.task_reduction)
    grads = _grads(loss, leaves, create_graph=False)
    stats["loss"] = float(loss.detach())
    return grads


def meta_train(
    params: Mapping[str, Tensor],
    tasks: Sequence[AuxiliaryTask],
    loss_fn: LossFn,
    collate: Collate,
    config: PromptMAMLConfig,
    generator: torch.Generator | int = 0,
    optimizer: torch.optim.Optimizer | None = None,
    baseline: bool = False,
    on_step: Callable[[int, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run `config.meta_steps` outer updates of `params` in place; returns one stats dict per step.

    Each step draws `tasks_per_step` tasks and one disjoint m/m episode per task (generator),
    collates support and query into batches with `collate(examples, task)`, and applies the
    meta-gradient (SGD at outer_lr, or `optimizer`). With baseline=True it is PPT instead: the
    same episodes, support and query both as training batches, gradient of `multitask_loss`.
    This loop is the framework-free reference; the artefact maker runs the same steps as a
    Lightning fit (fit.py: MetaFit), which adds checkpoints and resume.
    """
    small = [task.name for task in tasks if len(task) < 2 * config.m]
    if small:
        raise ValueError(
            f"tasks {small} have fewer than 2m = {2 * config.m} examples, too few for a disjoint "
            f"support and query set; filter them with usable_tasks(tasks, m) or lower m"
        )
    generator = as_generator(generator)  # one stream for every step (an int must not re-seed each step)
    history = []
    for step in range(config.meta_steps):
        episodes: list[Episode] = sample_episodes(tasks, config.tasks_per_step, config.m, generator)
        batches = [
            (collate(episode.support, episode.task), collate(episode.query, episode.task)) for episode in episodes
        ]
        stats: dict[str, Any] = {"step": step, "tasks": [episode.task.name for episode in episodes]}
        grads = step_gradients(params, batches, loss_fn, config, baseline, stats)
        if optimizer is None:
            outer_update(params, grads, outer_lr=config.outer_lr)
        else:
            outer_update(params, grads, optimizer=optimizer)
        if on_step is not None:
            on_step(step, stats)
        history.append(stats)
    return history
