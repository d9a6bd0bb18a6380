"""One backbone pass for K runs: each run's rows [P_k; E(x)] stacked into one batch, outputs split back.

Run k brings a batch of B_k rows of L_k token positions and an n_k-token prompt (n_k = 0 without one),
so its rows are T_k = n_k + L_k positions long, exactly as its own unpacked forward builds them
(`BackboneAdapter.forward`: the prompt first, Lester et al. 2021 eq. 1). Rows are right-padded with
masked positions to T = max_k T_k and stacked to (Σ B_k, T, d); one `body` call runs the frozen
backbone. Padding sits after every run's own positions, so positions and masks of the unpadded part
are the unpacked ones and attention never reaches the padding: run k's slice hidden[rows_k, :T_k] is
its unpacked hidden state, up to float reassociation. The head then scores each run's slice alone.

Randomness: each run's prompt and head run in its own scope (`PackMember.own_rng`: its own torch random
stream), so a stochastic method (VIP's dropout, a sampled prompt) draws what it would draw alone; only
the backbone's own dropout, if any, draws from one stream for the whole stacked batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from prompt_bench.backbones import BackboneAdapter, BackboneOutput
from prompt_bench.errors import ConfigError
from prompt_bench.lit import InputSiteModule


@dataclass
class PackedRows:
    """Where run k's rows are: rows start:stop of the stacked batch, its first `length` positions."""

    start: int
    stop: int
    length: int
    n_prompt: int


def run_rows(
    adapter: BackboneAdapter, module: InputSiteModule, batch: dict[str, Tensor]
) -> tuple[Tensor, Tensor, dict[str, Tensor], int]:
    """One run's body inputs, as its own forward builds them (`BackboneAdapter.prompted_inputs`):
    (B, n+L, d) embeddings [P; E(x)], the (B, n+L) mask, token types if its batch has them, and n."""
    inputs_embeds = adapter.embed(batch["input_ids"])
    prompt = module.method.prompt(batch, inputs_embeds)
    if module.method.layer_prefixes(batch) is not None:
        raise ConfigError(
            f"method {type(module.method).__name__} adds per-layer prefixes, which a pack does not stack; "
            "run it unpacked (pack=off)"
        )
    return adapter.prompted_inputs(inputs_embeds, batch["attention_mask"], prompt, batch.get("token_type_ids"))


Scope = Callable[[], contextlib.AbstractContextManager]


def packed_outputs(
    adapter: BackboneAdapter,
    modules: list[InputSiteModule],
    batches: list[dict[str, Tensor]],
    scopes: list[Scope] | None = None,
) -> list[BackboneOutput]:
    """K runs' batches -> K BackboneOutputs (hidden (B_k, T_k, d)) from one backbone pass. Run k's prompt
    is made inside scopes[k]() (its own random stream, `PackMember.own_rng`)."""
    scopes = scopes or [contextlib.nullcontext] * len(modules)
    parts = []
    for module, batch, scope in zip(modules, batches, scopes):
        with scope():
            parts.append(run_rows(adapter, module, batch))
    width = max(embeds.shape[1] for embeds, _, _, _ in parts)
    with_types = any("token_type_ids" in segments for _, _, segments, _ in parts)
    stacked_embeds, stacked_mask, stacked_types, places = [], [], [], []
    start = 0
    for embeds, mask, segments, n_prompt in parts:
        rows, length = embeds.shape[0], embeds.shape[1]
        stacked_embeds.append(F.pad(embeds, (0, 0, 0, width - length)))
        stacked_mask.append(F.pad(mask, (0, width - length)))
        if with_types:  # a run without token types has type 0 everywhere, as its own forward gives it
            types = segments.get("token_type_ids", torch.zeros_like(mask))
            stacked_types.append(F.pad(types, (0, width - length)))
        places.append(PackedRows(start=start, stop=start + rows, length=length, n_prompt=n_prompt))
        start += rows
    mask = torch.cat(stacked_mask)
    segments = {"token_type_ids": torch.cat(stacked_types)} if with_types else {}
    hidden = adapter.body(torch.cat(stacked_embeds), mask, **segments)
    return [
        BackboneOutput(
            hidden=hidden[place.start : place.stop, : place.length],
            attention_mask=mask[place.start : place.stop, : place.length],
            n_prompt=place.n_prompt,
        )
        for place in places
    ]


def packed_logits(
    adapter: BackboneAdapter,
    modules: list[InputSiteModule],
    batches: list[dict[str, Tensor]],
    scopes: list[Scope] | None = None,
) -> list[Tensor]:
    """K runs' (B_k, C_k) logits: one backbone pass, then each run's own head on its slice (in its scope)."""
    scopes = scopes or [contextlib.nullcontext] * len(modules)
    outputs = packed_outputs(adapter, modules, batches, scopes)
    logits = []
    for module, output, batch, scope in zip(modules, outputs, batches, scopes):
        with scope():
            logits.append(module.head(output, batch, adapter))
    return logits
