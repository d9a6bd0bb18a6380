"""Deep-prefix init (issue 14, item 1): the official P-tuning v2 / PANDA models are built with
`from_pretrained`, which re-initialises the prefix encoder with the backbone's `_init_weights`:
embedding and linear weights N(0, 0.02²), linear biases 0. `prefix_init_std: null` keeps the
PyTorch constructors' init (table N(0, 1)), the behaviour before the fix.

The std checks are statistical: for N i.i.d. normal draws the sample std has a relative standard
error of about 1/sqrt(2N), so every table here is large enough that the 5% tolerance is >= 5 errors wide.
"""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from prompt_bench.backbones.prefixes import PrefixGeometry
from prompt_bench.build import build_experiment
from prompt_bench.errors import ConfigError
from prompt_bench.methods.prefix import PrefixEncoder
from prompt_bench.methods.prompt_tuning import PromptTuning

GEOMETRY = PrefixGeometry(n_layers=4, n_heads=4, head_dim=16)  # width 2·4·4·16 = 512
OFFICIAL_STD = 0.02  # BertConfig.initializer_range, used by BertPreTrainedModel._init_weights


def assert_normal(values: torch.Tensor, std: float, rel: float = 0.05) -> None:
    """values look like N(0, std²): sample std within rel of std, mean within 5 standard errors of 0."""
    flat = values.detach().flatten().double()
    assert 1 / (2 * flat.numel()) ** 0.5 * 5 <= rel, "table too small for this tolerance"
    assert flat.std().item() == pytest.approx(std, rel=rel)
    assert abs(flat.mean().item()) < 5 * std / flat.numel() ** 0.5


def test_prefix_table_is_n_0_002_by_default():
    encoder = PrefixEncoder(n_tokens=32, geometry=GEOMETRY, model_dim=64)
    assert encoder.prefix_embeddings.shape == (32, 512)
    assert_normal(encoder.prefix_embeddings, OFFICIAL_STD)


def test_prefix_projection_weights_are_n_0_002_and_biases_zero():
    encoder = PrefixEncoder(n_tokens=32, geometry=GEOMETRY, model_dim=64, projection=True, projection_hidden=256)
    assert_normal(encoder.prefix_embeddings, OFFICIAL_STD, rel=0.1)  # E: 32 x 64 = 2048 draws
    first, second = encoder.prefix_mlp[0], encoder.prefix_mlp[2]
    assert_normal(first.weight, OFFICIAL_STD)  # 256 x 64
    assert_normal(second.weight, OFFICIAL_STD)  # 512 x 256
    assert torch.count_nonzero(first.bias) == 0 and torch.count_nonzero(second.bias) == 0


def test_null_std_keeps_the_pytorch_constructor_init():
    """The old behaviour: nn.Embedding's N(0, 1) table, nn.Linear's Kaiming-uniform (non-zero biases)."""
    encoder = PrefixEncoder(n_tokens=32, geometry=GEOMETRY, model_dim=64, init_std=None)
    assert_normal(encoder.prefix_embeddings, 1.0)
    projected = PrefixEncoder(n_tokens=32, geometry=GEOMETRY, model_dim=64, projection=True, init_std=None)
    assert torch.count_nonzero(projected.prefix_mlp[0].bias) > 0
    bound = 1 / 64**0.5  # Kaiming-uniform bound of a Linear with fan_in 64
    assert projected.prefix_mlp[0].weight.abs().max() <= bound


def test_the_same_seed_gives_the_same_table_whatever_ran_before():
    first = PrefixEncoder(n_tokens=4, geometry=GEOMETRY, model_dim=64, seed=3).prefix_embeddings
    torch.randn(100)
    second = PrefixEncoder(n_tokens=4, geometry=GEOMETRY, model_dim=64, seed=3).prefix_embeddings
    assert torch.equal(first, second)


@pytest.mark.parametrize(("override", "std"), [((), OFFICIAL_STD), (("method.module.prefix_init_std=1.0",), 1.0)])
def test_deep_prompt_config_draws_the_configured_std(make_config, override, std):
    """tiny_bert: 20 tokens x 2·2·64 = 5120 draws."""
    deep = ("method.module.depth=deep", "method.module.n_tokens=20")
    cfg = make_config("backbone=tiny_bert", "dataset=synthetic", "logger=none", *deep, *override)
    table = build_experiment(cfg).method.prefix_encoder.prefix_embeddings
    assert table.shape == (20, 256)
    assert_normal(table, std, rel=0.08)


def test_panda_and_prompt_tuning_default_to_the_official_std(make_config):
    for method in ("prompt_tuning", "panda", "spot"):
        module = instantiate(make_config(f"method={method}").method.module)
        assert module.prefix_init_std == OFFICIAL_STD, method


def test_a_non_positive_std_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match="prefix_init_std must be > 0"):
        PromptTuning(depth="deep", init="random", prefix_init_std=0.0)
