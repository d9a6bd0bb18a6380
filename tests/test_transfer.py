"""Prompt transfer: pairs compose, SPoT starts from the source prompt, bad pairs fail early."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from prompt_bench.build import build_experiment, method_extras
from prompt_bench.errors import ConfigError
from prompt_bench.methods.panda import PANDA
from prompt_bench.methods.prompt_tuning import PromptTuning
from prompt_bench.methods.spot import SPoT
from prompt_bench.run import run_experiment
from prompt_bench.transfer.artefacts import source_prompt_file
from tests.conftest import CONF_DIR

TINY = ("backbone=tiny_bert", "trainer=debug", "logger=none")


def test_every_pair_composes_with_distinct_source_and_target(make_config):
    for path in sorted((CONF_DIR / "transfer").glob("*.yaml")):
        cfg = make_config(f"transfer={path.stem}")
        assert cfg.transfer.name == path.stem
        assert cfg.transfer.source.name != cfg.dataset.name
        source, target = path.stem.split("_to_")
        assert source == cfg.transfer.source.name
        assert cfg.dataset.name.endswith(target)  # tweets_airline_to_cars -> tweets_cars


def test_spot_target_prompt_starts_equal_to_the_source_prompt(make_config, cache_dir):
    cfg = make_config("method=spot", "transfer=tweets_airline_to_cars", *TINY)
    experiment = build_experiment(cfg)
    source_file = source_prompt_file(cfg)  # made by the build above; this only looks it up
    assert source_file.parent.parent == cache_dir / "artefacts" / "source_prompt"
    source_prompt = load_file(str(source_file))["prompt_embeddings"]
    assert torch.equal(experiment.method.prompt_embeddings.detach(), source_prompt)
    assert experiment.split.task_name == "tweets_cars"
    # a second target run reuses the artefact instead of training the source again
    before = source_file.stat().st_mtime_ns
    build_experiment(make_config("method=spot", "transfer=tweets_airline_to_cars", *TINY))
    assert source_file.stat().st_mtime_ns == before
    assert source_prompt_file(cfg) == source_file


def test_methods_declare_their_needs_and_the_builder_refuses_unknown_ones(make_config):
    assert PromptTuning.needs == frozenset()
    assert SPoT.needs == {"source_prompt"}
    assert PANDA.needs == {"teacher_model"} and PANDA(adaptive_kd=True).needs == {"teacher_model", "transferability"}
    assert PANDA(teacher_mode="cached").needs == {"teacher_logits"}  # the eval-mode logits, made once
    assert PANDA.needs == {"teacher_model"}  # the instance's needs stay on the instance
    method = PromptTuning()
    method.needs = frozenset({"gmm_particles"})  # (meta_init is served now: MetaPT's init prompt)
    with pytest.raises(ConfigError, match="needs gmm_particles, which the builder cannot serve"):
        method_extras(make_config("method=spot", "transfer=tweets_airline_to_cars", *TINY), method, adapter=None)
    assert method_extras(make_config("dataset=synthetic", *TINY), PromptTuning(), adapter=None) == {}


def test_spot_without_a_pair_says_so(make_config, tmp_path):
    record = run_experiment(make_config("method=spot", "dataset=synthetic", *TINY))
    assert record["status"] == "failed" and "transfer=<source>_to_<target>" in record["error"]


def test_same_source_and_target_fails_before_training(make_config):
    record = run_experiment(
        make_config("method=spot", "transfer=tweets_airline_to_cars", "dataset=tweets_airline", *TINY)
    )
    assert record["status"] == "failed" and "same source and target task" in record["error"]


def test_prompt_of_another_backbone_is_a_shape_error(make_config, tmp_path):
    wrong = tmp_path / "minilm_prompt.safetensors"
    save_file({"prompt_embeddings": torch.zeros(20, 384)}, str(wrong))  # MiniLM's width, not tiny_bert's 64
    record = run_experiment(
        make_config("method.module.init=file", f"method.module.init_file={wrong}", "dataset=synthetic", *TINY)
    )
    assert record["status"] == "failed"
    assert "(100, 64)" in record["error"] and "'prompt_embeddings': (20, 384)" in record["error"]


def test_hub_pair_offline_fails_with_the_hub_sentence(make_config):
    record = run_experiment(make_config("method=spot", "transfer=mnli_to_cb", *TINY))
    assert record["status"] == "failed"
    assert "'super_glue' could not be loaded from the Hugging Face hub" in record["error"]
