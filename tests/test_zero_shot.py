"""Zero-shot scores are made once and shared by runs whose pass reads the same inputs (prompt_bench/zero_shot.py)."""

from __future__ import annotations

import pytest
import torch

from prompt_bench.build import build_experiment
from prompt_bench.lit.base import PromptLightningModule
from prompt_bench.zero_shot import zero_shot_scores, zero_shot_spec

TINY = ("backbone=tiny_bert", "dataset=synthetic", "head=label_similarity", "logger=none")


@pytest.fixture
def evaluations(monkeypatch):
    """Counts the zero-shot passes that really run."""
    calls = []
    plain = PromptLightningModule.evaluate

    def counted(self, loaders, use_prompt=True):
        calls.append(use_prompt)
        return plain(self, loaders, use_prompt=use_prompt)

    monkeypatch.setattr(PromptLightningModule, "evaluate", counted)
    return calls


def built(make_config, tmp_path, *overrides):
    cfg = make_config(*TINY, *overrides)
    cfg.paths.cache_dir = str(tmp_path / "cache")  # this test's own store
    experiment = build_experiment(cfg)
    experiment.datamodule.setup("fit")
    return cfg, experiment


def test_seeds_share_one_zero_shot_pass_with_the_same_scores(make_config, tmp_path, evaluations):
    cfg, experiment = built(make_config, tmp_path, "seed=13")
    first = zero_shot_scores(cfg, experiment)
    assert evaluations == [False]
    cfg, experiment = built(make_config, tmp_path, "seed=21", "method.optimizer.lr=0.1")
    assert zero_shot_scores(cfg, experiment) == first  # read back: no second pass
    assert evaluations == [False]
    assert experiment.module.evaluate(experiment.datamodule.test_dataloader(), use_prompt=False) == first


def test_a_different_head_or_test_set_scores_again(make_config, tmp_path, evaluations):
    cfg, experiment = built(make_config, tmp_path)
    base = zero_shot_spec(cfg, experiment)
    zero_shot_scores(cfg, experiment)
    for overrides in (
        ("head.label_template='a {label} text'",),
        ("dataset.max_test_examples=16",),
        ("dataset.max_length=4",),
    ):
        cfg, experiment = built(make_config, tmp_path, *overrides)
        assert zero_shot_spec(cfg, experiment) != base, overrides
        zero_shot_scores(cfg, experiment)
    assert evaluations == [False] * 4


def test_a_backbone_with_forward_hooks_is_not_shared(make_config, tmp_path, evaluations):
    cfg, experiment = built(make_config, tmp_path)
    experiment.adapter.model.get_input_embeddings().register_forward_hook(lambda *args: None)
    assert zero_shot_spec(cfg, experiment) is None
    zero_shot_scores(cfg, experiment)
    zero_shot_scores(cfg, experiment)
    assert evaluations == [False, False]


def test_a_shared_score_leaves_the_random_stream_where_scoring_would(make_config, tmp_path, evaluations):
    """A run that reads its zero-shot scores goes on drawing what it would have drawn scoring them itself
    (its dropout masks, a sampled prompt): the pass draws once from the global stream, the read too."""
    states = []
    for _ in range(2):  # scored, then read from the store
        cfg, experiment = built(make_config, tmp_path, "seed=13")
        torch.manual_seed(0)
        zero_shot_scores(cfg, experiment)
        states.append(torch.get_rng_state())
    assert evaluations == [False]
    assert torch.equal(states[0], states[1])
