"""Text-to-text classification (T5, Raffel et al. 2020; prompt tuning, Lester et al. 2021): the class is
the label text the decoder writes. The pieces head=generate (heads.GenerateHead) is made of:

- `LabelTargets`: each class's decoder target, its label text + EOS (seqio `append_eos_after_trim`),
  after an optional forced decoder prefix that carries no loss (OpenPrompt's T5-LM <extra_id_0>);
- `token_loss`: T5X's token cross-entropy with z-loss (t5x/losses.py `cross_entropy_with_logits`,
  `compute_weighted_cross_entropy`), per target token t of row r:

      ℓ_rt = log Z_rt − z_{rt, y_rt} + z_loss · (log Z_rt)²,   log Z_rt = logsumexp_v z_rtv

  summed over the target tokens of each row, then averaged over the rows ("sequence_sum": OpenPrompt /
  VIP) or summed over the batch ("batch_sum": T5X with loss_normalizing_factor None);
- `match_labels`: a generated text is the class whose label text it equals, else invalid (-1), as
  T5's `string_label_to_class_id(default=-1)`; `exact_match_scores` turns the class ids into (B, C)
  rows: 0 at the class, −inf elsewhere, and all −inf for an invalid text (a row that names no class).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from prompt_bench.errors import ConfigError

LOSS_REDUCTIONS = ("sequence_sum", "batch_sum")
INVALID = -1


class LabelTargets:
    """The C label texts as teacher-forced decoder rows.

    decoder_inputs: (C, T) [start, *prefix, *label, (pad)]; targets: (C, T) [-100 × len(prefix), *label,
    EOS, (-100)], aligned so targets[:, t] is what the decoder predicts after reading decoder_inputs[:, :t+1].
    texts: each label text as the tokenizer writes it back (what an exact match compares against).
    max_new_tokens: the longest label + 1 (its EOS): greedy decoding never needs more to match a label.
    """

    def __init__(
        self,
        label_texts: Sequence[str],
        tokenizer: PreTrainedTokenizerBase,
        start_id: int,
        eos_id: int,
        prefix_ids: Sequence[int] = (),
    ) -> None:
        label_ids = [tokenizer(text.strip(), add_special_tokens=False)["input_ids"] for text in label_texts]
        empty = [text for text, ids in zip(label_texts, label_ids) if not ids]
        if empty:
            raise ConfigError(f"label texts {empty} are empty after tokenising; give each class a non-empty text.")
        self.label_ids = label_ids
        self.prefix_ids = list(prefix_ids)
        self.texts = tuple(tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in label_ids)
        clashes = sorted({text for text in self.texts if self.texts.count(text) > 1})
        if clashes:
            raise ConfigError(
                f"label texts {list(label_texts)} are written back by the tokenizer as {list(self.texts)}, so "
                f"{clashes} name several classes; set head.label_words to texts that differ."
            )
        self.max_new_tokens = max(len(ids) for ids in label_ids) + 1
        pad_id = tokenizer.pad_token_id
        rows = [self.prefix_ids + ids + [eos_id] for ids in label_ids]
        width = max(len(row) for row in rows)
        self.decoder_inputs = torch.full((len(rows), width), pad_id, dtype=torch.long)
        self.targets = torch.full((len(rows), width), -100, dtype=torch.long)
        for c, row in enumerate(rows):
            self.decoder_inputs[c, : len(row)] = torch.tensor([start_id, *row[:-1]])
            self.targets[c, len(self.prefix_ids) : len(row)] = torch.tensor(row[len(self.prefix_ids) :])


def token_loss(logits: Tensor, targets: Tensor, z_loss: float = 1e-4, reduction: str = "sequence_sum") -> Tensor:
    """logits (R, T, V), targets (R, T) with -100 where no loss -> the scalar T5X loss (module docstring)."""
    if reduction not in LOSS_REDUCTIONS:
        raise ConfigError(f"head.loss_reduction '{reduction}' is not one of {', '.join(LOSS_REDUCTIONS)}.")
    per_token = token_losses(logits, targets, z_loss)
    per_row = per_token.sum(-1)
    return per_row.sum() if reduction == "batch_sum" else per_row.mean()


def token_losses(logits: Tensor, targets: Tensor, z_loss: float = 0.0) -> Tensor:
    """(R, T) per-token cross-entropy + z_loss · (log Z)², 0 where the target is -100 (in fp32)."""
    logits = logits.float()
    log_z = logits.logsumexp(-1)
    weights = targets != -100
    gold = logits.gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return ((log_z - gold) + z_loss * log_z.square()) * weights


def sequence_log_likelihood(logits: Tensor, targets: Tensor) -> Tensor:
    """(R, T, V) logits, (R, T) targets -> (R,) Σ_t log p(y_t | y_<t, x) over the target tokens."""
    return -token_losses(logits, targets, z_loss=0.0).sum(-1)


def match_labels(texts: Sequence[str], label_texts: Sequence[str]) -> list[int]:
    """Each generated text's class id: the label text it equals (after stripping), else INVALID (-1)."""
    index = {text: c for c, text in enumerate(label_texts)}
    return [index.get(text.strip(), INVALID) for text in texts]


def generated_texts(tokens: Tensor, tokenizer: PreTrainedTokenizerBase, eos_id: int) -> list[str]:
    """(B, S) generated ids -> B texts: each row up to its first EOS, special tokens dropped."""
    texts = []
    for row in tokens.tolist():
        ids = row[: row.index(eos_id)] if eos_id in row else row
        texts.append(tokenizer.decode(ids, skip_special_tokens=True).strip())
    return texts


def exact_match_scores(class_ids: Sequence[int], num_classes: int, device: torch.device | None = None) -> Tensor:
    """B class ids (INVALID for none) -> (B, C) scores: 0 at the class, −inf elsewhere; all −inf when invalid."""
    scores = torch.full((len(class_ids), num_classes), float("-inf"), device=device)
    for row, class_id in enumerate(class_ids):
        if class_id != INVALID:
            scores[row, class_id] = 0.0
    return scores
