"""What every throughput side shares: the composed run config, the built experiment, synthetic
batches of one fixed shape, the label-name token ids, and device helpers (autocast, sync)."""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict
from torch import Tensor

from prompt_bench.bench import random_t5
from prompt_bench.build import Experiment, build_experiment
from prompt_bench.data.datamodule import PadCollator

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def backbone_overrides(backbone: str) -> list[str]:
    """`backbone=<conf name>`, or the overrides of the hub-free random T5-base (`t5_base_random`)."""
    return random_t5.overrides() if backbone == random_t5.NAME else [f"backbone={backbone}"]


def compose_bench_config(args: argparse.Namespace) -> DictConfig:
    """The real config tree at the benchmark's shape: the label-similarity head with mean pooling
    (so the hand-written sides compute the same thing on any backbone), no zero-shot, no files."""
    overrides = [
        *backbone_overrides(args.backbone),
        f"dataset={args.dataset}",
        "trainer=cpu",  # the accelerator is set when the trainer is built
        f"trainer.precision={'bf16-mixed' if args.precision == 'bf16' else '32-true'}",
        "logger=none",
        "head=label_similarity",
        "backbone.pooling=mean",
        f"method.module.n_tokens={args.prompt_tokens}",
        f"dataset.max_length={args.length}",
        f"dataset.batch_size={args.batch_size}",
        "zero_shot=false",
        "save_prompt=false",
        "checkpoint_every_epoch=false",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = tempfile.mkdtemp(prefix="prompt_bench_bench_")
    return cfg


@dataclass
class Workload:
    """The built experiment on its device, `batches` of (batch_size, length) tokens, the label names'
    token ids (C, W) and mask, and whether the sides run under bf16 autocast."""

    cfg: DictConfig
    experiment: Experiment
    device: torch.device
    batches: list[dict[str, Tensor]]
    label_input_ids: Tensor
    label_mask: Tensor
    bf16: bool
    batch_size: int
    length: int
    prompt_tokens: int

    @property
    def model(self) -> torch.nn.Module:
        return self.experiment.adapter.model

    @property
    def logit_scale(self) -> float:
        return float(self.cfg.head.logit_scale)

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast as Lightning's `bf16-mixed` does it, or nothing."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def build_workload(args: argparse.Namespace) -> Workload:
    cfg = compose_bench_config(args)
    experiment = build_experiment(cfg)
    device = torch.device(args.device)
    experiment.module.to(device)
    adapter = experiment.adapter
    count = args.warmup + args.rounds * args.steps
    batches = synthetic_batches(
        count, args, len(adapter.tokenizer), adapter.tokenizer.pad_token_id, len(experiment.split.label_names)
    )
    label_input_ids, label_mask = tokenized_labels(
        adapter.tokenizer, experiment.split.label_names, int(cfg.head.max_length)
    )
    return Workload(
        cfg=cfg,
        experiment=experiment,
        device=device,
        batches=batches,
        label_input_ids=label_input_ids.to(device),
        label_mask=label_mask.to(device),
        bf16=args.precision == "bf16",
        batch_size=args.batch_size,
        length=args.length,
        prompt_tokens=args.prompt_tokens,
    )


def synthetic_batches(
    count: int, args: argparse.Namespace, vocab_size: int, pad_id: int, num_classes: int
) -> list[dict[str, Tensor]]:
    """`count` batches of exactly (batch_size, length) random token ids (no padding) and random labels."""
    generator = torch.Generator().manual_seed(args.seed)
    collate = PadCollator(pad_token_id=pad_id, pad_to=args.length)
    batches = []
    for _ in range(count):
        token_ids = torch.randint(0, vocab_size, (args.batch_size, args.length), generator=generator)
        labels = torch.randint(0, num_classes, (args.batch_size,), generator=generator)
        batches.append(collate([(row.tolist(), int(label)) for row, label in zip(token_ids, labels)]))
    return batches


def tokenized_labels(tokenizer, label_names: tuple[str, ...], max_length: int = 32) -> tuple[Tensor, Tensor]:
    """Label names -> right-padded (C, W) token ids and mask, as the head's default template has them."""
    rows = tokenizer(list(label_names), truncation=True, max_length=max_length)["input_ids"]
    width = max(len(row) for row in rows)
    input_ids = torch.tensor([row + [tokenizer.pad_token_id] * (width - len(row)) for row in rows])
    mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows])
    return input_ids, mask


def mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """(B, T, d), (B, T) -> (B, d) mean over unmasked positions."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def body_of(model: torch.nn.Module) -> torch.nn.Module:
    """The part of the HF model the prompt runs through: the encoder of a seq2seq model, else the base model."""
    return model.get_encoder() if model.config.is_encoder_decoder else model.base_model
