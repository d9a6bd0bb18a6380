"""Packed runs: runs that share a frozen backbone train in one process, one backbone pass per step.

- `forward.py`  the packed backbone pass: K runs' rows stacked, outputs split back per run
- `member.py`   one run in a pack: its optimizer, schedule, clipping, epochs, dev selection, test
- `loop.py`     the step loop: summed losses, one backward, per-run steps; failures stay per run
- `pack_run.py` claim, build, train and record the runs of one pack
- `plan.py`     group a sweep's jobs by shared backbone into packs sized by a memory estimate
- `refusals.py` what is not packed, each as a sentence
- `launcher.py` the Hydra launcher (local and SLURM) and `auto.py` the `pack=auto` switch

User guide: docs/packing.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omegaconf import DictConfig


def run_packed(configs: Sequence[DictConfig]) -> list[dict[str, Any]]:
    """K composed run configs (`paths.output_dir` set per run) trained as one pack; one record per config,
    in order (the benchmark's packed section calls this). Imported lazily: Hydra imports this package
    while scanning for plugins (hydra_plugins/prompt_bench_packing), which must not import torch."""
    from prompt_bench.packing.pack_run import run_configs

    return run_configs(list(configs))
