"""The benchmark suite; kept as a script for old command lines. Same as `prompt-bench-bench`
(prompt_bench/bench/, docs/benchmark.md):

    python scripts/bench.py                                           # every section, MiniLM
    python scripts/bench.py --sections throughput --backbone tiny_bert --steps 2
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, also without `pip install -e`

from prompt_bench.bench.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
