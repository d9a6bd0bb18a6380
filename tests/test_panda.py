"""PANDA: the KD loss by hand, a fresh student, a teacher that never changes."""

from __future__ import annotations

import hashlib

import pytest
import pytorch_lightning as pl
import torch
from torch.nn import functional as F

from prompt_bench.build import build_experiment
from prompt_bench.methods.panda import distillation_loss
from prompt_bench.run import run_experiment
from prompt_bench.transfer.artefacts import teacher_logits_file

TINY = ("method=panda", "transfer=tweets_airline_to_cars", "backbone=tiny_bert", "trainer=debug", "logger=none")


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
    cfg = make_config(*TINY)
    experiment = build_experiment(cfg)
    method = experiment.method
    teacher_file = teacher_logits_file(cfg)  # made by the build above; this only looks it up
    assert teacher_file.parent.parent == cache_dir / "artefacts" / "teacher_logits"
    teacher_prompt = teacher_file.parent / "prompt.safetensors"
    teacher_hashes = [hashlib.sha256(path.read_bytes()).hexdigest() for path in (teacher_file, teacher_prompt)]
    teacher_logits = method.teacher_logits.clone()
    assert teacher_logits.shape == (len(experiment.split.train), 3)

    # the student's prefix table is a fresh N(0, 0.02²) draw, not the teacher's or the source's prompt
    from safetensors.torch import load_file

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
    experiment = build_experiment(make_config(*TINY))
    experiment.datamodule.setup("fit")
    batch = next(iter(experiment.datamodule.train_dataloader()))
    logits = experiment.module(batch)
    extra = experiment.method.extra_loss(batch, logits)
    expected = 0.01 * F.mse_loss(logits, experiment.method.teacher_logits[batch["example_index"]]) / logits.shape[0]
    assert float(extra["kd"]) == pytest.approx(float(expected))


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
