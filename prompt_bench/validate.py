"""Up-front checks on a composed config, its output dir, its task and its backbone.

Each check raises a `ConfigError`/`DataError` with one sentence that names the bad value and the
fix, so the run ends as a `failed` record with no traceback on the console. They run as early as
what they read allows: the config before anything is built, the task right after it is read, the
position budget once the backbone is loaded (before the zero-shot pass).
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from prompt_bench.data.tasks import Examples, Task
from prompt_bench.errors import ConfigError, DataError

log = logging.getLogger("prompt_bench")
EMPTY_TEXT_POLICIES = ("drop", "refuse")
MISSING_CELLS = ("", "nan", "none")  # what an empty CSV/JSONL cell reads as once made a string


def check_config(cfg: DictConfig) -> None:
    """Values Hydra composes but cannot type-check: the seed, learning rates, the empty-text policy."""
    seed = cfg.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed={seed!r} is not an integer; pass an integer such as seed=13.")
    for name, lr in (
        ("method.optimizer.lr", cfg.method.optimizer.get("lr")),
        ("method.head_lr", cfg.method.get("head_lr")),
    ):
        if lr is None:  # not composed (no head lr; DePT's follows method.base): the builder's checks speak
            continue
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise ConfigError(
                f"{name}={lr!r} is not a positive learning rate; pass a number above 0 such as {name}=0.3."
            )
    policy = cfg.dataset.get("empty_texts", "drop")
    if policy not in EMPTY_TEXT_POLICIES:
        raise ConfigError(f"dataset.empty_texts={policy!r} is not one of {', '.join(EMPTY_TEXT_POLICIES)}.")


def check_output_dir(path: Path, create: bool = True) -> None:
    """The run dir can be created and written to (tried for real: permissions alone lie to root).

    create=False probes the nearest existing ancestor instead, leaving nothing behind (used before
    Hydra makes the dir, whose name holds a timestamp this call cannot know).
    """
    path = Path(path)
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
            probe_dir = path
        else:
            probe_dir = path
            while not probe_dir.exists() and probe_dir != probe_dir.parent:
                probe_dir = probe_dir.parent
            if not probe_dir.is_dir():
                raise NotADirectoryError(20, "Not a directory", str(probe_dir))
        handle, probe = tempfile.mkstemp(dir=probe_dir, prefix=".write-probe-")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise ConfigError(
            f"the output dir {path} is not writable ({error.strerror or error}); "
            "point paths.log_dir (or PROMPT_BENCH_ROOT) at a writable directory."
        ) from None


def check_task(task: Task, cfg: DictConfig) -> tuple[Task, dict[str, int]]:
    """The task with empty texts dropped (or refused, by dataset.empty_texts), and a class that
    occurs only in the test split refused. Returns (task, notes for the record)."""
    policy = cfg.dataset.get("empty_texts", "drop")
    notes: dict[str, int] = {}
    splits = {}
    for split_name, examples in (("train", task.train), ("test", task.test)):
        if not isinstance(examples, Examples):  # images: no text cells to check
            splits[split_name] = examples
            continue
        empty = [i for i, text in enumerate(examples.texts) if text.strip().lower() in MISSING_CELLS]
        if empty and policy == "refuse":
            raise DataError(
                f"task '{task.name}' has {len(empty)} empty text(s) in its {split_name} split (first at row {empty[0]}); "
                "fill or remove them, or pass dataset.empty_texts=drop to drop them."
            )
        if empty:
            log.warning("dropped %d empty text(s) from the %s split of task '%s'", len(empty), split_name, task.name)
            keep = sorted(set(range(len(examples))) - set(empty))
            examples = examples.subset(keep)
            notes[f"empty_texts_dropped_{split_name}"] = len(empty)
        splits[split_name] = examples
    train_classes, test_classes = set(splits["train"].labels), set(splits["test"].labels)
    test_only = [task.label_names[i] for i in sorted(test_classes - train_classes) if 0 <= i < len(task.label_names)]
    if test_only:
        raise DataError(
            f"task '{task.name}' has the class(es) {test_only} in its test split but not in its train pool, "
            "so no run can learn them; add training examples of them or remove them from the test file."
        )
    if notes:
        task = replace(task, train=splits["train"], test=splits["test"])
    return task, notes


def max_positions(model_config: Any) -> int | None:
    """Token positions a backbone embeds, or None when it has no absolute limit (T5, CLIP pairs)."""
    positions = getattr(model_config, "max_position_embeddings", None) or getattr(model_config, "n_positions", None)
    if positions is None:
        return None
    if getattr(model_config, "model_type", "") in ("roberta", "mpnet", "xlm-roberta", "camembert"):
        positions -= (getattr(model_config, "pad_token_id", 1) or 0) + 1  # these offset positions past the pad id
    return int(positions)


def check_positions(cfg: DictConfig, adapter: Any, prompt_site: str) -> None:
    """dataset.max_length + the prompt tokens put in front of the input fit the backbone's positions."""
    if prompt_site != "input":
        return
    module = cfg.method.module
    prompt_tokens = int(module.get("n_tokens") or 0) if module.get("depth", "input") == "input" else 0
    model_config = getattr(getattr(adapter, "model", None), "config", None)
    limit = max_positions(model_config)
    needed = int(cfg.dataset.max_length) + prompt_tokens
    if limit is not None and needed > limit:
        raise ConfigError(
            f"dataset.max_length={cfg.dataset.max_length} + {prompt_tokens} prompt tokens = {needed} positions, "
            f"but backbone '{cfg.backbone.name}' has {limit}; pass dataset.max_length={limit - prompt_tokens} or less."
        )
