"""`prompt-bench-transferability DIR`: the four transferability metrics for every pair of tasks whose
trained prompts a sweep holds, as `transferability.csv` (long) plus one matrix per metric.

    prompt-bench-transferability outputs/sweeps/transfer_matrix --max-inputs 64

A task's prompt is its target-only prompt-tuning run (`method=prompt_tuning`, no pair) or, for a
task that is only ever a source, the source-prompt artefact a transfer run in DIR used. Prompts are
compared within one (backbone, depth, seed); the stimulation metrics read the target's training
inputs (at most --max-inputs). See `prompt_bench.transfer.metrics` for the formulas. This is the
compute side (backbones, forward passes); the report only reads the CSV it writes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from rich.console import Console

from prompt_bench.artefacts import ArtefactStore
from prompt_bench.build import build_head
from prompt_bench.methods.base import PROMPT_FILE
from prompt_bench.records import read_record
from prompt_bench.report.load import iter_records
from prompt_bench.report.plots import matrix_heatmap
from prompt_bench.report.transfer import CSV_NAME, metric_matrices
from prompt_bench.transfer.artefacts import source_prompt_spec
from prompt_bench.transfer.metrics import input_batches, load_prompt, pair_metrics, prompt_vectors, stimulation
from prompt_bench.transfer.pairs import source_config

log = logging.getLogger("prompt_bench.transfer")
MARKDOWN_NAME = "transferability.md"


@dataclass(frozen=True)
class TaskPrompt:
    """One task's trained prompt and the config of the run that trained it."""

    task: str
    backbone: str
    depth: str
    seed: int
    prompt_file: Path
    config: dict[str, Any]

    @property
    def group(self) -> tuple[str, str, int]:
        return self.backbone, self.depth, self.seed


def task_prompt(config: dict[str, Any], prompt_file: Path) -> TaskPrompt:
    """The TaskPrompt of a run's resolved config and the prompt file it saved."""
    return TaskPrompt(
        task=config["dataset"]["name"],
        backbone=config["backbone"]["name"],
        depth=config["method"]["module"].get("depth", "input"),
        seed=int(config["seed"]),
        prompt_file=prompt_file,
        config=config,
    )


def find_task_prompts(root: Path) -> list[TaskPrompt]:
    """Target-only prompt-tuning runs under root first, then the source prompts its transfer runs
    used; one prompt per (task, backbone, depth, seed)."""
    found: dict[tuple, TaskPrompt] = {}

    def add(prompt: TaskPrompt) -> None:
        found.setdefault((prompt.task, *prompt.group), prompt)

    transfer_configs = []
    for path, record in iter_records(root):
        config = record.get("config") or {}
        if record.get("status") != "ok" or not config.get("method"):
            continue
        if config.get("transfer"):
            transfer_configs.append(config)
        elif config["method"].get("name") == "prompt_tuning" and (path.parent / PROMPT_FILE).exists():
            add(task_prompt(config, path.parent / PROMPT_FILE))
    for config in transfer_configs:
        source = source_config(OmegaConf.create(config), Path("."))
        store = ArtefactStore(Path(config["paths"]["cache_dir"]) / "artefacts")
        directory = store.directory("source_prompt", source_prompt_spec(source))
        record = read_record(directory)
        if record and (directory / PROMPT_FILE).exists():
            add(task_prompt(record["config"], directory / PROMPT_FILE))
    return sorted(found.values(), key=lambda prompt: (prompt.group, prompt.task))


def group_rows(prompts: list[TaskPrompt], max_inputs: int) -> list[dict[str, Any]]:
    """Metric rows for every ordered (source, target) pair of one (backbone, depth, seed) group."""
    adapter = instantiate(OmegaConf.create(prompts[0].config["backbone"]))
    methods = {
        prompt.task: load_prompt(prompt.config["method"]["module"], prompt.prompt_file, adapter) for prompt in prompts
    }
    vectors = {task: prompt_vectors(method) for task, method in methods.items()}
    rows = []
    for target in prompts:
        batches = input_batches(OmegaConf.create(target.config), adapter, max_inputs, build_head)
        stimulations = {task: stimulation(adapter, method, batches) for task, method in methods.items()}
        for source in prompts:
            metrics = pair_metrics(
                vectors[source.task], vectors[target.task], stimulations[source.task], stimulations[target.task]
            )
            for metric, value in metrics.items():
                rows.append(
                    {
                        "backbone": target.backbone,
                        "depth": target.depth,
                        "seed": target.seed,
                        "source": source.task,
                        "target": target.task,
                        "metric": metric,
                        "value": value,
                    }
                )
    return rows


def transferability_frame(root: Path, max_inputs: int = 64) -> pd.DataFrame:
    """Long frame (backbone, depth, seed, source, target, metric, value) over every group with two
    or more tasks; empty when there is none."""
    prompts = find_task_prompts(root)
    groups: dict[tuple, list[TaskPrompt]] = {}
    for prompt in prompts:
        groups.setdefault(prompt.group, []).append(prompt)
    rows = []
    for group, members in groups.items():
        if len(members) < 2:
            log.info("skipping %s: only %s has a prompt", group, members[0].task)
            continue
        torch.manual_seed(0)
        rows.extend(group_rows(members, max_inputs))
    return pd.DataFrame(rows, columns=["backbone", "depth", "seed", "source", "target", "metric", "value"])


def write_transferability(frame: pd.DataFrame, out_dir: Path) -> list[Path]:
    """transferability.csv, transferability.md (one matrix per metric) and a heatmap PNG per matrix."""
    out_dir.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out_dir / CSV_NAME, index=False)
    written = [out_dir / CSV_NAME]
    sections = ["# Transferability (source rows x target columns, mean over seeds)\n"]
    for (backbone, depth, metric), matrix in metric_matrices(frame).items():
        title = f"{metric} · {backbone} · {depth} prompts"
        sections.append(f"## {title}\n\n{matrix.round(3).to_markdown()}\n")
        png = out_dir / f"transferability_{metric}_{backbone}_{depth}.png"
        matrix_heatmap(matrix, title, png, value_format=".2f")
        written.append(png)
    (out_dir / MARKDOWN_NAME).write_text("\n".join(sections))
    return [*written, out_dir / MARKDOWN_NAME]


def main(argv: Sequence[str] | None = None) -> int:
    """Console script `prompt-bench-transferability`; exit 1 when DIR holds no comparable prompts."""
    parser = argparse.ArgumentParser(prog="prompt-bench-transferability", description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", type=Path, help="a sweep directory (e.g. outputs/sweeps/transfer_matrix)")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: DIR)")
    parser.add_argument("--max-inputs", type=int, default=64, help="target inputs the stimulation metrics read")
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 200)
    if not args.dir.is_dir():
        console.print(f"[red]error:[/red] {args.dir} is not a directory; pass a sweep directory.")
        return 1
    frame = transferability_frame(args.dir, args.max_inputs)
    if frame.empty:
        console.print(
            f"[red]error:[/red] no two tasks under {args.dir} have prompts for the same backbone, depth and seed; "
            "run experiment=transfer_matrix (target-only prompt_tuning runs and transfer runs) first."
        )
        return 1
    for path in write_transferability(frame, args.out or args.dir):
        console.print(f"wrote {path}")
    console.print((args.out or args.dir) / MARKDOWN_NAME, markup=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
