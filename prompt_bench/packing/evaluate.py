"""Dev and test scores of several runs of a pack from shared backbone passes (forward only).

Each run brings its own loader (its dev split, or the test split with its own prompt); every pass
stacks the next batch of each run that still has one (`forward.packed_logits`) and updates that
run's own metrics (`lit.base.split_metrics`, as `PromptLightningModule.evaluate`), so each run gets
the scores its own `evaluate` would give, in the same names: {"acc", "f1"} (+ "micro_f1").
A pass that raises is redone run by run, so a run that cannot be scored fails alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from prompt_bench.backbones import BackboneAdapter
from prompt_bench.lit.base import split_metrics, with_hmean
from prompt_bench.lit.input_site import ALL_CLASSES
from prompt_bench.packing.forward import packed_logits
from prompt_bench.packing.member import PackMember


@torch.no_grad()
def packed_scores(
    adapter: BackboneAdapter, members: list[PackMember], loaders: list[Iterable]
) -> list[dict[str, float]]:
    """Scores of each member over its loader (batches of its own split), in eval mode."""
    if not members:
        return []
    modules = [member.module for member in members]
    was_training = [module.training for module in modules]
    for module in modules:
        module.eval()
    device = members[0].device
    metrics = [split_metrics(m.test_set_sizes[ALL_CLASSES], m.no_relation, m.head.abstains).to(device) for m in modules]
    iterators = [iter(loader) for loader in loaders]  # made by the members, in their own streams
    open_runs = list(range(len(members)))
    try:
        while open_runs:
            batches = {index: next(iterators[index], None) for index in open_runs}
            open_runs = [index for index in open_runs if batches[index] is not None]
            if not open_runs:
                break
            moved = [{k: v.to(device) for k, v in batches[index].items()} for index in open_runs]
            with members[0].autocast():
                scopes = [members[index].own_rng for index in open_runs]
                logits = packed_logits(adapter, [modules[index] for index in open_runs], moved, scopes)
            for index, batch, run_logits in zip(open_runs, moved, logits):
                metrics[index].update(modules[index].metric_inputs(run_logits), batch["labels"])
    finally:
        for module, training in zip(modules, was_training):
            module.train(training)
    return [with_hmean(module.set_scores(ALL_CLASSES, metric.compute())) for module, metric in zip(modules, metrics)]


def scores_or_errors(
    adapter: BackboneAdapter, members: list[PackMember], loader_of: Callable[[PackMember], Iterable]
) -> list[dict[str, float] | BaseException]:
    """`packed_scores` over `loader_of(member)`; when the joint pass raises, each member is scored alone
    (a fresh loader), and a member that still fails gets its error in place of its scores."""
    try:
        return list(packed_scores(adapter, members, [loader_of(member) for member in members]))
    except Exception:  # noqa: BLE001 - find the run at fault
        results: list[dict[str, float] | BaseException] = []
        for member in members:
            try:
                results.append(packed_scores(adapter, [member], [loader_of(member)])[0])
            except Exception as error:  # noqa: BLE001
                results.append(error)
        return results
