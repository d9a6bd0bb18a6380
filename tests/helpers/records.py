"""Hand-written record.json files shaped like prompt_bench.run writes them, for report and sweep tests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

BACKBONE_SIZES = {"minilm": 22.7, "mpnet": 109.5, "t5_small": 60.5, "minilm_dual": 22.7, "mpnet_dual": 109.5}


def write_record(
    root: Path,
    sweep: str,
    method: str,
    backbone: str,
    dataset: str,
    seed: int,
    status: str = "ok",
    score: float | None = None,
    primary: str = "acc",
    train_seconds: float = 100.0,
    run_key: str | None = None,
    started_at: str = "2025-01-01T12:00:00",
    config: dict | None = None,
    dev: float | None = None,
    family: str = "encoder",
    efficiency: dict | None = None,
) -> Path:
    """A record.json shaped like prompt_bench.run writes it, in <root>/<sweep>/<run>/.

    config: extra entries merged into the record's config ({"method": {"optimizer": {"lr": 3.0}}});
    the run dir's name then carries them. dev: the run's best dev score (val/primary_best). efficiency:
    entries added to the record's efficiency block.
    """
    config_hash = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:8] if config else ""
    run_dir = root / sweep / "_".join(filter(None, (f"{method}_{backbone}_{dataset}_s{seed}_{status}", config_hash)))
    record = {
        "run_key": run_key or "-".join(filter(None, (f"{method}-{backbone}-{dataset}-{seed}", config_hash))),
        "status": status,
        "run_dir": str(run_dir),
        "started_at": started_at,
        "config": {
            "seed": seed,
            "method": {"name": method},
            "backbone": {"name": backbone, "params_m": BACKBONE_SIZES[backbone], "family": family},
            "dataset": {"name": dataset, "k_shot": 16},
            "head": {"name": "auto"},
        },
        "slurm_job_id": None,
    }
    merge(record["config"], config or {})
    if status == "ok":
        other = "f1" if primary == "acc" else "acc"
        record["metrics"] = {
            f"test/{primary}": score,
            f"test/{other}": 0.5,
            "test/primary": score,
            "primary_metric": primary,
            f"zero_shot/{primary}": 0.7,
            f"zero_shot/{other}": 0.1,
        }
        if dev is not None:
            record["metrics"].update({"val/primary_best": dev, f"val/{primary}_best": dev})
        record["efficiency"] = {"trainable_params": 7680, "train_seconds": train_seconds, **(efficiency or {})}
    if status == "failed":
        record["error"] = "RuntimeError: CUDA out of memory\nTraceback line two"
    run_dir.mkdir(parents=True)
    (run_dir / "record.json").write_text(json.dumps(record))
    return run_dir


def merge(base: dict, extra: dict) -> None:
    """Nested dict update in place."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value


@pytest.fixture
def sweep_root(tmp_path: Path) -> Path:
    """Two sweeps, seeds {13, 21, 42}.

    s1: prompt_tuning/minilm/bbc 3 seeds (0.80 0.85 0.90); prompt_tuning/mpnet/bbc lacks seed 42;
        fine_tuning/minilm/bbc: 0.95, one collapsed at chance (0.20 = 1/5), seed 42 failed.
    s2: prompt_tuning/minilm/tweets_airline (macro-F1 primary): 0.60 0.62, seed 42 still running.
    """
    root = tmp_path / "outputs"
    for seed, score, seconds in ((13, 0.80, 100.0), (21, 0.85, 200.0), (42, 0.90, 300.0)):
        write_record(root, "s1", "prompt_tuning", "minilm", "bbc_news", seed, score=score, train_seconds=seconds)
    for seed, score in ((13, 0.90), (21, 0.92)):
        write_record(root, "s1", "prompt_tuning", "mpnet", "bbc_news", seed, score=score)
    write_record(root, "s1", "fine_tuning", "minilm", "bbc_news", 13, score=0.95)
    write_record(root, "s1", "fine_tuning", "minilm", "bbc_news", 21, score=0.20)
    write_record(root, "s1", "fine_tuning", "minilm", "bbc_news", 42, status="failed")
    for seed, score in ((13, 0.60), (21, 0.62)):
        write_record(root, "s2", "prompt_tuning", "minilm", "tweets_airline", seed, score=score, primary="f1")
    write_record(root, "s2", "prompt_tuning", "minilm", "tweets_airline", 42, status="running")
    return root
