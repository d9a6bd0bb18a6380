"""The artefacts a transfer run consumes, each made once per content key by whichever run needs it
first (`prompt_bench.artefacts.ArtefactStore`):

- source_prompt: plain prompt tuning on the pair's source task (`pairs.source_config`);
- teacher_logits: PANDA's PoT teacher's (N, C) logits on the target training split, beside the
  teacher's prompt and head (`teacher_directory`, for PANDA's live teacher);
- the target's own prompt (plain prompt tuning on the target), which adaptive KD compares with
  the source prompt (`pair_transferability`).

Making one means training another run. The makers RECEIVE that as `train_run` rather than importing
the builder and the training loop (which import this module): the builder hands in its own.
Without a `train_run` they only look an artefact up and say so when it was never made.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from safetensors.torch import save_file

from prompt_bench.artefacts import ArtefactStore
from prompt_bench.backbones import BackboneAdapter
from prompt_bench.methods.base import PROMPT_FILE
from prompt_bench.records import RECORD_NAME, resolved_config, run_key, write_json_atomic
from prompt_bench.transfer.metrics import HeadBuilder, input_batches, load_prompt, stimulation, stimulation_similarity
from prompt_bench.transfer.pairs import as_own_source, source_config, teacher_config

log = logging.getLogger("prompt_bench")
TEACHER_LOGITS_FILE = "teacher_logits.safetensors"

TrainRun = Callable[[DictConfig, Path], tuple[Any, Any]]
"""train_run(config, run_dir) -> (experiment, outcome): build the run `config` describes, fit and
test it in run_dir (the builder's `Experiment` and the training loop's `Outcome`)."""


def artefact_store(cfg: DictConfig) -> ArtefactStore:
    """The run's shared artefacts: `<paths.cache_dir>/artefacts`."""
    return ArtefactStore(Path(cfg.paths.cache_dir) / "artefacts")


def get_or_make(
    cfg: DictConfig, kind: str, spec: dict, make: Callable[[Path], None], train_run: TrainRun | None
) -> Path:
    """The artefact's directory, made by `make` when missing; with train_run=None, looked up only."""
    store = artefact_store(cfg)
    if train_run is not None:
        return store.get_or_make(kind, spec, make)
    if not store.exists(kind, spec):
        raise FileNotFoundError(
            f"no {kind} artefact for transfer pair '{cfg.transfer.name}' in {store.root} yet; "
            "pass a train_run to make it (a transfer run makes it while building)."
        )
    return store.directory(kind, spec)


def train_dependency(config: DictConfig, workspace: Path, train_run: TrainRun):
    """Train the run `config` describes inside an artefact's workspace; keep its record and
    prompt file, drop its checkpoints (the artefact is the trained output, not the run)."""
    experiment, outcome = train_run(config, workspace)
    write_json_atomic(
        workspace / RECORD_NAME,
        {
            "status": "ok",
            "metrics": outcome.metrics,
            "split_hash": experiment.split.content_hash,
            "config": resolved_config(config),
        },
    )
    shutil.rmtree(workspace / "checkpoints", ignore_errors=True)
    return experiment


def source_prompt_spec(source: DictConfig) -> dict:
    """What makes a source prompt: everything result-relevant in its config (as for a run key)."""
    return {"run_key": run_key(resolved_config(source))}


def source_prompt_file(cfg: DictConfig, train_run: TrainRun | None = None) -> Path:
    """The source task's trained prompt.safetensors, training it first if no run has yet."""

    def train_source(workspace: Path) -> None:
        log.info(
            "training the source prompt on '%s' for transfer pair '%s'", cfg.transfer.source.name, cfg.transfer.name
        )
        train_dependency(source_config(cfg, workspace), workspace, train_run)

    spec = source_prompt_spec(source_config(cfg, Path(".")))
    return get_or_make(cfg, "source_prompt", spec, train_source, train_run) / PROMPT_FILE


def target_prompt_file(cfg: DictConfig, train_run: TrainRun | None = None) -> Path:
    """The target task's own prompt: plain prompt tuning on the target with the run's prompt
    settings and seed, stored like a source prompt (trained once, shared by every pair)."""
    return source_prompt_file(as_own_source(cfg), train_run)


def teacher_logits_file(cfg: DictConfig, train_run: TrainRun | None = None) -> Path:
    """The PoT teacher's (N, C) logits on the target training split, in split order, as an
    artefact: the teacher is trained once (in eval mode for the logits) and never updated."""

    def train_teacher(workspace: Path) -> None:
        log.info("training the PoT teacher for transfer pair '%s'", cfg.transfer.name)
        experiment = train_dependency(teacher_config(cfg, workspace), workspace, train_run)
        logits = experiment.module.evaluate_logits(experiment.datamodule.ordered_dataloader("train"))
        save_file({"logits": logits.contiguous()}, str(workspace / TEACHER_LOGITS_FILE))

    spec = {"teacher_run_key": run_key(resolved_config(teacher_config(cfg, Path(".")))), "split": "train"}
    return get_or_make(cfg, "teacher_logits", spec, train_teacher, train_run) / TEACHER_LOGITS_FILE


def teacher_directory(cfg: DictConfig, train_run: TrainRun | None = None) -> Path:
    """The PoT teacher's artefact directory (the teacher_logits artefact): its prompt.safetensors,
    head.safetensors (a trained head) and record.json, for a teacher run live beside the student."""
    return teacher_logits_file(cfg, train_run).parent


def pair_transferability(
    cfg: DictConfig,
    adapter: BackboneAdapter,
    build_head: HeadBuilder,
    train_run: TrainRun | None = None,
    max_inputs: int = 64,
) -> float:
    """PANDA's model stimulation similarity MSS(s, t) between the pair's source prompt and the
    target's own prompt, on the target's first max_inputs training inputs (`metrics.stimulation`)."""
    batches = input_batches(cfg, adapter, max_inputs, build_head)
    source = load_prompt(cfg.method.module, source_prompt_file(cfg, train_run), adapter)
    target = load_prompt(cfg.method.module, target_prompt_file(cfg, train_run), adapter)
    return stimulation_similarity(stimulation(adapter, source, batches), stimulation(adapter, target, batches))
