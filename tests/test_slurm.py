"""SLURM for real: a single-node cluster on this machine, and the smoke sweep submitted through sbatch.

The cluster comes from scripts/slurm_local_cluster.sh (Debian packages, needs root); without root
or without a way to install SLURM the cluster test is skipped with the reason. The missing-sbatch
and controller-down tests need neither.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

from prompt_bench.hydra_callbacks import controller_unreachable_message, slurm_unavailable_message
from tests.conftest import CONF_DIR

REPO_ROOT = CONF_DIR.parent
CLUSTER_SCRIPT = REPO_ROOT / "scripts" / "slurm_local_cluster.sh"
# The console script, by absolute path: submitit pickles the task function by module, and it must
# also start under a PATH that lacks sbatch (its shebang names the interpreter).
PROMPT_BENCH = Path(sys.executable).parent / "prompt-bench"
SLURM_CONF = Path("/etc/slurm/slurm.conf")
OUR_CONF_MARK = "Written by prompt_bench scripts/slurm_local_cluster.sh"
SMOKE = "experiment=smoke"
SWEEP_TIMEOUT_S = 240


def cluster_is_up() -> bool:
    if shutil.which("scontrol") is None:
        return False
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    return ping.returncode == 0 and "UP" in ping.stdout


@pytest.fixture(scope="module")
def slurm_cluster():
    """A running local cluster; stopped afterwards only if this fixture started it."""
    if os.geteuid() != 0:
        pytest.skip(
            "the local SLURM cluster needs root (scripts/slurm_local_cluster.sh installs packages and starts daemons)"
        )
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        pytest.skip("SLURM is not installed and apt-get is not available to install it")
    if SLURM_CONF.exists() and OUR_CONF_MARK not in SLURM_CONF.read_text():
        pytest.skip(
            f"{SLURM_CONF} was not written by scripts/slurm_local_cluster.sh; not replacing a real cluster's config"
        )
    was_up = cluster_is_up()
    start = subprocess.run(["bash", str(CLUSTER_SCRIPT), "start"], capture_output=True, text=True, timeout=600)
    if start.returncode != 0:
        output = (start.stdout + start.stderr)[-2000:]
        if shutil.which("slurmctld") is None:
            pytest.skip(f"apt-get could not install SLURM: {output}")
        pytest.fail(f"scripts/slurm_local_cluster.sh start failed:\n{output}")
    yield
    if not was_up:
        subprocess.run(["bash", str(CLUSTER_SCRIPT), "stop"], capture_output=True, text=True, timeout=120)


def sweep_size(*overrides: str) -> int:
    """Number of jobs a multirun with these overrides launches (the preset's sweeper params included)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    params = dict(cfg.hydra.sweeper.params or {})
    parsed = OverridesParser.create().parse_overrides([f"{key}={value}" for key, value in params.items()])
    return math.prod(len(list(override.sweep_string_iterator())) for override in parsed)


def run_sweep(root: Path, cache: Path, *overrides: str, path: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PROMPT_BENCH_ROOT": str(root), "PROMPT_BENCH_CACHE": str(cache), "WANDB_MODE": "offline"}
    if path is not None:
        env["PATH"] = path
    try:
        return subprocess.run(
            [str(PROMPT_BENCH), "-m", *overrides],
            capture_output=True,
            text=True,
            env=env,
            cwd=root,
            timeout=SWEEP_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        cancel_submitted_jobs(root)
        raise


def cancel_submitted_jobs(root: Path) -> None:
    """scancel what a timed-out sweep left queued: submitit names a folder after each job id."""
    job_ids = sorted({folder.name.split("_")[0] for folder in root.rglob(".submitit/*") if folder.is_dir()})
    if job_ids and shutil.which("scancel"):
        subprocess.run(["scancel", *job_ids], check=False)


def path_without_sbatch() -> str:
    return os.pathsep.join(
        entry
        for entry in os.environ.get("PATH", "").split(os.pathsep)
        if entry and not os.access(os.path.join(entry, "sbatch"), os.X_OK)
    )


@pytest.mark.parametrize(("preset", "partition", "gpus"), [("slurm_cpu", "debug", 0), ("slurm_gpu", "gpu", 1)])
def test_launcher_presets_compose(preset, partition, gpus):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"hydra/launcher={preset}"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.nodes, launcher.tasks_per_node) == (
        partition,
        gpus,
        1,
        1,
    )
    assert cfg.hydra.callbacks.require_sbatch._target_ == "prompt_bench.hydra_callbacks.RequireSbatch"


def test_smoke_sweep_runs_through_sbatch(slurm_cluster, tmp_path, cache_dir):
    result = run_sweep(tmp_path, cache_dir, SMOKE, "hydra/launcher=slurm_cpu")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]

    sweep_dir = tmp_path / "outputs" / "sweeps" / "smoke"
    submitted = [folder for folder in sweep_dir.glob(".submitit/*") if folder.is_dir()]
    assert submitted, f"no submitit job folders under {sweep_dir}/.submitit: the sweep did not go through sbatch"
    records = [json.loads(path.read_text()) for path in sorted(sweep_dir.rglob("record.json"))]
    assert len(records) == sweep_size(SMOKE)
    failed = {record["run_dir"]: record.get("error") for record in records if record["status"] != "ok"}
    assert not failed, failed
    job_ids = [record["slurm_job_id"] for record in records]
    assert all(job_ids), job_ids
    assert len(set(job_ids)) == len(records), "every run should be its own SLURM job"


def test_packed_smoke_sweep_sends_one_slurm_job_per_pack(slurm_cluster, tmp_path, cache_dir):
    """pack=auto with a SLURM preset: the smoke sweep's 8 runs go as 4 packs of 2 seeds (one per backbone and
    method: prompt tuning trains with the backbone's dropout on, linear probing with it off), one SLURM job
    each. A relaunch submits nothing: every run is already ok."""
    result = run_sweep(tmp_path, cache_dir, SMOKE, "hydra/launcher=slurm_cpu", "pack=auto")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    sweep_dir = tmp_path / "outputs" / "sweeps" / "smoke"
    records = [json.loads(path.read_text()) for path in sorted(sweep_dir.rglob("record.json"))]
    assert len(records) == sweep_size(SMOKE) and {record["status"] for record in records} == {"ok"}
    by_job: dict[str, set[tuple[str, str]]] = {}
    for record in records:
        cell = (record["config"]["backbone"]["name"], record["config"]["method"]["name"])
        by_job.setdefault(record["slurm_job_id"], set()).add(cell)
    assert len(by_job) == 4 and all(len(cells) == 1 for cells in by_job.values()), by_job
    assert all(len(record["packed_with"]) == 1 for record in records)

    folders = {folder.name for folder in sweep_dir.glob(".submitit/*")}
    again = run_sweep(tmp_path, cache_dir, SMOKE, "hydra/launcher=slurm_cpu", "pack=auto")
    assert again.returncode == 0 and "0 ok, 0 failed, 8 skipped" in again.stdout, again.stdout[-2000:]
    assert {folder.name for folder in sweep_dir.glob(".submitit/*")} == folders  # nothing submitted


def test_launch_without_sbatch_fails_with_a_sentence_and_submits_nothing(tmp_path, cache_dir):
    result = run_sweep(tmp_path, cache_dir, SMOKE, "hydra/launcher=slurm_cpu", path=path_without_sbatch())
    assert result.returncode == 1
    assert slurm_unavailable_message("slurm_cpu") in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.rglob(".submitit")), "a job folder was written: something was submitted"
    assert not list(tmp_path.rglob("record.json"))


def test_controller_down_fails_with_one_sentence_and_submits_nothing(tmp_path, cache_dir):
    """sbatch is there but slurmctld is not: the sentence, not submitit's 36-line FailedJobError traceback."""
    fake_bin = tmp_path / "fake_bin"
    fake_bin.mkdir()
    said = "Batch job submission failed: Unable to contact slurm controller (connect failure)"
    (fake_bin / "sbatch").write_text(f'#!/bin/sh\necho "sbatch: error: {said}" >&2\nexit 1\n')  # what sbatch prints
    (fake_bin / "sbatch").chmod(0o755)
    path = f"{fake_bin}{os.pathsep}{path_without_sbatch()}"
    result = run_sweep(tmp_path, cache_dir, SMOKE, "hydra/launcher=slurm_cpu", path=path)
    assert result.returncode == 1
    assert result.stderr.strip() == controller_unreachable_message("slurm_cpu", said)
    assert result.stdout == ""
    assert not list(tmp_path.rglob(".submitit")), "a job folder was written: something was submitted"
    assert not list(tmp_path.rglob("record.json"))
