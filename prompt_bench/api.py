"""The Python API: `prompt_bench.run(overrides)` trains one run (`prompt_bench/run.py: run_overrides`), `prompt_bench.load(run_dir)` brings
a finished one back (`prompt_bench/export/saved.py`).

    import prompt_bench
    record = prompt_bench.run(["backbone=tiny_bert", "dataset=synthetic", "trainer=debug"])
    saved = prompt_bench.load(record["run_dir"])
    saved.predict(["a text"]); saved.evaluate(dataset="synthetic")
"""

from __future__ import annotations

from pathlib import Path

from prompt_bench.export.saved import SavedRun
from prompt_bench.run import run_overrides as run

__all__ = ["load", "run"]


def load(run_dir: str | Path) -> SavedRun:
    """The saved classifier of a finished run: `.predict(texts)`, `.evaluate(dataset=...)`."""
    return SavedRun(run_dir)
