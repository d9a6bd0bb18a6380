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
    return {
        str(p.relative_to(sweep_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sweep_dir.rglob("record.json")
    }


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
    skipped = [line for line in again.stdout.splitlines() if line.startswith("skipped ")]  # one line per run
    assert len(skipped) == 8, again.stdout[-2000:]
    assert record_hashes(sweep_dir) == before


def test_failing_cell_is_recorded_the_sweep_goes_on_and_exits_nonzero_with_a_tally(tmp_path, cache_dir):
    overrides = (
        "-m",
        "trainer=debug",
        "logger=none",
        "backbone=tiny_bert",
        "dataset=synthetic",
        "dataset.k_shot=1000,4",
        "sweep_name=mixed",
    )
    result = run_cli(*overrides, root=tmp_path, cache=cache_dir)
    assert result.returncode == 1, result.stderr[-3000:]
    by_k = {r["config"]["dataset"]["k_shot"]: r for r in records(tmp_path / "outputs" / "sweeps" / "mixed")}
    assert by_k[4]["status"] == "ok"  # the failure came first; the sweep went on
    assert by_k[1000]["status"] == "failed" and "k_shot=1000" in by_k[1000]["error"]
    assert "prompt_bench tally: 1 ok, 1 failed, 0 skipped" in result.stdout
    assert f"failed: {by_k[1000]['run_dir']}" in result.stdout

    again = run_cli(*overrides, root=tmp_path, cache=cache_dir)
    assert again.returncode == 1
    assert "prompt_bench tally: 0 ok, 1 failed, 1 skipped" in again.stdout, again.stdout[-600:]


def test_sigkill_mid_training_then_relaunch_resumes_keeping_everything(tmp_path, cache_dir):
    overrides = [
        "-m",
        "logger=csv",
        "+logger.csv.flush_logs_every_n_steps=1",
        "backbone=tiny_bert",
        "dataset=synthetic",
        "trainer.max_epochs=60",
        "seed=13,21",
        "sweep_name=killed",
    ]
    env = {**os.environ, "PROMPT_BENCH_ROOT": str(tmp_path), "PROMPT_BENCH_CACHE": str(cache_dir)}
    sweep_dir = tmp_path / "outputs" / "sweeps" / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "prompt_bench.run", *overrides],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
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
    killed_attempt, last_attempt = resumed["attempts"]
    assert killed_attempt["end"] is None and killed_attempt["resumed_from_step"] is None
    assert last_attempt["resumed_from_step"] == resumed["resumed_from_step"] and last_attempt["end"]
    efficiency = resumed["efficiency"]
    assert efficiency["train_seconds"] > efficiency["train_seconds_before_resume"] > 0  # adds up across attempts
    import csv

    with (second_last.parent.parent / "csv" / "metrics.csv").open() as handle:
        steps = {int(row["step"]) for row in csv.DictReader(handle) if row.get("step")}
    assert min(steps) <= resumed["resumed_from_step"] < max(steps)  # pre-kill history kept, post-resume appended
    import torch

    assert (
        torch.load(second_last, weights_only=False)["global_step"] == 60 * 8
    )  # 16 shots x 4 classes / batch 8 = 8 steps an epoch, 60 epochs


def test_unknown_preset_fails_before_any_job_with_the_options(tmp_path, cache_dir):
    result = run_cli("-m", "experiment=smok", root=tmp_path, cache=cache_dir)
    assert result.returncode != 0
    assert "Could not find 'experiment/smok'" in result.stderr and "smoke" in result.stderr
    assert not (tmp_path / "outputs").exists()


def test_unknown_launcher_key_fails_before_any_job(tmp_path, cache_dir):
    result = run_cli(
        "-m",
        "experiment=smoke",
        "hydra/launcher=slurm_cpu",
        "hydra.launcher.partitoin=gpu",
        root=tmp_path,
        cache=cache_dir,
    )
    assert result.returncode != 0
    assert "partitoin" in result.stderr
    assert not (tmp_path / "outputs").exists()


TINY_RUN = ("backbone=tiny_bert", "dataset=synthetic", "trainer=debug", "logger=none")


def test_corrupt_record_is_counted_moved_aside_and_run_again_never_a_hollow_ok(make_config, tmp_path, capsys):
    from prompt_bench.report import summarize
    from prompt_bench.report.cli import main as report_main
    from prompt_bench.report.load import load_records
    from prompt_bench.run import run_experiment

    run_dir = tmp_path / "sweep" / "0_run"
    assert run_experiment(make_config(*TINY_RUN, run_dir=run_dir))["status"] == "ok"
    (run_dir / "record.json").write_text('{"status": "ok", "run_k')  # torn write by another tool
    capsys.readouterr()
    assert report_main([str(tmp_path / "sweep"), "--status"]) == 0
    status = capsys.readouterr().out
    assert "corrupt" in status and str(run_dir) in status
    frame = load_records(tmp_path / "sweep")
    assert frame["status"].tolist() == ["corrupt"]

    again = run_experiment(make_config(*TINY_RUN, run_dir=run_dir))
    (aside,) = run_dir.glob("record.json.corrupt-*")
    assert again["status"] == "ok" and again["corrupt_record"] == str(aside)
    assert "metrics" in again and again["efficiency"]["train_seconds"] > 0  # trained again, not hollow
    assert summarize(load_records(tmp_path / "sweep"), group_by=["method"])["n_corrupt"].tolist() == [0]


def test_corrupt_checkpoint_is_moved_aside_and_the_run_starts_from_scratch(make_config, tmp_path, caplog):
    from prompt_bench.run import run_experiment

    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 not really a zip")
    with caplog.at_level("WARNING", logger="prompt_bench"):
        record = run_experiment(make_config(*TINY_RUN, run_dir=run_dir))
    assert record["status"] == "ok", record.get("error")
    assert record["resumed_from_step"] is None
    (aside,) = (run_dir / "checkpoints").glob("last.ckpt.corrupt-*")
    assert f"moved aside to {aside}, training from scratch" in caplog.text


def test_two_identical_sweeps_at_once_train_each_run_once(tmp_path, cache_dir):
    overrides = [
        "-m",
        "logger=csv",
        "backbone=tiny_bert",
        "dataset=synthetic",
        "trainer=debug",
        "trainer.max_epochs=3",
        "seed=13,21,42,87",
        "sweep_name=twins",
    ]
    env = {
        **os.environ,
        "PROMPT_BENCH_ROOT": str(tmp_path),
        "PROMPT_BENCH_CACHE": str(cache_dir),
        "WANDB_MODE": "offline",
    }
    launchers = [
        subprocess.Popen(
            [sys.executable, "-m", "prompt_bench.run", *overrides],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [launcher.communicate(timeout=300)[0] for launcher in launchers]
    assert [launcher.returncode for launcher in launchers] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    tallies = [line for output in outputs for line in output.splitlines() if line.startswith("prompt_bench tally:")]
    oks = sum(int(line.split(": ")[1].split(" ok")[0]) for line in tallies)
    assert len(tallies) == 2 and oks == 4, tallies  # every run trained by exactly one launcher
    finished = records(tmp_path / "outputs" / "sweeps" / "twins")
    assert len(finished) == 4 and {r["status"] for r in finished} == {"ok"}
    assert all(len(r["attempts"]) == 1 for r in finished)
    joined = "\n".join(outputs)
    assert "held by another launcher" in joined or joined.count("already ok") >= 4  # each skip says why


def test_stale_owner_on_this_host_is_taken_over(tmp_path):
    import socket

    from prompt_bench.run_lock import OWNER_NAME, RunLock

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / OWNER_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid}))
    with RunLock(tmp_path) as held:
        assert held
        assert json.loads((tmp_path / OWNER_NAME).read_text())["pid"] == os.getpid()
        with RunLock(tmp_path) as second:  # a live owner (this process) is not taken over
            assert not second


def test_report_tables_count_a_corrupt_record_in_its_sweep(sweep_root, tmp_path):
    from prompt_bench.report.cli import main as report_main

    bad = sweep_root / "s1" / "zz_corrupt_run"
    bad.mkdir()
    (bad / "record.json").write_text("{not json")
    assert report_main([str(sweep_root), "--out", str(tmp_path / "out")]) == 0
    table = (tmp_path / "out" / "report.md").read_text()
    assert "| corrupt |" in table and "1 corrupt" in table
