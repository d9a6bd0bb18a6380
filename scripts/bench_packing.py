"""Packed vs sequential, side by side in one process: K seeds of one config trained one after the
other (as `prompt-bench -m seed=...` does) and then as one pack (as `pack=auto` does).

    OMP_NUM_THREADS=2 python scripts/bench_packing.py                         # 5 seeds, MiniLM, BBC 16-shot
    python scripts/bench_packing.py --max-epochs 4 --order packed-first       # shorter; packed side first
    python scripts/bench_packing.py --backbone tiny_bert --dataset synthetic --max-epochs 1   # a quick check
    python scripts/bench_packing.py --step-scaling          # the backbone alone at batch 8, 16, 40: the ceiling

Both sides start from an empty token cache of their own, build their runs from the same composed
configs and write records like any run. Printed per side: end-to-end wall seconds (build, zero-shot,
training, dev and test evaluation, records), training samples per second (training steps only:
Σ samples / Σ step seconds), and the mean test score; then the ratios packed / sequential.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from prompt_bench.packing.pack_run import Pack, PackJob  # noqa: E402
from prompt_bench.run import run_experiment  # noqa: E402

CONF_DIR = REPO / "conf"
ORDERS = ("sequential-first", "packed-first")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="prompt_tuning")
    parser.add_argument("--backbone", default="minilm")
    parser.add_argument("--dataset", default="bbc_news")
    parser.add_argument("--k-shot", type=int, default=16)
    parser.add_argument("--seeds", default="13,21,42,87,100", help="comma-separated; one run per seed")
    parser.add_argument("--max-epochs", type=int, default=None, help="default: conf/trainer's (20)")
    parser.add_argument("--order", choices=ORDERS, default=ORDERS[0])
    parser.add_argument("--root", default=None, help="where run dirs and caches go (default: a temporary dir)")
    parser.add_argument(
        "--step-scaling",
        action="store_true",
        help="only time the frozen backbone's forward+backward (to the prompt) at batch 8, 16 and 8 x runs",
    )
    parser.add_argument("overrides", nargs="*", help="more Hydra overrides for every run, e.g. trainer=gpu")
    return parser.parse_args(argv)


def run_configs(args: argparse.Namespace, root: Path, side: str) -> list[DictConfig]:
    """One composed config per seed, writing under root/side/, with that side's own token cache."""
    configs = []
    base = [f"method={args.method}", f"backbone={args.backbone}", f"dataset={args.dataset}", "logger=none"]
    base += [f"dataset.k_shot={args.k_shot}", *args.overrides]
    if args.max_epochs is not None:
        base.append(f"trainer.max_epochs={args.max_epochs}")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for seed in args.seeds.split(","):
            cfg = compose(config_name="config", overrides=[*base, f"seed={seed}"])
            with open_dict(cfg):
                cfg.paths.output_dir = str(root / side / f"s{seed}")
                cfg.paths.cache_dir = str(root / side / "cache")
            configs.append(cfg)
    return configs


def train_samples(records: list[dict[str, Any]]) -> tuple[int, float]:
    """(Σ samples, Σ step seconds) of sequential runs, from their samples/s and train split sizes."""
    samples = seconds = 0.0
    for record in records:
        epochs = record["config"]["trainer"]["max_epochs"]
        count = record["split_sizes"]["train"] * epochs
        samples += count
        seconds += count / record["efficiency"]["train_samples_per_s"]
    return int(samples), seconds


def sequential(configs: list[DictConfig]) -> dict[str, Any]:
    started = time.perf_counter()
    records = [run_experiment(cfg) for cfg in configs]
    wall = time.perf_counter() - started
    failed = [record.get("error") for record in records if record["status"] != "ok"]
    if failed:
        raise SystemExit(f"a sequential run failed: {failed[0]}")
    samples, seconds = train_samples(records)
    return {"wall_s": wall, "samples": samples, "samples_per_s": samples / seconds, "records": records}


def packed(configs: list[DictConfig], sweep_dir: Path) -> dict[str, Any]:
    started = time.perf_counter()
    pack = Pack([PackJob(cfg, [], sweep_dir) for cfg in configs])
    records = pack.run()
    wall = time.perf_counter() - started
    failed = [record.get("error") for record in records if record["status"] != "ok"]
    if failed:
        raise SystemExit(f"a packed run failed: {failed[0]}")
    stats = pack.stats
    return {"wall_s": wall, "samples": stats.samples, "samples_per_s": stats.samples_per_s, "records": records}


def step_scaling(args: argparse.Namespace) -> None:
    """ms per example of the frozen backbone's forward+backward to a 20-token prompt, at batch 8, 16 and 8 x
    runs (dataset.max_length tokens): what stacking runs can gain on this machine, before any framework."""
    import torch
    from hydra.utils import instantiate

    cfg = run_configs(args, Path(tempfile.gettempdir()), "scaling")[0]
    adapter = instantiate(cfg.backbone).eval()
    adapter.requires_grad_(False)
    length, n_tokens = int(cfg.dataset.max_length), int(cfg.method.module.get("n_tokens", 20))
    for batch in sorted({8, 16, 8 * len(args.seeds.split(","))}):
        ids = torch.randint(1000, 2000, (batch, length))
        prompt = torch.randn(batch, n_tokens, adapter.hidden_size, requires_grad=True)
        for step in range(4):  # one warm-up step, three timed
            if step == 1:
                started = time.perf_counter()
            adapter(ids, torch.ones_like(ids), prompt=prompt).hidden.mean().backward()
        seconds = (time.perf_counter() - started) / 3
        print(f"batch {batch:>3}: {seconds * 1000:8.0f} ms a step, {seconds / batch * 1000:6.1f} ms an example")


def mean_test(records: list[dict[str, Any]]) -> float:
    return statistics.mean(record["metrics"]["test/primary"] for record in records)


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.getLogger("prompt_bench").setLevel(logging.WARNING)
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning_fabric").setLevel(logging.WARNING)
    if args.step_scaling:
        step_scaling(args)
        return {}
    holder = tempfile.TemporaryDirectory(prefix="bench_packing_") if args.root is None else None
    root = Path(holder.name if holder else args.root)
    sides = {"sequential": None, "packed": None}
    order = list(sides) if args.order == ORDERS[0] else list(reversed(sides))
    for side in order:
        configs = run_configs(args, root, side)
        sides[side] = sequential(configs) if side == "sequential" else packed(configs, root / side)
    seq, pck = sides["sequential"], sides["packed"]
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(
        f"{len(args.seeds.split(','))} runs of {args.method} on {args.backbone} / {args.dataset} "
        f"{args.k_shot}-shot, OMP_NUM_THREADS={threads}, order {args.order}"
    )
    print(f"{'side':<12}{'wall s':>10}{'train samples':>15}{'samples/s':>12}{'mean test':>11}")
    for name, side in (("sequential", seq), ("packed", pck)):
        print(
            f"{name:<12}{side['wall_s']:>10.1f}{side['samples']:>15d}{side['samples_per_s']:>12.1f}"
            f"{mean_test(side['records']):>11.4f}"
        )
    ratios = {
        "throughput_ratio": pck["samples_per_s"] / seq["samples_per_s"],
        "wall_speedup": seq["wall_s"] / pck["wall_s"],
    }
    print(
        f"packed / sequential: {ratios['throughput_ratio']:.2f}x training samples/s, "
        f"{ratios['wall_speedup']:.2f}x faster end to end"
    )
    if holder:
        holder.cleanup()
    return ratios


if __name__ == "__main__":
    main()
