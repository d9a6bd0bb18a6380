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


def derived_config(cfg: DictConfig, output_dir: Path) -> DictConfig:
    """A resolved copy of `cfg` for a run another run depends on: no logger, no zero-shot pass,
    writing into output_dir. Callers change what makes it a source or a teacher run."""
    derived = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    with open_dict(derived):
        derived.logger = {}
        derived.zero_shot = False
        derived.paths.output_dir = str(output_dir)
    return derived


def source_config(cfg: DictConfig, output_dir: Path) -> DictConfig:
    """The run that trains the source prompt: same backbone, prompt settings, optimizer, trainer
    and seed as the target run, on the source task, with plain prompt tuning and no logger."""
    source = derived_config(cfg, output_dir)
    with open_dict(source):
        source.dataset = source.transfer.source
        source.transfer = None
        source.method.name = "prompt_tuning"
        source.method.module = prompt_tuning_options(source.method.module, SOURCE_METHOD_TARGET)
        source.method.module.init = "vocab"
        source.method.module.pop("init_file", None)
        source.method.pop("teacher_lr", None)
    return source


def prompt_tuning_options(module: DictConfig, target: str) -> DictConfig:
    """A method module config reduced to PromptTuning's options (drops e.g. PANDA's KD keys)."""
    accepted = set(inspect.signature(PromptTuning.__init__).parameters) - {"self"}
    kept = {key: value for key, value in module.items() if key in accepted}
    return OmegaConf.create({"_target_": target, **kept})


def teacher_config(cfg: DictConfig, output_dir: Path) -> DictConfig:
    """PANDA's teacher run: PoT (SPoT) on the target task with the student's prompt settings and
    the PoT learning rate (`method.teacher_lr`), no logger."""
    teacher = derived_config(cfg, output_dir)
    with open_dict(teacher):
        teacher.method.name = "spot"
        teacher.method.module = prompt_tuning_options(teacher.method.module, TEACHER_METHOD_TARGET)
        if teacher.method.get("teacher_lr") is not None:
            teacher.method.optimizer.lr = teacher.method.teacher_lr
        teacher.method.pop("teacher_lr", None)
    return teacher


def train_dependency(config: DictConfig, workspace: Path):
    """Train the run `config` describes inside an artefact's workspace; keep its record and
    prompt file, drop its checkpoints (the artefact is the trained output, not the run)."""
    from prompt_bench.build import build_experiment  # build imports this module
    from prompt_bench.training import fit_and_test

    experiment = build_experiment(config)
    outcome = fit_and_test(config, experiment, workspace, run_key(resolved_config(config)))
    write_json_atomic(workspace / RECORD_NAME, {"status": "ok", "metrics": outcome.metrics,
                                                "split_hash": experiment.split.content_hash,
                                                "config": resolved_config(config)})
    shutil.rmtree(workspace / "checkpoints", ignore_errors=True)
    return experiment


def teacher_logits_file(cfg: DictConfig) -> Path:
    """The PoT teacher's (N, C) logits on the target training split, in split order, as an
    artefact: the teacher is trained once (in eval mode for the logits) and never updated."""
    store = ArtefactStore(Path(cfg.paths.cache_dir) / "artefacts")

    def train_teacher(workspace: Path) -> None:
        log.info("training the PoT teacher for transfer pair '%s'", cfg.transfer.name)
        experiment = train_dependency(teacher_config(cfg, workspace), workspace)
        logits = experiment.module.evaluate_logits(experiment.datamodule.ordered_dataloader("train"))
        save_file({"logits": logits.contiguous()}, str(workspace / "teacher_logits.safetensors"))

    spec = {"teacher_run_key": run_key(resolved_config(teacher_config(cfg, Path(".")))), "split": "train"}
    return store.get_or_make("teacher_logits", spec, train_teacher) / "teacher_logits.safetensors"


def source_prompt_spec(source: DictConfig) -> dict:
    """What makes a source prompt: everything result-relevant in its config (as for a run key)."""
    return {"run_key": run_key(resolved_config(source))}


def source_prompt_file(cfg: DictConfig) -> Path:
    """The source task's trained prompt.safetensors, training it first if no run has yet."""
    store = ArtefactStore(Path(cfg.paths.cache_dir) / "artefacts")

    def train_source(workspace: Path) -> None:
        log.info("training the source prompt on '%s' for transfer pair '%s'", cfg.transfer.source.name, cfg.transfer.name)
        train_dependency(source_config(cfg, workspace), workspace)

    directory = store.get_or_make("source_prompt", source_prompt_spec(source_config(cfg, Path("."))), train_source)
    return directory / PROMPT_FILE


def target_prompt_file(cfg: DictConfig) -> Path:
    """The target task's own prompt: plain prompt tuning on the target with the run's prompt
    settings and seed, stored like a source prompt (trained once, shared by every pair)."""
    as_source = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    with open_dict(as_source):
        as_source.transfer.source = as_source.dataset
    return source_prompt_file(as_source)


def pair_transferability(cfg: DictConfig, adapter, max_inputs: int = 64) -> float:
    """PANDA's model stimulation similarity between the pair's source prompt and the target's own
    prompt, on the target's training inputs (`prompt_bench.transferability`)."""
    from prompt_bench.transferability import input_batches, load_prompt, stimulation, stimulation_similarity

    batches = input_batches(cfg, adapter, max_inputs)
    source = load_prompt(cfg.method.module, source_prompt_file(cfg), adapter)
    target = load_prompt(cfg.method.module, target_prompt_file(cfg), adapter)
    return stimulation_similarity(stimulation(adapter, source, batches), stimulation(adapter, target, batches))
