"""Lightning callbacks for throughput and epoch lines, and the efficiency numbers of the record: parameters,
prompt bytes, time, throughput, memory."""

from __future__ import annotations

import logging
import resource
import sys
import time
from typing import Any

import pytorch_lightning as pl
import torch

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


class EpochLine(pl.Callback):
    """One log line per epoch (after its validation), so a CPU run shows progress without a progress bar."""

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        shown = ("train/loss", "val/acc", "val/f1")
        values = {k: float(v) for k, v in trainer.callback_metrics.items() if k in shown}
        text = "  ".join(f"{k} {v:.4f}" for k, v in values.items())
        log.info("epoch %d step %d  %s", trainer.current_epoch, trainer.global_step, text)


def peak_rss_mb() -> float:
    """Peak resident memory of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


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
