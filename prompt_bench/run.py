"""The Hydra entry point: compose -> build -> fit/test -> record.json.

`prompt-bench method=prompt_tuning backbone=minilm dataset=bbc_news seed=13` runs one experiment;
`prompt-bench -m ...` sweeps. Every run ends with a record, `ok` or `failed`; a failed run in a
multirun is recorded and the sweep goes on.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
import traceback
import types
from pathlib import Path
from typing import Any

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict

from prompt_bench import wandb_run
from prompt_bench.build import build_experiment
from prompt_bench.callbacks import parameter_counts, peak_rss_mb, reset_run_peak_rss, run_peak_rss_mb
from prompt_bench.console import print_summary, run_line
from prompt_bench.errors import ConfigError, PromptBenchError
from prompt_bench.quiet import console_filter, quiet_known_noise, quiet_launcher, sweep_console
from prompt_bench.records import (
    RECORD_NAME,
    claim_run_dir,
    find_ok_record,
    git_commit,
    git_dirty,
    move_aside,
    package_versions,
    read_record,
    record_is_corrupt,
    resolved_config,
    run_key,
    split_sizes,
    write_json_atomic,
)
from prompt_bench.run_lock import RunLock, owner_text
from prompt_bench.scores import dev_score
from prompt_bench.training import fit_and_test
from prompt_bench.validate import check_config, check_output_dir, check_positions

log = logging.getLogger("prompt_bench")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = str(PROJECT_ROOT / "conf")  # absolute: Hydra reads a relative path as a module path
USER_ERRORS = (PromptBenchError, InstantiationException)
# (outcome, run dir) of every run this process was handed: ok | failed | skipped. The sweep tally
# reads it at the end of a local multirun; a SLURM sweep's jobs run elsewhere, so it reads records.
OUTCOMES: list[tuple[str, str]] = []


def run_experiment(cfg: DictConfig, overrides: list[str] | None = None) -> dict[str, Any]:
    """Run one experiment and write its record; returns the record (status ok or failed).

    In a sweep, a run whose key already has an `ok` record is skipped (its record is returned
    untouched); a run that was killed resumes from its last checkpoint. `overrides` are the
    command-line overrides the record keeps (default: Hydra's task overrides of this job).
    """
    config = resolved_config(cfg)
    key = run_key(config)
    if cfg.get("skip_done", True) and (done := already_ok(cfg, key)) is not None:
        return done
    run_dir = claim_run_dir(Path(cfg.paths.output_dir), key)
    try:
        check_output_dir(run_dir)
    except PromptBenchError as error:  # nowhere to write a record: say so and stop
        log.error("run failed: %s", error)
        OUTCOMES.append(("failed", str(run_dir)))
        return {
            "run_key": key,
            "status": "failed",
            "run_dir": str(run_dir),
            "error": f"{type(error).__name__}: {error}",
        }
    lock = RunLock(run_dir)
    if not lock.acquire():
        log.info("skipping run %s: %s is held by %s", key, run_dir, owner_text(lock.holder))
        OUTCOMES.append(("skipped", str(run_dir)))
        return {"run_key": key, "status": "skipped", "run_dir": str(run_dir), "held_by": lock.holder}
    try:
        # The previous owner may have finished between our check and our lock.
        if cfg.get("skip_done", True) and (done := already_ok(cfg, key)) is not None:
            return done
        return run_owned(cfg, config, key, run_dir, overrides)
    finally:
        lock.release()


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


def already_ok(cfg: DictConfig, key: str) -> dict[str, Any] | None:
    """The ok record of `key` in this sweep (noted as skipped), else None."""
    done = find_ok_record(sweep_dir_of(Path(cfg.paths.output_dir)), key)
    if done is not None:
        log.info("skipping run %s: already ok in %s", key, done.get("run_dir"))
        OUTCOMES.append(("skipped", str(done.get("run_dir"))))
    return done


def run_owned(
    cfg: DictConfig, config: dict[str, Any], key: str, run_dir: Path, overrides: list[str] | None = None
) -> dict[str, Any]:
    """Train, test and record a run whose dir this process holds."""
    corrupt_record = None
    if record_is_corrupt(run_dir):  # never resumed into a hollow ok: moved aside, said
        corrupt_record = str(move_aside(run_dir / RECORD_NAME))
        log.warning("the record in %s was unreadable; moved aside to %s and running again", run_dir, corrupt_record)
    record: dict[str, Any] = {
        "run_key": key,
        "status": "running",
        "run_dir": str(run_dir),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": config,
        "versions": package_versions(),
        "git_commit": git_commit(PROJECT_ROOT),
        "git_dirty": git_dirty(PROJECT_ROOT),
        "overrides": list(overrides) if overrides is not None else task_overrides(),
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
    write_json_atomic(run_dir / RECORD_NAME, record)  # marks the dir as this run's while it trains
    run_window = reset_run_peak_rss()  # peak_rss_mb: this run's own peak, build included
    try:
        check_config(cfg)
        experiment = build_experiment(cfg)
        check_positions(cfg, experiment.adapter, experiment.method.prompt_site)
        if experiment.data_notes:
            record["data_notes"] = experiment.data_notes
        record["split_hash"] = experiment.split.content_hash
        record["split_sizes"] = split_sizes(experiment.split)
        record["method_info"] = experiment.method.record_info()
        outcome = fit_and_test(cfg, experiment, run_dir, key)
        record["metrics"] = outcome.metrics
        record["efficiency"] = {
            **parameter_counts(experiment.module),
            "train_seconds": outcome.train_seconds,  # all attempts (each up to its last checkpoint)
            "train_seconds_before_resume": outcome.train_seconds_before_resume,
            "train_samples_per_s": outcome.train_samples_per_s,
            # this run's peak where its window could be opened (Linux), else the process's (earlier runs too)
            "peak_rss_mb": run_peak_rss_mb() if run_window else peak_rss_mb(),
            "peak_rss_scope": "run" if run_window else "process",
            **outcome.device_memory,
        }
        record["best_checkpoint"] = outcome.best_checkpoint
        record["resumed_from_step"] = attempt["resumed_from_step"] = outcome.resumed_from_step
        record["status"] = "ok"
    except Exception as error:  # every failure must end as a record
        record["status"] = "failed"
        record["error"] = f"{type(error).__name__}: {error}"
        record["traceback"] = traceback.format_exc()
        if isinstance(error, USER_ERRORS):
            log.error("run failed: %s", error)
        else:
            log.exception("run failed")
    finally:
        record["finished_at"] = attempt["end"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        write_json_atomic(run_dir / RECORD_NAME, record)
        wandb_run.finish(record)
    OUTCOMES.append((record["status"], str(run_dir)))
    return record


def task_overrides() -> list[str]:
    """The command-line overrides of this Hydra job (`hydra.overrides.task`), [] outside Hydra."""
    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


def tally_lines(outcomes: list[tuple[str, str]]) -> list[str]:
    """The final tally: one line of counts, then one line per failed run dir."""
    counts = {name: sum(1 for status, _ in outcomes if status == name) for name in ("ok", "failed", "skipped")}
    lines = [f"prompt_bench tally: {counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped"]
    lines += [f"  failed: {run_dir}" for status, run_dir in outcomes if status == "failed"]
    return lines


def outcomes_from_records(sweep_dir: Path) -> list[tuple[str, str]]:
    """Outcomes read back from the records of a sweep dir (jobs that ran in other processes)."""
    outcomes = []
    for path in sorted(Path(sweep_dir).glob(f"*/{RECORD_NAME}")):
        record = read_record(path.parent)
        status = (record or {}).get("status", "corrupt")
        outcomes.append((status if status in ("ok", "skipped") else "failed", str(path.parent)))
    return outcomes


def refuse_unwritable(directory: str) -> None:
    try:
        check_output_dir(Path(directory), create=False)
    except PromptBenchError as error:
        print(f"run failed: {error}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


class SweepTally(Callback):
    """Prints the tally at the end of a multirun and exits 1 when any run failed.

    A SystemExit on purpose: Hydra turns an Exception raised by a callback into a warning.
    Failures are still recorded and the sweep goes on; only the final exit status reports them.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Before Hydra writes .hydra/ into the run dir: an unwritable dir is one sentence, not a traceback."""
        refuse_unwritable(config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        refuse_unwritable(config.hydra.sweep.dir)
        quiet_launcher()  # each run prints its own line

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        outcomes = list(OUTCOMES)
        lines = []
        if not outcomes:  # SLURM: the runs printed their lines in their own job logs; one line each from records
            outcomes = outcomes_from_records(Path(config.hydra.sweep.dir))
            lines = [run_line(read_record(Path(run_dir)) or {"run_dir": run_dir}) for _, run_dir in outcomes]
        lines += tally_lines(outcomes)
        print("\n".join(lines), flush=True)
        if any(status == "failed" for status, _ in outcomes):
            raise SystemExit(1)


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


def show_outcome(record: dict[str, Any]) -> None:
    """A sweep's run: one line; a single run: the summary table."""
    status = OUTCOMES[-1][0] if OUTCOMES else None
    if is_multirun() or "config" not in record:
        print(run_line(record, status), flush=True)
    else:
        print_summary(record)


def is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Console script `prompt-bench`. Returns the run's best dev score, never a test score: a Hydra
    sweeper (hparams_search=...) maximizes what this returns, so it must not see the test split."""
    os.environ.setdefault("WANDB_MODE", "offline")
    quiet_known_noise()
    console_filter()
    if is_multirun():  # one name for every job of the sweep (a `now` default differs per job)
        sweep_console()  # one line per run (show_outcome); the job's info lines go to its run.log
        with open_dict(cfg):
            cfg.sweep_name = Path(HydraConfig.get().sweep.dir).name
    drop_unused_transfer(cfg)
    record = run_experiment(cfg)
    show_outcome(record)
    if is_multirun():
        return dev_score(record.get("metrics") or {})  # a failure: None, and the tally exits 1
    print("\n".join(tally_lines(OUTCOMES[-1:])), flush=True)
    if record["status"] not in ("ok", "skipped"):
        sys.exit(1)
    return dev_score(record.get("metrics") or {})


def run_overrides(overrides: list[str] | tuple[str, ...] = (), run_dir: str | Path | None = None) -> dict[str, Any]:
    """One run as `prompt-bench <overrides>` would do it (same config tree, same record); returns the
    record (status ok or failed). run_dir: where it writes (default: Hydra's run dir pattern,
    outputs/runs/<time>_<method>_<backbone>_<dataset>_s<seed>). Sweeps (-m) stay on the CLI."""
    overrides = list(overrides)
    if any(override in ("-m", "--multirun") or "," in override.partition("=")[2] for override in overrides):
        raise ConfigError("prompt_bench.run runs one experiment; sweep with the CLI: prompt-bench -m ...")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    directory = run_dir if run_dir is not None else OmegaConf.select(cfg, "hydra.run.dir")
    with open_dict(cfg):
        cfg.paths.output_dir = str(Path(directory).resolve())
        del cfg["hydra"]
    drop_unused_transfer(cfg)
    return run_experiment(cfg, overrides=overrides)


class CallableRunModule(types.ModuleType):
    """This module, callable: `prompt_bench.run(overrides)` is `run_overrides(overrides)`. (Importing
    prompt_bench.run binds the package attribute `run` to this module, so the API function and the
    module must be one object.)"""

    def __call__(
        self, overrides: list[str] | tuple[str, ...] = (), run_dir: str | Path | None = None
    ) -> dict[str, Any]:
        return run_overrides(overrides, run_dir)


sys.modules[__name__].__class__ = CallableRunModule


if __name__ == "__main__":
    # The imported module, not this __main__ copy: the sweep tally callback reads its OUTCOMES.
    from prompt_bench.run import main as imported_main

    imported_main()
