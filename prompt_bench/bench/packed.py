"""Section `packed`: K runs packed into one process (prompt_bench.packing) against the same K runs
one after another, end to end (build, fit, test, record), for K in --packed-k.

The packing module is another piece of work; this section imports it lazily and prints
"packed runs not available" while it is absent. It expects:

    prompt_bench.packing.run_packed(configs: Sequence[DictConfig]) -> list[dict]

`configs`: K composed run configs (as `prompt-bench` composes them, `paths.output_dir` set per run)
that share a backbone; it trains them packed and returns one record per config, in order, with
the fields `run_experiment` writes (`status`, `metrics`, `efficiency.train_seconds`,
`efficiency.train_samples_per_s`). The sequential side is `prompt_bench.run.run_experiment(cfg)`
per config, in this process (the model is loaded K times; interpreter start is not counted).
"""

from __future__ import annotations

import argparse
import importlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

PACKING_MODULE = "prompt_bench.packing"
NOT_AVAILABLE = "packed runs not available"
SEEDS = (13, 21, 42, 87, 100)  # LM-BFF's; K > 5 continues with 1000, 1001, ...
# Short runs, so the section ends: a fixed number of steps, no zero-shot, no files beyond the record.
RUN_OVERRIDES = ("zero_shot=false", "save_prompt=false", "checkpoint_every_epoch=false", "logger=none")


def load_run_packed() -> Callable | None:
    """prompt_bench.packing.run_packed, or None when the module (or the function) is not there."""
    try:
        packing = importlib.import_module(PACKING_MODULE)
    except ModuleNotFoundError as error:
        if error.name and PACKING_MODULE.startswith(error.name):
            return None
        raise
    return getattr(packing, "run_packed", None)


def seeds(count: int) -> list[int]:
    return [*SEEDS[:count], *range(1000, 1000 + max(0, count - len(SEEDS)))]


def compose_runs(args: argparse.Namespace, count: int, root: Path) -> list:
    """`count` run configs, one per seed, each with its own output dir under `root`."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from prompt_bench.bench.workload import CONF_DIR, backbone_overrides

    base = [
        *backbone_overrides(args.backbone),
        f"dataset={args.dataset}",
        f"trainer.max_steps={args.packed_steps}",
        "trainer.max_epochs=-1",
        *(("trainer=gpu",) if args.device == "cuda" else ()),
        *RUN_OVERRIDES,
    ]
    configs = []
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for seed in seeds(count):
            cfg = compose(config_name="config", overrides=[*base, f"seed={seed}"])
            with open_dict(cfg):
                cfg.paths.output_dir = str(root / f"s{seed}")
                cfg.skip_done = False
            configs.append(cfg)
    return configs


def train_samples(record: dict[str, Any]) -> float:
    efficiency = record.get("efficiency") or {}
    return (efficiency.get("train_samples_per_s") or 0.0) * (efficiency.get("train_seconds") or 0.0)


def compare(args: argparse.Namespace, count: int, run_packed: Callable, workdir: Path) -> dict[str, Any]:
    from prompt_bench.run import run_experiment

    started = time.perf_counter()
    sequential = [run_experiment(cfg) for cfg in compose_runs(args, count, workdir / f"k{count}_sequential")]
    sequential_s = time.perf_counter() - started
    started = time.perf_counter()
    packed = run_packed(compose_runs(args, count, workdir / f"k{count}_packed"))
    packed_s = time.perf_counter() - started
    gaps = [
        abs(a["metrics"]["test/primary"] - b["metrics"]["test/primary"])
        for a, b in zip(sequential, packed)
        if a.get("status") == b.get("status") == "ok"
    ]
    return {
        "k": count,
        "sequential_s": sequential_s,
        "packed_s": packed_s,
        "speedup": sequential_s / packed_s,
        "sequential_samples_per_s": sum(map(train_samples, sequential)) / sequential_s,
        "packed_samples_per_s": sum(map(train_samples, packed)) / packed_s,
        "ok": [sum(r.get("status") == "ok" for r in runs) for runs in (sequential, packed)],
        "max_test_gap": max(gaps) if gaps else None,
    }


def run(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    run_packed = load_run_packed()
    if run_packed is None:
        console.print(f"{NOT_AVAILABLE} ({PACKING_MODULE}.run_packed is not importable); section skipped.")
        return {"available": False}
    sizes = [int(k) for k in args.packed_k.split(",") if k.strip()]
    with tempfile.TemporaryDirectory(prefix="prompt_bench_packed_") as directory:
        rows = [compare(args, count, run_packed, Path(directory)) for count in sizes]
    print_report(rows, args, console)
    return {"available": True, "rows": rows}


def print_report(rows: list[dict[str, Any]], args: argparse.Namespace, console: Console) -> None:
    table = Table(
        title=f"packed vs sequential, end to end: {args.backbone} on {args.dataset}, {args.packed_steps} steps per run"
    )
    for column in (
        "K",
        "sequential s",
        "packed s",
        "speed-up",
        "train samples per wall s: seq",
        "packed",
        "ok seq/packed",
        "max |Δ test|",
    ):
        table.add_column(column, justify="right")
    for row in rows:
        gap = row["max_test_gap"]
        table.add_row(
            str(row["k"]),
            f"{row['sequential_s']:.1f}",
            f"{row['packed_s']:.1f}",
            f"{row['speedup']:.2f}x",
            f"{row['sequential_samples_per_s']:.1f}",
            f"{row['packed_samples_per_s']:.1f}",
            "/".join(map(str, row["ok"])),
            f"{gap:.1e}" if gap is not None else "-",
        )
    console.print(table)
