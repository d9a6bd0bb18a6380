"""A hash of prompt_bench's own source, for caches whose contents the code computes (zero-shot scores,
packaged tasks): an edited module never reads what the old code made."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


@cache
def source_hash() -> str:
    """sha256 over prompt_bench's .py files (path and content), once per process (~1 MB, a few ms)."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE_DIR).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
