"""Assemble a dual-encoder experiment (CoOp family, DePT): backbone, class split, learner, module, data."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor

from prompt_bench.backbones.dual_encoder import DualEncoderAdapter
from prompt_bench.base_to_new import BaseToNewSplit, make_base_to_new_split
from prompt_bench.data.dual_datamodule import DualDataModule
from prompt_bench.data.images import RandomResizedCropFlip
from prompt_bench.data.tasks import Task
from prompt_bench.errors import ConfigError
from prompt_bench.methods.base import MethodContext
from prompt_bench.methods.coop import ClassPromptMethod
from prompt_bench.dual_module import DualEncoderModule


class ItmHead:
    """The dual encoder's own head, z = exp(s)·cos(f, T): no parameters, zero-shot capable."""

    name = "itm"
    zero_shot_capable = True


@dataclass
class DualExperiment:
    adapter: DualEncoderAdapter
    split: BaseToNewSplit
    method: ClassPromptMethod
    head: ItmHead
    module: DualEncoderModule
    datamodule: DualDataModule


def build_dual_experiment(cfg: DictConfig, task: Task, adapter: DualEncoderAdapter, method: ClassPromptMethod) -> DualExperiment:
    """The dual-encoder counterpart of build_experiment (same seams: split, method.prepare, module, data)."""
    if cfg.trainer.get("accelerator") in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        adapter.cuda()  # the input features are cached at setup, before Lightning moves the module
    classes = cfg.dataset.get("classes", "all")
    if cfg.dataset.get("class_template"):  # the dataset's hand-crafted prompt wins over the backbone's
        adapter.class_template = cfg.dataset.class_template
    split = make_base_to_new_split(
        task, classes, cfg.dataset.get("n_base"), cfg.dataset.k_shot, cfg.dataset.split_seed,
        cfg.dataset.get("max_test_examples"),
    )
    if method.class_specific and classes == "base":
        raise ConfigError(
            "method.module.class_specific=true learns one context per base class and cannot score the new classes; "
            "use class_specific=false for base-to-new, or dataset.classes=all."
        )
    method.prepare(MethodContext(adapter=adapter, label_names=split.label_names, cache_dir=cfg.paths.cache_dir))
    class_names = {"train": split.label_names, **{name: names for name, (names, _) in split.tests.items()}}
    module = DualEncoderModule(
        backbone=adapter,
        method=method,
        class_names=class_names,
        test_sets=tuple(split.tests),
        optimizer=instantiate(cfg.method.optimizer),
        scheduler=instantiate(cfg.method.scheduler) if cfg.method.get("scheduler") else None,
        primary_metric=split.metric,
    )
    datamodule = DualDataModule(
        split=split,
        input_kind=adapter.input_kind,
        encode=partial(encode_texts, adapter, max_length=cfg.dataset.max_length),
        pad_token_id=adapter.tokenizer.pad_token_id,
        image_processor=adapter.image_processor,
        batch_size=cfg.method.get("batch_size") or cfg.dataset.batch_size,
        eval_batch_size=cfg.dataset.eval_batch_size,
        featurize=partial(frozen_input_features, adapter) if cfg.method.get("cache_input_features", True) else None,
        augment=training_augmentation(cfg, adapter),
    )
    return DualExperiment(adapter=adapter, split=split, method=method, head=ItmHead(), module=module, datamodule=datamodule)


def training_augmentation(cfg: DictConfig, adapter: DualEncoderAdapter) -> RandomResizedCropFlip | None:
    """Random resized crop + flip at the image processor's crop size when dataset.augment is on."""
    if not cfg.dataset.get("augment", False):
        return None
    if adapter.input_kind != "image":
        raise ConfigError(f"dataset.augment=true augments images, but backbone '{adapter.name}' reads text; set it to false.")
    crop = adapter.image_processor.crop_size
    return RandomResizedCropFlip(size=int(crop["height"]), seed=cfg.seed)


def frozen_input_features(adapter: DualEncoderAdapter, batch: dict) -> Tensor:
    """(B, D) features of the frozen input tower, in eval mode, on the adapter's device."""
    device = adapter.token_embedding.weight.device
    with torch.no_grad():
        return adapter.input_features({key: value.to(device) for key, value in batch.items()})


def encode_texts(adapter: DualEncoderAdapter, texts: list[str], max_length: int) -> list[list[int]]:
    return adapter.tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
