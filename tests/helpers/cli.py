"""The real CLI (python -m prompt_bench.run) in a subprocess, with its own root and cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(
    *overrides: str, root: Path, cache: Path, timeout: int = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`env` adds to (or replaces entries of) this process's environment; `root` is created if missing."""
    Path(root).mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PROMPT_BENCH_ROOT": str(root),
        "PROMPT_BENCH_CACHE": str(cache),
        "WANDB_MODE": "offline",
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "prompt_bench.run", *overrides],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=root,
    )
