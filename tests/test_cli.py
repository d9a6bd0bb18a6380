"""The real CLI in a subprocess, and every config option composing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import CONF_DIR, compose_config
from tests.helpers.cli import run_cli

GROUPS = ("method", "backbone", "head", "dataset", "trainer", "logger", "paths")


def records_under(root: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(root.rglob("record.json"))]


@pytest.mark.parametrize(
    ("group", "option"),
    [(group, path.stem) for group in GROUPS for path in sorted((CONF_DIR / group).glob("*.yaml"))],
)
def test_every_option_composes(group, option, tmp_path, cache_dir):
    cfg = compose_config([f"{group}={option}"], tmp_path, cache_dir)
    assert cfg[group] is not None
    assert cfg.method.name and cfg.backbone.name and cfg.dataset.name


def test_method_optimizer_options_compose(tmp_path, cache_dir):
    for optimizer in ("adafactor", "adafactor_hf", "adamw", "sgd"):
        cfg = compose_config([f"method/optimizer={optimizer}"], tmp_path, cache_dir)
        assert cfg.method.optimizer._partial_ is True


def test_cli_end_to_end_writes_valid_record(tmp_path, cache_dir):
    result = run_cli("trainer=debug", "backbone=tiny_bert", "dataset=synthetic", root=tmp_path, cache=cache_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    (record,) = records_under(tmp_path / "outputs")
    assert record["status"] == "ok"
    assert len(record["run_key"]) == 16
    assert record["config"]["method"]["name"] == "prompt_tuning"
    assert record["split_hash"]
    for name in ("test/acc", "test/f1", "zero_shot/acc", "val/acc_best"):
        assert 0.0 <= record["metrics"][name] <= 1.0, name
    efficiency = record["efficiency"]
    assert efficiency["trainable_params"] == 100 * 64  # 100 prompt tokens (the default) x hidden 64, no head weights
    assert efficiency["prompt_bytes"] == 100 * 64 * 4
    assert efficiency["train_samples_per_s"] > 0 and efficiency["peak_rss_mb"] > 0
    run_dir = Path(record["run_dir"])
    assert (run_dir / "prompt.safetensors").exists() and (run_dir / "prompt.json").exists()
    assert (run_dir / "csv" / "metrics.csv").exists()
    assert "prompt_bench run" in result.stdout  # the rich summary table


def test_cli_multirun_records_each_run(tmp_path, cache_dir):
    result = run_cli(
        "-m",
        "trainer=debug",
        "backbone=tiny_bert",
        "dataset=synthetic",
        "method=prompt_tuning,linear_probe",
        "logger=none",
        root=tmp_path,
        cache=cache_dir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = records_under(tmp_path / "outputs" / "sweeps")
    assert sorted(r["config"]["method"]["name"] for r in records) == ["linear_probe", "prompt_tuning"]
    assert {r["status"] for r in records} == {"ok"}
    assert len({r["run_key"] for r in records}) == 2
    (sweep_dir,) = (tmp_path / "outputs" / "sweeps").iterdir()
    assert {r["config"]["sweep_name"] for r in records} == {sweep_dir.name}  # one name for every job
