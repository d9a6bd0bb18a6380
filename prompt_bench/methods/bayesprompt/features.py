"""Per-sentence features for BayesPrompt: the mean of the input word embeddings.

    z_i = (1/T) Σ_t E[input_ids_i,t]            (B, d)    official: every position, padding included
    z_i = Σ_t m_i,t E[ids_i,t] / Σ_t m_i,t      (B, d)    mask_padding=True: real tokens only

The official code (FF2127/bayesprompt, lit_models/transformer_full.py:174-179, `store_inputdata`)
takes the rows of the *input word-embedding table* (not contextual states) for the whole templated
input, padded to max_seq_length = 256, and average-pools over all 256 positions. Short sentences
are therefore dominated by the `<pad>` row; that is the default here, to match. Because a
dataloader here may pad each batch only to its longest member, `pad_to` recreates the official
fixed length: positions past the batch's length count as `pad_token_id` rows.

The features are detached: they are data for the mixture fit and for SVGD, not part of the graph.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn


def embedding_table(embedding: nn.Module | Tensor) -> Tensor:
    """The (V, d) weight of an nn.Embedding-like module, or the tensor itself."""
    weight = embedding.weight if isinstance(embedding, nn.Module) else embedding
    if not isinstance(weight, Tensor) or weight.dim() != 2:
        raise ValueError(
            f"expected an embedding table of shape (vocab, dim) or a module with one as .weight, "
            f"got {type(embedding).__name__}; pass backbone.get_input_embeddings()"
        )
    return weight


@torch.no_grad()
def sentence_features(
    input_ids: Tensor,
    embedding: nn.Module | Tensor,
    attention_mask: Tensor | None = None,
    mask_padding: bool = False,
    pad_to: int | None = None,
    pad_token_id: int | None = None,
) -> Tensor:
    """Mean input-embedding per sentence.

    Args:
        input_ids: (B, L) token ids of the input the model sees (template included).
        embedding: the input embedding table (V, d), or a module with it as `.weight`.
        attention_mask: (B, L), 1 on real tokens; required when `mask_padding`.
        mask_padding: False (official): average over all positions, padding included;
            True: average over the positions where attention_mask is 1.
        pad_to: only without `mask_padding`: average as if each row were padded to this
            length with `pad_token_id` (the official inputs are padded to 256); None: use L.
        pad_token_id: the padding id, needed when pad_to > L.

    Returns:
        (B, d) features, detached, in the table's dtype.
    """
    weight = embedding_table(embedding)
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
    length = input_ids.shape[1]
    token_rows = weight[input_ids]  # (B, L, d)

    if mask_padding:
        if attention_mask is None:
            raise ValueError("mask_padding=True needs the attention_mask (B, L) of the batch")
        if attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask shape {tuple(attention_mask.shape)} differs from input_ids "
                f"shape {tuple(input_ids.shape)}"
            )
        mask = attention_mask.to(token_rows.dtype).unsqueeze(-1)  # (B, L, 1)
        counts = mask.sum(dim=1).clamp_min(1.0)  # (B, 1); an all-padding row gives zeros
        return ((token_rows * mask).sum(dim=1) / counts).detach()

    total = token_rows.sum(dim=1)  # (B, d)
    if pad_to is None or pad_to == length:
        return (total / length).detach()
    if pad_to < length:
        raise ValueError(
            f"pad_to={pad_to} is shorter than the batch's length {length}; set pad_to to at "
            f"least the max sequence length (official: 256) or leave it None"
        )
    if pad_token_id is None:
        raise ValueError(f"pad_to={pad_to} > length {length} needs pad_token_id to fill with")
    total = total + (pad_to - length) * weight[pad_token_id]
    return (total / pad_to).detach()


def collect_features(
    batches: Iterable[tuple[Tensor, Tensor]],
    embedding: nn.Module | Tensor,
    mask_padding: bool = False,
    pad_to: int | None = None,
    pad_token_id: int | None = None,
) -> Tensor:
    """Stack `sentence_features` over (input_ids, attention_mask) batches: (N, d) on the CPU."""
    features = [
        sentence_features(input_ids, embedding, attention_mask, mask_padding, pad_to, pad_token_id).cpu()
        for input_ids, attention_mask in batches
    ]
    if not features:
        raise ValueError("no batches to take features from: the training pool is empty")
    return torch.cat(features, dim=0)
