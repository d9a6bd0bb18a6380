"""What a submitted job of a packed sweep runs: a pack, or one refused run the ordinary way.

Submitted as plain functions of this package (never a pickled launcher), with the runs' composed
configs; `SweepJobsFunction` is submitit-checkpointable, so a requeued job starts again and each run
goes on from its own checkpoint (`packed_last.ckpt`, or Lightning's `last.ckpt` for a refused run).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from submitit.helpers import Checkpointable

from prompt_bench.records import read_record, resolved_config, run_key


def job_logging() -> None:
    """Info lines to the job's stdout (submitit keeps it in <submitit_folder>/<job id>_0_log.out)."""
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")


class SweepJobsFunction(Checkpointable):
    """__call__(entries, packed): entries are (cfg, overrides, sweep dir) of the job's runs; returns
    their records in order."""

    def __call__(self, entries: list[tuple[DictConfig, list[str], str]], packed: bool) -> list[dict[str, Any]]:
        from prompt_bench.console import run_line

        job_logging()
        if packed:
            from prompt_bench.packing.pack_run import PackJob, run_pack

            jobs = [PackJob(cfg, list(overrides), Path(sweep_dir)) for cfg, overrides, sweep_dir in entries]
            return run_pack(jobs, on_record=lambda record, outcome: print(run_line(record, outcome), flush=True))
        from prompt_bench.run import run_experiment

        records = [run_experiment(cfg, overrides=list(overrides)) for cfg, overrides, _ in entries]
        for record in records:
            print(run_line(record), flush=True)
        return records


def unfinished_record(cfg: DictConfig, error: BaseException) -> dict[str, Any]:
    """What the launcher reports for a run whose job died: its record on disk, marked failed."""
    record = dict(read_record(Path(cfg.paths.output_dir)) or {})
    record.setdefault("run_key", run_key(resolved_config(cfg)))
    record.setdefault("run_dir", str(cfg.paths.output_dir))
    if record.get("status") != "ok":
        record["status"] = "failed"
        record["error"] = f"the job ended without finishing this run ({type(error).__name__}: {str(error)[:300]})"
    return record
