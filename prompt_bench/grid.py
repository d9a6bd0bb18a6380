"""The headline grid: a sweep over methods x scales x datasets x seeds, each cell mapped to a run its
method can do, the rest skipped with a reason (not run, not failed).

Hydra's basic sweep is a plain cartesian product; the headline comparison is not. Each cell
`(method, backbone, dataset, seed)` of the product is planned here:

- a `variants` name (`p_tuning_v2`) becomes its overrides (`method=prompt_tuning method.module.depth=deep ...`),
  and `method_overrides[name]` are added to that method's cells (e.g. a shorter meta-training for tests);
- a class-site method (CoOp, CoCoOp, KgCoOp, DePT) on a text backbone moves to the dual encoder of
  the same scale: `dual_backbones[backbone]` on a text set, `image_backbones[backbone]` (a CLIP) on an
  image set; an input-site method needs a backbone family it declares (`Method.families`) and a text set;
- a transfer method (needs a source prompt or a teacher) gets `transfer=<source>_to_<target>` from
  `transfer_sources[target]`, the pair file found in conf/transfer/;
- cells that end up identical (two scales mapped to one CLIP) run once.

The rules read only what a composed config says (`describe`), so this module imports no torch:
the sweeper (hydra_plugins/prompt_bench_sweeper) hands it Hydra's composer, tests hand it theirs.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
IMAGE_SOURCES = "prompt_bench.data.sources.images."  # the task builders of image sets
# served from a transfer pair
PAIR_NEEDS = frozenset({"source_prompt", "teacher_logits", "teacher_model", "transferability"})
PLAN_FILE = "grid.json"


@dataclass(frozen=True)
class Cell:
    """What the rules need to know of one run: its method's class declarations, backbone and dataset."""

    method: str
    prompt_site: str  # input | class
    families: tuple[str, ...]
    needs_pair: bool
    backbone: str
    family: str  # encoder | seq2seq | causal | dual_encoder
    kind: str | None  # dual encoders: clip (image-text) | sentence (text-text)
    dataset: str
    modality: str  # text | image


@dataclass
class GridRules:
    """The sweeper's keys (conf/hydra/sweeper/grid.yaml): variant names, scale -> dual backbone maps,
    target -> default transfer source, and extra overrides per swept method name."""

    variants: dict[str, list[str]] = field(default_factory=dict)
    dual_backbones: dict[str, str] = field(default_factory=dict)
    image_backbones: dict[str, str] = field(default_factory=dict)
    transfer_sources: dict[str, str] = field(default_factory=dict)
    method_overrides: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, **keys: Any) -> GridRules:
        plain = {name: to_plain(value) or {} for name, value in keys.items()}
        lists = {
            table: {name: [str(o) for o in overrides or ()] for name, overrides in plain.get(table, {}).items()}
            for table in ("variants", "method_overrides")
        }
        return cls(
            variants=lists["variants"],
            method_overrides=lists["method_overrides"],
            dual_backbones=dict(plain.get("dual_backbones", {})),
            image_backbones=dict(plain.get("image_backbones", {})),
            transfer_sources=dict(plain.get("transfer_sources", {})),
        )


@dataclass(frozen=True)
class Skip:
    """A cell not run: its overrides as swept, the swept method name, and why (without the method)."""

    overrides: list[str]
    method: str
    reason: str


@dataclass
class Plan:
    """The runs to launch (override lists, in sweep order), the cells skipped with their reason, and
    how many planned cells repeated an earlier run."""

    cells: int = 0
    runs: list[list[str]] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    duplicates: int = 0

    def summary(self, name: str = "grid") -> str:
        """A few lines for the console: counts, then each reason with how many cells it skipped, of which methods."""
        lines = [
            f"{name}: {self.cells} cells -> {len(self.runs)} runs to launch, {len(self.skipped)} skipped "
            f"(not run, not failed)" + (f", {self.duplicates} duplicate cells merged" if self.duplicates else "")
        ]
        methods: dict[str, list[str]] = {}
        for skip in self.skipped:
            names = methods.setdefault(skip.reason, [])
            if skip.method not in names:
                names.append(skip.method)
        counts = Counter(skip.reason for skip in self.skipped)
        for reason, names in methods.items():
            lines.append(f"  skipped {counts[reason]:>4} ({', '.join(names)}): {reason}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "cells": self.cells,
            "runs": self.runs,
            "skipped": [{"overrides": s.overrides, "method": s.method, "reason": s.reason} for s in self.skipped],
            "duplicates": self.duplicates,
        }

    def write(self, directory: Path) -> Path:
        path = Path(directory) / PLAN_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2))
        return path


def to_plain(value: Any) -> Any:
    """A DictConfig / ListConfig as plain dicts and lists; anything else as is."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def split_override(override: str) -> tuple[str, str]:
    """'method=coop' -> ('method', 'coop'); '+transfer=x' -> ('transfer', 'x')."""
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def value_of(job: Sequence[str], key: str) -> str | None:
    """The value a job's overrides give `key` (the last one wins, as in Hydra), else None."""
    found = None
    for override in job:
        name, value = split_override(override)
        if name == key:
            found = value
    return found


def replace(job: Sequence[str], key: str, values: Sequence[str]) -> list[str]:
    """The job with every `key=` override dropped and `values` put where the first one was."""
    out, placed = [], False
    for override in job:
        if split_override(override)[0] == key:
            if not placed:
                out.extend(values)
                placed = True
            continue
        out.append(override)
    return out if placed else [*out, *values]


@cache
def transfer_pairs(conf_dir: Path = CONF_DIR) -> dict[tuple[str, str], str]:
    """(source, target) -> pair name, from the pair files in conf/transfer/ (written by
    scripts/make_transfer_pairs.py: `/dataset@transfer.source: <source>`, `override /dataset: <target>`)."""
    pairs = {}
    for path in sorted((Path(conf_dir) / "transfer").glob("*.yaml")):
        source = target = None
        for entry in OmegaConf.load(path).get("defaults", []):
            for key, value in entry.items() if isinstance(entry, Mapping) else ():
                if key == "/dataset@transfer.source":
                    source = value
                elif key == "override /dataset":
                    target = value
        if source and target:
            pairs[(source, target)] = path.stem
    return pairs


def describe(cfg: DictConfig, method_class: Callable[[str], type]) -> Cell:
    """A Cell from a composed job config; `method_class` turns `method.module._target_` into the class."""
    return Cell(**method_part(cfg, method_class), **backbone_part(cfg), **dataset_part(cfg))


def method_part(cfg: DictConfig, method_class: Callable[[str], type]) -> dict[str, Any]:
    """What the method class declares: where its prompt goes, the families it supports, whether it needs a pair."""
    method = method_class(cfg.method.module._target_)
    return {
        "method": str(cfg.method.name),
        "prompt_site": str(getattr(method, "prompt_site", "")),
        "families": tuple(getattr(method, "families", ())),
        "needs_pair": bool(frozenset(getattr(method, "needs", ())) & PAIR_NEEDS),
    }


def backbone_part(cfg: DictConfig) -> dict[str, Any]:
    return {"backbone": str(cfg.backbone.name), "family": str(cfg.backbone.family), "kind": cfg.backbone.get("kind")}


def dataset_part(cfg: DictConfig) -> dict[str, Any]:
    """The dataset's name and modality: an image set is one whose task is built by data/sources/images.py."""
    target = str(OmegaConf.select(cfg, "dataset.task._target_") or "")
    return {"dataset": str(cfg.dataset.name), "modality": "image" if target.startswith(IMAGE_SOURCES) else "text"}


def plan_cell(job: list[str], rules: GridRules, cell_of: Callable[[list[str]], Cell]) -> tuple[list[str], str | None]:
    """(the job's final overrides, None) or (the job, why it is skipped: a reason that does not name
    the method, so the summary can count one reason over many methods).

    cell_of(overrides) describes a job (composing it); it is asked again after a backbone move.
    """
    method_name = value_of(job, "method")
    if method_name in rules.variants:
        job = replace(job, "method", rules.variants[method_name])
    job = [*job, *rules.method_overrides.get(method_name or "", ())]
    cell = cell_of(job)
    if cell.prompt_site == "class":
        if cell.family != "dual_encoder":
            table, table_name = (
                (rules.image_backbones, "image_backbones")
                if cell.modality == "image"
                else (rules.dual_backbones, "dual_backbones")
            )
            partner = table.get(cell.backbone)
            if partner is None:
                return (
                    job,
                    f"no dual encoder paired with {cell.backbone} for {cell.modality} sets (hydra.sweeper.{table_name})",
                )
            job = replace(job, "backbone", [f"backbone={partner}"])
            cell = cell_of(job)
        wanted = "clip" if cell.modality == "image" else "sentence"
        if cell.kind != wanted:
            return job, f"{cell.backbone} ({cell.kind} dual encoder) cannot read {cell.dataset} ({cell.modality})"
    elif cell.modality != "text":
        return job, f"{cell.dataset} is an image set; input-prompt methods read text"
    if cell.family not in cell.families:
        return job, f"{cell.backbone} is {cell.family}; the method supports {', '.join(cell.families)}"
    if cell.needs_pair and value_of(job, "transfer") is None:
        source = rules.transfer_sources.get(cell.dataset)
        if source is None:
            return job, f"no default transfer source for {cell.dataset} (hydra.sweeper.transfer_sources)"
        pair = transfer_pairs().get((source, cell.dataset))
        if pair is None:
            return (
                job,
                f"no pair {source} -> {cell.dataset} in conf/transfer/ (add it in scripts/make_transfer_pairs.py)",
            )
        job = replace(job, "dataset", [f"transfer={pair}"])
    return job, None


def plan_grid(jobs: Iterable[list[str]], rules: GridRules, cell_of: Callable[[list[str]], Cell]) -> Plan:
    """Plan every job of a cartesian sweep (see plan_cell); identical final jobs run once."""
    plan, seen = Plan(), set()
    for job in jobs:
        plan.cells += 1
        final, reason = plan_cell(list(job), rules, cell_of)
        if reason is not None:
            plan.skipped.append(Skip(list(job), value_of(job, "method") or "-", reason))
            continue
        key = frozenset(final)
        if key in seen:
            plan.duplicates += 1
            continue
        seen.add(key)
        plan.runs.append(final)
    return plan


PART_ROOTS = {"method": ("method",), "backbone": ("backbone",), "dataset": ("dataset", "transfer")}


def part_keys(job: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Per part of a Cell, the overrides it depends on: its own config group's and the experiment's."""

    def root(override: str) -> str:
        return split_override(override)[0].split(".")[0].split("/")[0]

    return {
        part: tuple(sorted(o for o in job if root(o) in (*roots, "experiment"))) for part, roots in PART_ROOTS.items()
    }


def cached_describer(
    compose: Callable[[list[str]], DictConfig], method_class: Callable[[str], type]
) -> Callable[[list[str]], Cell]:
    """cell_of for plan_grid: a job is composed only when its method, backbone or dataset (each keyed by
    the overrides it depends on, and the experiment) has not been seen in a composed job before."""
    parts: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = {}
    readers = {"method": lambda cfg: method_part(cfg, method_class), "backbone": backbone_part, "dataset": dataset_part}

    def cell_of(job: list[str]) -> Cell:
        keys = part_keys(job)
        if any((part, key) not in parts for part, key in keys.items()):
            cfg = compose(job)
            for part, key in keys.items():
                parts[(part, key)] = readers[part](cfg)
        return Cell(**{name: value for part, key in keys.items() for name, value in parts[(part, key)].items()})

    return cell_of
