"""A finished run brought back: its classifier rebuilt from record.json + prompt.safetensors.

`SavedRun(run_dir)` rebuilds the run's backbone, head and method with the saved prompt (and the
saved head parameters, head.safetensors, when the head trained any). `.evaluate(overrides)` scores
it on any dataset (`dataset=<name>` picks conf/dataset/<name>.yaml; dotted overrides such as
`dataset.max_test_examples=200` change single values) and writes an eval record under
`<run_dir>/evals/`; `.predict(texts)` gives class names.

A prompt trained with a transfer or meta-learned init (SPoT, PANDA, MetaPT) is a static prompt:
it is rebuilt as plain prompt tuning with init=file, so nothing is trained again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict
from safetensors.torch import load_file

from prompt_bench.build import Experiment, build_experiment
from prompt_bench.data.datamodule import PadCollator
from prompt_bench.errors import ConfigError
from prompt_bench.export.metadata import HEAD_FILE
from prompt_bench.export.peft import is_static_prompt_class
from prompt_bench.lit.exact_match import predicted_ids
from prompt_bench.methods.base import PROMPT_FILE
from prompt_bench.methods.prompt_tuning import PromptTuning
from prompt_bench.records import (
    RECORD_NAME,
    git_commit,
    git_dirty,
    package_versions,
    read_record,
    run_key,
    split_sizes,
    write_json_atomic,
)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"
PROJECT_ROOT = CONFIG_DIR.parent
EVAL_DIR = "evals"  # eval records live here, never in the training record
SWAPPABLE_GROUPS = ("dataset", "head")  # config groups an eval may pick anew
FIXED_GROUPS = ("method", "backbone")  # a saved prompt belongs to these
# heads that score any class names (no trained rows per class)
LABEL_TEXT_HEADS = ("label_similarity", "verbalizer", "generate", "itm")
STATIC_PROMPT_KEYS = ("n_tokens", "depth", "prefix_projection", "prefix_hidden", "prefix_dropout")


class SavedRun:
    """The classifier of a finished run (see the module docstring)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        record = read_record(self.run_dir)
        if record is None or "config" not in record:
            raise ConfigError(f"{self.run_dir} holds no readable {RECORD_NAME}; give the directory of a finished run.")
        if not (self.run_dir / PROMPT_FILE).exists():
            raise ConfigError(
                f"{self.run_dir} has no {PROMPT_FILE}: the run saved no prompt (save_prompt=false, or a method "
                "without a prompt such as fine_tuning); there is nothing to load."
            )
        self.record = record
        self.metadata = json.loads((self.run_dir / "prompt.json").read_text())
        self._experiment: Experiment | None = None

    # ---- config --------------------------------------------------------------------------------
    def config(self, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
        """The run's resolved config with `overrides`, its prompt loaded from this run dir."""
        cfg = OmegaConf.create(self.record["config"])
        for override in overrides:
            key, _, value = override.partition("=")
            key = key.lstrip("+")
            if not _:
                raise ConfigError(f"override '{override}' is not key=value (e.g. dataset=tweets_airline).")
            if key in FIXED_GROUPS:
                raise ConfigError(
                    f"{key}={value}: a saved prompt belongs to the {key} it was trained with "
                    f"('{cfg[key].get('name')}'); only {', '.join(SWAPPABLE_GROUPS)} and dotted values change in an eval."
                )
            if key in SWAPPABLE_GROUPS:
                with open_dict(cfg):
                    cfg[key] = group_node(key, value)
            else:
                cfg.merge_with(OmegaConf.from_dotlist([f"{key}={value}"]))
        with open_dict(cfg):
            cfg.transfer = None  # the prompt is trained: no source to train again
            cfg.paths.output_dir = str(self.run_dir)
            cfg.method.module = self._method_node(cfg)
        return cfg

    def _method_node(self, cfg: DictConfig) -> DictConfig:
        module = cfg.method.module
        method_class = get_class(module._target_)
        if not method_class.needs:
            return module
        if not is_static_prompt_class(method_class):
            raise ConfigError(
                f"method '{cfg.method.name}' needs {', '.join(sorted(method_class.needs))} to be built and its "
                "prompt is not a static one, so a saved run of it cannot be evaluated on its own."
            )
        options = {key: module[key] for key in STATIC_PROMPT_KEYS if key in module}
        target = f"{PromptTuning.__module__}.{PromptTuning.__name__}"
        return OmegaConf.create(
            {"_target_": target, **options, "init": "file", "init_file": str(self.run_dir / PROMPT_FILE)}
        )

    # ---- build ---------------------------------------------------------------------------------
    def build(self, overrides: list[str] | tuple[str, ...] = ()) -> Experiment:
        """The run's experiment on the (overridden) dataset, with the saved prompt and head."""
        cfg = self.config(overrides)
        experiment = build_experiment(cfg)
        self._check_labels(experiment, cfg)
        experiment.method.load_prompt_tensors(load_file(str(self.run_dir / PROMPT_FILE)))
        head_file = self.run_dir / HEAD_FILE
        if head_file.exists():
            experiment.head.load_state_dict(load_file(str(head_file)), strict=False)
        experiment.module.eval()
        return experiment

    def _check_labels(self, experiment: Experiment, cfg: DictConfig) -> None:
        saved = tuple(self.metadata.get("label_names", ()))
        labels = tuple(experiment.split.label_names)
        head = self.metadata.get("head", {}).get("name")
        if saved == labels or head in LABEL_TEXT_HEADS:
            return
        raise ConfigError(
            f"the saved {head} head was trained on the labels {list(saved)} of '{self.metadata.get('dataset')}', "
            f"but dataset '{cfg.dataset.name}' has {list(labels)}; a {head} head has one trained row per class, "
            f"so it can only score those labels (heads that score any label text: {', '.join(LABEL_TEXT_HEADS)})."
        )

    # ---- use -----------------------------------------------------------------------------------
    def evaluate(self, dataset: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
        """Score the saved classifier on the test split of `dataset` (default: the run's own) and
        write the eval record to <run_dir>/evals/<dataset>-<key>.json; returns that record."""
        overrides = [*([f"dataset={dataset}"] if dataset else []), *overrides]
        started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        experiment = self.build(overrides)
        cfg = self.config(overrides)
        datamodule = experiment.datamodule
        datamodule.setup("fit")
        with torch.no_grad():
            scores = experiment.module.evaluate(datamodule.test_dataloader())
        metrics = {f"test/{name}": value for name, value in scores.items()}
        primary = experiment.split.test_metric
        metrics["test/primary"] = metrics[f"test/{primary}"]
        metrics["primary_metric"] = primary
        config = OmegaConf.to_container(cfg, resolve=True)
        key = run_key(config)
        record = {
            "kind": "eval",
            "run_key": key,
            "status": "ok",
            "trained_run_key": self.record.get("run_key"),
            "trained_run_dir": str(self.run_dir),
            "dataset": cfg.dataset.name,
            "overrides": list(overrides),
            "started_at": started,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "config": config,
            "split_hash": experiment.split.content_hash,
            "split_sizes": split_sizes(experiment.split),
            "metrics": metrics,
            "versions": package_versions(),
            "git_commit": git_commit(PROJECT_ROOT),
            "git_dirty": git_dirty(PROJECT_ROOT),
        }
        path = self.run_dir / EVAL_DIR / f"{cfg.dataset.name}-{key}.json"
        record["path"] = str(path)
        write_json_atomic(path, record)
        return record

    def predict(self, texts: list[str] | tuple[str, ...]) -> list[str | None]:
        """The predicted class name of each text (the run's own labels), input-site runs only; None where
        a generating head (head=generate) wrote a text that is no label."""
        if self.metadata.get("prompt_site", "input") != "input":
            raise ConfigError("predict takes texts; a class-site (dual encoder) run scores images: use evaluate().")
        if self._experiment is None:
            self._experiment = self.build()
        experiment = self._experiment
        cfg = self.config()
        adapter, module = experiment.adapter, experiment.module
        add_mask = experiment.head.needs_mask_token(adapter)
        token_ids = adapter.encode_texts(list(texts), max_length=cfg.dataset.max_length, add_mask=add_mask)
        collate = PadCollator(pad_token_id=adapter.tokenizer.pad_token_id)
        labels = experiment.split.label_names
        predictions: list[str] = []
        batch_size = int(cfg.dataset.eval_batch_size)
        with torch.no_grad():
            for start in range(0, len(token_ids), batch_size):
                batch = collate([(ids, 0) for ids in token_ids[start : start + batch_size]])
                batch = {name: tensor.to(module.device) for name, tensor in batch.items()}
                ids = predicted_ids(module(batch)).tolist()  # id C: no label (head=generate)
                predictions += [labels[index] if index < len(labels) else None for index in ids]
        return predictions


def group_node(group: str, choice: str) -> DictConfig:
    """conf/<group>/<choice>.yaml as composed by Hydra (its defaults applied), unresolved."""
    if not (CONFIG_DIR / group / f"{choice}.yaml").exists():
        known = sorted(path.stem for path in (CONFIG_DIR / group).glob("*.yaml"))
        raise ConfigError(f"{group} '{choice}' is not in conf/{group}/ (known: {', '.join(known)}).")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        composed = compose(config_name="config", overrides=[f"{group}={choice}"])
    return OmegaConf.create(OmegaConf.to_container(composed[group], resolve=False))
