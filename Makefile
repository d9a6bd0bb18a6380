# prompt_test-latest:  ## canary: newest allowed versions in .venv-latest, fast suite, diff against the lock
	bash scripts/test_latest.sh

lock:  ## the canary, then write its versions to scripts/constraints.txt if the suite passed
	bash scripts/test_latest.sh --update-lock

bench: common commands (see README).
.PHONY: help setup run test test-full test-latest lock bench

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

test-latest:  ## canary: newest allowed versions in .venv-latest, fast suite, diff against the lock
	bash scripts/test_latest.sh

lock:  ## the canary, then write its versions to scripts/constraints.txt if the suite passed
	bash scripts/test_latest.sh --update-lock

bench:  ## the benchmark suite: throughput vs floor / hand-written / PEFT, start-up, packed runs
	.venv/bin/python -m prompt_bench.bench
