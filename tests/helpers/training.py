"""Short CPU training runs and parameter snapshots (which parameters a run changed)."""

from __future__ import annotations

import pytorch_lightning as pl
import torch


class LossHistory(pl.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> set[str]:
    return {name for name, p in module.named_parameters() if not torch.equal(before[name], p.detach())}


def fit(experiment, steps: int, callbacks=()) -> pl.Trainer:
    """`steps` optimizer steps on the CPU, no validation, logging or checkpoints."""
    trainer = pl.Trainer(
        max_steps=steps,
        max_epochs=-1,
        logger=False,
        enable_checkpointing=False,
        limit_val_batches=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        callbacks=list(callbacks),
    )
    trainer.fit(experiment.module, datamodule=experiment.datamodule)
    return trainer


def train(experiment, steps: int) -> LossHistory:
    """`fit` with the loss of every step recorded."""
    history = LossHistory()
    fit(experiment, steps, callbacks=[history])
    return history
