"""A split's token ids on disk, keyed by how they were encoded and what the split holds."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

import torch

log = logging.getLogger(__name__)

TokenIds = dict[str, list[list[int]]]
"""Part name ("train", "dev", "test", "test_new", ...) -> one token-id list per example, in order."""


class TokenCache:
    """cache_dir/tokenized/<sha256(encoding_key, content_hash)>.pt, written atomically.

    `encoding_key` names the encoding (tokenizer, template, max length); `content_hash` the split.
    A file that cannot be read, or whose part sizes differ from the split's, is ignored (re-encoded).
    """

    def __init__(self, cache_dir: str, encoding_key: str, content_hash: str) -> None:
        digest = hashlib.sha256(f"{encoding_key}\n{content_hash}".encode()).hexdigest()[:32]
        self.path = Path(cache_dir) / "tokenized" / f"{digest}.pt"

    def load(self, expected_sizes: dict[str, int]) -> TokenIds | None:
        """The cached ids when present and of `expected_sizes` (part -> number of examples), else None."""
        if not self.path.is_file():
            return None
        try:
            token_ids = torch.load(self.path, weights_only=True)
        except Exception as error:  # a truncated or foreign file: re-encode and overwrite it
            log.warning("ignoring unreadable token cache %s (%s); re-encoding", self.path, error)
            return None
        cached_sizes = None
        if isinstance(token_ids, dict):
            cached_sizes = {name: len(token_ids.get(name, ())) for name in expected_sizes}
        if cached_sizes != expected_sizes:
            log.warning("ignoring token cache %s: its sizes do not match the split; re-encoding", self.path)
            return None
        return token_ids

    def save(self, token_ids: TokenIds) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Write to a temporary file and rename, so a concurrent or killed run never leaves half a cache.
        handle, temporary_path = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.stem, suffix=".tmp")
        os.close(handle)
        try:
            torch.save(token_ids, temporary_path)
            os.replace(temporary_path, self.path)
        finally:
            if os.path.exists(temporary_path):
                os.remove(temporary_path)
