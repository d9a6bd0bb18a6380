"""Transferability metrics (SPoT's prompt similarity, PANDA's stimulation similarity, activated-neuron
overlap), the prompt-bench-transferability matrix and the report's transfer view."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from prompt_bench.methods.base import MethodContext
from prompt_bench.methods.prompt_tuning import PromptTuning
from prompt_bench.report.load import load_records
from prompt_bench.report.transfer import metric_correlations, transfer_gains
from prompt_bench.transfer.metrics import (
    eavg_similarity,
    neuron_overlap,
    pair_metrics,
    prompt_vectors,
    stimulation,
    stimulation_similarity,
    token_average_similarity,
)
from tests.helpers.adapters import ADAPTER_CASES, encoded, make_adapter
from tests.helpers.cli import run_cli


def prompt_on(adapter, seed: int, depth: str = "input") -> PromptTuning:
    method = PromptTuning(n_tokens=4, init="random" if depth == "deep" else "vocab", seed=seed, depth=depth)
    method.prepare(MethodContext(adapter=adapter, label_names=("a", "b"), cache_dir=""))
    return method


def batches_of(adapter):
    input_ids, attention_mask = encoded(adapter)
    return [{"input_ids": input_ids, "attention_mask": attention_mask}]


def test_prompt_similarities_match_a_hand_computation_and_are_symmetric():
    generator = torch.Generator().manual_seed(0)
    source, target = torch.randn(5, 8, generator=generator), torch.randn(3, 8, generator=generator)
    by_hand = sum(float(F.cosine_similarity(s, t, dim=0)) for s in source for t in target) / 15
    assert token_average_similarity(source, target) == pytest.approx(by_hand, abs=1e-6)
    assert token_average_similarity(target, source) == pytest.approx(by_hand, abs=1e-6)
    expected_eavg = float(source.mean(0) @ target.mean(0) / (source.mean(0).norm() * target.mean(0).norm()))
    assert eavg_similarity(source, target) == pytest.approx(expected_eavg, abs=1e-6)
    assert eavg_similarity(source, target) == pytest.approx(eavg_similarity(target, source), abs=1e-7)
    assert eavg_similarity(source, source) == pytest.approx(1.0, abs=1e-6)
    # every-pair average: below 1 for a prompt with itself unless its tokens are parallel
    assert token_average_similarity(source, source) < 0.99
    parallel = torch.ones(4, 1) * torch.randn(1, 8, generator=generator)
    assert token_average_similarity(parallel, parallel) == pytest.approx(1.0, abs=1e-6)


def test_neuron_overlap_is_the_cosine_of_the_active_masks():
    source = torch.tensor([0.5, -1.0, 2.0, 0.1, -0.2])
    target = torch.tensor([0.3, 0.4, -1.0, 0.2, -0.1])
    # active: source {0, 2, 3}, target {0, 1, 3}: 2 shared / sqrt(3 * 3)
    assert neuron_overlap(source, target) == pytest.approx(2 / 3)
    assert neuron_overlap(source, source) == pytest.approx(1.0)
    assert neuron_overlap(source, -source.abs()) == 0.0


@pytest.mark.parametrize("case", ADAPTER_CASES)
def test_stimulation_reads_every_layers_ffn_and_depends_on_the_prompt(case, cache_dir):
    adapter = make_adapter(case, cache_dir)
    projections = adapter.ffn_down_projections()
    assert len(projections) == adapter.prefix_geometry.n_layers
    widths = [
        module.weight.shape[0] if type(module).__name__ == "Conv1D" else module.in_features for module in projections
    ]
    first, second = prompt_on(adapter, seed=1), prompt_on(adapter, seed=2)
    vector = stimulation(adapter, first, batches_of(adapter))
    assert vector.shape == (sum(widths),)
    assert stimulation_similarity(vector, stimulation(adapter, first, batches_of(adapter))) == pytest.approx(1.0)
    other = stimulation(adapter, second, batches_of(adapter))
    offset = 0
    for width in widths:  # every layer's block responds to the prompt
        assert not torch.allclose(vector[offset : offset + width], other[offset : offset + width])
        offset += width
    assert not any(module._forward_pre_hooks for module in projections)


def test_deep_prompts_stimulate_from_the_first_input_token(cache_dir):
    adapter = make_adapter("tiny_bert", cache_dir)
    first, second = prompt_on(adapter, seed=1, depth="deep"), prompt_on(adapter, seed=2, depth="deep")
    assert prompt_vectors(first).shape == (4, 2 * 2 * 64)
    metrics = pair_metrics(
        prompt_vectors(first),
        prompt_vectors(first),
        stimulation(adapter, first, batches_of(adapter)),
        stimulation(adapter, first, batches_of(adapter)),
    )
    assert metrics["e_avg"] == pytest.approx(1.0, abs=1e-6)
    assert metrics["mss"] == pytest.approx(1.0, abs=1e-6)
    assert metrics["neuron_overlap"] == pytest.approx(1.0, abs=1e-6)
    differs = stimulation(adapter, second, batches_of(adapter))
    assert stimulation_similarity(stimulation(adapter, first, batches_of(adapter)), differs) < 1.0


def test_gains_and_correlations_from_a_records_frame():
    rows = []

    def record(method, target, score, source=None, seed=13):
        transfer = {"name": f"{source}_to_{target}", "source": {"name": source}} if source else None
        rows.append(
            {
                "run_key": f"{method}{source}{target}{seed}",
                "status": "ok",
                "config": {
                    "method": {"name": method},
                    "backbone": {"name": "b"},
                    "dataset": {"name": target},
                    "seed": seed,
                    "transfer": transfer,
                },
                "metrics": {"test/primary": score, "primary_metric": "f1"},
            }
        )

    record("prompt_tuning", "t1", 0.50)
    record("prompt_tuning", "t1", 0.60, seed=21)
    record("prompt_tuning", "t2", 0.40)
    for (source, target), score in {
        ("s1", "t1"): 0.60,
        ("s2", "t1"): 0.52,
        ("s1", "t2"): 0.47,
        ("t1", "t2"): 0.44,
    }.items():
        record("spot", target, score, source=source)
    frame = pd.json_normalize(rows, sep=".")
    gains = transfer_gains(frame).set_index(["source", "target"])["gain"]
    assert gains[("s1", "t1")] == pytest.approx(5.0)  # 60 - mean(50, 60)
    assert gains[("s2", "t1")] == pytest.approx(-3.0)
    assert gains[("s1", "t2")] == pytest.approx(7.0)
    metrics = pd.DataFrame(
        [
            {"backbone": "b", "metric": "mss", "source": s, "target": t, "value": v}
            for (s, t), v in {("s1", "t1"): 0.9, ("s2", "t1"): 0.1, ("s1", "t2"): 0.95, ("t1", "t2"): 0.5}.items()
        ]
    )
    correlations = metric_correlations(transfer_gains(frame), metrics).set_index("metric")
    assert correlations.loc["mss", "pairs"] == 4
    assert correlations.loc["mss", "spearman"] == pytest.approx(1.0)  # same order as the gains
    assert correlations.loc["mss", "kendall"] == pytest.approx(1.0)


def test_transfer_matrix_smoke_sweep_gives_metric_matrices_gains_and_correlations(tmp_path, cache_dir):
    result = run_cli("-m", "experiment=transfer_matrix_smoke", "seed=13", root=tmp_path, cache=cache_dir, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "outputs" / "sweeps" / "transfer_matrix_smoke"
    frame = load_records(sweep)
    assert set(frame["status"]) == {"ok"}
    # prompt_tuning drops the pair: one target-only baseline per target, not one per pair
    baselines = frame[frame["config.method.name"] == "prompt_tuning"]
    assert sorted(baselines["config.dataset.name"]) == ["tweets_apple", "tweets_cars"]
    assert baselines["config.transfer"].isna().all()

    from prompt_bench.report import main as report_main
    from prompt_bench.transfer.matrix import main as transferability_main

    assert transferability_main([str(sweep)]) == 0
    metrics = pd.read_csv(sweep / "transferability.csv")
    tasks = {"tweets_airline", "tweets_apple", "tweets_cars"}  # airline's prompt is the source artefact
    assert set(metrics["source"]) == tasks and set(metrics["target"]) == tasks
    for metric in ("e_avg", "mss", "neuron_overlap"):
        own = metrics[(metrics["metric"] == metric) & (metrics["source"] == metrics["target"])]
        assert own["value"].to_numpy() == pytest.approx(1.0, abs=1e-5)
        assert (sweep / f"transferability_{metric}_tiny_bert_input.png").stat().st_size > 0
    # PANDA's deep source prompts (trained at method.source_lr) form their own group beside the input prompts
    assert set(metrics["depth"]) == {"input", "deep"}
    pairs = metrics[(metrics["metric"] == "e_avg") & (metrics["depth"] == "input")].set_index(["source", "target"])
    pairs = pairs["value"]
    assert pairs[("tweets_airline", "tweets_cars")] == pytest.approx(pairs[("tweets_cars", "tweets_airline")], abs=1e-6)

    assert report_main([str(sweep)]) == 0
    assert (sweep / "transfer_gain_spot_tiny_bert.png").stat().st_size > 0
    assert (sweep / "transfer_gain_panda_tiny_bert.png").stat().st_size > 0
    correlations = pd.read_csv(sweep / "transfer_correlations.csv")
    assert set(correlations["method"]) == {"spot", "panda"}
    assert (correlations["pairs"] == 3).all()
    gains = pd.read_csv(sweep / "transfer_gains.csv")
    assert len(gains) == 6 and gains["gain"].notna().all()
    assert "transfer" in json.dumps(list(pd.read_csv(sweep / "report.csv").columns))
