# prompt_bench: common commands (see README).
.PHONY: help setup run test test-full bench

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' Makefile | sed 's/:.*## /\t/'

setup:  ## create .venv and install everything
	bash scripts/setup.sh

run:  ## the default experiment (prompt tuning, MiniLM, BBC News 16-shot, seed 13)
	.venv/bin/prompt-bench

test:  ## fast test suite
	.venv/bin/python -m pytest -q -m "not slow"

test-full:  ## everything, real-weight runs included
	.venv/bin/python -m pytest -q

bench:  ## throughput vs a hand-written PyTorch loop
	.venv/bin/python scripts/bench.py
