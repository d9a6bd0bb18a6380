"""`prompt-bench-bench`: run the benchmark sections, print their tables, optionally save JSON.

prompt-bench-bench                                      # every section, MiniLM on CPU
prompt-bench-bench --sections throughput --rounds 6     # one section, more rounds
prompt-bench-bench --backbone t5_base_random --device cuda --batch-size 64
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from prompt_bench.bench.registry import SECTIONS, select

BACKBONE_HELP = (
    "a conf/backbone name (minilm, mpnet, tiny_bert, tiny_t5, ...) or t5_base_random (hub-free T5-base shape)"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="prompt-bench-bench", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--sections",
        default="all",
        help="comma-separated, or all:\n" + "\n".join(f"  {s.name}: {s.summary}" for s in SECTIONS.values()),
    )
    parser.add_argument("--backbone", default="minilm", help=BACKBONE_HELP)
    parser.add_argument("--dataset", default="bbc_news", help="conf/dataset name")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--precision", choices=("fp32", "bf16"), default=None, help="default: bf16 on cuda (autocast), fp32 on cpu"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write every section's numbers here")
    shape = parser.add_argument_group("throughput")
    shape.add_argument("--batch-size", type=int, default=32)
    shape.add_argument("--length", type=int, default=128, help="input tokens per example (prompt not included)")
    shape.add_argument("--prompt-tokens", type=int, default=20)
    shape.add_argument("--steps", type=int, default=4, help="steps per side per round")
    shape.add_argument("--rounds", type=int, default=3)
    shape.add_argument("--warmup", type=int, default=2, help="untimed steps per side before the rounds")
    shape.add_argument("--sides", default="floor,hand-written,peft", help="the sides beside prompt_bench")
    shape.add_argument("--seed", type=int, default=0, help="seed of the synthetic batches")
    shape.add_argument("--peak-tflops", type=float, default=None, help="the device's peak for MFU (default: table)")
    startup = parser.add_argument_group("startup")
    startup.add_argument("--startup-repeats", type=int, default=3, help="timed runs (after one untimed warm-up)")
    startup.add_argument(
        "--startup-overrides",
        default="",
        help="extra space-separated overrides of the timed run (e.g. zero_shot=false)",
    )
    packed = parser.add_argument_group("packed")
    packed.add_argument("--packed-k", default="1,2,5,10", help="pack sizes K")
    packed.add_argument("--packed-steps", type=int, default=10, help="optimizer steps per run")
    args = parser.parse_args(argv)
    for name in ("batch_size", "length", "prompt_tokens", "steps", "rounds", "warmup", "startup_repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}.")
    if args.precision is None:
        args.precision = "bf16" if args.device == "cuda" else "fp32"
    try:
        args.section_list = select(args.sections)
    except ValueError as error:
        parser.error(str(error))
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda was asked for, but torch sees no CUDA device; use --device cpu.")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Console script `prompt-bench-bench`. Returns {section name: its numbers}."""
    args = parse_args(argv)
    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 120)  # a log or a pipe keeps whole tables
    started = time.perf_counter()
    results: dict[str, Any] = {
        "argv": argv,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    for section in args.section_list:
        console.rule(f"[bold]{section.name}[/bold]: {section.summary}")
        results[section.name] = section.load().run(args, console)
    results["wall_s"] = time.perf_counter() - started
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str))
        console.print(f"numbers written to {args.json}")
    return results


if __name__ == "__main__":
    main()
