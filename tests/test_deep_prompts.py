"""Deep prompts (P-tuning v2, method.module.depth=deep): key/value prefixes at every attention layer.

The central check is an exact equivalence that pins down the semantics for every family: an
input-level prompt P makes, at each layer, keys and values at the n prompt positions; handed in as
deep prefixes, those same keys and values must give the input positions exactly the hidden states
they had behind P (same layer order, head layout, key-side mask and positions).
"""

from __future__ import annotations

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from prompt_bench.backbones import BackboneAdapter, EncoderAdapter
from prompt_bench.backbones.prefixes import cache_keyword
from prompt_bench.build import build_experiment
from prompt_bench.errors import ConfigError
from prompt_bench.run import run_experiment
from tests.conftest import compose_config
from tests.helpers.adapters import ADAPTER_CASES, TEXTS, encoded, make_adapter, tiny_adapter
from tests.helpers.training import changed, snapshot, train

DEEP = ("method.module.depth=deep", "method.module.n_tokens=20")
TINY_FAST = ("method/optimizer=adamw", "method.optimizer.lr=0.05", "method.head_lr=0.01")


def key_value_projections(adapter: BackboneAdapter) -> list[tuple[torch.nn.Module, str]]:
    """Per layer, the module whose output holds that layer's keys and values (test-side knowledge)."""
    model_type = adapter.model.config.model_type
    base = adapter.model.base_model
    if model_type in ("bert", "roberta"):
        return [(layer.attention.self, "bert") for layer in base.encoder.layer]
    if model_type == "mpnet":
        return [(layer.attention.attn, "mpnet") for layer in base.encoder.layer]
    if model_type == "t5":
        return [(block.layer[0].SelfAttention, "t5") for block in adapter.model.get_encoder().block]
    return [(block.attn.c_attn, "gpt2") for block in base.h]


def prompt_keys_values(adapter: BackboneAdapter, input_ids, attention_mask, prompt):
    """Run with an input-level prompt; return its output and the (N, 2, B, H, n, h) keys and values
    every layer computed at the n prompt positions."""
    geometry, n_prompt, batch = adapter.prefix_geometry, prompt.shape[1], input_ids.shape[0]
    captured, handles = [], []
    for module, kind in key_value_projections(adapter):
        store: dict[str, torch.Tensor] = {}
        captured.append(store)
        if kind == "gpt2":
            handles.append(
                module.register_forward_hook(
                    lambda m, args, out, s=store: s.update(zip("qkv", out.split(out.shape[-1] // 3, dim=-1)))
                )
            )
            continue
        key_name, value_name = {"bert": ("key", "value"), "mpnet": ("k", "v"), "t5": ("k", "v")}[kind]
        for name, slot in ((key_name, "k"), (value_name, "v")):
            handles.append(
                getattr(module, name).register_forward_hook(
                    lambda m, args, out, s=store, slot=slot: s.__setitem__(slot, out)
                )
            )
    output = adapter(input_ids, attention_mask, prompt=prompt)
    for handle in handles:
        handle.remove()

    def heads(states):  # (B, n+L, H*h) -> (B, H, n, h) at the prompt positions
        return states[:, :n_prompt].reshape(batch, n_prompt, geometry.n_heads, geometry.head_dim).transpose(1, 2)

    return output, torch.stack([torch.stack([heads(s["k"]), heads(s["v"])]) for s in captured])


@pytest.mark.parametrize("case", ADAPTER_CASES)
def test_prefixes_equal_to_an_input_prompts_keys_and_values_give_the_same_hidden_states(case, cache_dir):
    adapter = make_adapter(case, cache_dir)
    input_ids, attention_mask = encoded(adapter)
    n_prompt = 5
    prompt = torch.randn(input_ids.shape[0], n_prompt, adapter.hidden_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        behind_prompt, prefixes = prompt_keys_values(adapter, input_ids, attention_mask, prompt)
        deep = adapter(input_ids, attention_mask, layer_prefixes=prefixes)
    assert prefixes.shape == adapter.prefix_geometry.prefix_shape(len(TEXTS), n_prompt)
    assert deep.hidden.shape == (*input_ids.shape, adapter.hidden_size)  # input positions only
    assert deep.n_prompt == 0 and torch.equal(deep.attention_mask, attention_mask)
    real = attention_mask.bool()
    torch.testing.assert_close(deep.hidden[real], behind_prompt.hidden[:, n_prompt:][real], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ADAPTER_CASES)
def test_every_layers_prefix_reaches_the_output(case, cache_dir):
    adapter = make_adapter(case, cache_dir)
    input_ids, attention_mask = encoded(adapter)
    shape = adapter.prefix_geometry.prefix_shape(input_ids.shape[0], 3)
    prefixes = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = adapter(input_ids, attention_mask, layer_prefixes=prefixes).hidden
        for layer in range(shape[0]):
            for key_or_value in (0, 1):
                perturbed = prefixes.clone()
                perturbed[layer, key_or_value] += 1.0
                hidden = adapter(input_ids, attention_mask, layer_prefixes=perturbed).hidden
                assert not torch.allclose(hidden, reference), f"layer {layer} {'kv'[key_or_value]} prefix had no effect"


def test_padding_does_not_leak_into_deep_prompted_states(cache_dir):
    adapter = tiny_adapter("tiny_bert", cache_dir)
    input_ids, attention_mask = encoded(adapter)
    prefixes = torch.randn(adapter.prefix_geometry.prefix_shape(1, 4), generator=torch.Generator().manual_seed(2))
    length = int(attention_mask[1].sum())
    with torch.no_grad():
        padded = adapter(input_ids[1:], attention_mask[1:], layer_prefixes=prefixes).hidden[0, :length]
        alone = adapter(input_ids[1:, :length], attention_mask[1:, :length], layer_prefixes=prefixes).hidden[0]
    torch.testing.assert_close(padded, alone, rtol=1e-5, atol=1e-5)


def test_deep_trains_only_the_prefix_and_learns_synthetic(make_config, tmp_path):
    overrides = ["backbone=tiny_bert", "head=verbalizer", "dataset=synthetic", "logger=none", *DEEP, *TINY_FAST]
    experiment = build_experiment(make_config(*overrides))
    experiment.datamodule.setup("fit")
    module = experiment.module
    assert module.method.prompt({"input_ids": torch.zeros(2, 3, dtype=torch.long)}) is None  # no input prompt
    backbone_before, method_before = snapshot(module.backbone), snapshot(module.method)
    assert set(method_before) == {"prefix_encoder.prefix_embeddings"}
    assert module.method.prefix_encoder.prefix_embeddings.dtype == torch.float32

    history = train(experiment, 60)

    assert not changed(backbone_before, module.backbone), "the frozen backbone changed"
    assert changed(method_before, module.method) == set(method_before), "the prefix did not train"
    first, last = history.losses[:5], history.losses[-5:]
    assert sum(last) / len(last) < sum(first) / len(first), f"loss did not decrease: {first} -> {last}"
    accuracy = module.evaluate(experiment.datamodule.test_dataloader())["acc"]
    assert accuracy > 0.25 + 0.2, f"test accuracy {accuracy:.2f} is not clearly above chance"

    # save -> load into a freshly built model reproduces the logits exactly
    path = tmp_path / "prefix.safetensors"
    save_file({k: v.contiguous() for k, v in module.method.prompt_tensors().items()}, str(path))
    fresh = build_experiment(make_config(*overrides, run_dir=tmp_path / "fresh"))
    fresh.module.method.load_prompt_tensors(load_file(str(path)))
    batch = next(iter(experiment.datamodule.test_dataloader()))
    module.eval()
    fresh.module.eval()
    with torch.no_grad():
        assert torch.equal(module(batch), fresh.module(batch))


def test_prefix_projection_trains_the_mlp_and_round_trips(make_config, tmp_path):
    overrides = [
        "backbone=tiny_gpt2",
        "head=linear",
        "dataset=synthetic",
        "logger=none",
        *DEEP,
        *TINY_FAST,
        "method.module.prefix_projection=true",
        "method.module.prefix_hidden=32",
    ]
    experiment = build_experiment(make_config(*overrides))
    experiment.datamodule.setup("fit")
    tensors = experiment.method.prompt_tensors()
    assert tensors["prefix_embeddings"].shape == (20, 64)  # (n, d), projected to 2·N·d = 256 by the MLP
    assert tensors["prefix_mlp.2.weight"].shape == (256, 32)
    before = snapshot(experiment.module.method)
    train(experiment, 3)
    assert changed(before, experiment.module.method) == set(before)

    path = tmp_path / "prompt.safetensors"
    save_file({k: v.contiguous() for k, v in experiment.method.prompt_tensors().items()}, str(path))
    loaded = build_experiment(
        make_config(
            *overrides, "method.module.init=file", f"method.module.init_file={path}", run_dir=tmp_path / "fresh"
        )
    )
    for name, tensor in experiment.method.prompt_tensors().items():
        assert torch.equal(loaded.method.prompt_tensors()[name], tensor)


def test_depth_input_is_the_plain_prompt_path(make_config):
    """depth=input (the default) adds nothing: logits equal [P; E(x)] through the body, by hand."""
    plain = ("backbone=tiny_bert", "head=verbalizer", "dataset=synthetic", "logger=none")
    experiment = build_experiment(make_config(*plain))
    explicit = build_experiment(make_config(*plain, "method.module.depth=input"))
    experiment.datamodule.setup("fit")
    batch = next(iter(experiment.datamodule.test_dataloader()))
    module, adapter = experiment.module.eval(), experiment.adapter
    assert module.method.layer_prefixes(batch) is None
    with torch.no_grad():
        prompt = module.method.prompt_embeddings.unsqueeze(0).expand(batch["input_ids"].shape[0], -1, -1)
        embeds = torch.cat([prompt, adapter.embed(batch["input_ids"])], dim=1)
        mask = torch.cat(
            [
                batch["attention_mask"].new_ones(batch["attention_mask"].shape[0], prompt.shape[1]),
                batch["attention_mask"],
            ],
            dim=1,
        )
        by_hand = adapter.body(embeds, mask)
        assert torch.equal(adapter(batch["input_ids"], batch["attention_mask"], prompt=prompt).hidden, by_hand)
        assert torch.equal(module(batch), explicit.module.eval()(batch))


def test_minilm_takes_deep_prompts_with_label_similarity(make_config):
    experiment = build_experiment(
        make_config(
            "backbone=minilm",
            "head=label_similarity",
            "dataset=synthetic",
            "logger=none",
            *DEEP,
            "method.module.n_tokens=4",
        )
    )
    geometry = experiment.adapter.prefix_geometry
    assert (geometry.n_layers, geometry.n_heads, geometry.head_dim) == (6, 12, 32)
    assert experiment.method.prompt_tensors()["prefix_embeddings"].shape == (4, 2 * 6 * 384)
    experiment.datamodule.setup("fit")
    batch = next(iter(experiment.datamodule.train_dataloader()))
    batch = {k: v[:4] for k, v in batch.items()}
    prefixes = experiment.method.layer_prefixes(batch)
    assert prefixes.shape == (6, 2, 4, 12, 4, 32)
    logits = experiment.module(batch)
    assert logits.shape == (4, len(experiment.split.label_names)) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert experiment.method.prefix_encoder.prefix_embeddings.grad.abs().sum() > 0


def test_bf16_backbone_keeps_an_fp32_prefix(make_config):
    experiment = build_experiment(
        make_config(
            "backbone=tiny_bert",
            "backbone.dtype=bfloat16",
            "head=verbalizer",
            "dataset=synthetic",
            "logger=none",
            *DEEP,
        )
    )
    experiment.datamodule.setup("fit")
    batch = next(iter(experiment.datamodule.train_dataloader()))
    assert experiment.method.prefix_encoder.prefix_embeddings.dtype == torch.float32
    logits = experiment.module(batch)
    logits.float().sum().backward()
    assert experiment.method.prefix_encoder.prefix_embeddings.grad.dtype == torch.float32


def test_spot_deep_starts_from_the_source_prefix(tmp_path):
    # A cache of its own: test_transfer counts the source prompts in the shared one.
    overrides = [
        "method=spot",
        "transfer=tweets_airline_to_cars",
        "backbone=tiny_bert",
        "trainer=debug",
        "logger=none",
        *DEEP,
    ]
    experiment = build_experiment(compose_config(overrides, tmp_path / "run", tmp_path / "cache"))
    (source_file,) = (tmp_path / "cache" / "artefacts" / "source_prompt").glob("*/prompt.safetensors")
    source_prefix = load_file(str(source_file))["prefix_embeddings"]
    assert torch.equal(experiment.method.prefix_encoder.prefix_embeddings.detach(), source_prefix)


def test_prefix_of_the_wrong_shape_names_the_expected_shape(make_config, tmp_path):
    wrong = tmp_path / "prefix.safetensors"
    save_file({"prefix_embeddings": torch.zeros(20, 2 * 6 * 384)}, str(wrong))  # MiniLM's table, not tiny_bert's
    record = run_experiment(
        make_config(
            "backbone=tiny_bert",
            "trainer=debug",
            "logger=none",
            "dataset=synthetic",
            *DEEP,
            "method.module.init=file",
            f"method.module.init_file={wrong}",
        )
    )
    assert record["status"] == "failed"
    assert "'prefix_embeddings': (20, 256)" in record["error"] and "(20, 4608)" in record["error"]


def test_deep_rejects_token_inits_and_projection_without_deep(make_config):
    tiny = ("backbone=tiny_bert", "trainer=debug", "logger=none", "dataset=synthetic")
    record = run_experiment(make_config(*tiny, *DEEP, "method.module.init=labels"))
    assert record["status"] == "failed" and "init=labels" in record["error"] and "init=random" in record["error"]
    record = run_experiment(make_config(*tiny, "method.module.prefix_projection=true"))
    assert record["status"] == "failed" and "set depth=deep" in record["error"]


def test_a_family_without_prefix_support_fails_at_build_time_naming_the_supported_ones(make_config, monkeypatch):
    monkeypatch.setattr(EncoderAdapter, "takes_layer_prefixes", False)
    with pytest.raises(ConfigError, match="deep prompts work with backbone families seq2seq, causal"):
        build_experiment(make_config("backbone=tiny_bert", "dataset=synthetic", "logger=none", *DEEP))


def test_the_cache_keyword_is_read_from_the_signature_under_either_transformers_name():
    def new_api(inputs_embeds=None, cache=None): ...

    def old_api(inputs_embeds=None, past_key_values=None): ...

    def no_cache(inputs_embeds=None): ...

    assert [cache_keyword(f) for f in (new_api, old_api, no_cache)] == ["cache", "past_key_values", None]


@pytest.mark.parametrize("case", ["tiny_bert", "tiny_t5", "tiny_gpt2"])
def test_the_installed_transformers_gives_every_family_a_cache_keyword(case, cache_dir):
    adapter = tiny_adapter(case, cache_dir)
    assert adapter.layer_prefix_support() is None
    keyword = adapter._attention_cache_keyword if case == "tiny_t5" else adapter._base_cache_keyword
    assert keyword in ("cache", "past_key_values")


def test_a_model_that_takes_no_cache_is_refused_naming_its_class_and_the_transformers_version(cache_dir):
    adapter = tiny_adapter("tiny_bert", cache_dir)
    base = adapter.model.base_model
    base.forward = lambda inputs_embeds=None, attention_mask=None, position_ids=None: None  # an API without a cache
    sentence = adapter.layer_prefix_support()
    assert f"({type(base).__name__}, transformers {transformers.__version__})" in sentence
    assert "takes no key/value cache" in sentence and " can" not in sentence.replace("cannot", "")
