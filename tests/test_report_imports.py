"""The report is a pure view over records: importing it, or running `python -m prompt_bench.report --paper`
over a sweep (plain, transfer and base-to-new records), never imports torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
NO_TORCH = "raise RuntimeError('torch was imported, but the report must read records without it')\n"


def python(*args: str, blocked_torch: Path | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    """`python *args` from the repository root; with blocked_torch, `import torch` raises there."""
    paths = [str(blocked_torch)] if blocked_torch else []
    paths += [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in paths if path)}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO_ROOT
    )


def torch_blocker(directory: Path) -> Path:
    """A directory holding a `torch` package whose import raises (put first on PYTHONPATH)."""
    (directory / "torch").mkdir(parents=True)
    (directory / "torch" / "__init__.py").write_text(NO_TORCH)
    return directory


def write_record(
    sweep: Path, name: str, method: str, dataset: str, seed: int, metrics: dict, transfer: str | None = None
) -> None:
    """A record.json shaped like prompt_bench.run writes it, in <sweep>/<name>/."""
    source = transfer.split("_to_")[0] if transfer else None
    record = {
        "run_key": name,
        "status": "ok",
        "run_dir": str(sweep / name),
        "started_at": "2025-01-01T12:00:00",
        "config": {
            "seed": seed,
            "method": {"name": method},
            "backbone": {"name": "tiny_bert"},
            "dataset": {"name": dataset, "k_shot": 16},
            "head": {"name": "auto"},
            "transfer": {"name": transfer, "source": {"name": source}} if transfer else None,
        },
        "metrics": {"primary_metric": "acc", **metrics},
        "efficiency": {"trainable_params": 1280, "train_seconds": 1.0},
    }
    (sweep / name).mkdir(parents=True)
    (sweep / name / "record.json").write_text(json.dumps(record))


def test_importing_the_report_does_not_import_torch():
    result = python("-c", "import prompt_bench.report, sys; assert 'torch' not in sys.modules, 'torch imported'")
    assert result.returncode == 0, result.stderr[-2000:]


def test_report_cli_runs_over_records_without_torch(tmp_path: Path):
    sweep = tmp_path / "sweep"
    for seed, score in ((13, 0.6), (21, 0.7)):
        scores = {"test/acc": score, "test/primary": score}
        write_record(sweep, f"pt_cars_{seed}", "prompt_tuning", "tweets_cars", seed, scores)
        gained = {name: value + 0.1 for name, value in scores.items()}
        write_record(sweep, f"spot_cars_{seed}", "spot", "tweets_cars", seed, gained, transfer="tweets_airline_to_cars")
    write_record(
        sweep,
        "coop_b2n",
        "coop",
        "fashion_mnist",
        13,
        {
            "test/base_acc": 0.9,
            "test/new_acc": 0.6,
            "test/hmean": 0.72,
            "test/primary": 0.72,
            "zero_shot/base_acc": 0.8,
            "zero_shot/new_acc": 0.7,
        },
    )
    result = python(
        "-m", "prompt_bench.report", str(sweep), "--paper", blocked_torch=torch_blocker(tmp_path / "blocked")
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "torch was imported" not in result.stderr
    assert (sweep / "report.md").exists() and (sweep / "transfer_gains.csv").exists()
    assert (sweep / "paper.md").exists() and (sweep / "paper.tex").exists()
