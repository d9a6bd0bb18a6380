"""Tiny text adapters of every family (and a tiny MPNet, the one encoder with its own prefix path)."""

from __future__ import annotations

import torch
from transformers import MPNetConfig, MPNetModel

from prompt_bench.backbones import BackboneAdapter, EncoderAdapter, build_backbone
from prompt_bench.backbones.load import TINY_TOKENIZER_PACKAGE, package_model_dir
from prompt_bench.backbones.tiny import build_tiny_tokenizer

TINY_FAMILIES = {"tiny_bert": "encoder", "tiny_roberta": "encoder", "tiny_t5": "seq2seq", "tiny_gpt2": "causal"}
TEXTS = ["the cat sat on the mat today", "short one"]  # the second is padded


def tiny_adapter(preset: str, cache_dir) -> BackboneAdapter:
    family = TINY_FAMILIES[preset]
    adapter = build_backbone(name=preset, source="tiny", name_or_path=preset, family=family, cache_dir=str(cache_dir))
    return adapter.eval()


def tiny_mpnet_adapter() -> BackboneAdapter:
    """MPNet has a relative position bias and no cache: the one encoder with its own prefix path."""
    tokenizer = build_tiny_tokenizer(package_model_dir(TINY_TOKENIZER_PACKAGE))
    config = MPNetConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=300,
        initializer_range=0.2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = MPNetModel(config)
    return EncoderAdapter(model.eval(), tokenizer, name="tiny_mpnet")


def encoded(adapter: BackboneAdapter):
    batch = adapter.tokenizer(TEXTS, padding=True, return_tensors="pt")
    return batch["input_ids"], batch["attention_mask"]


ADAPTER_CASES = [*TINY_FAMILIES, "tiny_mpnet"]


def make_adapter(case: str, cache_dir) -> BackboneAdapter:
    return tiny_mpnet_adapter() if case == "tiny_mpnet" else tiny_adapter(case, cache_dir)
