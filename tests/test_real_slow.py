"""Real weights on real data (slow): MiniLM learns BBC News and airline tweets."""

from __future__ import annotations

import pytest

from prompt_bench.run import run_experiment

pytestmark = pytest.mark.slow


def test_minilm_bbc_16_shot_beats_zero_shot(make_config):
    record = run_experiment(make_config("backbone=minilm", "dataset=bbc_news", "logger=none"))
    assert record["status"] == "ok", record.get("error")
    metrics = record["metrics"]
    # measured (results/default_run.md): zero-shot 78.7%, tuned 91.7% with the paper defaults (seed 13);
    # DESIGN.md: below ~85% is a bug
    assert metrics["test/acc"] >= metrics["zero_shot/acc"] + 0.05
    assert metrics["test/acc"] >= 0.85


def test_minilm_tweets_airline_beats_chance(make_config):
    record = run_experiment(
        make_config("backbone=minilm", "dataset=tweets_airline", "logger=none", "dataset.max_test_examples=1000")
    )
    assert record["status"] == "ok", record.get("error")
    metrics = record["metrics"]
    assert metrics["primary_metric"] == "f1"
    # chance macro-F1 for 3 classes is ~0.33; majority-class collapse scores ~0.26
    assert metrics["test/f1"] >= 0.45
