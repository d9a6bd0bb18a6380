"""Source prompts for transfer methods: trained once per (source task, backbone, prompt settings,
seed) as a shared artefact, whichever run needs it first."""

from __future__ import annotations

import inspect
import logging
import shutil
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from safetensors.torch import save_file

from prompt_bench.artefacts import ArtefactStore
from prompt_bench.errors import ConfigError
from prompt_bench.methods.prompt_tuning import PromptTuning
from prompt_bench.records import RECORD_NAME, resolved_config, run_key, write_json_atomic

log = logging.getLogger("prompt_bench")
SOURCE_METHOD_TARGET = "prompt_bench.methods.prompt_tuning.PromptTuning"
TEACHER_METHOD_TARGET = "prompt_bench.methods.spot.SPoT"
PROMPT_FILE = "prompt.safetensors"


def check_pair(cfg: DictConfig) -> None:
    """A transfer pair must name two different tasks."""
    if cfg.get("transfer") and cfg.transfer.source.name == cfg.dataset.name:
        raise ConfigError(
            f"transfer pair '{cfg.transfer.name}' has the same source and target task ('{cfg.dataset.name}'); "
            "pick a pair with a different source."
        )


def source_config(cfg: DictConfig, output_dir: Path) -> DictConfig:
    """The run that trains the source prompt: same backbone, prompt settings, optimizer, trainer
    and seed as the target run, on the source task, with plain prompt tuning and no logger."""
    source = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    with open_dict(source):
        source.dataset = source.transfer.source
        source.transfer = None
        source.method.name = "prompt_tuning"
        source.method.module = prompt_tuning_options(source.method.module, SOURCE_METHOD_TARGET)
        source.method.module.init = "vocab"
        source.method.module.pop("init_file", None)
        source.method.pop("teacher_lr", None)
        source.logger = {}
        source.zero_shot = False
        source.paths.output_dir = str(output_dir)
    return source


def prompt_tuning_options(module: DictConfig, target: str) -> DictConfig:
    """A method module config reduced to PromptTuning's options (drops e.g. PANDA's KD keys)."""
    accepted = set(inspect.signature(PromptTuning.__init__).parameters) - {"self"}
    kept = {key: value for key, value in module.items() if key in accepted}
    return OmegaConf.create({"_target_": target, **kept})


def teacher_config(cfg: DictConfig, output_dir: Path) -> DictConfig:
    """PANDA's teacher run: PoT (SPoT) on the target task with the student's prompt settings and
    the PoT learning rate (`method.teacher_lr`), no logger."""
    teacher = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    with open_dict(teacher):
        teacher.method.name = "spot"
        teacher.method.module = prompt_tuning_options(teacher.method.module, TEACHER_METHOD_TARGET)
        if teacher.method.get("teacher_lr") is not None:
            teacher.method.optimizer.lr = teacher.method.teacher_lr
        teacher.method.pop("teacher_lr", None)
        teacher.logger = {}
        teacher.zero_shot = False
        teacher.paths.output_dir = str(output_dir)
    return teacher


def teacher_logits_file(cfg: DictConfig) -> Path:
    """The PoT teacher's (N, C) logits on the target training split, in split order, as an
    artefact: the teacher is trained once (in eval mode for the logits) and never updated."""
    from prompt_bench.build import build_experiment
    from prompt_bench.training import fit_and_test

    store = ArtefactStore(Path(cfg.paths.cache_dir) / "artefacts")

    def train_teacher(workspace: Path) -> None:
        teacher = teacher_config(cfg, workspace)
        log.info("training the PoT teacher for transfer pair '%s'", cfg.transfer.name)
        experiment = build_experiment(teacher)
        outcome = fit_and_test(teacher, experiment, workspace, run_key(resolved_config(teacher)))
        logits = experiment.module.evaluate_logits(experiment.datamodule.ordered_dataloader("train"))
        save_file({"logits": logits.contiguous()}, str(workspace / "teacher_logits.safetensors"))
        write_json_atomic(workspace / RECORD_NAME, {"status": "ok", "metrics": outcome.metrics,
                                                    "split_hash": experiment.split.content_hash,
                                                    "config": resolved_config(teacher)})
        shutil.rmtree(workspace / "checkpoints", ignore_errors=True)

    spec = {"teacher_run_key": run_key(resolved_config(teacher_config(cfg, Path(".")))), "split": "train"}
    return store.get_or_make("teacher_logits", spec, train_teacher) / "teacher_logits.safetensors"


def source_prompt_spec(source: DictConfig) -> dict:
    """What makes a source prompt: everything result-relevant in its config (as for a run key)."""
    return {"run_key": run_key(resolved_config(source))}


def source_prompt_file(cfg: DictConfig) -> Path:
    """The source task's trained prompt.safetensors, training it first if no run has yet."""
    from prompt_bench.build import build_experiment  # build imports this module
    from prompt_bench.training import fit_and_test

    probe = source_config(cfg, Path("."))
    store = ArtefactStore(Path(cfg.paths.cache_dir) / "artefacts")

    def train(workspace: Path) -> None:
        source = source_config(cfg, workspace)
        log.info("training the source prompt on '%s' for transfer pair '%s'", source.dataset.name, cfg.transfer.name)
        experiment = build_experiment(source)
        outcome = fit_and_test(source, experiment, workspace, run_key(resolved_config(source)))
        write_json_atomic(workspace / RECORD_NAME, {"status": "ok", "metrics": outcome.metrics,
                                                    "config": resolved_config(source)})
        shutil.rmtree(workspace / "checkpoints", ignore_errors=True)  # the prompt file is the artefact

    directory = store.get_or_make("source_prompt", source_prompt_spec(probe), train)
    return directory / PROMPT_FILE
