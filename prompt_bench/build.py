"""Assemble one experiment from a composed config: backbone, split, method, head, module, data."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from prompt_bench.backbones import BackboneAdapter
from prompt_bench.data import FewShotSplit, TextDataModule, make_split
from prompt_bench.dual_build import build_dual_experiment
from prompt_bench.errors import ConfigError
from prompt_bench.heads import HEADS, Head
from prompt_bench.methods.base import MethodContext, PromptMethod
from prompt_bench.module import PromptModule
from prompt_bench.records import resolved_config, run_key
from prompt_bench.training import Outcome, fit_and_test
from prompt_bench.transfer.artefacts import pair_transferability, source_prompt_file, teacher_logits_file
from prompt_bench.transfer.pairs import check_pair


@dataclass
class Experiment:
    adapter: BackboneAdapter
    split: FewShotSplit
    method: PromptMethod
    head: Head
    module: PromptModule
    datamodule: TextDataModule


def build_experiment(cfg: DictConfig) -> Experiment:
    """Everything a run trains and evaluates, built in dependency order."""
    pl.seed_everything(cfg.seed, workers=True)
    task = instantiate(cfg.dataset.task)
    if cfg.backbone.get("family") == "dual_encoder":  # CoOp family and DePT: prompt_bench/dual_build.py
        adapter, method = instantiate(cfg.backbone), instantiate(cfg.method.module)
        check_family(method, adapter, cfg.method.name)
        return build_dual_experiment(cfg, task, adapter, method)
    check_all_classes(cfg)
    split = make_split(task, cfg.dataset.k_shot, cfg.dataset.split_seed, cfg.dataset.get("max_test_examples"))
    adapter = instantiate(cfg.backbone)
    method = instantiate(cfg.method.module)
    check_family(method, adapter, cfg.method.name)
    head = build_head(cfg.head, adapter, split.label_names, method, cfg.method.name)
    method.prepare(
        MethodContext(
            adapter=adapter,
            label_names=split.label_names,
            cache_dir=cfg.paths.cache_dir,
            extras=method_extras(cfg, method, adapter),
        )
    )
    module = PromptModule(
        backbone=adapter,
        method=method,
        head=head,
        num_classes=len(split.label_names),
        optimizer=instantiate(cfg.method.optimizer),
        scheduler=instantiate(cfg.method.scheduler) if cfg.method.get("scheduler") else None,
        head_lr=cfg.method.get("head_lr"),
        primary_metric=split.metric,
    )
    add_mask = head.needs_mask_token(adapter)
    datamodule = TextDataModule(
        split=split,
        encode=partial(adapter.encode_texts, max_length=cfg.dataset.max_length, add_mask=add_mask),
        pad_token_id=adapter.tokenizer.pad_token_id,
        batch_size=cfg.dataset.batch_size,
        eval_batch_size=cfg.dataset.eval_batch_size,
        cache_key=f"{adapter.tokenizer_id}|{split.task_name}|len={cfg.dataset.max_length}|mask={add_mask}",
        cache_dir=cfg.paths.cache_dir,
    )
    return Experiment(adapter=adapter, split=split, method=method, head=head, module=module, datamodule=datamodule)


def method_extras(cfg: DictConfig, method: PromptMethod, adapter: BackboneAdapter) -> dict:
    """What the method declares in `method.needs`, served by name (each made once and shared, see
    `prompt_bench.transfer.artefacts`): `source_prompt` (the pair's source prompt file),
    `teacher_logits` (PANDA's PoT teacher logits file), `transferability` (the pair's MSS, float).

    Every need comes from a transfer pair; without one nothing is served and the method's
    `prepare` says which pair is missing.
    """
    check_pair(cfg)

    def train_run(config: DictConfig, run_dir: Path) -> tuple[Experiment, Outcome]:
        """A run another run depends on (a source prompt, a teacher), trained like any run."""
        experiment = build_experiment(config)
        return experiment, fit_and_test(config, experiment, run_dir, run_key(resolved_config(config)))

    makers = {  # made in this order
        "source_prompt": lambda: source_prompt_file(cfg, train_run),
        "teacher_logits": lambda: teacher_logits_file(cfg, train_run),
        "transferability": lambda: pair_transferability(cfg, adapter, build_head, train_run),
    }
    unknown = sorted(method.needs - makers.keys())
    if unknown:
        raise ConfigError(
            f"method '{cfg.method.name}' needs {', '.join(unknown)}, which the builder cannot serve "
            f"(it serves {', '.join(makers)})."
        )
    if not cfg.get("transfer"):
        return {}
    return {name: make() for name, make in makers.items() if name in method.needs}


def check_all_classes(cfg: DictConfig) -> None:
    """Base-to-new splits are a dual-encoder protocol; the text path trains and tests on every class."""
    classes = cfg.dataset.get("classes", "all")
    if classes != "all":
        raise ConfigError(
            f"dataset.classes={classes} (base-to-new) needs a dual-encoder backbone (minilm_dual, mpnet_dual, "
            f"tiny_clip, clip_vit_b16) and a CoOp-family method; backbone '{cfg.backbone.name}' is not one."
        )


def check_family(method: PromptMethod, adapter: BackboneAdapter, method_name: str) -> None:
    """Fail at config time when a method does not support the backbone's family."""
    if adapter.family not in method.families:
        raise ConfigError(
            f"method '{method_name}' supports backbone families {', '.join(method.families)}, but backbone "
            f"'{adapter.name}' is a {adapter.family} model; pick another backbone or method."
        )


def build_head(
    head_cfg: DictConfig, adapter: BackboneAdapter, label_names: tuple[str, ...], method: PromptMethod, method_name: str
) -> Head:
    """conf/head/<name>.yaml -> a Head; `auto` takes the method's required head or the backbone's default."""
    name = head_cfg.name
    if name == "auto":
        name = method.required_head or adapter.default_head
        if name not in HEADS:
            raise ConfigError(f"backbone.default_head '{name}' is not one of {', '.join(HEADS)}.")
        return HEADS[name](label_names=label_names, adapter=adapter)
    if method.required_head and name != method.required_head:
        raise ConfigError(
            f"method '{method_name}' needs head={method.required_head}, but head={name} was chosen; "
            f"use head={method.required_head} or head=auto."
        )
    options = OmegaConf.to_container(head_cfg, resolve=True)
    options.pop("name")
    head_class = get_class(options.pop("_target_"))  # not instantiate(): the adapter must not be copied
    return head_class(label_names=list(label_names), adapter=adapter, **options)
