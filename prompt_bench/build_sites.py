"""What the builder does differently for each prompt site: the split, the Lightning module and the
datamodule. `input`: a few-shot split over every class, `InputSiteModule`, `TextDataModule`.
`class`: a base-to-new split, `ClassSiteModule`, `DualDataModule` (text or images, input features
cached). Everything else (backbone, method, head, preparation) is the one flow of build.py.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor

from prompt_bench.backbones import AdapterBase, BackboneAdapter
from prompt_bench.backbones.dual import DualEncoderAdapter
from prompt_bench.base_to_new import BaseToNewSplit, make_base_to_new_split
from prompt_bench.data import FewShotSplit, TextDataModule, make_split
from prompt_bench.data.dual_datamodule import DualDataModule
from prompt_bench.data.inputs import pair_inputs
from prompt_bench.data.relation_split import make_relation_split
from prompt_bench.data.sources.images import RandomResizedCropFlip
from prompt_bench.data.tasks import Task
from prompt_bench.errors import ConfigError
from prompt_bench.heads import Head
from prompt_bench.lit import ClassSiteModule, InputSiteModule
from prompt_bench.methods.base import Method
from prompt_bench.methods.bayesprompt.encoding import encode_relation_texts
from prompt_bench.methods.bayesprompt.relation import no_relation_id


def token_cache_key(
    adapter: AdapterBase, task_name: str, max_length: int, add_mask: bool = False, pairs: bool = False
) -> str:
    """Names an encoding of a split's texts (tokenizer, length, mask token, text pairs) for the token cache."""
    key = f"{adapter.tokenizer_id}|{task_name}|len={max_length}|mask={add_mask}"
    return key + "|pairs" if pairs else key


class InputSite:
    """The prompt goes in front of the input tokens; every class is trained and tested."""

    def setup_backbone(self, cfg: DictConfig, adapter: BackboneAdapter) -> None:
        """Nothing to do: Lightning places the backbone with the module."""

    def split(self, cfg: DictConfig, task: Task, method: Method) -> FewShotSplit:
        check_all_classes(cfg)
        if task.kind == "relation":
            return make_relation_split(
                task, cfg.dataset.k_shot, cfg.dataset.split_seed, cfg.dataset.get("max_test_examples")
            )
        return make_split(task, cfg.dataset.k_shot, cfg.dataset.split_seed, cfg.dataset.get("max_test_examples"))

    def module(
        self,
        cfg: DictConfig,
        adapter: BackboneAdapter,
        method: Method,
        head: Head,
        split: FewShotSplit,
        **training: Any,
    ) -> InputSiteModule:
        return InputSiteModule(
            backbone=adapter,
            method=method,
            head=head,
            num_classes=len(split.label_names),
            head_lr=cfg.method.get("head_lr"),
            no_relation=relation_no_relation(split),
            **training,
        )

    def datamodule(self, cfg: DictConfig, adapter: BackboneAdapter, head: Head, split: FewShotSplit) -> TextDataModule:
        if split.kind == "relation":  # KnowPrompt's template, with its own <mask>
            return TextDataModule(
                split=split,
                encode=partial(encode_relation_texts, adapter, max_length=cfg.dataset.max_length),
                pad_token_id=adapter.tokenizer.pad_token_id,
                batch_size=cfg.dataset.batch_size,
                eval_batch_size=cfg.dataset.eval_batch_size,
                cache_key=token_cache_key(adapter, split.task_name, cfg.dataset.max_length) + "|knowprompt",
                cache_dir=cfg.paths.cache_dir,
            )
        add_mask = head.needs_mask_token(adapter)
        pair_encoding = cfg.dataset.get("pair_encoding", "pair")
        pairs = pair_inputs(
            adapter,
            pair_encoding,
            cfg.dataset.max_length,
            add_mask,
            examples=split.train,
            template=cfg.dataset.get("template"),
        )
        return TextDataModule(
            split=split,
            encode=partial(adapter.encode_texts, max_length=cfg.dataset.max_length, add_mask=add_mask),
            pad_token_id=adapter.tokenizer.pad_token_id,
            batch_size=cfg.dataset.batch_size,
            eval_batch_size=cfg.dataset.eval_batch_size,
            cache_key=token_cache_key(adapter, split.task_name, cfg.dataset.max_length, add_mask, pairs is not None),
            cache_dir=cfg.paths.cache_dir,
            pairs=pairs,
        )


class ClassSite:
    """The prompt goes in front of a dual encoder's class texts; dataset.classes picks base-to-new."""

    def setup_backbone(self, cfg: DictConfig, adapter: DualEncoderAdapter) -> None:
        """On the GPU before setup (the datamodule caches input features before Lightning moves the
        module); the dataset's hand-crafted class template wins over the backbone's."""
        if cfg.trainer.get("accelerator") in ("gpu", "cuda", "auto") and torch.cuda.is_available():
            adapter.cuda()
        if cfg.dataset.get("class_template"):
            adapter.class_template = cfg.dataset.class_template

    def split(self, cfg: DictConfig, task: Task, method: Method) -> BaseToNewSplit:
        classes = cfg.dataset.get("classes", "all")
        split = make_base_to_new_split(
            task,
            classes,
            cfg.dataset.get("n_base"),
            cfg.dataset.k_shot,
            cfg.dataset.split_seed,
            cfg.dataset.get("max_test_examples"),
        )
        if method.class_specific and classes == "base":
            raise ConfigError(
                "method.module.class_specific=true learns one context per base class and cannot score the new "
                "classes; use class_specific=false for base-to-new, or dataset.classes=all."
            )
        return split

    def module(
        self,
        cfg: DictConfig,
        adapter: DualEncoderAdapter,
        method: Method,
        head: Head,
        split: BaseToNewSplit,
        **training: Any,
    ) -> ClassSiteModule:
        class_names = {"train": split.label_names, **{name: names for name, (names, _) in split.tests.items()}}
        return ClassSiteModule(
            backbone=adapter,
            method=method,
            head=head,
            class_names=class_names,
            test_sets=tuple(split.tests),
            **training,
        )

    def datamodule(
        self, cfg: DictConfig, adapter: DualEncoderAdapter, head: Head, split: BaseToNewSplit
    ) -> DualDataModule:
        text = adapter.input_kind == "text"
        return DualDataModule(
            split=split,
            input_kind=adapter.input_kind,
            encode=partial(adapter.encode_texts, max_length=cfg.dataset.max_length),
            pad_token_id=adapter.tokenizer.pad_token_id,
            image_processor=adapter.image_processor,
            batch_size=cfg.method.get("batch_size") or cfg.dataset.batch_size,
            eval_batch_size=cfg.dataset.eval_batch_size,
            featurize=partial(frozen_input_features, adapter) if cfg.method.get("cache_input_features", True) else None,
            augment=training_augmentation(cfg, adapter),
            cache_key=token_cache_key(adapter, split.task_name, cfg.dataset.max_length) if text else None,
            cache_dir=cfg.paths.cache_dir,
        )


SITES = {"input": InputSite(), "class": ClassSite()}


def relation_no_relation(split: FewShotSplit | BaseToNewSplit) -> int | None:
    """A relation split's no-relation class id (NA / no_relation / Other; official fallback: class 0), else None."""
    if getattr(split, "kind", "classification") != "relation":
        return None
    return no_relation_id({name: index for index, name in enumerate(split.label_names)})


def check_all_classes(cfg: DictConfig) -> None:
    """Base-to-new splits are a class-site protocol; the input site trains and tests on every class."""
    classes = cfg.dataset.get("classes", "all")
    if classes != "all":
        raise ConfigError(
            f"dataset.classes={classes} (base-to-new) needs a dual-encoder backbone (minilm_dual, mpnet_dual, "
            f"tiny_clip, clip_vit_b16) and a CoOp-family method; backbone '{cfg.backbone.name}' is not one."
        )


def training_augmentation(cfg: DictConfig, adapter: DualEncoderAdapter) -> RandomResizedCropFlip | None:
    """Random resized crop + flip at the image processor's crop size when dataset.augment is on."""
    if not cfg.dataset.get("augment", False):
        return None
    if adapter.input_kind != "image":
        raise ConfigError(
            f"dataset.augment=true augments images, but backbone '{adapter.name}' reads text; set it to false."
        )
    crop = adapter.image_processor.crop_size
    return RandomResizedCropFlip(size=int(crop["height"]), seed=cfg.seed)


def frozen_input_features(adapter: DualEncoderAdapter, batch: dict) -> Tensor:
    """(B, D) features of the frozen input tower, in eval mode, on the adapter's device."""
    device = adapter.token_embedding.weight.device
    with torch.no_grad():
        return adapter.input_features({key: value.to(device) for key, value in batch.items()})
