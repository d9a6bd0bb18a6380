"""A LightningDataModule that tokenises a FewShotSplit once (cached on disk) and pads batches."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from prompt_bench.data.splits import FewShotSplit
from prompt_bench.data.tasks import Examples
from prompt_bench.errors import ConfigError, DataError

log = logging.getLogger(__name__)

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
    indexed items.
    """

    pad_token_id: int
    pad_to: int | None = None

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
        return batch


class TextDataModule(pl.LightningDataModule):
    """Train / dev / test dataloaders over a FewShotSplit, tokenised by the model side's `encode`.

    `encode(texts)` maps N texts to N token-id lists (already templated and truncated). With both
    `cache_key` (naming the encoding: tokenizer, template, max length) and `cache_dir`, the ids are
    cached at cache_dir/tokenized/<sha256(cache_key, split.content_hash)>.pt and reused by later setups.
    """

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
    ) -> None:
        super().__init__()
        for option, value, minimum in (
            ("batch_size", batch_size, 1), ("eval_batch_size", eval_batch_size, 1), ("num_workers", num_workers, 0)
        ):
            if value < minimum:
                raise ConfigError(f"{option}={value} must be at least {minimum}; set dataset.{option} accordingly.")
        if pad_to is not None and pad_to < 1:
            raise ConfigError(f"pad_to={pad_to} must be a positive length or None (pad to the longest in the batch).")
        self.split = split
        self.encode = encode
        self.collate = PadCollator(pad_token_id, pad_to)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.cache_key = cache_key
        self.cache_dir = cache_dir
        self.num_workers = num_workers
        self.token_ids: dict[str, list[list[int]]] | None = None
        # Fixed per split, so the training order is the same on every rerun of this split.
        shuffle_seed = int(hashlib.sha256(split.content_hash.encode()).hexdigest()[:8], 16)
        self.shuffle_generator = torch.Generator().manual_seed(shuffle_seed)

    @property
    def num_classes(self) -> int:
        return len(self.split.label_names)

    @property
    def cache_path(self) -> Path | None:
        """Where the token ids are cached, or None when caching is off (no cache_key or cache_dir)."""
        if self.cache_key is None or self.cache_dir is None:
            return None
        digest = hashlib.sha256(f"{self.cache_key}\n{self.split.content_hash}".encode()).hexdigest()[:32]
        return Path(self.cache_dir) / "tokenized" / f"{digest}.pt"

    def setup(self, stage: str | None = None) -> None:
        """Encode train / dev / test once: from the cache when present, else with `encode` (then cached)."""
        if self.token_ids is not None:
            return
        token_ids = self._load_cache()
        if token_ids is None:
            token_ids = {name: self._encode_examples(name, self._examples(name)) for name in SPLIT_NAMES}
            self._save_cache(token_ids)
        self.token_ids = token_ids

    def train_dataloader(self) -> DataLoader:
        return self._dataloader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._dataloader("dev", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._dataloader("test", self.eval_batch_size, shuffle=False)

    def ordered_dataloader(self, split_name: str) -> DataLoader:
        """Any split ("train", "dev", "test") in split order, eval batch size (for cached outputs)."""
        return self._dataloader(split_name, self.eval_batch_size, shuffle=False)

    def _examples(self, split_name: str) -> Examples:
        return getattr(self.split, split_name)

    def _dataloader(self, split_name: str, batch_size: int, shuffle: bool) -> DataLoader:
        self.setup()
        dataset = TokenizedDataset(self.token_ids[split_name], self._examples(split_name).labels)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            generator=self.shuffle_generator if shuffle else None,
            collate_fn=self.collate,
            num_workers=self.num_workers,
        )

    def _encode_examples(self, split_name: str, examples: Examples) -> list[list[int]]:
        token_ids = [list(map(int, ids)) for ids in self.encode(list(examples.texts))]
        if len(token_ids) != len(examples):
            raise DataError(
                f"encode returned {len(token_ids)} sequences for the {len(examples)} {split_name} texts of "
                f"task '{self.split.task_name}'; it must return one token-id list per text."
            )
        empty_rows = [row for row, ids in enumerate(token_ids) if not ids]
        if empty_rows:
            raise DataError(
                f"encode returned empty token-id lists for {len(empty_rows)} {split_name} texts of task "
                f"'{self.split.task_name}' (first: {examples.texts[empty_rows[0]]!r}); "
                "every text needs at least one token."
            )
        return token_ids

    def _load_cache(self) -> dict[str, list[list[int]]] | None:
        path = self.cache_path
        if path is None or not path.is_file():
            return None
        try:
            token_ids = torch.load(path, weights_only=True)
        except Exception as error:  # a truncated or foreign file: re-encode and overwrite it
            log.warning("ignoring unreadable token cache %s (%s); re-encoding", path, error)
            return None
        expected_sizes = {split_name: len(self._examples(split_name)) for split_name in SPLIT_NAMES}
        cached_sizes = None
        if isinstance(token_ids, dict):
            cached_sizes = {name: len(token_ids.get(name, ())) for name in SPLIT_NAMES}
        if cached_sizes != expected_sizes:
            log.warning("ignoring token cache %s: its sizes do not match the split; re-encoding", path)
            return None
        return token_ids

    def _save_cache(self, token_ids: dict[str, list[list[int]]]) -> None:
        path = self.cache_path
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write to a temporary file and rename, so a concurrent or killed run never leaves half a cache.
        handle, temporary_path = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
        os.close(handle)
        try:
            torch.save(token_ids, temporary_path)
            os.replace(temporary_path, path)
        finally:
            if os.path.exists(temporary_path):
                os.remove(temporary_path)
