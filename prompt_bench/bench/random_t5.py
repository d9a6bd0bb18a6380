"""A hub-free random T5-base-sized backbone for the benchmark (`--backbone t5_base_random`).

The shape of T5 v1.1 base (google/t5-base-lm-adapt, conf/backbone/t5_base.yaml): d_model 768,
d_ff 2048 gated-GELU, 12 heads of 64, 12 encoder + 12 decoder layers; random weights and the tiny
presets' WordPiece vocabulary (30,522 rows instead of 32,128), so 221.7M parameters (transformers 5
ties T5's output embeddings to the input ones; the hub's 248M counts them twice). The encoder, which
the prompt runs through, is T5-base's exactly: its speed is T5-base's, its outputs mean nothing.
"""

from __future__ import annotations

import torch
from transformers import T5Config, T5ForConditionalGeneration

from prompt_bench.backbones import Seq2SeqAdapter
from prompt_bench.backbones.load import DTYPES, package_model_dir
from prompt_bench.backbones.tiny import TINY_TOKENIZER_PACKAGE, build_tiny_tokenizer

NAME = "t5_base_random"
T5_BASE_SHAPE = {
    "d_model": 768,
    "d_ff": 2048,
    "d_kv": 64,
    "num_heads": 12,
    "num_layers": 12,
    "num_decoder_layers": 12,
    "feed_forward_proj": "gated-gelu",
}


def overrides() -> list[str]:
    """Hydra overrides that turn conf/backbone/tiny_t5.yaml into this backbone."""
    return [
        "backbone=tiny_t5",
        f"backbone._target_={__name__}.build",
        f"backbone.name={NAME}",
        "backbone.params_m=221.7",
    ]


def build(
    name: str = NAME,
    dtype: str = "float32",
    seed: int = 0,
    pooling: str = "mean",
    default_head: str = "verbalizer",
    params_m: float | None = None,
    **unused: object,
) -> Seq2SeqAdapter:
    """The adapter around a random T5-base-sized model (weights a function of `seed`)."""
    tokenizer = build_tiny_tokenizer(package_model_dir(TINY_TOKENIZER_PACKAGE))
    config = T5Config(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.sep_token_id,
        dropout_rate=0.0,
        **T5_BASE_SHAPE,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = T5ForConditionalGeneration(config)
    model.name_or_path = name
    return Seq2SeqAdapter(
        model=model.to(DTYPES[dtype]).eval(),
        tokenizer=tokenizer,
        name=name,
        pooling=pooling,
        default_head=default_head,
        params_m=params_m,
        lm_head=True,
    )
