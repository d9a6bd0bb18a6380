"""`prompt-bench-eval <run_dir> [dataset=<name>] [key=value ...]`: score a saved prompt on any dataset.

Writes the eval record to <run_dir>/evals/<dataset>-<key>.json (the training record is never
touched) and prints one line with the scores. Exit 1 with one sentence on a bad input.
"""

from __future__ import annotations

import argparse
import sys

from prompt_bench.errors import PromptBenchError
from prompt_bench.export.saved import SavedRun


def score_line(record: dict) -> str:
    """`eval <dataset>: acc=0.8123 f1=0.8010 (primary f1) -> <path>`."""
    metrics = record["metrics"]
    scores = " ".join(
        f"{name.removeprefix('test/')}={value:.4f}"
        for name, value in metrics.items()
        if name.startswith("test/") and name != "test/primary"
    )
    return f"eval {record['dataset']}: {scores} (primary {metrics['primary_metric']}) -> {record['path']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="prompt-bench-eval",
        description="Evaluate the prompt saved in a run directory on a dataset (default: the run's own).",
    )
    parser.add_argument("run_dir", help="a finished run's directory (holds record.json and prompt.safetensors)")
    parser.add_argument(
        "overrides", nargs="*", help="dataset=<name>, head=<name>, or dotted values (dataset.max_test_examples=200)"
    )
    args = parser.parse_args(argv)
    try:
        record = SavedRun(args.run_dir).evaluate(overrides=args.overrides)
    except PromptBenchError as error:
        print(f"eval failed: {error}", file=sys.stderr, flush=True)
        return 1
    print(score_line(record), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
