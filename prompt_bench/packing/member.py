"""One run inside a pack: everything that stays its own while the backbone pass is shared.

Its optimizer and schedule (the module's own `configure_optimizers`), its gradient clipping, its
epochs over its own split (its own shuffle generator, `limit_train_batches`), its dev evaluation
and best-on-dev checkpoint, its test, its record. The steps mirror what Lightning does for the
unpacked run (prompt_bench/training.py), so the metrics match it:

- per step: zero_grad, (the pack's backward), clip this run's parameters by
  `trainer.gradient_clip_val` (algorithm norm or value), optimizer step, a step-interval schedule;
- per epoch end: dev scores every `check_val_every_n_epoch` epochs over `limit_val_batches`
  batches (computed by the pack, `evaluate.py`), `val_best` maxima updated, the best checkpoint
  replaced when the monitored dev score (the split's metric) strictly improves (NaN counts as
  -inf, as in ModelCheckpoint), then an epoch-interval schedule, then `packed_last.ckpt`
  (cfg.checkpoint_every_epoch);
- at the end: the best checkpoint's trainable state is loaded and tested (by the pack, over
  `limit_test_batches` batches), the metrics completed as in the unpacked path
  (`training.complete_metrics`), the prompt saved.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import logging
import math
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig
from torch import Tensor

from prompt_bench.errors import TrainingDivergedError
from prompt_bench.packing.checkpoints import BEST_NAME, LAST_NAME, load_last, save_atomic, trainable_state
from prompt_bench.run_lock import RunLock
from prompt_bench.training import Outcome, complete_metrics, save_prompt
from prompt_bench.zero_shot import zero_shot_scores

if TYPE_CHECKING:
    from prompt_bench.build import Experiment

log = logging.getLogger("prompt_bench")
DEFAULT_MAX_EPOCHS = 1000  # Lightning's, when neither max_epochs nor max_steps is set


def limited(total: int, limit: int | float | None) -> int:
    """Batches Lightning runs of a loader of `total` batches under limit_*_batches (int: at most that
    many; float: that fraction, rounded down; None: all)."""
    if limit is None:
        return total
    if isinstance(limit, int):
        return min(limit, total)
    return int(total * float(limit))


class PackMember:
    """A run of a pack, from its claimed run dir to its closed record.

    cfg: the run's composed config (paths.output_dir = run_dir). record: its open record (status
    running). lock: its held RunLock, released by the pack when the run ends.
    """

    def __init__(self, cfg: DictConfig, key: str, run_dir: Path, record: dict[str, Any], lock: RunLock) -> None:
        self.cfg = cfg
        self.key = key
        self.run_dir = run_dir
        self.record = record
        self.lock = lock
        self.experiment: Experiment | None = None
        self.metrics: dict[str, float] = {}
        self.training = False
        self.failure: BaseException | None = None  # set when the run fails mid-pack (then dropped)
        self.autocast_dtype: torch.dtype | None = None
        self.device = torch.device("cpu")

    # ---- set-up ----------------------------------------------------------------------------------
    def start(self, experiment: Experiment, device: torch.device, autocast_dtype: torch.dtype | None) -> None:
        """Place the module, make its optimizer and schedule, read its trainer settings, resume."""
        self.experiment, self.device, self.autocast_dtype = experiment, device, autocast_dtype
        self.rng_state = torch.random.get_rng_state()  # where its unpacked run's stream is after the build
        self.cuda_rng_state = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        module, datamodule, trainer = experiment.module, experiment.datamodule, self.cfg.trainer
        module.to(device)
        datamodule.setup("fit")
        # As Lightning: max_steps (> 0) stops training at that optimizer step, mid-epoch or not (no dev pass is
        # added there); max_epochs -1 or null runs until then, or 1000 epochs when no max_steps is set either.
        self.max_steps = int(trainer.get("max_steps", -1) or -1)
        max_epochs = trainer.get("max_epochs")
        unset = max_epochs is None or int(max_epochs) == -1
        self.max_epochs = (math.inf if self.max_steps > 0 else DEFAULT_MAX_EPOCHS) if unset else int(max_epochs)
        self.train_loader = datamodule.train_dataloader()
        self.steps_per_epoch = limited(len(self.train_loader), trainer.get("limit_train_batches"))
        configured = module.optimizers_for(self.run_steps)
        self.scheduler, self.scheduler_interval = None, None
        if isinstance(configured, dict):
            self.optimizer = configured["optimizer"]
            self.scheduler = configured["lr_scheduler"]["scheduler"]
            self.scheduler_interval = configured["lr_scheduler"]["interval"]
        else:
            self.optimizer = configured
        self.parameters = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.val_batches = limited(len(datamodule.val_dataloader()), trainer.get("limit_val_batches"))
        self.test_batches = limited(len(datamodule.test_dataloader()), trainer.get("limit_test_batches"))
        self.check_val_every = int(trainer.get("check_val_every_n_epoch") or 1)
        # The Trainer's gradient_clip_val wins; else method.gradient_clip_norm (`configure_gradient_clipping`).
        self.clip_value = trainer.get("gradient_clip_val")
        self.clip_algorithm = trainer.get("gradient_clip_algorithm") or "norm"
        if self.clip_value is None and module.gradient_clip_norm is not None:
            self.clip_value, self.clip_algorithm = module.gradient_clip_norm, "norm"
        self.metric = experiment.split.metric
        self.epoch = self.global_step = self.batch_in_epoch = 0
        self.iterator: Iterator | None = None
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.best_path: str | None = None
        self.seconds_before = 0.0  # earlier attempts' training seconds (from packed_last.ckpt)
        self.samples = 0
        self.step_seconds = 0.0  # seconds of the pack steps this run took part in
        self.epoch_losses: list[float] = []
        self.resumed_from_step: int | None = None
        self.training = self.steps_per_epoch > 0
        self.train_started = time.perf_counter()

    @property
    def module(self) -> Any:
        return self.experiment.module

    def run_steps(self) -> int:
        """The run's optimizer steps, as Lightning's estimated_stepping_batches (a schedule's total_steps)."""
        by_epochs = self.steps_per_epoch * self.max_epochs
        return int(min(by_epochs, self.max_steps) if self.max_steps > 0 else by_epochs)

    @property
    def steps_done(self) -> bool:
        """trainer.max_steps reached."""
        return 0 < self.max_steps <= self.global_step

    @contextlib.contextmanager
    def own_rng(self) -> Iterator[None]:
        """Run the block on this run's own torch random stream (CPU, and CUDA on a GPU), started from the
        global state right after its build, as its unpacked run starts: its draws (method dropout, sampled
        prompts, loader seeds) are the ones it would make alone, whatever its pack-mates draw."""
        saved = torch.random.get_rng_state()
        saved_cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        torch.random.set_rng_state(self.rng_state)
        if saved_cuda is not None:
            torch.cuda.set_rng_state(self.cuda_rng_state, self.device)
        try:
            yield
        finally:
            self.rng_state = torch.random.get_rng_state()
            torch.random.set_rng_state(saved)
            if saved_cuda is not None:
                self.cuda_rng_state = torch.cuda.get_rng_state(self.device)
                torch.cuda.set_rng_state(saved_cuda, self.device)

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on the run's device for trainer.precision=bf16-mixed, else nothing."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    # ---- steps -----------------------------------------------------------------------------------
    def next_batch(self) -> dict[str, Tensor]:
        """The next training batch of this run's epoch (a new shuffled epoch when none is open)."""
        if self.iterator is None:
            self.module.train()
            self.iterator = iter(self.train_loader)
        batch = next(self.iterator)
        return {name: value.to(self.device) for name, value in batch.items()}

    def divergence(self, loss: Tensor) -> TrainingDivergedError:
        """The error of a run whose training loss is not finite."""
        return TrainingDivergedError(
            f"the training loss became {float(loss)} at step {self.global_step} (epoch {self.epoch}); the run was "
            "dropped from its pack and its pack-mates went on. Lower method.optimizer.lr or set "
            "trainer.gradient_clip_val."
        )

    def optimizer_step(self, loss: Tensor, batch_size: int) -> None:
        """Clip this run's gradients, step its optimizer (and a per-step schedule), count the batch."""
        if self.clip_value:
            if self.clip_algorithm == "value":
                torch.nn.utils.clip_grad_value_(self.parameters, float(self.clip_value))
            else:
                torch.nn.utils.clip_grad_norm_(self.parameters, float(self.clip_value))
        self.optimizer.step()
        if self.scheduler is not None and self.scheduler_interval == "step":
            self.scheduler.step()
        self.global_step += 1
        self.batch_in_epoch += 1
        self.samples += batch_size
        self.epoch_losses.append(float(loss.detach()))

    def epoch_done(self) -> bool:
        return self.batch_in_epoch >= self.steps_per_epoch

    # ---- epoch end -------------------------------------------------------------------------------
    def validation_due(self) -> bool:
        """Whether the epoch that just ended is scored on dev (every `check_val_every_n_epoch`)."""
        return self.val_batches > 0 and (self.epoch + 1) % self.check_val_every == 0

    def val_loader(self) -> Iterable:
        """Its dev batches (limit_val_batches). The loader's iterator is made here, in its own stream: a
        DataLoader draws its base seed from the global stream when its iterator is made."""
        with self.own_rng():
            return itertools.islice(iter(self.experiment.datamodule.val_dataloader()), self.val_batches)

    def test_loader(self) -> Iterable:
        """Its test batches (limit_test_batches), the iterator made in its own stream (see `val_loader`)."""
        with self.own_rng():
            return itertools.islice(iter(self.experiment.datamodule.test_dataloader()), self.test_batches)

    def end_epoch(self, val_scores: dict[str, float] | None = None) -> None:
        """Keep the epoch's dev scores (`val_scores`, when validation was due) and the best checkpoint,
        step an epoch schedule, checkpoint; stop after max_epochs."""
        # The epoch iterator is left unexhausted, as Lightning leaves it (it stops at the loader's length):
        # exhausting the sampler would draw one more permutation from the split's generator.
        self.iterator = None
        self.batch_in_epoch = 0
        row: dict[str, Any] = {
            "epoch": self.epoch,
            "step": self.global_step,
            "train/loss": sum(self.epoch_losses) / max(1, len(self.epoch_losses)),
        }
        self.epoch_losses = []
        if val_scores is not None:
            row.update(self.keep_validation(val_scores))
        # After the dev pass, as Lightning's on_train_epoch_end runs after its validation loop.
        row.update({f"train/{name}": value for name, value in self.experiment.method.epoch_diagnostics().items()})
        if self.scheduler is not None and self.scheduler_interval == "epoch":
            self.scheduler.step()
        self.epoch += 1
        if self.cfg.get("checkpoint_every_epoch", True):
            self.save_last()
        self.write_csv_row(row)
        if self.epoch >= self.max_epochs or self.steps_done:
            self.training = False

    def keep_validation(self, scores: dict[str, float]) -> dict[str, float]:
        """val/<name> and the best-dev maxima; the best checkpoint replaced when the monitored score improved."""
        values = {f"val/{name}": value for name, value in scores.items()}
        for name, best in self.module.val_best.items():
            best.update(torch.tensor(values[f"val/{name}"]))
            values[f"val/{name}_best"] = float(best.compute())
        current = values[f"val/{self.metric}"]
        current = float("-inf") if current != current else current  # NaN never wins, as in ModelCheckpoint
        if self.best_score is None or current > self.best_score:
            self.best_score, self.best_epoch = current, self.epoch
            path = self.run_dir / "checkpoints" / BEST_NAME
            state = {"state_dict": trainable_state(self.module), "epoch": self.epoch, "global_step": self.global_step}
            save_atomic(path, {**state, "packed": True})
            self.best_path = str(path)
        return values

    # ---- resume ----------------------------------------------------------------------------------
    def save_last(self) -> None:
        datamodule = self.experiment.datamodule
        maxima = {name: float(best.compute()) for name, best in self.module.val_best.items() if best.update_called}
        save_atomic(
            self.run_dir / "checkpoints" / LAST_NAME,
            {
                "state_dict": trainable_state(self.module),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "shuffle_generator": datamodule.shuffle_generator.get_state(),
                "epoch": self.epoch,
                "global_step": self.global_step,
                "best_score": self.best_score,
                "best_epoch": self.best_epoch,
                "best_path": self.best_path,
                "val_best": maxima,
                "train_seconds": self.seconds_before + time.perf_counter() - self.train_started,
                "samples": self.samples,
                "step_seconds": self.step_seconds,
            },
        )

    def resume(self) -> None:
        """Go on from packed_last.ckpt when a killed attempt of this run left one (after the zero-shot
        score, which the unpacked path also takes before it restores its checkpoint)."""
        state = load_last(self.run_dir / "checkpoints" / LAST_NAME)
        self.train_started = time.perf_counter()
        if state is None:
            return
        self.module.load_state_dict(state["state_dict"], strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.experiment.datamodule.shuffle_generator.set_state(state["shuffle_generator"])
        for name, value in state["val_best"].items():
            self.module.val_best[name].update(torch.tensor(value))
        self.epoch, self.global_step = int(state["epoch"]), int(state["global_step"])
        self.best_score, self.best_epoch, self.best_path = state["best_score"], state["best_epoch"], state["best_path"]
        self.seconds_before = float(state["train_seconds"])
        self.samples, self.step_seconds = int(state["samples"]), float(state["step_seconds"])
        self.resumed_from_step = self.global_step
        self.training = self.epoch < self.max_epochs and self.steps_per_epoch > 0 and not self.steps_done
        log.info("resuming %s from %s (step %d)", self.key, LAST_NAME, self.global_step)

    # ---- the end ---------------------------------------------------------------------------------
    def zero_shot(self) -> None:
        """zero_shot/<name> as the unpacked run scores it (full test split, no prompt; `zero_shot.py` shares
        one pass among runs, pack-mates included, that would see the same inputs), in its own stream."""
        experiment = self.experiment
        if not (self.cfg.zero_shot and experiment.head.zero_shot_capable):
            return
        with self.own_rng():
            scores = zero_shot_scores(self.cfg, experiment)
        self.metrics.update({f"zero_shot/{name.split('/')[-1]}": value for name, value in scores.items()})

    def load_tested_state(self) -> None:
        """The best checkpoint's trainable state (or the last state: method.test_checkpoint=last, no dev epoch)."""
        if self.best_path and self.cfg.method.get("test_checkpoint", "best") == "best":
            state = torch.load(self.best_path, map_location="cpu")["state_dict"]
            self.module.load_state_dict(state, strict=False)

    def finish(self, tested: dict[str, float]) -> Outcome:
        """The run's outcome from its test scores: metrics completed as unpacked, the prompt saved."""
        experiment = self.experiment
        train_seconds = self.seconds_before + time.perf_counter() - self.train_started
        self.metrics.update({f"test/{name}": value for name, value in tested.items()})
        with self.own_rng():
            complete_metrics(experiment, self.metrics)
        if self.cfg.save_prompt:
            save_prompt(experiment, self.run_dir, self.cfg)
        memory = {"peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20} if self.device.type == "cuda" else {}
        return Outcome(
            metrics=self.metrics,
            train_seconds=train_seconds,
            train_samples_per_s=self.samples / self.step_seconds if self.step_seconds > 0 else None,
            best_checkpoint=self.best_path,
            resumed_from_step=self.resumed_from_step,
            train_seconds_before_resume=self.seconds_before,
            device_memory=memory,
        )

    def write_csv_row(self, row: dict[str, Any]) -> None:
        """Append the epoch's row to csv/metrics.csv when the run logs to csv (the header grows with new keys)."""
        if not any(str(node.get("_target_", "")).endswith("CSVLogger") for node in (self.cfg.logger or {}).values()):
            return
        path = self.run_dir / "csv" / "metrics.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = list(csv.DictReader(path.open())) if path.exists() else []
        rows.append({name: value for name, value in row.items()})
        columns = sorted({name for existing in rows for name in existing})
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
