"""Turning SVGD particles into the virtual type words' embeddings.

    draw: C = min(P, num_classes) of the P particles, uniformly without replacement
    v     = mean of the C drawn particles                                   (d,)
    E[r] ← v for each virtual-token row r ([sub] and [obj]), in place, without gradient

Official (FF2127/bayesprompt, lit_models/transformer_full.py:157-172, `add_sample_abstraction`):
from epoch 1 on, in every training, validation and test step, `random.sample` draws
min(#particles, #relations) particles, averages them, and writes the average into the embedding
rows of both `[sub]` and `[obj]` under no_grad. The draw sits in a loop over the batch's examples,
but every pass overwrites the same rows, so one draw per batch has the same effect; that is what
happens here. Epoch 0 trains with the rows as they are (the method decides when to start).

Evaluation modes:
    sample  official: a fresh random average per evaluation batch, so test scores are stochastic.
    mean    deterministic: the mean of all P particles, which is the expectation of the random
            average (each particle is drawn with probability C / P).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from prompt_bench.methods.bayesprompt.features import embedding_table

EVAL_MODES = ("sample", "mean")


def draw_particle_average(particles: Tensor, num_draw: int, generator: torch.Generator | None = None) -> Tensor:
    """Mean of min(P, num_draw) particles drawn without replacement from particles (P, d): (d,)."""
    if particles.dim() != 2 or particles.shape[0] < 1:
        raise ValueError(f"particles must be (P, d) with P >= 1, got {tuple(particles.shape)}")
    if num_draw < 1:
        raise ValueError(f"num_draw must be >= 1 (official: the number of relations), got {num_draw}")
    count = min(particles.shape[0], num_draw)
    chosen = torch.randperm(particles.shape[0], generator=generator)[:count]
    return particles[chosen.to(particles.device)].mean(dim=0)


@torch.no_grad()
def write_embedding_rows(embedding: nn.Module | Tensor, row_ids: Sequence[int] | Tensor, vector: Tensor) -> None:
    """Overwrite rows `row_ids` of an embedding table (V, d) with vector (d,) or (len(rows), d).

    In place and outside autograd, as the official code does; no other row changes. The vector
    is cast to the table's dtype and device (the table may be bf16 on a GPU).
    """
    weight = embedding_table(embedding)
    rows = torch.as_tensor(row_ids, dtype=torch.long, device=weight.device).flatten()
    if rows.numel() == 0:
        raise ValueError("no rows to write: pass the ids of the virtual tokens ([sub], [obj])")
    if int(rows.min()) < 0 or int(rows.max()) >= weight.shape[0]:
        raise ValueError(
            f"row ids {rows.tolist()} fall outside the table's {weight.shape[0]} rows; were the "
            f"virtual tokens added to the tokenizer and the embeddings resized?"
        )
    vector = vector.to(dtype=weight.dtype, device=weight.device)
    if vector.shape not in ((weight.shape[1],), (rows.numel(), weight.shape[1])):
        raise ValueError(
            f"vector shape {tuple(vector.shape)} fits neither ({weight.shape[1]},) nor "
            f"({rows.numel()}, {weight.shape[1]})"
        )
    weight[rows] = vector.expand(rows.numel(), weight.shape[1])


class ParticleSampler(nn.Module):
    """Holds the SVGD particles and writes their (sampled) average into virtual-token rows.

    particles: (P, d), stored as a persistent buffer, so a saved method state carries them.
    num_draw: C, how many particles each draw averages (official: the number of relations).
    eval_mode: "sample" (official, stochastic) or "mean" (deterministic); training always samples.
    seed: seeds the sampler's own generator, so draws do not depend on the global RNG.
    """

    def __init__(self, particles: Tensor, num_draw: int, eval_mode: str = "sample", seed: int = 0) -> None:
        super().__init__()
        if eval_mode not in EVAL_MODES:
            raise ValueError(f"eval_mode {eval_mode!r} is not one of {EVAL_MODES} (official: sample)")
        if particles.dim() != 2 or particles.shape[0] < 1:
            raise ValueError(f"particles must be (P, d) with P >= 1, got {tuple(particles.shape)}")
        if num_draw < 1:
            raise ValueError(f"num_draw must be >= 1, got {num_draw}")
        self.register_buffer("particles", particles.detach().clone())
        self.num_draw = num_draw
        self.eval_mode = eval_mode
        self.generator = torch.Generator().manual_seed(seed)

    def vector(self, training: bool) -> Tensor:
        """The vector for this batch (d,): a fresh random average, or the mean in eval 'mean'."""
        if not training and self.eval_mode == "mean":
            return self.particles.mean(dim=0)
        return draw_particle_average(self.particles, self.num_draw, self.generator)

    def write(self, embedding: nn.Module | Tensor, row_ids: Sequence[int] | Tensor, training: bool):
        """Draw (or take the mean) and write it into `row_ids`; returns the vector written (d,)."""
        vector = self.vector(training)
        write_embedding_rows(embedding, row_ids, vector)
        return vector
