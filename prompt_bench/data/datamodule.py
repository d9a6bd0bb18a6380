"""The datamodule base both prompt sites share (batch sizes, a fixed shuffle order, token ids encoded
once per split and cached on disk), and the input site's `TextDataModule` over a FewShotSplit."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from prompt_bench.data.inputs import PairInputs, encode_examples, token_type_ids
from prompt_bench.data.splits import FewShotSplit
from prompt_bench.data.tasks import Examples
from prompt_bench.data.token_cache import TokenCache, TokenIds
from prompt_bench.errors import ConfigError, DataError

SPLIT_NAMES = ("train", "dev", "test")


class TokenizedDataset(Dataset):
    """N (token ids, label, index) triples; token ids are lists of ints of varying length."""

    def __init__(self, token_ids: list[list[int]], labels: Sequence[int]) -> None:
        self.token_ids = token_ids
        self.labels = labels

    def __len__(self) -> int:
        return len(self.token_ids)

    def __getitem__(self, index: int) -> tuple[list[int], int, int]:
        """(token ids, label, position in the split); the position lets cached per-example
        artefacts (a teacher's logits) be looked up for a shuffled batch."""
        return self.token_ids[index], self.labels[index], index


@dataclass(frozen=True)
class PadCollator:
    """Right-pads B sequences with `pad_token_id` to the longest (or to exactly `pad_to`, truncating).

    Items are (token ids, label) or (token ids, label, index). Returns {"input_ids": (B, L) long,
    "attention_mask": (B, L) long, "labels": (B,) long}, plus "example_index": (B,) long for
    indexed items, and "token_type_ids": (B, L) long when `type_sep_id` is set (text pairs for a
    model with token types: 1 after the first separator, see `data.inputs.token_type_ids`).
    """

    pad_token_id: int
    pad_to: int | None = None
    type_sep_id: int | None = None

    def __call__(self, items: list[tuple]) -> dict[str, torch.Tensor]:
        sequences = [item[0] if self.pad_to is None else item[0][: self.pad_to] for item in items]
        length = self.pad_to if self.pad_to is not None else max(len(sequence) for sequence in sequences)
        input_ids = torch.full((len(items), length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(items), length), dtype=torch.long)
        for row, sequence in enumerate(sequences):
            input_ids[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
            attention_mask[row, : len(sequence)] = 1
        labels = torch.tensor([item[1] for item in items], dtype=torch.long)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        if len(items[0]) == 3:
            batch["example_index"] = torch.tensor([item[2] for item in items], dtype=torch.long)
        if self.type_sep_id is not None:
            batch["token_type_ids"] = token_type_ids(input_ids, attention_mask, self.type_sep_id)
        return batch


class SplitDataModule(pl.LightningDataModule):
    """What every datamodule shares: train / dev / test loaders over one split (FewShotSplit or
    BaseToNewSplit), a training order fixed by the split's content, and token ids.

    `encode(texts)` maps N texts to N token-id lists (already templated and truncated); `encoded_parts()`
    runs it once per part of the split (`parts()`: name -> examples). `pairs` (data/inputs.py) encodes
    examples with several text fields as text pairs instead. With both `cache_key` (naming the
    encoding: tokenizer, template, max length, pairs) and `cache_dir`, the ids are cached at
    cache_dir/tokenized/<sha256(cache_key, split.content_hash)>.pt and reused by later setups.
    """

    def __init__(
        self,
        split: Any,
        encode: Callable[[Sequence[str]], list[list[int]]] | None,
        batch_size: int = 8,
        eval_batch_size: int = 32,
        cache_key: str | None = None,
        cache_dir: str | None = None,
        num_workers: int = 0,
        pairs: PairInputs | None = None,
    ) -> None:
        super().__init__()
        for option, value, minimum in (
            ("batch_size", batch_size, 1),
            ("eval_batch_size", eval_batch_size, 1),
            ("num_workers", num_workers, 0),
        ):
            if value < minimum:
                raise ConfigError(f"{option}={value} must be at least {minimum}; set dataset.{option} accordingly.")
        self.split = split
        self.encode = encode
        self.pairs = pairs
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.cache_key = cache_key
        self.cache_dir = cache_dir
        self.num_workers = num_workers
        self.token_ids: TokenIds | None = None
        # Fixed per split, so the training order is the same on every rerun of this split.
        shuffle_seed = int(hashlib.sha256(split.content_hash.encode()).hexdigest()[:8], 16)
        self.shuffle_generator = torch.Generator().manual_seed(shuffle_seed)

    @property
    def num_classes(self) -> int:
        return len(self.split.label_names)

    def parts(self) -> dict[str, Examples]:
        """Part name -> its examples, every part a loader reads (train, dev and the test part(s))."""
        raise NotImplementedError

    # ---- token ids, encoded once ---------------------------------------------------------------
    @property
    def token_cache(self) -> TokenCache | None:
        """The on-disk cache of the token ids, or None when caching is off (no cache_key or cache_dir)."""
        if self.cache_key is None or self.cache_dir is None:
            return None
        return TokenCache(self.cache_dir, self.cache_key, self.split.content_hash)

    @property
    def cache_path(self) -> Path | None:
        """Where the token ids are cached, or None when caching is off."""
        cache = self.token_cache
        return cache.path if cache is not None else None

    def encoded_parts(self) -> TokenIds:
        """Token ids of every part: from the cache when present, else with `encode` (then cached)."""
        if self.token_ids is not None:
            return self.token_ids
        parts = self.parts()
        cache = self.token_cache
        token_ids = cache.load({name: len(examples) for name, examples in parts.items()}) if cache else None
        if token_ids is None:
            token_ids = {name: self._encode_examples(name, examples) for name, examples in parts.items()}
            if cache is not None:
                cache.save(token_ids)
        self.token_ids = token_ids
        return token_ids

    def _encode_examples(self, part: str, examples: Examples) -> list[list[int]]:
        token_ids = [list(map(int, ids)) for ids in encode_examples(examples, self.encode, self.pairs)]
        if len(token_ids) != len(examples):
            raise DataError(
                f"encode returned {len(token_ids)} sequences for the {len(examples)} {part} texts of "
                f"task '{self.split.task_name}'; it must return one token-id list per text."
            )
        empty_rows = [row for row, ids in enumerate(token_ids) if not ids]
        if empty_rows:
            raise DataError(
                f"encode returned empty token-id lists for {len(empty_rows)} {part} texts of task "
                f"'{self.split.task_name}' (first: {examples.texts[empty_rows[0]]!r}); "
                "every text needs at least one token."
            )
        return token_ids

    # ---- loaders --------------------------------------------------------------------------------
    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool, collate: Callable) -> DataLoader:
        """Shuffled loaders draw from the split's fixed generator, so reruns see the same order."""
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            generator=self.shuffle_generator if shuffle else None,
            collate_fn=collate,
            num_workers=self.num_workers,
        )


class TextDataModule(SplitDataModule):
    """Train / dev / test dataloaders over a FewShotSplit for the input site: token ids padded into
    {"input_ids", "attention_mask", "labels", "example_index"} batches, plus "token_type_ids" for
    text pairs on a model with token types (see `PadCollator`)."""

    def __init__(
        self,
        split: FewShotSplit,
        encode: Callable[[Sequence[str]], list[list[int]]],
        pad_token_id: int,
        batch_size: int = 8,
        eval_batch_size: int = 32,
        cache_key: str | None = None,
        cache_dir: str | None = None,
        pad_to: int | None = None,
        num_workers: int = 0,
        pairs: PairInputs | None = None,
    ) -> None:
        super().__init__(split, encode, batch_size, eval_batch_size, cache_key, cache_dir, num_workers, pairs)
        if pad_to is not None and pad_to < 1:
            raise ConfigError(f"pad_to={pad_to} must be a positive length or None (pad to the longest in the batch).")
        self.collate = PadCollator(pad_token_id, pad_to, pairs.type_sep_id if pairs is not None else None)

    def parts(self) -> dict[str, Examples]:
        return {name: getattr(self.split, name) for name in SPLIT_NAMES}

    def setup(self, stage: str | None = None) -> None:
        """Encode train / dev / test once: from the cache when present, else with `encode` (then cached)."""
        self.encoded_parts()

    def train_dataloader(self) -> DataLoader:
        return self._dataloader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._dataloader("dev", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._dataloader("test", self.eval_batch_size, shuffle=False)

    def ordered_dataloader(self, split_name: str) -> DataLoader:
        """Any split ("train", "dev", "test") in split order, eval batch size (for cached outputs)."""
        return self._dataloader(split_name, self.eval_batch_size, shuffle=False)

    def _dataloader(self, split_name: str, batch_size: int, shuffle: bool) -> DataLoader:
        dataset = TokenizedDataset(self.encoded_parts()[split_name], getattr(self.split, split_name).labels)
        return self._loader(dataset, batch_size, shuffle, self.collate)
