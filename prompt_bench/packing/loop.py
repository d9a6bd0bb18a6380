"""The pack's training loop: every step one batch from each run still training, one backbone pass,
one backward of the summed losses, then each run's own clipping and optimizer step.

    L = Σ_k L_k(θ_k)   with disjoint θ_k (the frozen backbone has no gradient),
    so ∂L/∂θ_k = ∂L_k/∂θ_k: each run's gradient is the one it would get alone.

Failures stay with their run: a loss that is not finite drops its run before the backward; a step
that raises is retried run by run (forward only) to find the run at fault, which is dropped, and the
step is redone for the others with the same batches. A run that has done its epochs leaves at once,
tested (with the others that finish at that step, in shared passes) and recorded (`on_done`): runs of
different lengths share the pass while they all train.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from prompt_bench.backbones import BackboneAdapter
from prompt_bench.packing.evaluate import scores_or_errors
from prompt_bench.packing.forward import packed_outputs
from prompt_bench.packing.member import PackMember

Batch = dict[str, Tensor]


@dataclass
class PackStats:
    """What the pack did: steps, training samples, the seconds of its steps, the most runs in one step."""

    steps: int = 0
    samples: int = 0
    step_seconds: float = 0.0
    widest: int = 0

    @property
    def samples_per_s(self) -> float | None:
        return self.samples / self.step_seconds if self.step_seconds > 0 else None


def joint_losses(adapter: BackboneAdapter, members: list[PackMember], batches: list[Batch]) -> list[Tensor]:
    """Each run's training loss (CE + its method's extra terms) from one backbone pass."""
    with members[0].autocast():
        scopes = [member.own_rng for member in members]
        outputs = packed_outputs(adapter, [member.module for member in members], batches, scopes)
        losses = []
        for member, batch, output in zip(members, batches, outputs):
            with member.own_rng():
                losses.append(member.module.loss_from_output(batch, output)[1])
        return losses


def step(adapter: BackboneAdapter, members: list[PackMember], batches: list[Batch], stats: PackStats) -> list[int]:
    """One pack step; returns the indices of the runs whose loss was not finite (left unstepped)."""
    started = time.perf_counter()
    losses = joint_losses(adapter, members, batches)
    finite = torch.stack([loss.detach().float() for loss in losses]).isfinite().tolist()
    kept = [index for index, ok in enumerate(finite) if ok]
    for index in kept:
        members[index].optimizer.zero_grad()
    if kept:
        torch.stack([losses[index] for index in kept]).sum().backward()
    for index in kept:
        members[index].optimizer_step(losses[index], int(batches[index]["labels"].shape[0]))
    if adapter.input_embeddings.weight.is_cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    for index in kept:
        members[index].step_seconds += seconds
    stats.steps += 1
    stats.samples += sum(int(batches[index]["labels"].shape[0]) for index in kept)
    stats.step_seconds += seconds
    stats.widest = max(stats.widest, len(kept))
    for index, ok in enumerate(finite):
        if not ok:
            members[index].failure = members[index].divergence(losses[index])
    return [index for index, ok in enumerate(finite) if not ok]


def find_faulty(adapter: BackboneAdapter, members: list[PackMember], batches: list[Batch]) -> list[int]:
    """Indices of the runs whose forward raises on their own (their error kept on the member)."""
    faulty = []
    for index, (member, batch) in enumerate(zip(members, batches)):
        try:
            with torch.no_grad():
                joint_losses(adapter, [member], [batch])
        except Exception as error:  # noqa: BLE001 - whatever it is, it is this run's
            member.failure = error
            faulty.append(index)
    return faulty


def guarded_step(adapter: BackboneAdapter, members: list[PackMember], stats: PackStats) -> None:
    """`step`, and when it raises: drop the runs that fail alone and redo the step for the others."""
    batches = []
    for member in members:
        try:
            batches.append(member.next_batch())
        except Exception as error:  # noqa: BLE001 - a run whose data cannot be read
            member.failure = error
            batches.append(None)
    live = [index for index, batch in enumerate(batches) if batch is not None]
    members, batches = [members[i] for i in live], [batches[i] for i in live]
    if not members:
        return
    try:
        step(adapter, members, batches, stats)
    except Exception:
        faulty = set(find_faulty(adapter, members, batches))
        if not faulty:
            raise  # the pass itself fails (out of memory, a broken backbone): the pack's error
        rest = [index for index in range(len(members)) if index not in faulty]
        if rest:
            step(adapter, [members[i] for i in rest], [batches[i] for i in rest], stats)


def end_epochs(adapter: BackboneAdapter, members: list[PackMember]) -> None:
    """Epoch ends of the members whose epoch ended at this step, their dev scores from shared passes."""
    due = [member for member in members if member.validation_due()]
    scores = dict(zip(map(id, due), scores_or_errors(adapter, due, PackMember.val_loader)))
    for member in members:
        result = scores.get(id(member))
        if isinstance(result, BaseException):
            member.failure = result
            continue
        try:
            member.end_epoch(result)
        except Exception as error:  # noqa: BLE001 - a failing checkpoint ends this run only
            member.failure = error


def test_finished(
    adapter: BackboneAdapter,
    members: list[PackMember],
    on_done: Callable[[PackMember, dict[str, float]], None],
    on_failed: Callable[[PackMember, BaseException], None],
) -> None:
    """Test the members that have done their epochs, from shared passes, then hand each to on_done."""
    ready = []
    for member in members:
        try:
            member.load_tested_state()
            ready.append(member)
        except Exception as error:  # noqa: BLE001
            on_failed(member, error)
    for member, result in zip(ready, scores_or_errors(adapter, ready, PackMember.test_loader)):
        if isinstance(result, BaseException):
            on_failed(member, result)
        else:
            on_done(member, result)


def train_pack(
    adapter: BackboneAdapter,
    members: list[PackMember],
    on_done: Callable[[PackMember, dict[str, float]], None],
    on_failed: Callable[[PackMember, BaseException], None],
    stats: PackStats | None = None,
) -> PackStats:
    """Train `members` together until each has done its epochs (then tested: on_done(member, test
    scores)) or failed (on_failed). Dev and test scores of members that reach them at the same step
    come from shared passes too. An error of the pass itself (not one run's: out of memory, a broken
    backbone) fails every run still training.
    """
    stats = stats if stats is not None else PackStats()
    active = [member for member in members if member.training]
    test_finished(adapter, [member for member in members if not member.training], on_done, on_failed)
    while active:
        try:
            guarded_step(adapter, active, stats)
        except Exception as error:  # noqa: BLE001 - recorded as every remaining run's error
            for member in active:
                on_failed(member, error)
            return stats
        end_epochs(adapter, [member for member in active if member.failure is None and member.epoch_done()])
        for member in [member for member in active if member.failure is not None]:
            active.remove(member)
            on_failed(member, member.failure)
        for member in active:
            if member.steps_done:  # trainer.max_steps reached mid-epoch: training ends without an epoch end
                member.training = False
        finished = [member for member in active if not member.training]
        active = [member for member in active if member.training]
        test_finished(adapter, finished, on_done, on_failed)
    return stats
