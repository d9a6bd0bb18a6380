"""Fit and test one built experiment with Lightning; return what the record needs."""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.plugins.environments import SLURMEnvironment
from safetensors.torch import save_file

from prompt_bench.callbacks import Progress, TrainThroughput, progress_mode
from prompt_bench.export.metadata import HEAD_FILE, base_model_reference, prompt_metadata
from prompt_bench.export.peft import write_peft_adapter
from prompt_bench.methods.base import PROMPT_FILE
from prompt_bench.quiet import quiet_known_noise
from prompt_bench.records import move_aside, share_file
from prompt_bench.wandb_run import in_sweep, wandb_logger
from prompt_bench.zero_shot import zero_shot_scores

if TYPE_CHECKING:  # annotations only: the builder imports this module to train dependency runs
    from prompt_bench.build import Experiment

log = logging.getLogger("prompt_bench")


@dataclass
class Outcome:
    metrics: dict[str, float]
    train_seconds: float
    train_samples_per_s: float | None
    best_checkpoint: str | None
    resumed_from_step: int | None = None
    train_seconds_before_resume: float = 0.0
    device_memory: dict[str, float] = field(default_factory=dict)


def fit_and_test(cfg: DictConfig, experiment: Experiment, run_dir: Path, run_key: str) -> Outcome:
    """Zero-shot score (same run), fit with best-on-dev checkpointing, test the best checkpoint."""
    quiet_known_noise()
    module, datamodule, metric = experiment.module, experiment.datamodule, experiment.split.metric
    datamodule.setup("fit")
    metrics: dict[str, float] = {}
    if cfg.zero_shot and experiment.head.zero_shot_capable:
        zero_shot = zero_shot_scores(cfg, experiment)  # shared by runs whose pass would be the same
        metrics.update({f"zero_shot/{name.split('/')[-1]}": value for name, value in zero_shot.items()})

    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="best", monitor=f"val/{metric}", mode="max", save_top_k=1
    )
    throughput = TrainThroughput()
    clock = TrainClock()
    progress = Progress(progress_mode(cfg.get("progress", "auto"), sys.stdout.isatty()), not in_sweep())
    callbacks = [checkpoint, throughput, progress, clock]
    if cfg.checkpoint_every_epoch:
        # Lightning's save_last only rewrites last.ckpt when `best` improves; resuming needs every epoch.
        callbacks.append(
            ModelCheckpoint(
                dirpath=run_dir / "checkpoints",
                filename="last",
                monitor=None,
                save_top_k=1,
                enable_version_counter=False,
            )
        )
    trainer = instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=build_loggers(cfg, run_key, run_dir, experiment.split.content_hash) or False,
        plugins=slurm_plugins(),
        default_root_dir=str(run_dir),
    )
    keep_csv_history(trainer)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()

    last_checkpoint = run_dir / "checkpoints" / "last.ckpt"
    resumed_from_step = None
    if last_checkpoint.exists():  # a killed run of this same config: continue where it stopped
        resumed_from_step = checkpoint_step(last_checkpoint)
        if resumed_from_step is not None:
            log.info("resuming from %s (step %d)", last_checkpoint, resumed_from_step)
    started = time.perf_counter()
    trainer.fit(
        module, datamodule=datamodule, ckpt_path=str(last_checkpoint) if resumed_from_step is not None else None
    )
    # Earlier attempts' training time (up to their last checkpoint) comes back with the checkpoint.
    train_seconds = clock.before + time.perf_counter() - started
    seconds_before_resume = clock.before  # read now: testing the best checkpoint below reloads the clock's state

    best = checkpoint.best_model_path or None
    # The CoOp family tests the last epoch, as its official code (method.test_checkpoint=last).
    tested_checkpoint = best if cfg.method.get("test_checkpoint", "best") == "best" else None
    tested = trainer.test(module, datamodule=datamodule, ckpt_path=tested_checkpoint, verbose=False)[0]
    metrics.update({name: float(value) for name, value in tested.items()})
    complete_metrics(experiment, metrics)

    if cfg.save_prompt:
        save_prompt(experiment, run_dir, cfg)
    device_memory = {"peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20} if torch.cuda.is_available() else {}
    return Outcome(
        metrics=metrics,
        train_seconds=train_seconds,
        train_samples_per_s=throughput.samples_per_second,
        best_checkpoint=best,
        resumed_from_step=resumed_from_step,
        train_seconds_before_resume=seconds_before_resume,
        device_memory=device_memory,
    )


def complete_metrics(experiment: Experiment, metrics: dict[str, float]) -> None:
    """After the test scores: the method's own test metrics, the headline `test/primary`, the best dev
    scores and `val/primary_best` (the dev score the checkpoint was selected on, what sweepers tune)."""
    module, metric = experiment.module, experiment.split.metric
    metrics.update(experiment.method.extra_test_metrics(module, experiment.datamodule.test_dataloader()))
    primary = experiment.split.test_metric  # base-to-new: hmean
    metrics["test/primary"] = metrics[f"test/{primary}"]
    metrics["primary_metric"] = primary
    metrics.update(module.best_validation_scores())
    if f"val/{metric}_best" in metrics:
        metrics["val/primary_best"] = metrics[f"val/{metric}_best"]


class TrainClock(Callback):
    """Training seconds carried in the checkpoint, so a resumed run's train_seconds adds up its attempts."""

    def __init__(self) -> None:
        self.before = 0.0  # seconds earlier attempts had trained when their last checkpoint was written
        self.started: float | None = None

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.started = time.perf_counter()

    def state_dict(self) -> dict[str, float]:
        running = time.perf_counter() - self.started if self.started is not None else 0.0
        return {"train_seconds": self.before + running}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.before = float(state_dict.get("train_seconds", 0.0))


def keep_csv_history(trainer: Any) -> None:
    """A resumed run appends to csv/metrics.csv. Lightning's CSV writer deletes an existing
    metrics.csv when it is created; the earlier attempts' rows are read first, put back, and the
    writer starts from the file's own columns so its header rewrites keep them."""
    for logger in trainer.loggers:
        if not isinstance(logger, CSVLogger):
            continue
        metrics_file = Path(logger.log_dir) / "metrics.csv"
        history = metrics_file.read_bytes() if metrics_file.exists() else b""
        writer = logger.experiment  # creating the writer removes metrics.csv
        if not history:
            continue
        metrics_file.write_bytes(history)
        header = next(csv.reader(history.decode().splitlines()), [])
        writer.metrics_keys = sorted(header)
        log.info("appending to %s (the earlier attempts' rows kept)", metrics_file)


def checkpoint_step(path: Path) -> int | None:
    """The global step a checkpoint holds; an unreadable one is moved aside (None: start from scratch)."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=False)["global_step"])
    except Exception as error:  # noqa: BLE001 - a torn zip, a truncated pickle, a missing key: all unusable
        aside = move_aside(path)
        log.warning(
            "checkpoint %s is unreadable (%s: %s); moved aside to %s, training from scratch",
            path,
            type(error).__name__,
            str(error).splitlines()[0] if str(error) else "",
            aside,
        )
        return None


def build_loggers(cfg: DictConfig, run_key: str, run_dir: Path, split_hash: str | None = None) -> list[Any]:
    """Lightning loggers from cfg.logger; a wandb one gets its id, group and flattened config (wandb_run.py)."""
    loggers = []
    for node in (cfg.logger or {}).values():
        if str(node.get("_target_", "")).endswith("WandbLogger"):
            loggers.append(wandb_logger(node, cfg, run_key, run_dir, split_hash))
        else:
            loggers.append(instantiate(node))
    return loggers


def slurm_plugins() -> list[Any]:
    """Under SLURM, submitit owns requeueing: Lightning's own auto-requeue must stay off."""
    if "SLURM_JOB_ID" not in os.environ:
        return []
    return [SLURMEnvironment(auto_requeue=False)]


def save_prompt(experiment: Experiment, run_dir: Path, cfg: DictConfig) -> None:
    """The trained prompt alone (fp32 safetensors) + JSON metadata, never the frozen backbone; a
    trained head's own parameters (linear, a learned scale) in head.safetensors; a static prompt
    also as a PEFT adapter (adapter_config.json + adapter_model.safetensors, prompt_bench/export)."""
    tensors = {name: t.detach().float().cpu().contiguous() for name, t in experiment.method.prompt_tensors().items()}
    if not tensors:
        return
    save_file(tensors, str(run_dir / PROMPT_FILE))
    share_file(run_dir / PROMPT_FILE)
    head_tensors = {name: t.detach().float().cpu().contiguous() for name, t in experiment.head.named_parameters()}
    if head_tensors:
        save_file(head_tensors, str(run_dir / HEAD_FILE))
        share_file(run_dir / HEAD_FILE)
    peft_refusal = None
    if experiment.method.prompt_site == "input":
        peft_refusal = write_peft_adapter(run_dir, experiment.method, experiment.adapter, base_model_reference(cfg))
        if peft_refusal:
            log.info("no PEFT adapter: %s", peft_refusal)
    else:
        peft_refusal = "a class-site prompt (in front of a dual encoder's class texts) has no PEFT adapter type"
    metadata = prompt_metadata(experiment, cfg, tensors)
    metadata.update(head_file=HEAD_FILE if head_tensors else None, peft_adapter=peft_refusal is None)
    if peft_refusal:
        metadata["peft_refusal"] = peft_refusal
    (run_dir / "prompt.json").write_text(json.dumps(metadata, indent=2))
