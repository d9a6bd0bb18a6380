"""Transfer pairs: checking a (source task -> target task) pair, and the configs of the runs a
transfer run depends on (the source prompt's run, PANDA's teacher run, the target's own prompt).

Every derived config is a resolved copy of the target run's config with the same backbone, prompt
settings, optimizer, trainer and seed, no logger and no zero-shot pass; only what makes it a
source, teacher or target-prompt run changes.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict

from prompt_bench.errors import ConfigError
from prompt_bench.heads import HEADS, auto_head_name
from prompt_bench.methods.prompt_tuning import PromptTuning

SOURCE_METHOD_TARGET = "prompt_bench.methods.prompt_tuning.PromptTuning"
TEACHER_METHOD_TARGET = "prompt_bench.methods.spot.SPoT"


def check_pair(cfg: DictConfig) -> None:
    """A transfer pair must name two different tasks."""
    if cfg.get("transfer") and cfg.transfer.source.name == cfg.dataset.name:
        raise ConfigError(
            f"transfer pair '{cfg.transfer.name}' has the same source and target task ('{cfg.dataset.name}'); "
            "pick a pair with a different source."
        )


def derived_config(cfg: DictConfig, output_dir: Path) -> DictConfig:
    """A resolved copy of `cfg` for a run another run depends on: no logger, no zero-shot pass, its
    prompt (and trained head) saved, writing into output_dir, with the parent's head. Callers change
    what makes it a source or a teacher run."""
    derived = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    with open_dict(derived):
        derived.logger = {}
        derived.zero_shot = False
        derived.save_prompt = True  # the artefact is the saved prompt
        derived.paths.output_dir = str(output_dir)
        preferred = parents_preferred_head(cfg)
        if preferred is not None:
            derived.head = {"name": preferred, "_target_": f"{HEADS[preferred].__module__}.{HEADS[preferred].__name__}"}
    return derived


def parents_preferred_head(cfg: DictConfig) -> str | None:
    """The head head=auto gives `cfg`'s method because the method prefers it (PANDA: pooler), else None.

    The dependency runs (plain prompt tuning, SPoT) prefer no head, so they get this one by name: the
    official source and PoT runs use the same model class, pooler and classifier, as PANDA's student.
    """
    if cfg.head.name != "auto":
        return None  # an explicit head is copied as it is
    method_class = get_class(cfg.method.module._target_)
    preferred = getattr(method_class, "preferred_head", None)
    backbone = cfg.backbone
    chosen = auto_head_name(
        getattr(method_class, "required_head", None), preferred, backbone.get("family"), backbone.get("default_head")
    )
    return chosen if preferred is not None and chosen == preferred else None


def prompt_tuning_options(module: DictConfig, target: str) -> DictConfig:
    """A method module config reduced to PromptTuning's options (drops e.g. PANDA's KD keys),
    instantiating `target` (a PromptTuning or a subclass taking the same options)."""
    accepted = set(inspect.signature(PromptTuning.__init__).parameters) - {"self"}
    kept = {key: value for key, value in module.items() if key in accepted}
    return OmegaConf.create({"_target_": target, **kept})


def source_config(cfg: DictConfig, output_dir: Path) -> DictConfig:
    """The run that trains the source prompt: same backbone, prompt settings, optimizer, trainer
    and seed as the target run, on the source task, with plain prompt tuning and no logger; at
    `method.source_lr` when the method sets one (PANDA: 1e-2, the official source run's lr)."""
    source = derived_config(cfg, output_dir)
    with open_dict(source):
        source.dataset = source.transfer.source
        source.transfer = None
        source.method.name = "prompt_tuning"
        source.method.module = prompt_tuning_options(source.method.module, SOURCE_METHOD_TARGET)
        source.method.module.init = "vocab"
        source.method.module.pop("init_file", None)
        if source.method.get("source_lr") is not None:
            source.method.optimizer.lr = source.method.source_lr
        drop_dependency_lrs(source)
    return source


def teacher_config(cfg: DictConfig, output_dir: Path) -> DictConfig:
    """PANDA's teacher run: PoT (SPoT) on the target task with the student's prompt settings and
    the PoT learning rate (`method.teacher_lr`), no logger."""
    teacher = derived_config(cfg, output_dir)
    with open_dict(teacher):
        teacher.method.name = "spot"
        teacher.method.module = prompt_tuning_options(teacher.method.module, TEACHER_METHOD_TARGET)
        if teacher.method.get("teacher_lr") is not None:
            teacher.method.optimizer.lr = teacher.method.teacher_lr
        teacher.method.pop("teacher_lr", None)  # source_lr stays: the teacher's source prompt is the pair's
    return teacher


def drop_dependency_lrs(derived: DictConfig) -> None:
    """A source run's config keeps its own lr only (the parent's teacher_lr and source_lr are spent)."""
    for key in ("teacher_lr", "source_lr"):
        derived.method.pop(key, None)


def as_own_source(cfg: DictConfig) -> DictConfig:
    """`cfg` with the target task as its own source: its source prompt is then the target's own
    prompt (plain prompt tuning on the target with the run's prompt settings and seed)."""
    own = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    with open_dict(own):
        own.transfer.source = own.dataset
    return own
