"""PANDA: the KD loss by hand, a fresh student, a teacher that never changes."""

from __future__ import annotations

import hashlib

import pytest
import pytorch_lightning as pl
import torch
from safetensors.torch import load_file
from torch.nn import functional as F

from prompt_bench.build import build_experiment
from prompt_bench.methods.panda import distillation_loss
from prompt_bench.run import run_experiment
from prompt_bench.transfer.artefacts import teacher_logits_file

TINY = ("method=panda", "transfer=tweets_airline_to_cars", "backbone=tiny_bert", "trainer=debug", "logger=none")
CACHED = "method.module.teacher_mode=cached"


def test_kd_losses_match_hand_computation():
    student = torch.tensor([[1.0, 2.0, 0.0], [0.5, -1.0, 3.0]])
    teacher = torch.tensor([[0.0, 2.0, 1.0], [1.5, -1.0, 1.0]])
    squared = ((student - teacher) ** 2).sum() / 6  # mean over the 6 elements = (1+0+1+1+0+4)/6
    assert float(squared) == pytest.approx(7 / 6)
    assert float(distillation_loss(student, teacher, "mse")) == pytest.approx(7 / 6 / 2)  # official extra 1/B
    assert float(distillation_loss(student, teacher, "mse", mse_batch_average=False)) == pytest.approx(7 / 6)
    temperature = 2.0
    p_teacher = F.softmax(teacher / temperature, dim=-1)
    by_hand = (p_teacher * (p_teacher.log() - F.log_softmax(student / temperature, dim=-1))).sum(-1).mean()
    assert float(distillation_loss(student, teacher, "kl", temperature)) == pytest.approx(float(4 * by_hand), rel=1e-6)


def test_student_starts_fresh_and_teacher_never_changes(make_config, cache_dir):
    cfg = make_config(*TINY, CACHED)
    experiment = build_experiment(cfg)
    method = experiment.method
    teacher_file = teacher_logits_file(cfg)  # made by the build above; this only looks it up
    assert teacher_file.parent.parent == cache_dir / "artefacts" / "teacher_logits"
    teacher_prompt = teacher_file.parent / "prompt.safetensors"
    teacher_hashes = [hashlib.sha256(path.read_bytes()).hexdigest() for path in (teacher_file, teacher_prompt)]
    teacher_logits = method.teacher_logits.clone()
    assert teacher_logits.shape == (len(experiment.split.train), 3)

    # the student's prefix table is a fresh N(0, 0.02²) draw, not the teacher's or the source's prompt
    student_start = method.prompt_tensors()["prefix_embeddings"].clone()
    assert not torch.equal(student_start, load_file(str(teacher_prompt))["prefix_embeddings"])
    fresh = build_experiment(
        make_config(
            *TINY,
            "method.module._target_=prompt_bench.methods.prompt_tuning.PromptTuning",
            "~method.module.beta",
            "~method.module.kd_loss",
            "~method.module.temperature",
            "~method.module.mse_batch_average",
            "~method.module.adaptive_kd",
            "~method.module.teacher_mode",
        )
    )
    assert torch.equal(student_start, fresh.method.prompt_tensors()["prefix_embeddings"])

    experiment.datamodule.setup("fit")
    trainer = pl.Trainer(
        max_steps=4,
        logger=False,
        enable_checkpointing=False,
        limit_val_batches=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(experiment.module, datamodule=experiment.datamodule)
    assert not torch.equal(method.prompt_tensors()["prefix_embeddings"], student_start)  # the student trained
    assert torch.equal(method.teacher_logits, teacher_logits)  # the teacher did not
    assert [hashlib.sha256(path.read_bytes()).hexdigest() for path in (teacher_file, teacher_prompt)] == teacher_hashes


def test_kd_term_is_in_the_loss(make_config):
    experiment = build_experiment(make_config(*TINY, CACHED))
    experiment.datamodule.setup("fit")
    batch = next(iter(experiment.datamodule.train_dataloader()))
    logits = experiment.module(batch)
    extra = experiment.method.extra_loss(batch, logits)
    expected = 0.01 * F.mse_loss(logits, experiment.method.teacher_logits[batch["example_index"]]) / logits.shape[0]
    assert float(extra["kd"]) == pytest.approx(float(expected))


# ---- the live teacher (official: source_model.train() and a forward on every batch) ------------------------------


def test_live_teacher_runs_in_train_mode_and_differs_from_its_eval_mode_logits(make_config):
    experiment = build_experiment(make_config(*TINY))
    method, module = experiment.method, experiment.module
    assert method.teacher_mode == "live" and method.needs == {"teacher_model"}
    assert method.teacher.prefix_dropout == 0.1 and method.teacher_head.dropout.p == 0.1  # dropout on
    experiment.datamodule.setup("fit")
    batch = next(iter(experiment.datamodule.train_dataloader()))
    module.train()
    live = method.teacher_batch_logits(batch, module.backbone)
    again = method.teacher_batch_logits(batch, module.backbone)
    assert method.teacher.training and method.teacher_head.training
    assert not torch.allclose(live, again)  # a fresh dropout mask every step
    cached = load_file(str(teacher_logits_file(make_config(*TINY))))["logits"][batch["example_index"]]
    assert not torch.allclose(live, cached, atol=1e-4)  # the cached logits are the eval-mode ones
    logits = module(batch)
    torch.manual_seed(3)
    extra = method.extra_loss(batch, logits, backbone=module.backbone)
    torch.manual_seed(3)
    expected = 0.01 * F.mse_loss(logits, method.teacher_batch_logits(batch, module.backbone)) / logits.shape[0]
    assert float(extra["kd"]) == pytest.approx(float(expected))


def test_live_teacher_without_dropout_equals_the_cached_logits(make_config):
    no_dropout = (*TINY, "method.module.prefix_dropout=0.0", "head=pooler", "head.dropout=0.0")  # tiny_bert: 0 already
    experiment = build_experiment(make_config(*no_dropout))
    experiment.datamodule.setup("fit")
    experiment.module.train()
    cached = load_file(str(teacher_logits_file(make_config(*no_dropout))))["logits"]
    for batch in experiment.datamodule.train_dataloader():
        live = experiment.method.teacher_batch_logits(batch, experiment.module.backbone)
        assert torch.allclose(live, cached[batch["example_index"]], atol=1e-5)


def test_live_teacher_is_frozen_and_loaded_from_the_teacher_artefact(make_config):
    from prompt_bench.export.metadata import HEAD_FILE
    from tests.helpers.training import changed, fit, snapshot

    cfg = make_config(*TINY)
    experiment = build_experiment(cfg)
    method = experiment.method
    directory = teacher_logits_file(cfg).parent
    saved_prompt = load_file(str(directory / "prompt.safetensors"))
    assert torch.equal(method.teacher.prompt_tensors()["prefix_embeddings"], saved_prompt["prefix_embeddings"])
    saved_head = load_file(str(directory / HEAD_FILE))
    assert torch.equal(method.teacher_head.classifier.weight, saved_head["classifier.weight"])
    assert not torch.equal(
        method.teacher_head.classifier.weight, experiment.head.classifier.weight
    )  # not the student's
    trainable = {id(p) for p in experiment.module.trainable_parameters()}
    assert not any(id(p) in trainable for p in [*method.teacher.parameters(), *method.teacher_head.parameters()])
    teacher_before, head_before = snapshot(method.teacher), snapshot(method.teacher_head)
    student_before = method.prompt_tensors()["prefix_embeddings"].clone()
    experiment.datamodule.setup("fit")
    fit(experiment, steps=3)
    assert not changed(teacher_before, method.teacher) and not changed(head_before, method.teacher_head)
    assert not torch.equal(method.prompt_tensors()["prefix_embeddings"], student_before)


def test_panda_without_a_pair_names_the_missing_teacher(make_config):
    record = run_experiment(
        make_config("method=panda", "dataset=synthetic", "backbone=tiny_bert", "trainer=debug", "logger=none")
    )
    assert record["status"] == "failed" and "PoT teacher" in record["error"]


def test_adaptive_kd_scales_the_weight_by_the_pairs_stimulation_similarity(make_config):
    from prompt_bench.build import build_head
    from prompt_bench.transfer.artefacts import source_prompt_file, target_prompt_file
    from prompt_bench.transfer.metrics import input_batches, load_prompt, stimulation, stimulation_similarity

    cfg = make_config(*TINY, "method.module.adaptive_kd=true", "method.module.beta=0.5")
    experiment = build_experiment(cfg)
    method, adapter = experiment.method, experiment.adapter
    assert source_prompt_file(cfg) != target_prompt_file(cfg)  # airline's prompt vs cars' own prompt
    batches = input_batches(cfg, adapter, 64, build_head)
    by_hand = stimulation_similarity(
        stimulation(adapter, load_prompt(cfg.method.module, source_prompt_file(cfg), adapter), batches),
        stimulation(adapter, load_prompt(cfg.method.module, target_prompt_file(cfg), adapter), batches),
    )
    assert 0.0 < by_hand < 1.0
    assert method.transferability == pytest.approx(by_hand, abs=1e-6)
    assert method.kd_weight == pytest.approx(0.1 * 0.5 * by_hand, abs=1e-7)
    assert method.record_info() == {"kd_weight": method.kd_weight, "transferability_mss": method.transferability}
    fixed = build_experiment(make_config(*TINY, "method.module.beta=0.5")).method
    assert fixed.kd_weight == pytest.approx(0.05) and fixed.record_info()["transferability_mss"] is None


# ---- the HF Trainer recipe (issue 14, item 3): linear decay per step, clipping at norm 1.0 ----------------------


def hf_linear_factor(step: int, total: int, warmup: int) -> float:
    """transformers.optimization._get_linear_schedule_with_warmup_lr_lambda, written out."""
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


@pytest.mark.parametrize("warmup", [0, 3])
def test_linear_decay_follows_the_hf_trainers_formula_step_by_step(warmup):
    from transformers import get_linear_schedule_with_warmup

    from prompt_bench.schedules import linear_decay

    ours_optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=7e-3)
    hf_optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=7e-3)
    ours = linear_decay(ours_optimizer, total_steps=10, warmup_steps=warmup)
    hf = get_linear_schedule_with_warmup(hf_optimizer, num_warmup_steps=warmup, num_training_steps=10)
    for step in range(12):
        lr = ours_optimizer.param_groups[0]["lr"]
        assert lr == pytest.approx(7e-3 * hf_linear_factor(step, 10, warmup), abs=1e-12)
        assert lr == pytest.approx(hf_optimizer.param_groups[0]["lr"], abs=1e-12)
        for optimizer, schedule in ((ours_optimizer, ours), (hf_optimizer, hf)):
            optimizer.step()
            schedule.step()
    if warmup == 0:  # by hand: 7e-3 at step 0, 7e-3 * 7/10 at step 3, 0 from step 10 on
        assert ours_optimizer.param_groups[0]["lr"] == 0.0


def test_panda_defaults_are_the_hf_trainers(make_config):
    cfg = make_config(*TINY)
    assert cfg.method.optimizer._target_ == "torch.optim.AdamW" and cfg.method.optimizer.weight_decay == 0.0
    assert cfg.method.scheduler._target_ == "prompt_bench.schedules.linear_decay"
    assert cfg.method.scheduler.total_steps is None and cfg.method.scheduler.warmup_steps == 0
    assert cfg.method.gradient_clip_norm == 1.0
    assert cfg.method.get("scheduler_interval") is None  # the input site's default: per optimizer step


class StepRecorder(pl.Callback):
    """The lr each optimizer step runs at, and the global grad norm before and after clipping."""

    def __init__(self) -> None:
        self.lrs: list[float] = []
        self.norms_before: list[float] = []
        self.norms_after: list[float] = []

    @staticmethod
    def grad_norm(optimizer) -> float:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))

    def on_train_start(self, trainer, module) -> None:
        optimizer = trainer.optimizers[0]
        optimizer.register_step_post_hook(lambda opt, args, kwargs: self.norms_after.append(self.grad_norm(opt)))

    def on_before_optimizer_step(self, trainer, module, optimizer) -> None:  # before Lightning clips
        self.lrs.append(optimizer.param_groups[0]["lr"])
        self.norms_before.append(self.grad_norm(optimizer))


@pytest.mark.parametrize("clip_norm", [1.0, 1e-4])
def test_panda_decays_the_lr_per_step_and_clips_every_step(make_config, clip_norm):
    from tests.helpers.training import fit

    experiment = build_experiment(make_config(*TINY, f"method.gradient_clip_norm={clip_norm}"))
    experiment.datamodule.setup("fit")
    recorder = StepRecorder()
    fit(experiment, steps=4, callbacks=[recorder])
    assert recorder.lrs == pytest.approx([7e-3 * (4 - step) / 4 for step in range(4)])  # T = 4 optimizer steps
    assert len(recorder.norms_after) == 4
    for before, after in zip(recorder.norms_before, recorder.norms_after):
        assert after == pytest.approx(min(before, clip_norm), rel=1e-3)  # torch divides by (norm + 1e-6)
    if clip_norm < 1:
        assert all(before > clip_norm for before in recorder.norms_before)  # so every step was clipped


def test_source_and_teacher_runs_follow_the_recipe_at_lr_1e_2(make_config, tmp_path):
    import json

    from prompt_bench.transfer.artefacts import source_prompt_file, source_prompt_spec
    from prompt_bench.transfer.pairs import source_config, teacher_config

    cfg = make_config(*TINY)
    source, teacher = source_config(cfg, tmp_path / "s"), teacher_config(cfg, tmp_path / "t")
    assert cfg.method.optimizer.lr == 7e-3  # the student (official run_cb_bert-panda.sh: lr=7e-3)
    assert source.method.optimizer.lr == 1e-2 and teacher.method.optimizer.lr == 1e-2  # run_cb_bert(-pot).sh
    assert "source_lr" not in source.method and "teacher_lr" not in source.method and "teacher_lr" not in teacher.method
    # the PoT teacher (SPoT) starts from the very source prompt the pair's source run trains
    assert source_prompt_spec(source_config(teacher, tmp_path)) == source_prompt_spec(source)
    for derived in (source, teacher):
        assert derived.method.optimizer._target_ == "torch.optim.AdamW" and derived.method.gradient_clip_norm == 1.0
        assert derived.method.scheduler._target_ == "prompt_bench.schedules.linear_decay"
    build_experiment(cfg)  # trains the source (and the teacher) as artefacts
    record = json.loads((source_prompt_file(cfg).parent / "record.json").read_text())
    assert record["config"]["method"]["optimizer"]["lr"] == 1e-2
