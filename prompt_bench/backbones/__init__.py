"""Backbones: load a model from any source and wrap it in its family adapter."""

from __future__ import annotations

from prompt_bench.backbones.base import AdapterBase
from prompt_bench.backbones.causal import CausalAdapter
from prompt_bench.backbones.dual import DualEncoderAdapter, DualOutput
from prompt_bench.backbones.encoder import EncoderAdapter
from prompt_bench.backbones.load import load_model_and_tokenizer
from prompt_bench.backbones.seq2seq import Seq2SeqAdapter
from prompt_bench.backbones.text import BackboneAdapter, BackboneOutput
from prompt_bench.errors import ConfigError

__all__ = [
    "ADAPTERS",
    "AdapterBase",
    "BackboneAdapter",
    "BackboneOutput",
    "CausalAdapter",
    "DualEncoderAdapter",
    "DualOutput",
    "EncoderAdapter",
    "Seq2SeqAdapter",
    "build_backbone",
]

# The text families build_backbone knows (dual encoders are built by backbones/dual_load.py).
ADAPTERS: dict[str, type[BackboneAdapter]] = {
    "encoder": EncoderAdapter,
    "seq2seq": Seq2SeqAdapter,
    "causal": CausalAdapter,
}


def build_backbone(
    name: str,
    source: str,
    name_or_path: str | None,
    family: str,
    lm_head: bool = False,
    pooling: str = "mean",
    default_head: str = "label_similarity",
    params_m: float | None = None,
    dtype: str = "float32",
    cache_dir: str = "~/.cache/prompt_bench",
    seed: int = 0,
) -> BackboneAdapter:
    """conf/backbone/<name>.yaml -> a family adapter around the loaded (not yet frozen) model."""
    if family not in ADAPTERS:
        raise ConfigError(f"backbone.family '{family}' is not one of {', '.join(ADAPTERS)}.")
    model, tokenizer = load_model_and_tokenizer(
        source=source,
        name_or_path=name_or_path,
        family=family,
        lm_head=lm_head,
        cache_dir=cache_dir,
        dtype=dtype,
        seed=seed,
    )
    return ADAPTERS[family](
        model=model,
        tokenizer=tokenizer,
        name=name,
        pooling=pooling,
        default_head=default_head,
        params_m=params_m,
        lm_head=lm_head,
    )
