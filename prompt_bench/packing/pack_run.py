"""Run one pack: claim each run, build them on one backbone, train them together, record each.

Every run keeps the unpacked path's contract (prompt_bench/run.py): an `ok` record in the sweep means
skipped; its dir is claimed (`claim_run_dir`) and locked (`RunLock`), so a twin launcher skips it; its
record is opened `running`, and ends `ok` or `failed` whatever happens to the others; a killed run
goes on from its own `packed_last.ckpt`. Records name their pack-mates (`packed_with`).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from prompt_bench.build import build_experiment
from prompt_bench.callbacks import reset_run_peak_rss
from prompt_bench.errors import ConfigError, PromptBenchError
from prompt_bench.packing.loop import PackStats, train_pack
from prompt_bench.packing.member import PackMember
from prompt_bench.packing.plan import pack_key
from prompt_bench.packing.refusals import PRECISIONS, built_refusal, config_refusal
from prompt_bench.quiet import quiet_known_noise
from prompt_bench.records import (
    RECORD_NAME,
    claim_run_dir,
    find_ok_record,
    resolved_config,
    run_key,
    write_json_atomic,
)
from prompt_bench.run_lock import RunLock, owner_text
from prompt_bench.run_record import close_record, note_experiment, note_failure, note_outcome, open_record
from prompt_bench.validate import check_config, check_output_dir

log = logging.getLogger("prompt_bench")


@dataclass
class PackJob:
    """A run to pack: its composed config (paths.output_dir = its run dir, no hydra node), the
    overrides its record keeps, and the sweep dir where an earlier `ok` record of it is looked up."""

    cfg: DictConfig
    overrides: list[str]
    sweep_dir: Path


def device_of(cfg: DictConfig) -> torch.device:
    accelerator = str(cfg.trainer.get("accelerator", "cpu"))
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def autocast_dtype(cfg: DictConfig) -> torch.dtype | None:
    return torch.bfloat16 if PRECISIONS.get(cfg.trainer.get("precision", "32-true")) == "bf16" else None


class Pack:
    """The runs of one pack and what happens to each; `run()` returns their records in job order."""

    def __init__(self, jobs: list[PackJob], on_record: Callable[[dict[str, Any], str], None] | None = None) -> None:
        self.jobs = jobs
        self.on_record = on_record or (lambda record, outcome: None)
        self.records: list[dict[str, Any] | None] = [None] * len(jobs)
        self.members: dict[int, PackMember] = {}
        self.stats = PackStats()
        self.rss_window = False

    # ---- claiming ----------------------------------------------------------------------------------
    def claim(self, index: int, job: PackJob) -> None:
        """Skip an ok run, or claim and lock its dir and open its record (a PackMember)."""
        cfg = job.cfg
        config = resolved_config(cfg)
        key = run_key(config)
        if cfg.get("skip_done", True) and (done := find_ok_record(job.sweep_dir, key)) is not None:
            log.info("skipping run %s: already ok in %s", key, done.get("run_dir"))
            self.finish_record(index, done, "skipped")
            return
        run_dir = claim_run_dir(Path(cfg.paths.output_dir), key)
        try:
            check_output_dir(run_dir)
        except PromptBenchError as error:
            log.error("run failed: %s", error)
            failed = {
                "run_key": key,
                "status": "failed",
                "run_dir": str(run_dir),
                "error": f"{type(error).__name__}: {error}",
            }
            self.finish_record(index, failed, "failed")
            return
        lock = RunLock(run_dir)
        if not lock.acquire():
            log.info("skipping run %s: %s is held by %s", key, run_dir, owner_text(lock.holder))
            held = {"run_key": key, "status": "skipped", "run_dir": str(run_dir), "held_by": lock.holder}
            self.finish_record(index, held, "skipped")
            return
        if cfg.get("skip_done", True) and (done := find_ok_record(job.sweep_dir, key)) is not None:
            lock.release()
            self.finish_record(index, done, "skipped")
            return
        record = open_record(config, key, run_dir, job.overrides)
        self.members[index] = PackMember(cfg, key, run_dir, record, lock)

    # ---- building ------------------------------------------------------------------------------------
    def build(self) -> Any:
        """Load the shared backbone once, then build each run on it; a run that fails to build is recorded."""
        adapter, shared_key = None, None
        for member in list(self.members.values()):
            cfg = member.cfg
            try:
                check_config(cfg)
                refusal = config_refusal(cfg)
                if refusal:
                    raise ConfigError(f"this run cannot be packed: {refusal}.")
                if shared_key is not None and pack_key(cfg) != shared_key:
                    raise ConfigError(
                        "this run's backbone, its method.backbone_dropout, device or precision differs from its "
                        "pack's first run; packs share one backbone pass (prompt_bench/packing/plan.py groups runs by it)."
                    )
                if adapter is None:
                    adapter, shared_key = instantiate(cfg.backbone), pack_key(cfg)
                experiment = build_experiment(cfg, adapter=adapter)
                note_experiment(member.record, cfg, experiment)
                refusal = built_refusal(experiment)
                if refusal:
                    raise ConfigError(f"this run cannot be packed: {refusal}.")
                member.start(experiment, device_of(cfg), autocast_dtype(cfg))
            except Exception as error:  # noqa: BLE001 - every failure ends as this run's record
                self.fail(member, error, traceback.format_exc())
        return adapter

    # ---- the end of a run ------------------------------------------------------------------------------
    def done(self, member: PackMember, tested: dict[str, float]) -> None:
        """Complete the tested run's metrics, note its outcome and close its record."""
        try:
            outcome = member.finish(tested)
            note_outcome(member.record, member.experiment, outcome, self.rss_window, scope="pack")
            member.record["efficiency"]["pack_train_samples_per_s"] = self.stats.samples_per_s
        except Exception as error:  # noqa: BLE001
            self.fail(member, error, traceback.format_exc())
            return
        self.close(member)

    def fail(self, member: PackMember, error: BaseException, trace: str | None = None) -> None:
        trace = trace or "".join(traceback.format_exception(type(error), error, error.__traceback__))
        note_failure(member.record, error, trace)
        self.close(member)

    def close(self, member: PackMember) -> None:
        index = next(i for i, m in self.members.items() if m is member)
        try:
            close_record(member.record)
        finally:
            member.lock.release()
            del self.members[index]
        self.finish_record(index, member.record, member.record["status"])

    def finish_record(self, index: int, record: dict[str, Any], outcome: str) -> None:
        self.records[index] = record
        self.on_record(record, outcome)

    # ---- the whole pack ----------------------------------------------------------------------------------
    def run(self) -> list[dict[str, Any]]:
        quiet_known_noise()
        self.rss_window = reset_run_peak_rss()  # peak_rss_mb: the pack's peak (scope "pack")
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        for index, job in enumerate(self.jobs):
            self.claim(index, job)
        keys = {index: member.key for index, member in self.members.items()}
        for index, member in self.members.items():
            member.record["packed_with"] = [key for other, key in keys.items() if other != index]
            write_json_atomic(member.run_dir / RECORD_NAME, member.record)  # a killed run still names its pack
        try:
            adapter = self.build()
            for member in list(self.members.values()):
                try:
                    member.zero_shot()
                    member.resume()
                except Exception as error:  # noqa: BLE001
                    self.fail(member, error, traceback.format_exc())
            if self.members:
                train_pack(adapter, list(self.members.values()), self.done, self.fail, self.stats)
        finally:
            for member in list(self.members.values()):  # an error of the pack itself: nobody left running
                self.fail(member, RuntimeError("the pack stopped before this run finished"))
        return [record for record in self.records if record is not None]


def run_pack(
    jobs: list[PackJob], on_record: Callable[[dict[str, Any], str], None] | None = None
) -> list[dict[str, Any]]:
    """Train `jobs` as one pack; returns one record per job (ok, failed, or the one that made it skip).
    on_record(record, outcome) is called as each run ends (outcome: ok | failed | skipped)."""
    return Pack(jobs, on_record).run()


def run_configs(configs: list[DictConfig]) -> list[dict[str, Any]]:
    """Train composed run configs (`paths.output_dir` set per run) as one pack; one record per config, in
    order. An earlier ok record is looked up beside each run dir (its parent is the sweep dir)."""
    return run_pack([PackJob(cfg, [], Path(cfg.paths.output_dir).parent) for cfg in configs])
