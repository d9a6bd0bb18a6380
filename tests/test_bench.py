"""The benchmark suite (prompt_bench/bench/) on tiny_bert: the sides compute the same logits, the
sections run and report, the FLOPs formula and the peak table by hand, the packed section's plumbing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from rich.console import Console

from prompt_bench.bench import mfu, packed, registry, startup
from prompt_bench.bench.cli import main, parse_args

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--backbone", "tiny_bert", "--dataset", "synthetic"]
TINY_SHAPE = [
    "--batch-size",
    "2",
    "--length",
    "8",
    "--prompt-tokens",
    "2",
    "--steps",
    "1",
    "--rounds",
    "2",
    "--warmup",
    "1",
]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPT_BENCH_CACHE", str(tmp_path / "cache"))


def test_throughput_sides_compute_prompt_bench_logits_and_report_ratios(capsys):
    pytest.importorskip("peft")
    result = main(["--sections", "throughput", *TINY, *TINY_SHAPE, "--peak-tflops", "1"])["throughput"]
    assert set(result["samples_per_s"]) == {"prompt_bench", "floor", "hand-written", "peft"}
    assert all(len(values) == 2 and min(values) > 0 for values in result["samples_per_s"].values())
    # same frozen model, same prompt values, same head math: the same logits before training
    assert set(result["max_logit_gap"]) == {"hand-written", "peft"}
    assert max(result["max_logit_gap"].values()) < 1e-5
    assert set(result["ratios"]) == {"floor", "hand-written", "peft"} and min(result["ratios"].values()) > 0
    # the sides' order rotates every round, so none always runs right after prompt_bench
    assert result["block_orders"] == [
        ["prompt_bench", "floor", "hand-written", "peft"],
        ["prompt_bench", "hand-written", "peft", "floor"],
    ]
    assert all(share is not None and share > 0 for share in result["mfu"].values())
    out = capsys.readouterr().out
    assert "prompt_bench / side" in out and "4*N*T + 12*layers*S*d*T" in out


def test_flops_per_step_by_hand_on_tiny_bert():
    from transformers import BertConfig, BertModel

    model = BertModel(
        BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
    )
    # per layer: Q, K, V, O (4 * 64 * 64) + FFN in and out (2 * 64 * 128); the pooler is left out
    assert mfu.matmul_weights(model) == 2 * (4 * 64 * 64 + 2 * 64 * 128) == 65536
    assert mfu.body_shape(model.config) == (2, 64)
    # B = 4, S = 20 (T = 80): 4 * 65536 * 80 + 12 * 2 * 20 * 64 * 80
    assert mfu.flops_per_step(65536, 2, 64, batch_size=4, positions=20) == 20_971_520 + 2_457_600
    assert mfu.mfu(1e12, 2.0, peak=989.0) == pytest.approx(2e12 / 989e12)
    assert mfu.mfu(1e12, 2.0, peak=None) is None


def test_peak_table_matches_device_names():
    assert mfu.peak_tflops("NVIDIA H200") == 989.0
    assert mfu.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert mfu.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert mfu.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert mfu.peak_tflops("Tesla T4") is None


def test_random_t5_base_has_t5_base_shape():
    from transformers import T5Config

    from prompt_bench.bench import random_t5

    config = T5Config(vocab_size=30522, **random_t5.T5_BASE_SHAPE)
    with torch.device("meta"):
        from transformers import T5ForConditionalGeneration

        model = T5ForConditionalGeneration(config)
    params = sum(p.numel() for p in model.parameters())
    # T5 v1.1 base with tied output embeddings (transformers 5 always ties them) and 30,522 rows
    assert params == 221_670_144
    assert mfu.body_shape(config) == (12, 768)


def test_startup_phases_add_up_to_the_first_step():
    raw = {
        "events": {
            "imports_start": 10.5,
            "imports_end": 13.0,
            "build_start": 13.5,
            "build_end": 15.0,
            "first_step_start": 19.0,
            "first_step_end": 20.0,
        },
        "seconds": {"dataset": 0.25, "model load": 0.5, "split": 0.25, "build": 1.5, "tokenize": 1.0, "zero-shot": 2.0},
    }
    phases = startup.phases(raw, spawned=10.0)
    assert phases["interpreter"] == 0.5 and phases["imports"] == 2.5 and phases["hydra + record"] == 0.5
    assert phases["build other"] == 0.5 and phases["fit setup"] == 1.0 and phases["first step"] == 1.0
    assert sum(phases[name] for name in startup.PHASES) == pytest.approx(phases["start"]) == 9.0
    assert phases["total"] == 10.0


def test_packed_section_says_when_packing_is_absent(monkeypatch):
    monkeypatch.setattr(packed, "PACKING_MODULE", "prompt_bench.no_such_packing_module")
    console = Console(record=True, width=200)
    args = parse_args(["--sections", "packed", *TINY])
    assert packed.run(args, console) == {"available": False}
    assert packed.NOT_AVAILABLE in console.export_text()


def test_packed_section_compares_a_packing_function_with_sequential_runs(monkeypatch):
    from prompt_bench.run import run_experiment

    handed: list[int] = []

    def run_packed(configs):  # a stand-in with the expected signature: the same runs, one by one
        handed.append(len(configs))
        return [run_experiment(cfg) for cfg in configs]

    monkeypatch.setattr(packed, "load_run_packed", lambda: run_packed)
    console = Console(record=True, width=200)
    args = parse_args(["--sections", "packed", *TINY, "--packed-k", "2", "--packed-steps", "1"])
    result = packed.run(args, console)
    assert handed == [2]
    assert [row["k"] for row in result["rows"]] == [2]
    assert all(row["ok"] == [row["k"], row["k"]] and row["max_test_gap"] == 0.0 for row in result["rows"])
    assert "packed vs sequential" in console.export_text()


def test_sections_are_chosen_by_name():
    assert [s.name for s in registry.select("packed,throughput")] == ["throughput", "packed"]
    assert [s.name for s in registry.select("all")] == list(registry.SECTIONS)
    with pytest.raises(ValueError, match="unknown section.*known: throughput, startup, packed"):
        registry.select("speed")


def test_scripts_bench_is_the_suite():
    spec = importlib.util.spec_from_file_location("bench_script", ROOT / "scripts" / "bench.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main is main


def test_the_peft_view_of_a_t5_shares_its_encoder_and_leaves_its_config_alone():
    from transformers import T5Config, T5ForConditionalGeneration

    from prompt_bench.bench.sides import peft_body

    config = T5Config(vocab_size=50, d_model=16, d_ff=32, d_kv=4, num_heads=4, num_layers=1, dropout_rate=0.0)
    model = T5ForConditionalGeneration(config)
    view = peft_body(model)
    assert view.encoder is model.get_encoder() and view.get_input_embeddings() is model.get_input_embeddings()
    assert model.config.is_encoder_decoder and not view.config.is_encoder_decoder
    input_ids = torch.tensor([[3, 4, 5]])
    assert torch.equal(
        view(input_ids=input_ids).last_hidden_state, model.get_encoder()(input_ids=input_ids).last_hidden_state
    )


def test_ratios_pair_the_blocks_of_one_round():
    from prompt_bench.bench.throughput import paired_ratios

    # load doubles between the rounds: within a round prompt_bench is 0.9x the side, 0.9 in both
    samples = {"prompt_bench": [9.0, 4.5, 9.0], "floor": [10.0, 5.0, 10.0]}
    assert paired_ratios(samples) == {"floor": pytest.approx(0.9)}
