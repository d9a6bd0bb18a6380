"""Train-step throughput and peak memory: prompt_bench's prompt tuning vs a hand-written torch loop.

    python scripts/bench.py                                   # MiniLM, batch 32, 128 tokens + 20 prompt
    python scripts/bench.py --backbone tiny_bert --steps 2    # a quick check

The prompt_bench side is what users run: the composed Hydra config, `build_experiment`, and a
`pytorch_lightning.Trainer` from `conf/trainer`. The reference does the same math by hand on the
same frozen HF model: [P; E(x)] -> body -> mean pool -> 20 * cos(., label vectors) -> cross-entropy
-> Adafactor. Both run in one `trainer.fit`: a callback times blocks of N Lightning steps and runs
N reference steps between them, so the two alternate and Lightning's per-fit startup and teardown
stay out of samples/s (they are printed apart). Head and pooling are forced to label_similarity
and mean (MiniLM's defaults) so that the reference computes the same thing on any backbone.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import logging
import statistics
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict
from rich.console import Console
from rich.table import Table
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from prompt_bench.build import Experiment, build_experiment
from prompt_bench.data.datamodule import PadCollator

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
TARGET_RATIO = 0.90
SIDES = ("prompt_bench", "reference")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="minilm", help="any conf/backbone name")
    parser.add_argument("--dataset", default="bbc_news", help="conf/dataset name; only its label names are used")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=128, help="input tokens per example (prompt not included)")
    parser.add_argument("--prompt-tokens", type=int, default=20)
    parser.add_argument("--steps", type=int, default=4, help="steps per side per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per side before the rounds")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic batches")
    args = parser.parse_args(argv)
    for name in ("batch_size", "length", "prompt_tokens", "steps", "rounds", "warmup"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}.")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda was asked for, but torch sees no CUDA device; use --device cpu.")
    return args


def compose_bench_config(args: argparse.Namespace) -> DictConfig:
    """The real config tree, with the benchmark's shape and a fp32 single-device trainer."""
    overrides = [
        f"backbone={args.backbone}",
        f"dataset={args.dataset}",
        "trainer=cpu",  # fp32 on both devices: the reference is fp32 (gpu.yaml would add bf16 autocast)
        "logger=none",
        "head=label_similarity",
        "backbone.pooling=mean",
        f"method.module.n_tokens={args.prompt_tokens}",
        f"dataset.max_length={args.length}",
        f"dataset.batch_size={args.batch_size}",
        "zero_shot=false",
        "save_prompt=false",
        "checkpoint_every_epoch=false",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = tempfile.mkdtemp(prefix="prompt_bench_bench_")
    return cfg


def synthetic_batches(
    count: int, args: argparse.Namespace, vocab_size: int, pad_id: int, num_classes: int
) -> list[dict[str, Tensor]]:
    """`count` padded batches of exactly `length` random token ids with random labels."""
    generator = torch.Generator().manual_seed(args.seed)
    collate = PadCollator(pad_token_id=pad_id, pad_to=args.length)
    batches = []
    for _ in range(count):
        token_ids = torch.randint(0, vocab_size, (args.batch_size, args.length), generator=generator)
        labels = torch.randint(0, num_classes, (args.batch_size,), generator=generator)
        batches.append(collate([(row.tolist(), int(label)) for row, label in zip(token_ids, labels)]))
    return batches


class ReferenceLoop:
    """Prompt tuning by hand: its own fp32 prompt (n, d), the same frozen HF model and optimizer settings."""

    def __init__(
        self,
        model: nn.Module,
        label_input_ids: Tensor,
        label_mask: Tensor,
        initial_prompt: Tensor,
        optimizer_factory: Any,
        device: torch.device,
        logit_scale: float = 20.0,
    ) -> None:
        self.model = model
        self.encoder = model.get_encoder() if model.config.is_encoder_decoder else model.base_model
        self.word_embeddings = model.get_input_embeddings()
        self.device = device
        self.logit_scale = logit_scale
        self.prompt = nn.Parameter(initial_prompt.detach().clone().float().to(device))
        self.optimizer = optimizer_factory(params=[self.prompt])
        self.label_vectors = self._label_vectors(label_input_ids.to(device), label_mask.to(device))

    @torch.no_grad()
    def _label_vectors(self, label_input_ids: Tensor, label_mask: Tensor) -> Tensor:
        """(C, d) unit mean-pooled label-name vectors, computed once in eval mode."""
        was_training = self.model.training
        self.model.eval()
        hidden = self.encoder(input_ids=label_input_ids, attention_mask=label_mask).last_hidden_state
        self.model.train(was_training)
        return F.normalize(mean_pool(hidden, label_mask).float(), dim=-1)

    def logits(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """(B, L) ids -> (B, C) logits = s * cos(mean_pool(body([P; E(x)])), label vectors)."""
        word_vectors = self.word_embeddings(input_ids)
        batch_size, n_prompt = input_ids.shape[0], self.prompt.shape[0]
        prompt = self.prompt.to(word_vectors.dtype).unsqueeze(0).expand(batch_size, -1, -1)
        inputs_embeds = torch.cat([prompt, word_vectors], dim=1)
        mask = torch.cat([attention_mask.new_ones(batch_size, n_prompt), attention_mask], dim=1)
        hidden = self.encoder(inputs_embeds=inputs_embeds, attention_mask=mask).last_hidden_state
        sentence_vectors = F.normalize(mean_pool(hidden, mask).float(), dim=-1)
        return self.logit_scale * sentence_vectors @ self.label_vectors.T

    def step(self, batch: dict[str, Tensor]) -> Tensor:
        batch = {name: tensor.to(self.device) for name, tensor in batch.items()}
        loss = F.cross_entropy(self.logits(batch["input_ids"], batch["attention_mask"]), batch["labels"])
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.detach()


def mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """(B, T, d), (B, T) -> (B, d) mean over unmasked positions."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def release_freed_memory() -> None:
    """Give freed heap pages back to the OS (glibc), so an RSS delta starts from what is in use."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Per-side peak memory above a baseline taken at the start of each block, in MiB.

    CUDA: max_memory_allocated after a reset. CPU: process RSS sampled by a background thread
    (torch's CPU allocations are invisible to tracemalloc; ru_maxrss never goes down).
    """

    def __init__(self, device: torch.device, interval_s: float = 0.005) -> None:
        self.device = device
        self.interval_s = interval_s
        self.peak_mib = {side: 0.0 for side in SIDES}
        self._process = psutil.Process()
        self._active = False
        self._baseline = self._block_peak = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        if device.type == "cpu":
            self._sampler.start()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            if self._active:
                self._block_peak = max(self._block_peak, self._process.memory_info().rss)

    def begin(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._baseline = torch.cuda.memory_allocated()
            return
        release_freed_memory()
        self._baseline = self._block_peak = self._process.memory_info().rss
        self._active = True

    def end(self, side: str) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            block_peak = torch.cuda.max_memory_allocated()
        else:
            self._active = False
            block_peak = max(self._block_peak, self._process.memory_info().rss)
        self.peak_mib[side] = max(self.peak_mib[side], (block_peak - self._baseline) / 2**20)

    def close(self) -> None:
        self._stop.set()


@dataclass
class Timings:
    """Samples/s per timed block of each side, and the Lightning time outside training steps."""

    samples_per_s: dict[str, list[float]] = field(default_factory=lambda: {side: [] for side in SIDES})
    fit_startup_s: float = 0.0
    fit_teardown_s: float = 0.0
    backbone_training_mode: bool | None = None


class InterleavedBench(pl.Callback):
    """Inside one fit: `warmup` Lightning steps, `warmup` reference steps, then rounds of
    (N Lightning steps timed, N reference steps timed). Each Lightning block runs from the end of
    the previous reference block to the end of its N-th step, so it holds every per-step cost
    (data fetch, hooks, logging, metrics, optimizer) and nothing of fit startup."""

    def __init__(self, reference: ReferenceLoop, batches: list[dict[str, Tensor]], args: argparse.Namespace,
                 memory: PeakMemory, timings: Timings) -> None:  # fmt: skip
        self.reference = reference
        self.batches = batches
        self.steps_per_block = args.steps
        self.warmup = args.warmup
        self.batch_size = args.batch_size
        self.memory = memory
        self.timings = timings
        self.lightning_steps = 0
        self.fit_called_at = 0.0
        self.block_started_at = 0.0
        self.last_step_ended_at = 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx: int) -> None:
        if self.lightning_steps == 0:
            self.timings.fit_startup_s = time.perf_counter() - self.fit_called_at
            self.timings.backbone_training_mode = module.backbone.model.training

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx: int) -> None:
        self.lightning_steps += 1
        timed_steps = self.lightning_steps - self.warmup
        if timed_steps == 0:
            self._run_reference(self.warmup, timed=False)
        elif timed_steps > 0 and timed_steps % self.steps_per_block == 0:
            self._synchronize()
            elapsed = time.perf_counter() - self.block_started_at
            self.memory.end("prompt_bench")
            self.timings.samples_per_s["prompt_bench"].append(self.steps_per_block * self.batch_size / elapsed)
            self._run_reference(self.steps_per_block, timed=True)
        else:
            return
        self.memory.begin()
        self._synchronize()
        self.block_started_at = self.last_step_ended_at = time.perf_counter()

    def _run_reference(self, steps: int, timed: bool) -> None:
        self.memory.begin()
        self._synchronize()
        started = time.perf_counter()
        for step in range(steps):
            self.reference.step(self.batches[(self.lightning_steps + step) % len(self.batches)])
        self._synchronize()
        elapsed = time.perf_counter() - started
        self.memory.end("reference")
        if timed:
            self.timings.samples_per_s["reference"].append(steps * self.batch_size / elapsed)

    def _synchronize(self) -> None:
        if self.reference.device.type == "cuda":
            torch.cuda.synchronize()


def check_same_logits(experiment: Experiment, reference: ReferenceLoop, batch: dict[str, Tensor]) -> float:
    """Max |logit difference| of the two sides on one batch, in eval mode, before training.

    Like the zero-shot pass of a real run, this is also the head's first call, so it fills
    LabelSimilarityHead's label-vector cache in eval mode."""
    module = experiment.module
    was_training = module.training
    module.eval()
    with torch.no_grad():
        batch = {name: tensor.to(reference.device) for name, tensor in batch.items()}
        module_logits = module(batch)
        reference_logits = reference.logits(batch["input_ids"], batch["attention_mask"])
    module.train(was_training)
    return float((module_logits - reference_logits).abs().max())


def tokenized_labels(tokenizer, label_names: tuple[str, ...], max_length: int = 32) -> tuple[Tensor, Tensor]:
    """Label names -> right-padded (C, W) token ids and mask, as the head's default template has them."""
    rows = tokenizer(list(label_names), truncation=True, max_length=max_length)["input_ids"]
    width = max(len(row) for row in rows)
    input_ids = torch.tensor([row + [tokenizer.pad_token_id] * (width - len(row)) for row in rows])
    mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows])
    return input_ids, mask


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Build both sides, run the interleaved fit, return samples/s per block, memory and the ratio."""
    cfg = compose_bench_config(args)
    experiment = build_experiment(cfg)
    device = torch.device(args.device)
    experiment.module.to(device)
    adapter = experiment.adapter
    total_steps = args.warmup + args.rounds * args.steps
    batches = synthetic_batches(
        total_steps, args, len(adapter.tokenizer), adapter.tokenizer.pad_token_id, len(experiment.split.label_names)
    )
    label_input_ids, label_mask = tokenized_labels(
        adapter.tokenizer, experiment.split.label_names, int(cfg.head.max_length)
    )
    reference = ReferenceLoop(
        model=adapter.model,
        label_input_ids=label_input_ids,
        label_mask=label_mask,
        initial_prompt=experiment.method.prompt_embeddings,
        optimizer_factory=experiment.module.optimizer_factory,
        device=device,
        logit_scale=float(cfg.head.logit_scale),
    )
    logits_gap = check_same_logits(experiment, reference, batches[0])

    memory = PeakMemory(device)
    timings = Timings()
    bench = InterleavedBench(reference, batches, args, memory, timings)
    trainer = instantiate(
        cfg.trainer,
        accelerator="gpu" if device.type == "cuda" else "cpu",
        max_steps=total_steps,
        max_epochs=-1,
        limit_val_batches=0,
        enable_checkpointing=False,
        enable_progress_bar=False,
        logger=False,
        callbacks=[bench],
        default_root_dir=cfg.paths.output_dir,
    )
    loader = DataLoader(batches, batch_size=None, shuffle=False)
    bench.fit_called_at = time.perf_counter()
    trainer.fit(experiment.module, train_dataloaders=loader)
    timings.fit_teardown_s = time.perf_counter() - bench.last_step_ended_at
    memory.close()

    medians = {side: statistics.median(values) for side, values in timings.samples_per_s.items()}
    return {
        "backbone": args.backbone,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "samples_per_s": timings.samples_per_s,
        "median_samples_per_s": medians,
        "peak_memory_mib": memory.peak_mib,
        "ratio": medians["prompt_bench"] / medians["reference"],
        "fit_startup_s": timings.fit_startup_s,
        "fit_teardown_s": timings.fit_teardown_s,
        "backbone_training_mode": timings.backbone_training_mode,
        "max_logit_gap": logits_gap,
    }


def print_report(result: dict[str, Any], args: argparse.Namespace, wall_s: float, console: Console) -> None:
    table = Table(
        title=f"{result['backbone']} on {result['device']} ({result['threads']} threads): batch {args.batch_size}, "
        f"{args.length} tokens + {args.prompt_tokens} prompt, {args.rounds} rounds x {args.steps} steps"
    )
    table.add_column("side")
    table.add_column("samples/s (median)", justify="right")
    table.add_column("min-max", justify="right")
    memory_kind = "peak GPU alloc" if result["device"].startswith("cuda") else "peak RSS delta"
    table.add_column(f"{memory_kind} (MiB)", justify="right")
    for side in SIDES:
        values = result["samples_per_s"][side]
        table.add_row(
            side,
            f"{result['median_samples_per_s'][side]:.2f}",
            f"{min(values):.2f}-{max(values):.2f}",
            f"{result['peak_memory_mib'][side]:.0f}",
        )
    console.print(table)
    mode = "train (dropout on)" if result["backbone_training_mode"] else "eval"
    console.print(
        f"backbone mode during fit: {mode}; logits of the two sides before training differ by at most "
        f"{result['max_logit_gap']:.2e}"
    )
    console.print(
        f"excluded from samples/s: Lightning fit startup {result['fit_startup_s']:.2f} s, "
        f"teardown {result['fit_teardown_s']:.2f} s; total wall time {wall_s:.0f} s"
    )
    console.print(f"ratio prompt_bench/reference = {result['ratio']:.2f} (target >= {TARGET_RATIO:.2f})")


def quiet_lightning() -> None:
    """Lightning's banner lines and the few-workers hint say nothing about this benchmark."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*isn't divisible by.*")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    quiet_lightning()
    started = time.perf_counter()
    result = run_benchmark(args)
    print_report(result, args, time.perf_counter() - started, Console())
    return result


if __name__ == "__main__":
    main()
