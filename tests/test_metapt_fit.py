"""MetaPT / PPT meta-training as a Lightning fit (fit.py): the same prompt as the reference loop
(maml.meta_train) for every training rule, and a killed fit resumed from last.ckpt ends where an
uninterrupted one does."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from prompt_bench.methods.metapt import AuxiliaryTask, Example, PromptMAMLConfig, build_outer_optimizer, meta_train
from prompt_bench.methods.metapt import fit as fit_module
from prompt_bench.methods.metapt.fit import LAST_CHECKPOINT, EpisodeStream, MetaFit, fit_meta

torch.set_num_threads(1)

FEATURES = torch.randn(240, 4, generator=torch.Generator().manual_seed(8))


def linear_tasks() -> list[AuxiliaryTask]:
    """Three 2-class tasks of 80 examples, sharing one direction; an example's text indexes FEATURES."""
    tasks = []
    for k in range(3):
        direction = torch.tensor([1.0, 0.5 * k - 0.5, 0.0, 0.3])
        rows = range(80 * k, 80 * (k + 1))
        examples = [Example(str(i), int(FEATURES[i] @ direction > 0)) for i in rows]
        tasks.append(AuxiliaryTask(f"t{k}", examples, ("no", "yes"), "labels"))
    return tasks


def collate(examples, task):
    return FEATURES[[int(e.text) for e in examples]], torch.tensor([e.label for e in examples])


class TinyMeta(nn.Module):
    """A frozen Linear + Dropout(0.5) 'backbone', a prompt (4,) added to the input and a head (2, 4)."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(3)
        self.frozen = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)).requires_grad_(False)
        with torch.no_grad():
            self.frozen[0].weight.copy_(torch.randn(4, 4, generator=generator))
            self.frozen[0].bias.zero_()
        self.prompt = nn.Parameter(0.1 * torch.randn(4, generator=generator))
        self.head = nn.Parameter(0.1 * torch.randn(2, 4, generator=generator))

    def forward(self, batch):
        inputs, labels = batch
        return F.cross_entropy(self.frozen(inputs + self.prompt) @ self.head.T, labels)

    def meta_parameters(self) -> dict[str, nn.Parameter]:
        return {"prompt": self.prompt, "head": self.head}


def make_fit(config: PromptMAMLConfig, baseline: bool) -> MetaFit:
    model = TinyMeta()

    def loss_fn(values, batch):
        return functional_call(model, dict(values), (batch,))

    stream = EpisodeStream(linear_tasks(), config, collate, seed=5)
    return MetaFit(model, model.frozen, loss_fn, config, stream, baseline=baseline)


def reference(config: PromptMAMLConfig, baseline: bool) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """The plain loop's result from the same model, seed and outer optimizer (backbone in eval mode)."""
    model = TinyMeta()
    model.frozen.eval()
    params = model.meta_parameters()

    def loss_fn(values, batch):
        return functional_call(model, dict(values), (batch,))

    optimizer = build_outer_optimizer(params.values(), config)
    history = meta_train(
        params,
        linear_tasks(),
        loss_fn,
        collate,
        config,
        generator=torch.Generator().manual_seed(5),
        optimizer=optimizer,
        baseline=baseline,
    )
    return {name: value.detach().clone() for name, value in params.items()}, history


RULES = {
    "maml_first": (PromptMAMLConfig(order="first", m=6, tasks_per_step=2, meta_steps=6), False),
    "maml_second": (PromptMAMLConfig(order="second", inner_steps=2, m=6, tasks_per_step=2, meta_steps=6), False),
    "reptile": (
        PromptMAMLConfig(algorithm="reptile", outer_optimizer="sgd", m=6, tasks_per_step=2, meta_steps=6),
        False,
    ),
    "ppt": (PromptMAMLConfig(outer_optimizer="adam", outer_lr=0.05, m=6, tasks_per_step=2, meta_steps=6), True),
}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_lightning_fit_equals_the_reference_loop(rule, tmp_path):
    config, baseline = RULES[rule]
    expected, expected_history = reference(config, baseline)
    module = make_fit(config, baseline)
    start = {name: value.detach().clone() for name, value in module.meta_parameters().items()}
    history = fit_meta(module, tmp_path / "ckpt", label="meta", log_every=0)
    for name, value in module.meta_parameters().items():
        assert not torch.equal(value.detach(), start[name]), name  # it trained
        torch.testing.assert_close(value.detach(), expected[name], rtol=1e-6, atol=1e-7)
    assert [h["tasks"] for h in history] == [h["tasks"] for h in expected_history]
    key = "loss" if baseline else "query_loss"
    assert [h[key] for h in history] == pytest.approx([h[key] for h in expected_history], rel=1e-5)
    assert not module.frozen.training and not any(p.requires_grad for p in module.frozen.parameters())
    # the checkpoint holds the meta-parameters, not the frozen weights
    saved = torch.load(tmp_path / "ckpt" / LAST_CHECKPOINT, weights_only=False)
    assert set(saved["state_dict"]) == {"model.prompt", "model.head"}
    assert saved["global_step"] == config.meta_steps and len(saved["meta_history"]) == config.meta_steps


class Killed(RuntimeError):
    pass


@pytest.mark.parametrize("rule", ["maml_first", "ppt"])
def test_a_killed_fit_resumes_to_the_uninterrupted_result(rule, tmp_path, monkeypatch):
    config, baseline = RULES[rule]
    whole = make_fit(config, baseline)
    whole_history = fit_meta(whole, tmp_path / "whole", label="meta", log_every=0)

    original = fit_module.MetaStepLine.on_train_batch_end

    def killer(self, trainer, module, outputs, batch, batch_idx):
        original(self, trainer, module, outputs, batch, batch_idx)
        if trainer.global_step == 4:
            raise Killed("killed after 4 meta-steps")

    monkeypatch.setattr(fit_module.MetaStepLine, "on_train_batch_end", killer)
    first = make_fit(config, baseline)
    with pytest.raises(Killed):
        fit_meta(first, tmp_path / "resumed", label="meta", log_every=0, checkpoint_every=1)
    saved = torch.load(tmp_path / "resumed" / LAST_CHECKPOINT, weights_only=False)
    # the checkpoint callback runs after the others: the last one written is step 3's
    assert saved["global_step"] == 3 and [h["step"] for h in saved["meta_history"]] == [0, 1, 2]
    monkeypatch.setattr(fit_module.MetaStepLine, "on_train_batch_end", original)

    second = make_fit(config, baseline)  # a new process: fresh initial parameters, resumed from last.ckpt
    history = fit_meta(second, tmp_path / "resumed", label="meta", log_every=0)
    assert second.resumed_from == 3
    for name, value in second.meta_parameters().items():
        torch.testing.assert_close(value.detach(), whole.meta_parameters()[name].detach(), rtol=1e-6, atol=1e-7)
    assert [h["step"] for h in history] == list(range(config.meta_steps))
    assert [h["tasks"] for h in history] == [h["tasks"] for h in whole_history]


def test_episode_stream_resumes_on_the_same_sequence():
    config = PromptMAMLConfig(m=6, tasks_per_step=2, meta_steps=5)
    whole = list(EpisodeStream(linear_tasks(), config, collate, seed=9))
    tail = list(EpisodeStream(linear_tasks(), config, collate, seed=9, start=lambda: 3))
    assert [item["step"] for item in tail] == [3, 4]
    for a, b in zip(whole[3:], tail, strict=True):
        assert a["tasks"] == b["tasks"]
        for (sa, qa), (sb, qb) in zip(a["pairs"], b["pairs"], strict=True):
            assert torch.equal(sa[0], sb[0]) and torch.equal(qa[1], qb[1])
    other = list(EpisodeStream(linear_tasks(), config, collate, seed=10))
    assert [item["tasks"] for item in other] != [item["tasks"] for item in whole]
    with pytest.raises(ValueError, match="usable_tasks"):
        EpisodeStream(linear_tasks(), PromptMAMLConfig(m=41), collate, seed=0)


def test_checkpoint_every_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="checkpoint_every"):
        fit_meta(make_fit(*RULES["maml_first"]), tmp_path, label="meta", log_every=0, checkpoint_every=0)
