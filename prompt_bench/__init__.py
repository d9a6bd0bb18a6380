"""prompt_bench: config-driven prompt-tuning experiments (Hydra + PyTorch Lightning).

`prompt_bench.run(overrides)` and `prompt_bench.load(run_dir)` are the Python API (prompt_bench/api.py),
imported on first use so that `import prompt_bench` stays light (no torch, no Hydra).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["load", "run"]


def __getattr__(name: str) -> Any:
    """Lazy API: `run` is the (callable) module prompt_bench.run, `load` comes from prompt_bench.api."""
    if name == "run":
        return importlib.import_module("prompt_bench.run")
    if name == "load":
        return importlib.import_module("prompt_bench.api").load
    raise AttributeError(f"module 'prompt_bench' has no attribute {name!r}")
