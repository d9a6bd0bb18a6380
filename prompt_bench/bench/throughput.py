"""Section `throughput`: samples/s of prompt_bench's train step beside three hand-written sides.

prompt_bench's side is what users run: the composed Hydra config, `build_experiment`, and a
`pytorch_lightning.Trainer` from `conf/trainer`. The other sides (bench/sides.py) run on the same
frozen HF model and batches: the floor (forward + backward to the input, nothing else), a
hand-written loop, and HF PEFT PromptTuning. Everything runs in one `trainer.fit`: a callback times
blocks of N Lightning steps and runs N steps of each other side between them (their order rotating
every round), so the sides alternate under the same machine load, and Lightning's per-fit startup and
teardown stay out of samples/s (printed apart). A ratio is the median over rounds of prompt_bench's
samples/s over the side's in the same round (a round's blocks share the load, which drifts between rounds).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader

from prompt_bench.bench import mfu
from prompt_bench.bench.memory import PeakMemory
from prompt_bench.bench.sides import FloorSide, HandSide, PeftSide, ReferenceSide, peft_available
from prompt_bench.bench.workload import Workload, body_of, build_workload

PROMPT_BENCH = "prompt_bench"
# side -> the ratio prompt_bench / side it should reach (None: no target, the floor is a bound)
TARGETS = {"floor": None, "hand-written": 0.95, "peft": 1.0}


class InterleavedBench(pl.Callback):
    """Inside one fit: `warmup` Lightning steps, `warmup` steps of each side, then rounds of
    (N Lightning steps timed, N steps of each side timed, the sides' order rotated each round). A Lightning block runs from the end of
    the previous side's block to the end of its N-th step, so it holds every per-step cost (data
    fetch, hooks, logging, metrics, optimizer) and nothing of fit startup."""

    def __init__(self, workload: Workload, sides: list[HandSide], args: argparse.Namespace, memory: PeakMemory) -> None:
        self.workload = workload
        self.sides = sides
        self.steps_per_block = args.steps
        self.warmup = args.warmup
        self.memory = memory
        self.samples_per_s: dict[str, list[float]] = {PROMPT_BENCH: [], **{side.name: [] for side in sides}}
        self.lightning_steps = 0
        self.fit_called_at = 0.0
        self.fit_startup_s = 0.0
        self.block_started_at = 0.0
        self.last_step_ended_at = 0.0
        self.backbone_training_mode: bool | None = None
        self.block_orders: list[list[str]] = []  # per timed round, the sides in the order they ran

    def on_train_batch_start(self, trainer, module, batch, batch_idx: int) -> None:
        if self.lightning_steps == 0:
            self.fit_startup_s = time.perf_counter() - self.fit_called_at
            self.backbone_training_mode = module.backbone.model.training

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx: int) -> None:
        self.lightning_steps += 1
        timed_steps = self.lightning_steps - self.warmup
        if timed_steps == 0:
            self._run_sides(self.warmup, timed=False)
        elif timed_steps > 0 and timed_steps % self.steps_per_block == 0:
            self.workload.synchronize()
            elapsed = time.perf_counter() - self.block_started_at
            self.memory.end(PROMPT_BENCH)
            self.samples_per_s[PROMPT_BENCH].append(self.steps_per_block * self.workload.batch_size / elapsed)
            self._run_sides(self.steps_per_block, timed=True)
        else:
            self.last_step_ended_at = time.perf_counter()
            return
        self.memory.begin()
        self.workload.synchronize()
        self.block_started_at = self.last_step_ended_at = time.perf_counter()

    def _run_sides(self, steps: int, timed: bool) -> None:
        """Each side's block, in an order that rotates every round, so that no side always runs right
        after prompt_bench's block (or any other): what one block leaves behind lands on every side."""
        batches = self.workload.batches
        shift = len(self.block_orders) % max(1, len(self.sides)) if timed else 0
        order = self.sides[shift:] + self.sides[:shift]
        if timed:
            self.block_orders.append([PROMPT_BENCH, *(side.name for side in order)])
        for side in order:
            self.memory.begin()
            self.workload.synchronize()
            started = time.perf_counter()
            for step in range(steps):
                side.step(batches[(self.lightning_steps + step) % len(batches)])
            self.workload.synchronize()
            elapsed = time.perf_counter() - started
            self.memory.end(side.name)
            if timed:
                self.samples_per_s[side.name].append(steps * self.workload.batch_size / elapsed)


def logit_gaps(workload: Workload, sides: list[HandSide]) -> dict[str, float]:
    """Max |logit difference| between prompt_bench and each side that has logits, on one batch in
    eval mode before training. Like a real run's zero-shot pass this is also the head's first
    call, so LabelSimilarityHead caches its label vectors in eval mode."""
    module = workload.experiment.module
    batch = {name: tensor.to(workload.device) for name, tensor in workload.batches[0].items()}
    was_training = module.training
    module.eval()
    gaps = {}
    with torch.no_grad(), workload.autocast():
        expected = module(batch).float()
        for side in sides:
            if hasattr(side, "logits"):
                gaps[side.name] = float((expected - side.logits(batch).float()).abs().max())
    module.train(was_training)
    return gaps


def build_sides(workload: Workload, names: list[str]) -> list[HandSide]:
    initial_prompt = workload.experiment.method.prompt_embeddings
    classes = {"floor": FloorSide, "hand-written": ReferenceSide, "peft": PeftSide}
    return [classes[name](workload, initial_prompt) for name in names]


def side_names(args: argparse.Namespace, console: Console | None = None) -> list[str]:
    names = [name.strip() for name in args.sides.split(",") if name.strip()]
    unknown = [name for name in names if name not in TARGETS]
    if unknown:
        raise ValueError(f"unknown side(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}.")
    if "peft" in names and not peft_available():
        names.remove("peft")
        if console is not None:
            console.print("peft is not installed: the PEFT side is skipped (pip install peft).")
    return names


def run(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    """Build every side, run the interleaved fit, print and return samples/s, ratios, memory, MFU."""
    quiet_lightning()
    started = time.perf_counter()
    workload = build_workload(args)
    sides = build_sides(workload, side_names(args, console))
    gaps = logit_gaps(workload, sides)
    memory = PeakMemory(workload.device)
    bench = InterleavedBench(workload, sides, args, memory)
    trainer = instantiate(
        workload.cfg.trainer,
        accelerator="gpu" if workload.device.type == "cuda" else "cpu",
        max_steps=args.warmup + args.rounds * args.steps,
        max_epochs=-1,
        limit_val_batches=0,
        enable_checkpointing=False,
        enable_progress_bar=False,
        logger=False,
        callbacks=[bench],
        default_root_dir=workload.cfg.paths.output_dir,
    )
    loader = DataLoader(workload.batches, batch_size=None, shuffle=False)
    bench.fit_called_at = time.perf_counter()
    trainer.fit(workload.experiment.module, train_dataloaders=loader)
    fit_teardown_s = time.perf_counter() - bench.last_step_ended_at
    memory.close()
    result = summarize(args, workload, bench, memory, gaps)
    result.update(fit_startup_s=bench.fit_startup_s, fit_teardown_s=fit_teardown_s)
    result["wall_s"] = time.perf_counter() - started
    print_report(result, console)
    return result


def summarize(
    args: argparse.Namespace, workload: Workload, bench: InterleavedBench, memory: PeakMemory, gaps: dict[str, float]
) -> dict[str, Any]:
    medians = {side: statistics.median(values) for side, values in bench.samples_per_s.items()}
    n_layers, width = mfu.body_shape(workload.model.config)
    matmul_params = mfu.matmul_weights(body_of(workload.model))
    flops = mfu.flops_per_step(matmul_params, n_layers, width, args.batch_size, args.length + args.prompt_tokens)
    device_name = torch.cuda.get_device_name(workload.device) if workload.device.type == "cuda" else "cpu"
    peak = args.peak_tflops if args.peak_tflops else (mfu.peak_tflops(device_name) if device_name != "cpu" else None)
    return {
        "backbone": args.backbone,
        "device": str(workload.device),
        "device_name": device_name,
        "precision": args.precision,
        "threads": torch.get_num_threads(),
        "shape": {"batch_size": args.batch_size, "length": args.length, "prompt_tokens": args.prompt_tokens},
        "blocks": {"rounds": args.rounds, "steps": args.steps, "warmup": args.warmup},
        "samples_per_s": bench.samples_per_s,
        "median_samples_per_s": medians,
        "ratios": paired_ratios(bench.samples_per_s),
        "block_orders": bench.block_orders,
        "peak_memory_mib": memory.peak_mib,
        "memory_kind": memory.kind,
        "max_logit_gap": gaps,
        "backbone_training_mode": bench.backbone_training_mode,
        "flops_per_step": flops,
        "matmul_params": matmul_params,
        "peak_tflops": peak,
        "mfu": {side: mfu.mfu(flops, value / args.batch_size, peak) for side, value in medians.items()},
    }


def paired_ratios(samples_per_s: dict[str, list[float]]) -> dict[str, float]:
    """side -> median over rounds of prompt_bench's samples/s over the side's in the same round: a
    round's blocks run back to back, so they share the machine's load, which drifts between rounds."""
    ours = samples_per_s[PROMPT_BENCH]
    return {
        side: statistics.median(a / b for a, b in zip(ours, values))
        for side, values in samples_per_s.items()
        if side != PROMPT_BENCH
    }


def print_report(result: dict[str, Any], console: Console) -> None:
    shape, blocks = result["shape"], result["blocks"]
    table = Table(
        title=f"throughput: {result['backbone']} on {result['device_name']} ({result['threads']} threads, "
        f"{result['precision']}): batch {shape['batch_size']}, {shape['length']} tokens + {shape['prompt_tokens']} "
        f"prompt, {blocks['rounds']} rounds x {blocks['steps']} steps"
    )
    for column in ("side", "samples/s (median)", "min-max", f"{result['memory_kind']} (MiB)", "MFU"):
        table.add_column(column, justify="left" if column == "side" else "right")
    for side, values in result["samples_per_s"].items():
        share = result["mfu"][side]
        table.add_row(
            side,
            f"{result['median_samples_per_s'][side]:.2f}",
            f"{min(values):.2f}-{max(values):.2f}",
            f"{result['peak_memory_mib'].get(side, 0.0):.0f}",
            f"{100 * share:.1f}%" if share is not None else "n/a",
        )
    console.print(table)
    ratios = Table(title="prompt_bench / side: median over rounds of the ratio within a round")
    for column in ("side", "ratio", "target", "max |logit gap| before training"):
        ratios.add_column(column, justify="left" if column == "side" else "right")
    for side, ratio in result["ratios"].items():
        target = TARGETS[side]
        gap = result["max_logit_gap"].get(side)
        verdict = "" if target is None else (f">= {target:.2f} " + ("ok" if ratio >= target else "MISSED"))
        ratios.add_row(side, f"{ratio:.3f}", verdict or "(a bound)", f"{gap:.1e}" if gap is not None else "-")
    console.print(ratios)
    mode = "train (dropout on)" if result["backbone_training_mode"] else "eval"
    peak = result["peak_tflops"]
    console.print(
        f"backbone mode during fit: {mode}. FLOPs/step = 4*N*T + 12*layers*S*d*T = {result['flops_per_step']:.3e} "
        f"(N = {result['matmul_params'] / 1e6:.1f}M matmul weights); peak "
        + (f"{peak:.0f} TFLOP/s bf16 dense" if peak else "unknown (MFU n/a; --peak-tflops sets one)")
        + f". Excluded from samples/s: Lightning fit startup {result['fit_startup_s']:.2f} s, "
        f"teardown {result['fit_teardown_s']:.2f} s; section wall time {result['wall_s']:.0f} s."
    )


def quiet_lightning() -> None:
    """Lightning's banner lines and the few-workers hint say nothing about this benchmark."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*isn't divisible by.*")
    warnings.filterwarnings("ignore", message=".*but have no `val_dataloader`.*")  # the bench validates nothing
    warnings.filterwarnings(
        "ignore", message=".*is_gradient_checkpointing.*"
    )  # PEFT asks the model, transformers warns
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
