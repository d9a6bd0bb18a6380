"""wandb as the dashboard: a tiny run with logger=wandb (offline), read back from its .wandb file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prompt_bench.wandb_run import code_version, flatten, summary_of, wandb_run_id
from tests.helpers.cli import run_cli
from tests.helpers.wandb_file import OfflineRun, read_offline_run

TINY = ("trainer=debug", "backbone=tiny_bert", "dataset=synthetic", "logger=wandb")


def only_record(root: Path) -> dict:
    (path,) = root.rglob("record.json")
    return json.loads(path.read_text())


def only_offline_run(root: Path) -> OfflineRun:
    (path,) = root.rglob("offline-run-*/run-*.wandb")
    return read_offline_run(path)


def test_flatten_and_ids():
    assert flatten({"a": {"b": 1, "c": {"d": "x"}}, "e": [1, 2], "f": {}}) == {
        "a.b": 1,
        "a.c.d": "x",
        "e": [1, 2],
        "f": {},
    }
    ids = {wandb_run_id("8213d3c6b575c56c", sweep, version) for sweep in ("s1", "s2") for version in ("abc", "def")}
    assert len(ids) == 4 and all(len(i) == 16 for i in ids)
    assert wandb_run_id("k", "s", "v") == wandb_run_id("k", "s", "v")  # a relaunch resumes its wandb run
    summary = summary_of({"status": "failed", "error": "E: x", "metrics": {}, "efficiency": {"train_seconds": 2.0}})
    assert summary == {"efficiency/train_seconds": 2.0, "status": "failed", "error": "E: x"}


@pytest.mark.timeout(600)
def test_offline_run_holds_the_flat_config_summary_and_ids_and_a_sweep_run_gets_its_own_id(tmp_path, cache_dir):
    single = run_cli(*TINY, root=tmp_path / "single", cache=cache_dir, env={"WANDB_DIR": str(tmp_path / "wandb")})
    assert single.returncode == 0, single.stderr[-3000:]
    record, run = only_record(tmp_path / "single"), only_offline_run(tmp_path / "single")

    config = record["config"]
    assert (run.config["dataset.k_shot"], run.config["method.optimizer.lr"]) == (
        16,
        config["method"]["optimizer"]["lr"],
    )
    assert (run.config["method.module.n_tokens"], run.config["backbone.name"]) == (100, "tiny_bert")
    logged = {key: value for key, value in run.config.items() if not key.startswith(("_wandb", "run."))}
    assert logged == json.loads(json.dumps(flatten(config)))  # the whole resolved config, nothing else
    assert run.config["run.key"] == record["run_key"]
    assert run.config["run.split_hash"] == record["split_hash"]
    assert run.config["run.git_commit"] == record["git_commit"]
    assert run.config["run.code_version"] == code_version()

    metrics, efficiency = record["metrics"], record["efficiency"]
    for name in ("zero_shot/acc", "zero_shot/f1", "test/primary", "test/acc", "val/acc_best", "val/f1_best"):
        assert run.summary[name] == pytest.approx(metrics[name]), name
    assert run.summary["primary_metric"] == "acc"
    assert run.summary["efficiency/trainable_params"] == efficiency["trainable_params"] == 6400  # 100 tokens x 64
    assert run.summary["efficiency/train_seconds"] == pytest.approx(efficiency["train_seconds"])
    assert run.summary["efficiency/peak_rss_mb"] == pytest.approx(efficiency["peak_rss_mb"])
    assert run.summary["status"] == "ok" and run.exit_code == 0

    assert run.job_type == "prompt_tuning" and run.group == ""  # a single run belongs to no sweep
    assert run.tags == ["tiny_bert", "synthetic"]
    assert run.run_id == wandb_run_id(record["run_key"], Path(record["run_dir"]).name, code_version())

    sweep = run_cli("-m", *TINY, "sweep_name=wb", root=tmp_path / "sweep", cache=cache_dir)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    swept_record, swept = only_record(tmp_path / "sweep"), only_offline_run(tmp_path / "sweep")
    assert swept_record["run_key"] == record["run_key"]  # the same config ...
    assert swept.run_id != run.run_id  # ... is a different wandb run
    assert swept.run_id == wandb_run_id(record["run_key"], "wb", code_version())
    assert (swept.group, swept.job_type, swept.config["run.sweep"]) == ("wb", "prompt_tuning", "wb")
    assert len(sweep.stdout.splitlines()) == 3, sweep.stdout  # wandb stays quiet in a sweep: header, run, tally
