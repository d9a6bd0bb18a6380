"""Prompt tuning's defaults and initialisations against Lester et al. and the prompt-tuning code (prompts.py)."""

from __future__ import annotations

import pytest
import torch

from prompt_bench.errors import ConfigError
from prompt_bench.methods.base import MethodContext
from prompt_bench.methods.prompt_tuning import PromptTuning
from tests.helpers.adapters import tiny_adapter

LABELS = ("sport", "business", "tech")


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    return tiny_adapter("tiny_bert", tmp_path_factory.mktemp("cache"))


def prepared(adapter, labels=LABELS, **options) -> torch.Tensor:
    method = PromptTuning(seed=3, **options)
    method.prepare(MethodContext(adapter=adapter, label_names=labels, cache_dir=""))
    return method.prompt_embeddings.detach()


def test_defaults_follow_the_paper():
    method = PromptTuning()
    assert (method.n_tokens, method.init, method.random_init, method.init_range, method.vocab_top_k) == (
        100,
        "vocab",
        "uniform",
        0.5,
        5000,
    )


def test_label_init_is_one_mean_row_per_label_then_distinct_vocab_rows(adapter):
    table = adapter.input_embeddings.weight.detach().float()
    tokenizer = adapter.tokenizer
    rows = prepared(adapter, init="labels", n_tokens=12)
    assert rows.shape == (12, table.shape[1])
    for i, label in enumerate(LABELS):
        ids = tokenizer.encode(label, add_special_tokens=False)
        assert torch.allclose(rows[i], table[ids].mean(dim=0))
    # the other 9 rows are table rows, all different (drawn without replacement), none special
    rest = rows[len(LABELS) :]
    matches = [torch.nonzero((table == row).all(dim=1)).flatten().tolist() for row in rest]
    picked = [ids[0] for ids in matches]
    assert all(len(ids) >= 1 for ids in matches) and len(set(picked)) == len(picked)
    assert not set(picked) & set(tokenizer.all_special_ids)


def test_a_multi_token_label_is_averaged(adapter):
    table = adapter.input_embeddings.weight.detach().float()
    label = "entertainment politics"  # several sub-words, one row
    ids = adapter.tokenizer.encode(label, add_special_tokens=False)
    assert len(ids) > 1
    rows = prepared(adapter, labels=(label,), init="labels", n_tokens=2)
    assert torch.allclose(rows[0], table[ids].mean(dim=0))
    assert not torch.allclose(rows[0], table[ids[0]])


def test_vocab_rows_come_from_the_first_k_without_replacement(adapter):
    table = adapter.input_embeddings.weight.detach().float()
    k = 30
    rows = prepared(adapter, init="vocab", n_tokens=30, vocab_top_k=k, vocab_skip_special=False)
    # with the full population of 30 rows and 30 tokens, a draw without replacement is a permutation of rows 0..29
    matches = sorted(torch.nonzero((table[:k] == row).all(dim=1)).flatten()[0].item() for row in rows)
    assert matches == list(range(k))


def test_random_init_is_uniform_in_plus_minus_half(adapter):
    rows = prepared(adapter, init="random", n_tokens=200)
    assert rows.min() >= -0.5 and rows.max() < 0.5
    assert rows.min() < -0.45 and rows.max() > 0.45  # both halves of the range are used
    assert abs(rows.mean().item()) < 0.02


def test_random_init_t5x_is_flax_uniform_from_zero(adapter):
    rows = prepared(adapter, init="random", random_init="uniform_t5x", n_tokens=200)
    assert rows.min() >= 0.0 and rows.max() < 0.5 and rows.mean().item() == pytest.approx(0.25, abs=0.02)


def test_random_init_normal_keeps_the_old_option(adapter):
    rows = prepared(adapter, init="random", random_init="normal", init_std=0.02, n_tokens=200)
    assert rows.std().item() == pytest.approx(0.02, rel=0.1)


def test_unknown_random_init_is_refused():
    with pytest.raises(ConfigError, match="random_init 'gauss' is not one of uniform, uniform_t5x, normal"):
        PromptTuning(init="random", random_init="gauss")
