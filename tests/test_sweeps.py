"""Sweeps: a real local multirun, relaunch skips finished runs, failures are recorded, SIGKILL resumes."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers.cli import run_cli


def record_hashes(sweep_dir: Path) -> dict[str, str]:
    return {str(p.relative_to(sweep_dir)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sweep_dir.rglob("record.json")}


def records(sweep_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep_dir.rglob("record.json"))]


def test_smoke_sweep_then_relaunch_does_no_work(tmp_path, cache_dir):
    result = run_cli("-m", "experiment=smoke", root=tmp_path, cache=cache_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep_dir = tmp_path / "outputs" / "sweeps" / "smoke"
    finished = records(sweep_dir)
    assert len(finished) == 8 and {r["status"] for r in finished} == {"ok"}
    assert {r["config"]["sweep_name"] for r in finished} == {"smoke"}
    assert len({r["run_key"] for r in finished}) == 8
    before = record_hashes(sweep_dir)

    again = run_cli("-m", "experiment=smoke", root=tmp_path, cache=cache_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (again.stdout + again.stderr).count("skipping run") == 8
    assert record_hashes(sweep_dir) == before


def test_failing_cell_is_recorded_and_the_sweep_goes_on(tmp_path, cache_dir):
    result = run_cli(
        "-m", "trainer=debug", "logger=none", "backbone=tiny_bert", "dataset=synthetic", "dataset.k_shot=4,1000",
        "sweep_name=mixed", root=tmp_path, cache=cache_dir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    by_k = {r["config"]["dataset"]["k_shot"]: r for r in records(tmp_path / "outputs" / "sweeps" / "mixed")}
    assert by_k[4]["status"] == "ok"
    assert by_k[1000]["status"] == "failed" and "k_shot=1000" in by_k[1000]["error"]


def test_sigkill_mid_training_then_relaunch_resumes(tmp_path, cache_dir):
    overrides = [
        "-m", "logger=none", "backbone=tiny_bert", "dataset=synthetic", "trainer.max_epochs=60",
        "seed=13,21", "sweep_name=killed",
    ]
    env = {**os.environ, "PROMPT_BENCH_ROOT": str(tmp_path), "PROMPT_BENCH_CACHE": str(cache_dir)}
    sweep_dir = tmp_path / "outputs" / "sweeps" / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "prompt_bench.run", *overrides], cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    second_last = sweep_dir / "1_prompt_tuning_tiny_bert_synthetic_s21" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while not second_last.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)  # a few more epochs, so the kill lands mid-training
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert second_last.exists(), "the second job never checkpointed before the kill"
    first_before = record_hashes(sweep_dir / "0_prompt_tuning_tiny_bert_synthetic_s13")
    killed = json.loads((second_last.parent.parent / "record.json").read_text())
    assert killed["status"] == "running"

    result = run_cli(*overrides, root=tmp_path, cache=cache_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    finished = records(sweep_dir)
    assert [r["status"] for r in finished] == ["ok", "ok"]
    assert record_hashes(sweep_dir / "0_prompt_tuning_tiny_bert_synthetic_s13") == first_before
    resumed = finished[1]
    assert resumed["resumed_from_step"] > 0
    import torch

    assert torch.load(second_last, weights_only=False)["global_step"] == 60 * 8  # 16 shots x 4 classes / batch 8 = 8 steps an epoch, 60 epochs


def test_unknown_preset_fails_before_any_job_with_the_options(tmp_path, cache_dir):
    result = run_cli("-m", "experiment=smok", root=tmp_path, cache=cache_dir)
    assert result.returncode != 0
    assert "Could not find 'experiment/smok'" in result.stderr and "smoke" in result.stderr
    assert not (tmp_path / "outputs").exists()


def test_unknown_launcher_key_fails_before_any_job(tmp_path, cache_dir):
    result = run_cli("-m", "experiment=smoke", "hydra/launcher=slurm_cpu", "hydra.launcher.partitoin=gpu",
                     root=tmp_path, cache=cache_dir)
    assert result.returncode != 0
    assert "partitoin" in result.stderr
    assert not (tmp_path / "outputs").exists()
