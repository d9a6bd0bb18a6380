"""Sweeps select on dev: main() hands sweepers the best dev score, never a test score, and the
Optuna preset (hparams_search=prompt_tuning_optuna) tunes on it end to end."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from prompt_bench import run as run_module
from prompt_bench.records import read_record
from prompt_bench.report import load_records, write_report
from prompt_bench.scores import dev_score
from tests.helpers.cli import run_cli


def test_dev_score_reads_the_selection_metric_never_test() -> None:
    metrics = {"test/primary": 0.9, "test/acc": 0.9, "primary_metric": "f1", "val/acc_best": 0.7, "val/f1_best": 0.4}
    assert dev_score(metrics) == 0.4
    assert dev_score({**metrics, "val/primary_best": 0.5}) == 0.5
    assert dev_score({"test/primary": 0.9, "primary_metric": "hmean"}) is None


def test_main_returns_the_best_dev_score_not_the_test_score(make_config, monkeypatch) -> None:
    record = {
        "status": "ok",
        "run_dir": "x",
        "metrics": {"test/primary": 0.9, "test/acc": 0.9, "primary_metric": "acc", "val/acc_best": 0.4},
    }
    monkeypatch.setattr(run_module, "run_experiment", lambda cfg: record)
    cfg = make_config("backbone=tiny_bert", "dataset=synthetic", "logger=none")
    assert run_module.main.__wrapped__(cfg) == pytest.approx(0.4)  # the function under @hydra.main


def test_optuna_sweep_tunes_on_dev_and_the_report_shows_the_choice(tmp_path: Path, cache_dir: Path) -> None:
    assert importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper"), (
        "hydra-optuna-sweeper is missing: install the sweep extra (pip install -e .[sweep], as scripts/setup.sh does)"
    )
    result = run_cli(
        "-m",
        "hparams_search=prompt_tuning_optuna",
        "backbone=tiny_bert",
        "dataset=synthetic",
        "trainer=debug",
        "logger=none",
        "sweep_name=optuna",
        "hydra.sweeper.n_trials=3",
        "method.module.n_tokens=choice(2,4)",  # a smaller search space than the preset's, for speed
        root=tmp_path,
        cache=cache_dir,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    sweep = tmp_path / "outputs" / "sweeps" / "optuna"
    records = [read_record(path.parent) for path in sorted(sweep.glob("*/record.json"))]
    assert len(records) == 3 and {record["status"] for record in records} == {"ok"}
    assert {record["config"]["method"]["module"]["n_tokens"] for record in records} <= {2, 4}
    assert all(0.01 <= record["config"]["method"]["optimizer"]["lr"] <= 1.0 for record in records)
    devs = {record["run_key"]: record["metrics"]["val/primary_best"] for record in records}
    assert all(record["metrics"]["val/primary_best"] == record["metrics"]["val/acc_best"] for record in records)

    results = OmegaConf.load(sweep / "optimization_results.yaml")
    assert results.best_value == pytest.approx(max(devs.values()))
    best = next(r for r in records if math.isclose(r["metrics"]["val/primary_best"], results.best_value))
    assert results.best_params["method.optimizer.lr"] == pytest.approx(best["config"]["method"]["optimizer"]["lr"])
    assert results.best_params["method.module.n_tokens"] == best["config"]["method"]["module"]["n_tokens"]

    report = write_report(load_records(sweep), tmp_path / "report")
    chosen = report.selection.iloc[0]
    assert chosen["settings"] == 3 and chosen["chosen_dev"] == pytest.approx(results.best_value)
    assert chosen["mean"] == pytest.approx(best["metrics"]["test/primary"])
    assert chosen["config.method.optimizer.lr"] == pytest.approx(results.best_params["method.optimizer.lr"])


README = Path(__file__).resolve().parents[1] / "README.md"
README_SWEEP = (
    "prompt-bench -m backbone=tiny_bert dataset=synthetic trainer=debug method.optimizer.lr=0.03,3.0 seed=13,21 "
    "sweep_name=lr_demo"
)


def readme_report_snippet() -> list[str]:
    """The ```text block that follows the README's lr_demo sweep example."""
    text = README.read_text()
    assert README_SWEEP in text, "the README's sweep example changed: update README_SWEEP here"
    start = text.index("```text\n", text.index(README_SWEEP)) + len("```text\n")
    return text[start : text.index("\n```", start)].splitlines()


def test_readme_sweep_example_prints_the_report_the_readme_shows(tmp_path: Path, cache_dir: Path) -> None:
    result = run_cli("-m", *README_SWEEP.split()[2:], "logger=none", root=tmp_path, cache=cache_dir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = subprocess.run(
        [sys.executable, "-m", "prompt_bench.report", "outputs/sweeps/lr_demo"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert report.returncode == 0, report.stderr[-3000:]
    printed = [line.rstrip() for line in report.stdout.splitlines()]
    snippet = readme_report_snippet()
    assert printed[: len(snippet)] == snippet
