"""Lightning callbacks for throughput and progress (a bar on a terminal, epoch lines with an ETA otherwise),
and the efficiency numbers of the record: parameters, prompt bytes, time, throughput, memory."""

from __future__ import annotations

import logging
import re
import resource
import sys
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress

from prompt_bench.errors import ConfigError

log = logging.getLogger("prompt_bench")


class TrainThroughput(pl.Callback):
    """Times the training batches alone (no validation) and counts the samples they held."""

    def __init__(self) -> None:
        self.samples = 0
        self.batch_seconds = 0.0
        self._started = 0.0

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch: Any, batch_idx: int) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.batch_seconds += time.perf_counter() - self._started
        self.samples += int(batch["labels"].shape[0])

    @property
    def samples_per_second(self) -> float | None:
        return self.samples / self.batch_seconds if self.batch_seconds > 0 else None


def clock(seconds: float) -> str:
    """0:42, 12:05, 1:02:03."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def eta_seconds(elapsed: float, steps_done: int, steps_left: float) -> float | None:
    """Time left at the mean pace so far: elapsed / steps_done * steps_left (None before the first step)."""
    if steps_done <= 0 or steps_left == float("inf"):
        return None
    return elapsed / steps_done * max(steps_left, 0)


def progress_mode(requested: str, is_terminal: bool) -> str:
    """`progress`: auto (a bar on a terminal, else lines), bar or lines."""
    if requested not in ("auto", "bar", "lines"):
        raise ConfigError(f"progress={requested!r} is not one of auto, bar, lines (conf/config.yaml: progress)")
    if requested == "auto":
        return "bar" if is_terminal else "lines"
    return requested


class Progress(pl.Callback):
    """Training progress over the whole fit (all epochs): steps done / total, elapsed, ETA, loss.

    mode="lines": one log line per epoch, after its validation (piped output, SLURM logs):
        epoch 3/20  step 12/80  train/loss 1.2345  val/acc 0.8125  elapsed 0:12  ETA 1:08
    mode="bar": a rich progress bar (steps, ETA, current loss) on the terminal; the epoch lines are printed
    above it and still logged to run.log.
    The ETA is elapsed / steps done * steps left, counted from this attempt's first step (a resumed run
    does not count the steps of earlier attempts as fast).
    """

    SHOWN = ("train/loss", "val/acc", "val/f1")

    def __init__(self, mode: str = "lines", epoch_lines_on_terminal: bool = True) -> None:
        self.mode = mode
        self.epoch_lines_on_terminal = epoch_lines_on_terminal  # off in a sweep: one line per run
        self.started = 0.0
        self.first_step = 0
        self.bar: RichProgress | None = None
        self.task: TaskID | None = None

    def total_steps(self, trainer: pl.Trainer) -> float:
        try:
            return float(trainer.estimated_stepping_batches)
        except Exception:  # noqa: BLE001 - an unsized dataloader: no total, no ETA
            return float("inf")

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.started = time.perf_counter()
        self.first_step = trainer.global_step
        if self.mode == "bar":
            total = self.total_steps(trainer)
            self.bar = RichProgress(
                TextColumn("train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("steps"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[loss]}"),
                console=Console(file=sys.stdout),
                transient=True,
            )
            self.task = self.bar.add_task(
                "train", total=None if total == float("inf") else total, completed=trainer.global_step, loss=""
            )
            self.bar.start()

    def on_train_batch_end(self, trainer, module, outputs, batch: Any, batch_idx: int) -> None:
        if self.bar is None:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        shown = f"loss {float(loss):.4f}" if isinstance(loss, torch.Tensor) else ""
        self.bar.update(self.task, completed=trainer.global_step, loss=shown)

    def epoch_line(self, trainer: pl.Trainer) -> str:
        values = {k: float(v) for k, v in trainer.callback_metrics.items() if k in self.SHOWN}
        total = self.total_steps(trainer)
        elapsed = time.perf_counter() - self.started
        eta = eta_seconds(elapsed, trainer.global_step - self.first_step, total - trainer.global_step)
        epochs = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        steps = f"/{int(total)}" if total != float("inf") else ""
        parts = [f"epoch {trainer.current_epoch + 1}{epochs}", f"step {trainer.global_step}{steps}"]
        parts += [f"{k} {v:.4f}" for k, v in values.items()]
        parts += [f"elapsed {clock(elapsed)}", f"ETA {clock(eta) if eta is not None else '?'}"]
        return "  ".join(parts)

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        line = self.epoch_line(trainer)
        if self.bar is not None:
            if self.epoch_lines_on_terminal:
                self.bar.console.print(line, highlight=False, soft_wrap=True)
            log.info(line, extra={"console": False})  # run.log only: the terminal has it above the bar
        else:
            log.info(line)

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.stop()

    def on_exception(self, trainer: pl.Trainer, module: pl.LightningModule, exception: BaseException) -> None:
        self.stop()

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def peak_rss_mb() -> float:
    """Peak resident memory of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


CLEAR_REFS = Path("/proc/self/clear_refs")
PROC_STATUS = Path("/proc/self/status")


def reset_run_peak_rss() -> bool:
    """Start this run's peak-memory window: on Linux, writing 5 to /proc/self/clear_refs resets the
    process's resident high-water mark (VmHWM). In a local sweep many runs share one process, whose
    peak would otherwise only grow from run to run; the window gives each run its own. False where
    unsupported (the record then says peak_rss_scope: process)."""
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return run_peak_rss_mb() is not None


def run_peak_rss_mb() -> float | None:
    """VmHWM of /proc/self/status in MiB: the peak resident memory since reset_run_peak_rss (None off Linux)."""
    try:
        match = re.search(r"^VmHWM:\s+(\d+)\s+kB", PROC_STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) / 1024 if match else None


def parameter_counts(module: pl.LightningModule) -> dict[str, float]:
    """Trainable parameters, their share of the backbone, and the bytes of the saved prompt."""
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    backbone = sum(p.numel() for p in module.backbone.parameters())
    prompt_bytes = sum(t.numel() * t.element_size() for t in module.method.prompt_tensors().values())
    return {
        "trainable_params": trainable,
        "backbone_params": backbone,
        "trainable_pct_of_backbone": 100.0 * trainable / backbone if backbone else None,
        "prompt_bytes": prompt_bytes,
    }
