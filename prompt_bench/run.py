"""The Hydra entry point: compose -> build -> fit/test -> record.json.

`prompt-bench method=prompt_tuning backbone=minilm dataset=bbc_news seed=13` runs one experiment;
`prompt-bench -m ...` sweeps. Every run ends with a record, `ok` or `failed`; a failed run in a
multirun is recorded and the sweep goes on.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import get_class
from omegaconf import DictConfig, open_dict

from prompt_bench.build import build_experiment
from prompt_bench.callbacks import parameter_counts, peak_rss_mb
from prompt_bench.errors import PromptBenchError
from prompt_bench.records import (
    RECORD_NAME,
    claim_run_dir,
    find_ok_record,
    git_commit,
    package_versions,
    resolved_config,
    run_key,
    write_json_atomic,
)
from prompt_bench.console import print_summary
from prompt_bench.training import fit_and_test

log = logging.getLogger("prompt_bench")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = str(PROJECT_ROOT / "conf")  # absolute: Hydra reads a relative path as a module path
USER_ERRORS = (PromptBenchError, InstantiationException)


def run_experiment(cfg: DictConfig) -> dict[str, Any]:
    """Run one experiment and write its record; returns the record (status ok or failed).

    In a sweep, a run whose key already has an `ok` record is skipped (its record is returned
    untouched); a run that was killed resumes from its last checkpoint.
    """
    config = resolved_config(cfg)
    key = run_key(config)
    if cfg.get("skip_done", True):
        done = find_ok_record(sweep_dir_of(Path(cfg.paths.output_dir)), key)
        if done is not None:
            log.info("skipping run %s: already ok in %s", key, done.get("run_dir"))
            return done
    run_dir = claim_run_dir(Path(cfg.paths.output_dir), key)
    run_dir.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "run_key": key,
        "status": "running",
        "run_dir": str(run_dir),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": config,
        "versions": package_versions(),
        "git_commit": git_commit(PROJECT_ROOT),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
    }
    write_json_atomic(run_dir / RECORD_NAME, record)  # marks the dir as this run's while it trains
    try:
        experiment = build_experiment(cfg)
        record["split_hash"] = experiment.split.content_hash
        record["method_info"] = experiment.method.record_info()
        outcome = fit_and_test(cfg, experiment, run_dir, key)
        record["metrics"] = outcome.metrics
        record["efficiency"] = {
            **parameter_counts(experiment.module),
            "train_seconds": outcome.train_seconds,
            "train_samples_per_s": outcome.train_samples_per_s,
            "peak_rss_mb": peak_rss_mb(),
            **outcome.device_memory,
        }
        record["best_checkpoint"] = outcome.best_checkpoint
        record["resumed_from_step"] = outcome.resumed_from_step
        record["status"] = "ok"
    except Exception as error:  # noqa: BLE001 - every failure must end as a record
        record["status"] = "failed"
        record["error"] = f"{type(error).__name__}: {error}"
        record["traceback"] = traceback.format_exc()
        if isinstance(error, USER_ERRORS):
            log.error("run failed: %s", error)
        else:
            log.exception("run failed")
    finally:
        record["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        write_json_atomic(run_dir / RECORD_NAME, record)
        finish_wandb()
    print_summary(record)
    return record


def drop_unused_transfer(cfg: DictConfig) -> None:
    """A method that transfers nothing (prompt_tuning, fine_tuning, ...) with transfer=<pair> is the
    target-only baseline: the pair is dropped, so every pair with that target shares one run key
    (a transfer-matrix sweep trains each baseline once and skips the repeats)."""
    if not cfg.get("transfer"):
        return
    method_class = get_class(cfg.method.module._target_)
    if method_class.needs:
        return
    log.info("method '%s' transfers nothing: running it on the target '%s' alone", cfg.method.name, cfg.dataset.name)
    with open_dict(cfg):
        cfg.transfer = None


def sweep_dir_of(run_dir: Path) -> Path:
    """Where sibling runs live: Hydra's sweep dir in a multirun, else the run dir itself."""
    if is_multirun():
        return Path(HydraConfig.get().sweep.dir)
    return run_dir


def finish_wandb() -> None:
    """Close a wandb run if one is open, so the next job of a multirun starts its own."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


def is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Console script `prompt-bench`. Returns the primary test metric (for Hydra sweepers)."""
    os.environ.setdefault("WANDB_MODE", "offline")
    if is_multirun():  # one name for every job of the sweep (a `now` default differs per job)
        with open_dict(cfg):
            cfg.sweep_name = Path(HydraConfig.get().sweep.dir).name
    drop_unused_transfer(cfg)
    record = run_experiment(cfg)
    if record["status"] != "ok":
        if is_multirun():
            return None  # recorded; the sweep goes on
        sys.exit(1)
    return record["metrics"].get("test/primary")


if __name__ == "__main__":
    main()
