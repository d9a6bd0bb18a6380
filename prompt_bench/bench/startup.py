"""Section `startup`: how long a run takes from `prompt-bench` to its first optimizer step.

One untimed warm-up run fills the caches (the OS page cache, the token cache, MPNet's unzipped
parts), then `--startup-repeats` fresh interpreters each run the real console entry point on the
default config (with `--backbone`, `--dataset`), timed phase by phase up to the end of the first
optimizer step (bench/startup_child.py says what each phase holds). Then `python -X importtime`
on `import prompt_bench.run`, summed per top-level package.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from prompt_bench.bench import importtime
from prompt_bench.bench.startup_child import WATCHED_MODULES as STARTUP_WATCHED

CHILD_CODE = "import time; t0 = time.time(); from prompt_bench.bench.startup_child import main; main(t0)"
PHASES = (
    "interpreter",
    "imports",
    "hydra + record",
    "dataset",
    "model load",
    "split",
    "build other",
    "tokenize",
    "zero-shot",
    "fit setup",
)
STEP = "first step"
TARGET_S = 5.0


def run_overrides(args: argparse.Namespace) -> list[str]:
    from prompt_bench.bench.workload import backbone_overrides

    overrides = [*backbone_overrides(args.backbone), f"dataset={args.dataset}"]
    if args.device == "cuda":
        overrides.append("trainer=gpu")
    return overrides + args.startup_overrides.split()


def time_one_start(overrides: list[str], workdir: Path) -> dict[str, Any]:
    """One fresh interpreter up to its first optimizer step: phase seconds and what it imported."""
    result_path = workdir / f"startup_{time.monotonic_ns()}.json"
    run_dir = workdir / f"run_{time.monotonic_ns()}"
    command = [sys.executable, "-c", CHILD_CODE, str(result_path), *overrides, f"hydra.run.dir={run_dir}"]
    spawned = time.time()
    completed = subprocess.run(command, capture_output=True, text=True, env=child_env())
    if not result_path.exists():
        raise RuntimeError(f"the timed run wrote no result (exit {completed.returncode}):\n{completed.stderr[-3000:]}")
    raw = json.loads(result_path.read_text())
    if "no_step" in raw["events"]:
        raise RuntimeError(f"the timed run ended before its first optimizer step:\n{completed.stdout[-3000:]}")
    return {"phases": phases(raw, spawned), "peak_rss_mib": raw["peak_rss_mib"], "modules": raw["modules"]}


def child_env() -> dict[str, str]:
    """The parent's environment, with this checkout first on the path (as `pip install -e` has it)."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}


def phases(raw: dict[str, Any], spawned: float) -> dict[str, float]:
    """Phase seconds from the child's events and timed calls; they add up to spawn -> first step."""
    events, seconds = raw["events"], raw["seconds"]
    inside_build = sum(seconds.get(name, 0.0) for name in ("dataset", "model load", "split"))
    after_build = events["first_step_start"] - events["build_end"]
    tokenize, zero_shot = seconds.get("tokenize", 0.0), seconds.get("zero-shot", 0.0)
    result = {
        "interpreter": events["imports_start"] - spawned,
        "imports": events["imports_end"] - events["imports_start"],
        "hydra + record": events["build_start"] - events["imports_end"],
        "dataset": seconds.get("dataset", 0.0),
        "model load": seconds.get("model load", 0.0),
        "split": seconds.get("split", 0.0),
        "build other": seconds.get("build", 0.0) - inside_build,
        "tokenize": tokenize,
        "zero-shot": zero_shot,
        "fit setup": after_build - tokenize - zero_shot,
    }
    result["start"] = events["first_step_start"] - spawned
    result[STEP] = events["first_step_end"] - events["first_step_start"]
    result["total"] = events["first_step_end"] - spawned
    return result


ROWS = (*PHASES, "start", STEP, "total")  # start: spawn -> first training_step; total: -> end of its optimizer step


def run(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    overrides = run_overrides(args)
    with tempfile.TemporaryDirectory(prefix="prompt_bench_startup_") as directory:
        workdir = Path(directory)
        time_one_start(overrides, workdir)  # warm-up: caches filled, not counted
        starts = [time_one_start(overrides, workdir) for _ in range(args.startup_repeats)]
    imports = importtime.measure(env={"PYTHONPATH": child_env()["PYTHONPATH"]})
    result = {
        "overrides": overrides,
        "repeats": [start["phases"] for start in starts],
        "median_s": {name: statistics.median(s["phases"][name] for s in starts) for name in ROWS},
        "peak_rss_mib": max(start["peak_rss_mib"] for start in starts),
        "modules_at_first_step": starts[-1]["modules"],
        "importtime": imports,
    }
    print_report(result, console)
    return result


def print_report(result: dict[str, Any], console: Console) -> None:
    repeats = result["repeats"]
    table = Table(title=f"startup to the first optimizer step: prompt-bench {' '.join(result['overrides'])}")
    for column in ("phase", "median s", "min-max s", "share of start"):
        table.add_column(column, justify="left" if column == "phase" else "right")
    start = result["median_s"]["start"]
    for name in ROWS:
        values = [repeat[name] for repeat in repeats]
        share = f"{100 * result['median_s'][name] / start:.0f}%" if name in PHASES else ""
        table.add_row(name, f"{result['median_s'][name]:.2f}", f"{min(values):.2f}-{max(values):.2f}", share)
    console.print(table)
    verdict = "ok" if start < TARGET_S else "MISSED"
    console.print(
        f"start (before the first step) {start:.2f} s, target < {TARGET_S:.0f} s: {verdict}; peak RSS of the run "
        f"{result['peak_rss_mib']:.0f} MiB; of {', '.join(STARTUP_WATCHED)}, imported by the first step: "
        f"{', '.join(result['modules_at_first_step']) or 'none'}"
    )
    imports = result["importtime"]
    console.print(
        f"python -X importtime -c '{imports['statement']}': {imports['total_s']:.2f} s in {imports['modules']} "
        "modules; self time summed per top-level package:"
    )
    packages = Table()
    packages.add_column("package")
    packages.add_column("s", justify="right")
    for name, seconds in list(imports["per_package_s"].items())[:15]:
        packages.add_row(name, f"{seconds:.2f}")
    console.print(packages)
