"""`python -m prompt_bench.report DIR ...`, the same as `prompt-bench-report DIR ...`."""

from prompt_bench.report.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
