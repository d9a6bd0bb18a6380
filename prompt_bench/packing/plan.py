"""Which sweep jobs train together: grouped by what they must share, cut into packs by count and memory.

Runs can share a pass when they share the backbone (its whole config: weights, dtype, pooling...),
whether its dropout is on while training (`method.backbone_dropout`), and the device and precision
they train at (`pack_key`). A group is cut, in sweep order, into packs
of at most `max_runs` runs whose estimated training memory fits `memory_budget_gb` (null: no memory
cap). A job the pack loop cannot run (`refusals.config_refusal`) runs alone, the ordinary way.

Memory per run is the activation memory of training one batch (Korthikanti et al. 2022, "Reducing
Activation Recomputation in Large Transformer Models", sec. 4.1: per layer s·b·h·(34 + 5·a·s/h) bytes
at 16 bits, doubled for fp32), with s = n_tokens + dataset.max_length, b = dataset.batch_size and the
backbone's hidden size h, heads a and layers; the backbone's weights count once per pack.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from prompt_bench.packing.refusals import config_refusal

log = logging.getLogger("prompt_bench")
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
GB = 1024**3


@dataclass
class SweepJob:
    """One job of a sweep: its number, its overrides and its composed config (paths.output_dir set)."""

    number: int
    overrides: list[str]
    cfg: DictConfig


@dataclass
class Plan:
    """packs: lists of jobs that train together; alone: (job, why not packed) run the ordinary way."""

    packs: list[list[SweepJob]] = field(default_factory=list)
    alone: list[tuple[SweepJob, str]] = field(default_factory=list)


def pack_key(cfg: DictConfig) -> str:
    """What runs of one pack must share: the backbone config (less its cache dir), whether its dropout is
    on in training (method.backbone_dropout: one pass, one mode), device and precision."""
    backbone = OmegaConf.to_container(cfg.backbone, resolve=True)
    backbone.pop("cache_dir", None)
    backbone["dropout_in_training"] = bool(cfg.method.get("backbone_dropout", False))
    trainer = {name: str(cfg.trainer.get(name)) for name in ("accelerator", "precision")}
    return json.dumps({"backbone": backbone, "trainer": trainer}, sort_keys=True, default=str)


def backbone_shape(backbone: DictConfig) -> tuple[int, int, int]:
    """(layers, hidden size, attention heads) of a backbone, read from its config file without its
    weights; a backbone whose config cannot be read is guessed from params_m (BERT-base proportions)."""
    if backbone.get("source") == "tiny":
        from prompt_bench.backbones.tiny import HIDDEN_SIZE, NUM_HEADS, NUM_LAYERS

        return NUM_LAYERS, HIDDEN_SIZE, NUM_HEADS
    try:
        config = model_config(backbone)
        return int(config.num_hidden_layers), int(config.hidden_size), int(config.num_attention_heads)
    except Exception as error:  # noqa: BLE001 - an estimate: fall back, and say so
        hidden = int(768 * (float(backbone.get("params_m") or 110) / 110) ** 0.5)
        log.info("pack plan: no config for backbone '%s' (%s); guessing 12 layers of %d", backbone.name, error, hidden)
        return 12, hidden, max(1, hidden // 64)


def model_config(backbone: DictConfig) -> Any:
    """The Hugging Face config of a path, package or (cached) hub backbone."""
    from transformers import AutoConfig

    from prompt_bench.backbones.load import package_model_dir

    source, name = backbone.get("source"), backbone.get("name_or_path")
    if source == "package":
        return AutoConfig.from_pretrained(str(package_model_dir(name)))
    return AutoConfig.from_pretrained(name, local_files_only=True)


def run_memory_bytes(cfg: DictConfig, shape: tuple[int, int, int]) -> float:
    """Activation bytes of one training batch of this run (see the module docstring)."""
    layers, hidden, heads = shape
    positions = int(cfg.method.module.get("n_tokens", 0) or 0) + int(cfg.dataset.max_length)
    batch = int(cfg.dataset.batch_size)
    per_layer_16bit = positions * batch * hidden * (34 + 5 * heads * positions / hidden)
    scale = 1.0 if cfg.trainer.get("precision") == "bf16-mixed" else BYTES.get(cfg.backbone.get("dtype"), 4) / 2
    return layers * per_layer_16bit * scale


def backbone_bytes(cfg: DictConfig) -> float:
    return float(cfg.backbone.get("params_m") or 0) * 1e6 * BYTES.get(cfg.backbone.get("dtype"), 4)


def plan_packs(jobs: list[SweepJob], max_runs: int, memory_budget_gb: float | None) -> Plan:
    """Group `jobs` by pack_key (first-seen order) and cut each group into packs (see module docstring)."""
    plan = Plan()
    groups: dict[str, list[SweepJob]] = {}
    for job in jobs:
        refusal = config_refusal(job.cfg)
        if refusal:
            plan.alone.append((job, refusal))
        else:
            groups.setdefault(pack_key(job.cfg), []).append(job)
    for group in groups.values():
        plan.packs.extend(cut(group, max(1, int(max_runs)), memory_budget_gb))
    return plan


def cut(group: list[SweepJob], max_runs: int, memory_budget_gb: float | None) -> list[list[SweepJob]]:
    """Consecutive packs of at most max_runs jobs whose estimated memory fits the budget (a job that
    alone exceeds it still gets a pack of its own)."""
    budget = memory_budget_gb * GB if memory_budget_gb else None
    shape = backbone_shape(group[0].cfg.backbone) if budget else None
    packs: list[list[SweepJob]] = []
    current: list[SweepJob] = []
    used = 0.0
    for job in group:
        need = run_memory_bytes(job.cfg, shape) if budget else 0.0
        fits = budget is None or backbone_bytes(job.cfg) + used + need <= budget
        if current and (len(current) >= max_runs or not fits):
            packs.append(current)
            current, used = [], 0.0
        current.append(job)
        used += need
    if current:
        packs.append(current)
    return packs
