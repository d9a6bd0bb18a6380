"""MetaPT / PPT meta-training as a Lightning fit: one training step is one outer (meta) step.

    EpisodeStream   meta-batch s = sample_episodes(tasks, tasks_per_step, m, G) for s = 0, 1, ...,
                    G = torch.Generator().manual_seed(seed) drawn in order from step 0, so step s is
                    the same meta-batch in a fresh fit and in one resumed at step k <= s (the first k
                    meta-batches are drawn again and dropped: index draws only, nothing is encoded)
    MetaFit         training_step = maml.step_gradients (meta_step, or PPT's multi-task gradient)
                    then maml.outer_update with the outer optimizer (manual optimisation), exactly
                    the steps of maml.meta_train; the frozen backbone stays in eval mode
    fit_meta(...)   the Trainer: max_steps = meta_steps, last.ckpt every `checkpoint_every` steps in
                    `checkpoint_dir`, resumed from there when a killed maker left one

A checkpoint holds only the meta-parameters (prompt, heads), the outer optimizer's state, the
per-step history and the seconds trained so far, never the frozen backbone's weights.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from prompt_bench.methods.metapt.maml import (
    Collate,
    LossFn,
    PromptMAMLConfig,
    build_outer_optimizer,
    outer_update,
    step_gradients,
)
from prompt_bench.methods.metapt.tasks import AuxiliaryTask, sample_episodes

log = logging.getLogger("prompt_bench")

LAST_CHECKPOINT = "last.ckpt"


class EpisodeStream(IterableDataset):
    """Meta-batches start()..meta_steps-1 of the sequence seeded by `seed` (module docstring).

    Each item: {"step": s, "tasks": [task names], "pairs": [(support batch, query batch) per task]},
    batches as `collate(examples, task)` makes them. `start` is read when iteration begins (the
    trainer's global step, after a checkpoint is restored).
    """

    def __init__(
        self,
        tasks: Sequence[AuxiliaryTask],
        config: PromptMAMLConfig,
        collate: Collate,
        seed: int,
        start: Callable[[], int] = lambda: 0,
    ) -> None:
        small = [task.name for task in tasks if len(task) < 2 * config.m]
        if small:
            raise ValueError(
                f"tasks {small} have fewer than 2m = {2 * config.m} examples, too few for a disjoint "
                f"support and query set; filter them with usable_tasks(tasks, m) or lower m"
            )
        self.tasks, self.config, self.collate, self.seed, self.start = list(tasks), config, collate, seed, start

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed)
        start = self.start()
        for step in range(self.config.meta_steps):
            episodes = sample_episodes(self.tasks, self.config.tasks_per_step, self.config.m, generator)
            if step < start:
                continue
            yield {
                "step": step,
                "tasks": [episode.task.name for episode in episodes],
                "pairs": [
                    (self.collate(episode.support, episode.task), self.collate(episode.query, episode.task))
                    for episode in episodes
                ],
            }


class MetaFit(pl.LightningModule):
    """Meta-training of `model`'s meta-parameters (manual optimisation, one outer step a batch).

    Args:
        model: holds the frozen module and the meta-parameters; `meta_parameters()` returns the
            latter as {name: nn.Parameter} (the prompt, the heads' weights).
        frozen: the frozen backbone inside `model`: kept in eval mode (no dropout) whatever
            Lightning sets, and left out of checkpoints.
        loss_fn: loss_fn(params, batch) -> scalar, differentiable in params.
        config: the Prompt-MAML settings (outer optimizer, lr, order, ...).
        stream: the episodes.
        baseline: PPT's multi-task gradient instead of the meta-gradient.
    """

    def __init__(
        self,
        model: nn.Module,
        frozen: nn.Module,
        loss_fn: LossFn,
        config: PromptMAMLConfig,
        stream: EpisodeStream,
        baseline: bool = False,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.strict_loading = False  # checkpoints carry the meta-parameters only
        self.model, self.frozen, self.loss_fn = model, frozen, loss_fn
        self.config, self.stream, self.baseline = config, stream, baseline
        self.history: list[dict[str, Any]] = []
        self.seconds_before = 0.0  # meta-training seconds of earlier attempts (from the checkpoint)
        self.resumed_from: int | None = None
        self._started: float | None = None
        stream.start = lambda: self.trainer.global_step

    def meta_parameters(self) -> dict[str, nn.Parameter]:
        return self.model.meta_parameters()

    def train(self, mode: bool = True) -> MetaFit:
        super().train(mode)
        self.frozen.eval()  # the inner and outer losses see one deterministic function
        return self

    @property
    def seconds(self) -> float:
        """Meta-training seconds over every attempt."""
        running = time.perf_counter() - self._started if self._started is not None else 0.0
        return self.seconds_before + running

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return build_outer_optimizer(self.meta_parameters().values(), self.config)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.stream, batch_size=None)

    def on_train_start(self) -> None:
        self.frozen.eval()  # Lightning does not call train() without validation; eval whatever the caller left
        self._started = time.perf_counter()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        params = self.meta_parameters()
        stats: dict[str, Any] = {"step": batch["step"], "tasks": batch["tasks"]}
        grads = step_gradients(params, batch["pairs"], self.loss_fn, self.config, self.baseline, stats)
        outer_update(params, grads, optimizer=self.optimizers())
        self.history.append(stats)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        kept = {f"model.{name}" for name in self.meta_parameters()}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in kept}
        checkpoint["meta_history"] = list(self.history)
        checkpoint["meta_seconds"] = self.seconds

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        expected = {f"model.{name}" for name in self.meta_parameters()}
        if set(checkpoint["state_dict"]) != expected:
            raise ValueError(
                f"the meta-training checkpoint holds {sorted(checkpoint['state_dict'])}, not this maker's "
                f"meta-parameters {sorted(expected)}; delete it to start again"
            )
        self.history = list(checkpoint.get("meta_history", []))
        self.seconds_before = float(checkpoint.get("meta_seconds", 0.0))
        self.resumed_from = int(checkpoint.get("global_step", len(self.history)))


class MetaStepLine(pl.Callback):
    """A log line every `every` meta-steps (0: none), as EpochLine does for epochs."""

    def __init__(self, label: str, every: int) -> None:
        self.label, self.every = label, every

    def on_train_start(self, trainer: pl.Trainer, module: MetaFit) -> None:
        if module.resumed_from:
            log.info("%s init: resuming from step %d/%d", self.label, module.resumed_from, module.config.meta_steps)

    def on_train_batch_end(self, trainer: pl.Trainer, module: MetaFit, outputs, batch, batch_idx: int) -> None:
        step = trainer.global_step
        if self.every and step % self.every == 0:
            stats = module.history[-1]
            loss = stats.get("query_loss", stats.get("loss"))
            log.info(
                "%s init: step %d/%d, loss %.4f, %.1fs",
                self.label,
                step,
                module.config.meta_steps,
                loss,
                module.seconds,
            )


def fit_meta(
    module: MetaFit,
    checkpoint_dir: Path,
    label: str,
    log_every: int,
    checkpoint_every: int = 1,
    accelerator: str = "cpu",
) -> list[dict[str, Any]]:
    """Run module's meta-training to config.meta_steps, resuming from checkpoint_dir/last.ckpt if
    there is one; returns the per-step stats (all attempts)."""
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    last = Path(checkpoint_dir) / LAST_CHECKPOINT
    if module.config.meta_steps == 0:
        return []
    checkpoint = ModelCheckpoint(
        dirpath=checkpoint_dir,
        filename=Path(LAST_CHECKPOINT).stem,
        monitor=None,
        save_top_k=1,
        every_n_train_steps=checkpoint_every,
        save_on_train_epoch_end=False,
        enable_version_counter=False,
    )
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=1,
        max_steps=module.config.meta_steps,
        max_epochs=-1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[MetaStepLine(label, log_every), checkpoint],
        default_root_dir=str(checkpoint_dir),
    )
    trainer.fit(module, ckpt_path=str(last) if last.exists() else None)
    return module.history
