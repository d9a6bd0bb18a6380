"""Deep-prompt plumbing (P-tuning v2): how per-layer key/value prefixes reach each family's
self-attention layers — a prefilled cache (BERT/RoBERTa/MiniLM, GPT-2), forward pre-hooks that
hand it to T5's encoder attentions, and a temporary attention swap for MPNet, which takes no cache.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn
from transformers import DynamicCache


@dataclass(frozen=True)
class PrefixGeometry:
    """Shape of the key/value prefixes a backbone takes (P-tuning v2 deep prompts).

    n_layers: self-attention layers that take a prefix (the encoder's, for seq2seq).
    n_heads: key/value heads per layer; head_dim: size of one head's key or value.
    """

    n_layers: int
    n_heads: int
    head_dim: int

    def prefix_shape(self, batch_size: int, n_tokens: int) -> tuple[int, ...]:
        """The `layer_prefixes` shape forward() takes: (n_layers, 2, B, n_heads, n, head_dim)."""
        return (self.n_layers, 2, batch_size, self.n_heads, n_tokens, self.head_dim)


def key_side_mask(attention_mask: Tensor, n_prefix: int) -> Tensor:
    """(B, T) query-side mask -> (B, m+T) key-side mask: the m prefix keys are always visible."""
    return torch.cat([attention_mask.new_ones(attention_mask.shape[0], n_prefix), attention_mask], dim=1)


def prefix_cache(layer_prefixes: Tensor) -> DynamicCache:
    """(n_layers, 2, B, H, m, h) prefixes -> a cache whose layer l already holds m keys and values,
    so the model's own attention concatenates [prefix; input] keys (gradients flow to the prefixes)."""
    return DynamicCache(ddp_cache_data=[(keys, values) for keys, values in layer_prefixes])


CACHE_KEYWORDS = ("cache", "past_key_values")
"""The keyword a Hugging Face forward takes its key/value cache under: `cache` from transformers
5.24 on, `past_key_values` up to 5.23 (5.24 keeps it as a deprecated alias until 5.40)."""


def cache_keyword(function) -> str | None:
    """The keyword under which `function` takes a key/value cache, or None if it takes none.

    Read from the signature (a `deprecate_kwarg` wrapper exposes the wrapped one), newest name
    first, so one probe serves both transformers APIs.
    """
    parameters = inspect.signature(function).parameters
    return next((keyword for keyword in CACHE_KEYWORDS if keyword in parameters), None)


def transformers_version() -> str:
    import transformers

    return transformers.__version__


@contextmanager
def pre_hooks_passing_cache(attentions: Sequence[nn.Module], keyword: str, cache: DynamicCache) -> Iterator[None]:
    """For the duration, every module in `attentions` is called with `keyword`=cache."""

    def pass_cache(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return args, {**kwargs, keyword: cache}

    handles = [attention.register_forward_pre_hook(pass_cache, with_kwargs=True) for attention in attentions]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


# ---- MPNet: its self-attention takes no cache -------------------------------------------------
@contextmanager
def mpnet_prefixed_attention(encoder: nn.Module, layer_prefixes: Tensor, length: int) -> Iterator[None]:
    """For the duration, each MPNet layer's self-attention attends over [prefix; input] keys.

    MPNet adds a relative position bias (B, H, T, T) to the scores; the prefix columns get the
    bias of their own relative positions (prefix j at j, query i at m + i), so the prefix acts as
    m positions before the input, as for the other families.
    """
    n_prefix = layer_prefixes.shape[-2]
    query_positions = torch.arange(length, device=layer_prefixes.device)[:, None] + n_prefix
    key_positions = torch.arange(n_prefix, device=layer_prefixes.device)[None, :]
    buckets = encoder.relative_position_bucket(
        key_positions - query_positions, num_buckets=encoder.relative_attention_bias.num_embeddings
    )
    prefix_bias = encoder.relative_attention_bias(buckets).permute(2, 0, 1).unsqueeze(0)  # (1, H, T, m)
    attentions = [layer.attention.attn for layer in encoder.layer]
    try:
        for attention, (keys, values) in zip(attentions, layer_prefixes):
            attention.forward = partial(_mpnet_attention_with_prefix, attention, keys, values, prefix_bias)
        yield
    finally:
        for attention in attentions:
            attention.__dict__.pop("forward", None)  # back to the class's own forward


def _mpnet_attention_with_prefix(
    attention: nn.Module,
    prefix_keys: Tensor,
    prefix_values: Tensor,
    prefix_bias: Tensor,
    hidden_states: Tensor,
    attention_mask: Tensor | None = None,
    position_bias: Tensor | None = None,
    output_attentions: bool = False,
    **kwargs,
) -> tuple[Tensor, ...]:
    """softmax(q [K_p; K]^T / sqrt(h) + [bias_p, bias] + mask) [V_p; V], then MPNet's output projection.

    prefix_keys/values: (B, H, m, h); hidden_states: (B, T, d); attention_mask: (B, 1, T, m+T) additive.
    """
    batch, length = hidden_states.shape[:2]

    def heads(states: Tensor) -> Tensor:  # (B, T, H*h) -> (B, H, T, h)
        return states.view(batch, length, -1, attention.attention_head_size).transpose(1, 2)

    query = heads(attention.q(hidden_states))
    keys = torch.cat([prefix_keys, heads(attention.k(hidden_states))], dim=2)
    values = torch.cat([prefix_values, heads(attention.v(hidden_states))], dim=2)
    scores = query @ keys.transpose(-1, -2) / math.sqrt(attention.attention_head_size)
    if position_bias is not None:
        scores = scores + torch.cat([prefix_bias.to(scores.dtype).expand(batch, -1, -1, -1), position_bias], dim=-1)
    if attention_mask is not None:
        scores = scores + attention_mask
    probabilities = attention.dropout(scores.softmax(dim=-1))
    context = (probabilities @ values).transpose(1, 2).reshape(batch, length, -1)
    output = attention.o(context)
    return (output, probabilities) if output_attentions else (output,)
