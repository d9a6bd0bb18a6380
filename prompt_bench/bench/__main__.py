"""`python -m prompt_bench.bench` is `prompt-bench-bench`."""

from prompt_bench.bench.cli import main

main()
