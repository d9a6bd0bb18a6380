"""scripts/bench.py on a tiny backbone: both sides run, report, and compute the same logits."""

import importlib.util
import sys
from pathlib import Path

BENCH_PATH = Path(__file__).resolve().parents[1] / "scripts" / "bench.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench", BENCH_PATH)
    bench = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = bench  # dataclasses look their module up there
    spec.loader.exec_module(bench)
    return bench


def test_bench_runs_on_tiny_bert(capsys):
    bench = load_bench()
    result = bench.main(
        ["--backbone", "tiny_bert", "--dataset", "synthetic", "--batch-size", "4", "--length", "16",
         "--prompt-tokens", "4", "--steps", "2", "--rounds", "2", "--warmup", "1"]
    )  # fmt: skip
    assert result["max_logit_gap"] < 1e-4
    assert all(len(values) == 2 and min(values) > 0 for values in result["samples_per_s"].values())
    assert result["ratio"] > 0
    assert "ratio prompt_bench/reference = " in capsys.readouterr().out
