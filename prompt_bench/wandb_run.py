"""The wandb side of a run: its id, group and config when the logger is built, its summary when the run ends.

- config: the whole resolved config, flattened to dotted keys (`dataset.k_shot`, `method.optimizer.lr`,
  `method.module.n_tokens`, `backbone.name`), so runs filter and group by any of them; plus `run.key`,
  `run.split_hash`, `run.git_commit`, `run.code_version`, `run.sweep`, `run.dir`.
- id: sha256(run key | sweep | code version)[:16]. A single run and a sweep run of the same config, or the
  same config under two code versions, are different wandb runs; a relaunch of the same sweep on the same
  code resumes its wandb run. A single run's "sweep" is its run dir name (a timestamp, unless
  hydra.run.dir is fixed, when a rerun resumes).
- group: the sweep name (single runs: none); job_type: the method (conf/logger/wandb.yaml).
- summary at the end: every metric of the record (`zero_shot/*`, `test/*`, `test/primary`, `val/*_best`),
  `efficiency/*` (trainable params, train seconds, samples/s, peak memory), `status` and `error`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig

from prompt_bench.records import git_commit, resolved_config

log = logging.getLogger("prompt_bench")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}, "c": [1, 2]} -> {"a.b": 1, "c": [1, 2]} (lists stay values)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def code_version() -> str:
    """The git commit of the checkout (`-dirty` when it has uncommitted changes), else the package version."""
    commit = git_commit(PROJECT_ROOT)
    if commit:
        return commit
    try:
        return f"prompt_bench-{metadata.version('prompt_bench')}"
    except metadata.PackageNotFoundError:
        return "unknown"


def in_sweep() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def wandb_run_id(run_key: str, sweep: str, version: str) -> str:
    """16 hex chars of sha256("<run key>|<sweep>|<code version>")."""
    return hashlib.sha256(f"{run_key}|{sweep}|{version}".encode()).hexdigest()[:16]


def wandb_logger(node: DictConfig, cfg: DictConfig, run_key: str, run_dir: Path, split_hash: str | None) -> Any:
    """A WandbLogger from `node` with the id and group above, its config already logged (flattened)."""
    # wandb's own console output (run history sparklines, summary: ~30 lines per run) off unless asked for;
    # the record and `wandb sync` have it all. WANDB_QUIET=false brings it back.
    os.environ.setdefault("WANDB_QUIET", "true")
    version = code_version()
    sweep = str(cfg.sweep_name) if in_sweep() else None
    if sweep:  # a sweep prints one line per run: wandb's "run data is saved locally in ..." lines too are off
        os.environ.setdefault("WANDB_SILENT", "true")
    run_id = wandb_run_id(run_key, sweep or Path(run_dir).name, version)
    logger = instantiate(node, id=run_id, group=sweep, resume="allow")
    # Lightning passes anonymous=None, which wandb >= 0.2x warns about on every run although it has no effect.
    getattr(logger, "_wandb_init", {}).pop("anonymous", None)
    flat = flatten(resolved_config(cfg))
    flat.update(
        {
            "run.key": run_key,
            "run.split_hash": split_hash,
            "run.git_commit": git_commit(PROJECT_ROOT),
            "run.code_version": version,
            "run.sweep": sweep,
            "run.dir": str(run_dir),
        }
    )
    logger.log_hyperparams(flat)
    return logger


def summary_of(record: dict[str, Any]) -> dict[str, Any]:
    """What the wandb summary gets from a finished record: metrics, efficiency/*, status (and error)."""
    summary: dict[str, Any] = dict(record.get("metrics") or {})
    summary.update({f"efficiency/{name}": value for name, value in (record.get("efficiency") or {}).items()})
    summary["status"] = record.get("status")
    if record.get("error"):
        summary["error"] = record["error"]
    return summary


def finish(record: dict[str, Any]) -> None:
    """Write the record's numbers into the open wandb run's summary, then close it (exit code 1 when failed),
    so the next job of a multirun starts its own run. Nothing happens when no wandb run is open."""
    wandb = sys.modules.get("wandb")
    if wandb is None or getattr(wandb, "run", None) is None:
        return
    try:
        wandb.run.summary.update(summary_of(record))
    except Exception as error:  # noqa: BLE001 - the record is written; a wandb hiccup must not fail the run
        log.warning("could not write the wandb summary: %s", error)
    wandb.finish(exit_code=0 if record.get("status") == "ok" else 1)
