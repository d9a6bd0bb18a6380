"""Where `import prompt_bench.run` spends its time: `python -X importtime`, summed per top-level package.

Each line of `-X importtime` gives a module's self time (its own body, children excluded); summing
self times by the first component of the module name (`torch._dynamo.x` -> `torch`) attributes
every microsecond once.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter

LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


def parse(stderr: str) -> list[tuple[str, int, int, int]]:
    """(module, self µs, cumulative µs, depth) per `-X importtime` line."""
    rows = []
    for line in stderr.splitlines():
        match = LINE.match(line)
        if match:
            rows.append((match[4], int(match[1]), int(match[2]), len(match[3]) // 2))
    return rows


def per_package(rows: list[tuple[str, int, int, int]]) -> Counter:
    """Top-level package -> summed self time in seconds."""
    totals: Counter = Counter()
    for module, self_us, _, _ in rows:
        totals[module.split(".")[0]] += self_us / 1e6
    return totals


def measure(statement: str = "import prompt_bench.run", env: dict[str, str] | None = None) -> dict:
    """Run `statement` in a fresh interpreter with -X importtime; total and per-package seconds."""
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=True,
    )
    rows = parse(completed.stderr)
    totals = per_package(rows)
    return {
        "statement": statement,
        "total_s": sum(totals.values()),
        "modules": len(rows),
        "per_package_s": dict(totals.most_common()),
    }
