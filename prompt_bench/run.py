"""The Hydra entry point: compose -> build -> fit/test -> record.json.

`prompt-bench method=prompt_tuning backbone=minilm dataset=bbc_news seed=13` runs one experiment;
`prompt-bench -m ...` sweeps. Every run ends with a record, `ok` or `failed`; a failed run in a
multirun is recorded and the sweep goes on.
"""

from __future__ import annotations

import logging
import os
import sys
import types
from pathlib import Path
from typing import Any

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict

from prompt_bench.build import build_experiment
from prompt_bench.callbacks import reset_run_peak_rss
from prompt_bench.console import print_summary, run_line
from prompt_bench.errors import ConfigError, PromptBenchError
from prompt_bench.quiet import console_filter, quiet_known_noise, quiet_launcher, sweep_console
from prompt_bench.records import (
    RECORD_NAME,
    claim_run_dir,
    find_ok_record,
    read_record,
    resolved_config,
    run_key,
)
from prompt_bench.run_lock import RunLock, owner_text
from prompt_bench.run_record import close_record, note_experiment, note_failure, note_outcome, open_record
from prompt_bench.scores import dev_score
from prompt_bench.training import fit_and_test
from prompt_bench.validate import check_config, check_output_dir

log = logging.getLogger("prompt_bench")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = str(PROJECT_ROOT / "conf")  # absolute: Hydra reads a relative path as a module path
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
    record = open_record(config, key, run_dir, list(overrides) if overrides is not None else task_overrides())
    run_window = reset_run_peak_rss()  # peak_rss_mb: this run's own peak, build included
    try:
        check_config(cfg)
        experiment = build_experiment(cfg)
        note_experiment(record, cfg, experiment)
        note_outcome(record, experiment, fit_and_test(cfg, experiment, run_dir, key), run_window)
    except Exception as error:  # every failure must end as a record
        note_failure(record, error)
    finally:
        close_record(record)
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
