"""The record of one run as it goes: opened (status running), noted (split, metrics, efficiency), closed.

One run (`run.run_owned`) and each run of a pack (`packing/pack_run.py`) write their record.json
through these steps, so both paths record the same fields.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.errors import InstantiationException
from omegaconf import DictConfig

from prompt_bench import wandb_run
from prompt_bench.callbacks import parameter_counts, peak_rss_mb, run_peak_rss_mb
from prompt_bench.errors import PromptBenchError
from prompt_bench.records import (
    RECORD_NAME,
    git_commit,
    git_dirty,
    move_aside,
    package_versions,
    read_record,
    record_is_corrupt,
    split_sizes,
    write_json_atomic,
)
from prompt_bench.validate import check_positions

if TYPE_CHECKING:
    from prompt_bench.build import Experiment
    from prompt_bench.training import Outcome

log = logging.getLogger("prompt_bench")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
USER_ERRORS = (PromptBenchError, InstantiationException)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def earlier_attempts(run_dir: Path, key: str) -> list[dict[str, Any]]:
    """Attempts of this run before this one, from the record it left (a killed one ends with end=None)."""
    previous = read_record(run_dir)
    if not previous or previous.get("run_key") != key:
        return []
    if "attempts" in previous:
        return list(previous["attempts"])
    return [
        {
            "start": previous.get("started_at"),
            "end": previous.get("finished_at"),
            "host": None,
            "slurm_job_id": previous.get("slurm_job_id"),
            "resumed_from_step": previous.get("resumed_from_step"),
        }
    ]


def open_record(config: dict[str, Any], key: str, run_dir: Path, overrides: list[str]) -> dict[str, Any]:
    """The record of a run this process now holds, written with status `running` (it marks the dir as
    this run's while it trains); its last attempt is this one. An unreadable record is moved aside."""
    corrupt_record = None
    if record_is_corrupt(run_dir):  # never resumed into a hollow ok: moved aside, said
        corrupt_record = str(move_aside(run_dir / RECORD_NAME))
        log.warning("the record in %s was unreadable; moved aside to %s and running again", run_dir, corrupt_record)
    record: dict[str, Any] = {
        "run_key": key,
        "status": "running",
        "run_dir": str(run_dir),
        "started_at": now(),
        "config": config,
        "versions": package_versions(),
        "git_commit": git_commit(PROJECT_ROOT),
        "git_dirty": git_dirty(PROJECT_ROOT),
        "overrides": list(overrides),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
    }
    if corrupt_record:
        record["corrupt_record"] = corrupt_record
    attempt = {
        "start": record["started_at"],
        "end": None,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "resumed_from_step": None,
    }
    record["attempts"] = [*earlier_attempts(run_dir, key), attempt]
    write_json_atomic(run_dir / RECORD_NAME, record)
    return record


def note_experiment(record: dict[str, Any], cfg: DictConfig, experiment: Experiment) -> None:
    """What the build decided: positions checked, data notes, split hash and sizes, method info."""
    check_positions(cfg, experiment.adapter, experiment.method.prompt_site)
    if experiment.data_notes:
        record["data_notes"] = experiment.data_notes
    record["split_hash"] = experiment.split.content_hash
    record["split_sizes"] = split_sizes(experiment.split)
    record["method_info"] = experiment.method.record_info()


def note_outcome(
    record: dict[str, Any], experiment: Experiment, outcome: Outcome, rss_window: bool = False, scope: str = "run"
) -> None:
    """Metrics, efficiency and the best checkpoint of a finished run; status ok. rss_window: a peak-memory
    window was opened for this run (`callbacks.reset_run_peak_rss`; for a pack, `scope="pack"`: the pack's)."""
    record["metrics"] = outcome.metrics
    record["efficiency"] = {
        **parameter_counts(experiment.module),
        "train_seconds": outcome.train_seconds,  # all attempts (each up to its last checkpoint)
        "train_seconds_before_resume": outcome.train_seconds_before_resume,
        "train_samples_per_s": outcome.train_samples_per_s,
        # this run's peak where its window could be opened (Linux), else the process's (earlier runs too)
        "peak_rss_mb": run_peak_rss_mb() if rss_window else peak_rss_mb(),
        "peak_rss_scope": scope if rss_window else "process",
        **outcome.device_memory,
    }
    record["best_checkpoint"] = outcome.best_checkpoint
    record["resumed_from_step"] = record["attempts"][-1]["resumed_from_step"] = outcome.resumed_from_step
    record["status"] = "ok"


def note_failure(record: dict[str, Any], error: BaseException, trace: str | None = None) -> None:
    """Status failed with the error's sentence and traceback (a user error is logged without one)."""
    record["status"] = "failed"
    record["error"] = f"{type(error).__name__}: {error}"
    record["traceback"] = trace if trace is not None else traceback.format_exc()
    if isinstance(error, USER_ERRORS):
        log.error("run failed: %s", error)
    else:
        log.error("run failed", exc_info=error)


def close_record(record: dict[str, Any]) -> None:
    """Stamp the end of this attempt, write the record, close a wandb run if one is open."""
    record["finished_at"] = record["attempts"][-1]["end"] = now()
    write_json_atomic(Path(record["run_dir"]) / RECORD_NAME, record)
    wandb_run.finish(record)
