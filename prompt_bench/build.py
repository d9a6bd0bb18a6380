"""Assemble one experiment from a composed config: backbone, method, split, head, module, data.

One flow for every run; what differs is where the method puts its prompt (`method.prompt_site`:
`input` or `class`), whose split, Lightning module and datamodule come from build_sites.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from prompt_bench.backbones import AdapterBase
from prompt_bench.base_to_new import BaseToNewSplit
from prompt_bench.build_sites import SITES, ClassSite, InputSite
from prompt_bench.data import FewShotSplit, SplitDataModule
from prompt_bench.data.task_cache import load_task
from prompt_bench.errors import ConfigError
from prompt_bench.heads import HEADS, Head, auto_head_name
from prompt_bench.lit import PromptLightningModule
from prompt_bench.methods.base import Method, MethodContext
from prompt_bench.methods.bayesprompt.encoding import add_relation_tokens, relation_support
from prompt_bench.methods.metapt.pretrain import meta_init_file
from prompt_bench.records import resolved_config, run_key
from prompt_bench.training import Outcome, fit_and_test
from prompt_bench.transfer.artefacts import (
    pair_transferability,
    source_prompt_file,
    teacher_directory,
    teacher_logits_file,
)
from prompt_bench.transfer.pairs import check_pair
from prompt_bench.validate import check_task

PAIRLESS_NEEDS = frozenset({"meta_init"})  # served without a transfer pair


@dataclass
class Experiment:
    """What a run trains and evaluates. split: a FewShotSplit (input site) or a BaseToNewSplit
    (class site); both name the selection `metric` and the headline `test_metric`."""

    adapter: AdapterBase
    split: FewShotSplit | BaseToNewSplit
    method: Method
    head: Head
    module: PromptLightningModule
    datamodule: SplitDataModule
    data_notes: dict[str, int] = field(default_factory=dict)  # e.g. empty texts dropped (validate.check_task)


def build_experiment(cfg: DictConfig, adapter: AdapterBase | None = None) -> Experiment:
    """Everything a run trains and evaluates, built in dependency order.

    adapter: an already loaded backbone to build on instead of `cfg.backbone` (a packed run shares
    one among its runs, prompt_bench/packing); loading draws nothing from the global RNG, so the
    method and head are initialised the same either way.
    """
    pl.seed_everything(cfg.seed, workers=True)
    task, data_notes = check_task(load_task(cfg), cfg)  # packaged tasks from the cache when warm
    adapter = adapter if adapter is not None else instantiate(cfg.backbone)
    method = instantiate(cfg.method.module)
    check_family(method, adapter, cfg.method.name)
    site = prompt_site(method, cfg.method.name)
    site.setup_backbone(cfg, adapter)
    split = site.split(cfg, task, method)
    head_cfg = cfg.head
    if task.kind == "relation":  # KnowPrompt's tokens in the vocabulary; its restricted-MLM head
        head_cfg = relation_head_config(cfg, adapter)
        add_relation_tokens(adapter, len(split.label_names))
    head = build_head(head_cfg, adapter, split.label_names, method, cfg.method.name)
    method.prepare(
        MethodContext(
            adapter=adapter,
            label_names=split.label_names,
            cache_dir=cfg.paths.cache_dir,
            extras=method_extras(cfg, method, adapter),
            train_texts=split.train.texts if isinstance(split, FewShotSplit) else (),
            pool_texts=task.train.texts,
            task_kind=task.kind,
            max_length=cfg.dataset.max_length,
            head=head,
        )
    )
    module = site.module(
        cfg,
        adapter,
        method,
        head,
        split,
        optimizer=instantiate(cfg.method.optimizer),
        scheduler=instantiate(cfg.method.scheduler) if cfg.method.get("scheduler") else None,
        scheduler_interval=cfg.method.get("scheduler_interval"),
        gradient_clip_norm=cfg.method.get("gradient_clip_norm"),
        primary_metric=split.metric,
        backbone_dropout=bool(cfg.method.get("backbone_dropout", False)),
    )
    datamodule = site.datamodule(cfg, adapter, head, split)
    return Experiment(
        adapter=adapter,
        split=split,
        method=method,
        head=head,
        module=module,
        datamodule=datamodule,
        data_notes=data_notes,
    )


def relation_head_config(cfg: DictConfig, adapter: AdapterBase) -> DictConfig:
    """A relation task is scored by head=relation_mlm (head=auto picks it) on an encoder with an MLM head."""
    reason = relation_support(adapter)
    if reason:
        raise ConfigError(f"dataset '{cfg.dataset.name}' is a relation task, but {reason}.")
    if cfg.head.name not in ("auto", "relation_mlm"):
        raise ConfigError(
            f"dataset '{cfg.dataset.name}' is a relation task, scored by head=relation_mlm (KnowPrompt's "
            f"restricted MLM logits); head={cfg.head.name} cannot score it: use head=auto or head=relation_mlm."
        )
    return OmegaConf.create({"name": "relation_mlm", "_target_": "prompt_bench.heads.RelationMLMHead"})


def prompt_site(method: Method, method_name: str) -> InputSite | ClassSite:
    """The build pieces of the method's prompt site (build_sites.SITES)."""
    site = SITES.get(method.prompt_site)
    if site is None:
        raise ConfigError(
            f"method '{method_name}' ({type(method).__name__}) declares prompt_site '{method.prompt_site}'; "
            f"a method's prompt goes in one of: {', '.join(SITES)}."
        )
    return site


def method_extras(cfg: DictConfig, method: Method, adapter: AdapterBase) -> dict:
    """What the method declares in `method.needs`, served by name (each made once and shared, see
    `prompt_bench.transfer.artefacts`): `source_prompt` (the pair's source prompt file),
    `teacher_logits` (PANDA's PoT teacher logits file), `teacher_model` (the PoT teacher's run directory:
    its prompt.safetensors and head.safetensors), `transferability` (the pair's MSS, float),
    `meta_init` (MetaPT's / PPT's pre-trained init prompt file, from method.pretrain; no pair needed).

    The other needs come from a transfer pair; without one they are not served and the method's
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
        "teacher_model": lambda: teacher_directory(cfg, train_run),
        "transferability": lambda: pair_transferability(cfg, adapter, build_head, train_run),
        "meta_init": lambda: meta_init_file(cfg, adapter, method, build_head),
    }
    unknown = sorted(method.needs - makers.keys())
    if unknown:
        raise ConfigError(
            f"method '{cfg.method.name}' needs {', '.join(unknown)}, which the builder cannot serve "
            f"(it serves {', '.join(makers)})."
        )
    if not cfg.get("transfer"):
        return {name: make() for name, make in makers.items() if name in method.needs & PAIRLESS_NEEDS}
    return {name: make() for name, make in makers.items() if name in method.needs}


def check_family(method: Method, adapter: AdapterBase, method_name: str) -> None:
    """Fail at config time when a method does not support the backbone's family."""
    if adapter.family not in method.families:
        raise ConfigError(
            f"method '{method_name}' supports backbone families {', '.join(method.families)}, but backbone "
            f"'{adapter.name}' is a {adapter.family} model; pick another backbone or method."
        )


def build_head(
    head_cfg: DictConfig, adapter: AdapterBase, label_names: tuple[str, ...], method: Method, method_name: str
) -> Head:
    """conf/head/<name>.yaml -> a Head; `auto` takes the method's required head, else its preferred head
    where the backbone's family takes it, else the backbone's default (`heads.auto_head_name`)."""
    name = head_cfg.name
    if name == "auto":
        name = auto_head_name(method.required_head, method.preferred_head, adapter.family, adapter.default_head)
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
