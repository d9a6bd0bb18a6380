"""PEFT round trip: an exported adapter, loaded by PeftModel.from_pretrained, computes prompt_bench's
hidden states; a PEFT adapter directory loads back through init=file."""

from __future__ import annotations

import json

import pytest
import torch

from prompt_bench.errors import ConfigError
from prompt_bench.export.peft import export_refusal, write_peft_adapter
from prompt_bench.export.peft_files import ADAPTER_CONFIG, ADAPTER_WEIGHTS, load_prompt_file
from prompt_bench.methods.base import MethodContext
from prompt_bench.methods.prompt_tuning import PromptTuning
from prompt_bench.methods.vip.method import VIP
from tests.helpers.adapters import ADAPTER_CASES, encoded, make_adapter

peft = pytest.importorskip("peft")

# (case, depth) pairs whose PEFT layout cannot match, with a word of the sentence that says why.
REFUSED = {("tiny_t5", "deep"): "decoder", ("tiny_mpnet", "deep"): "MPNet"}


def trained_method(adapter, depth: str, tmp_path, **options) -> PromptTuning:
    """A prepared prompt with large random values (so a misplaced row changes the output)."""
    method = PromptTuning(n_tokens=3, init="random", init_std=1.0, depth=depth, seed=5, **options)
    method.prepare(MethodContext(adapter=adapter, label_names=("a", "b"), cache_dir=str(tmp_path)))
    with torch.no_grad():
        for parameter in method.parameters():
            parameter.normal_(0.0, 0.5)
    return method.eval()


def prompt_bench_hidden(adapter, method, input_ids, attention_mask):
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    with torch.no_grad():
        output = adapter(
            input_ids, attention_mask, prompt=method.prompt(batch), layer_prefixes=method.layer_prefixes(batch)
        )
    return output.hidden, output.attention_mask


def peft_hidden(adapter, adapter_dir, input_ids, attention_mask):
    model = peft.PeftModel.from_pretrained(adapter.model, str(adapter_dir)).eval()
    extra = {}
    if adapter.family == "seq2seq":
        extra["decoder_input_ids"] = torch.zeros(input_ids.shape[0], 1, dtype=torch.long)
    with torch.no_grad():
        output = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, **extra)
    if adapter.family == "seq2seq":
        return output.encoder_last_hidden_state, None
    return output.hidden_states[-1], getattr(output, "logits", None)


def lm_logits(adapter, hidden):
    """prompt_bench's vocabulary logits from its hidden states: the MLM head, or GPT-2's output embeddings."""
    with torch.no_grad():
        if adapter.family == "causal":
            return adapter.model.get_output_embeddings()(hidden)
        return adapter._mlm_head()(hidden)


@pytest.mark.parametrize("depth", ["input", "deep"])
@pytest.mark.parametrize("case", ADAPTER_CASES)
def test_peft_loads_the_exported_prompt_and_computes_the_same_hidden_states(case, depth, cache_dir, tmp_path):
    adapter = make_adapter(case, cache_dir)
    method = trained_method(adapter, depth, tmp_path)
    input_ids, attention_mask = encoded(adapter)
    reason = write_peft_adapter(tmp_path, method, adapter, base_model=case)
    if (case, depth) in REFUSED:
        assert reason and REFUSED[case, depth] in reason
        assert not (tmp_path / ADAPTER_CONFIG).exists()
        return
    assert reason is None
    config = json.loads((tmp_path / ADAPTER_CONFIG).read_text())
    assert config["peft_type"] == ("PREFIX_TUNING" if depth == "deep" else "PROMPT_TUNING")
    assert config["num_virtual_tokens"] == 3 and config["base_model_name_or_path"] == case
    expected, mask = prompt_bench_hidden(adapter, method, input_ids, attention_mask)
    got, logits = peft_hidden(adapter, tmp_path, input_ids, attention_mask)
    assert got.shape == expected.shape
    valid = mask.bool()  # padded positions are masked out of every head
    torch.testing.assert_close(got[valid], expected[valid], rtol=1e-5, atol=1e-5)
    if logits is not None:  # the LM heads (MLM verbalizer, next token) read the same logits
        assert case in ("tiny_bert", "tiny_roberta", "tiny_gpt2")
        torch.testing.assert_close(logits[valid], lm_logits(adapter, expected)[valid], rtol=1e-5, atol=1e-5)
    # and the prompt mattered: without it the states differ
    plain = adapter(input_ids, attention_mask).hidden
    n = expected.shape[1] - plain.shape[1]
    assert not torch.allclose(expected[:, n:][attention_mask.bool()], plain[attention_mask.bool()], atol=1e-3)


def test_a_projected_prefix_is_exported_as_its_table(cache_dir, tmp_path):
    adapter = make_adapter("tiny_bert", cache_dir)
    method = trained_method(adapter, "deep", tmp_path, prefix_projection=True, prefix_hidden=16)
    input_ids, attention_mask = encoded(adapter)
    assert write_peft_adapter(tmp_path, method, adapter, base_model="tiny_bert") is None
    assert json.loads((tmp_path / ADAPTER_CONFIG).read_text())["prefix_projection"] is False
    expected, mask = prompt_bench_hidden(adapter, method, input_ids, attention_mask)
    got, _ = peft_hidden(adapter, tmp_path, input_ids, attention_mask)
    torch.testing.assert_close(got[mask.bool()], expected[mask.bool()], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("depth", ["input", "deep"])
def test_init_file_reads_a_peft_adapter_directory(depth, cache_dir, tmp_path):
    adapter = make_adapter("tiny_gpt2", cache_dir)
    source = trained_method(adapter, depth, tmp_path)
    write_peft_adapter(tmp_path, source, adapter, base_model="tiny_gpt2")
    loaded = PromptTuning(n_tokens=3, init="file", init_file=str(tmp_path), depth=depth)
    loaded.prepare(MethodContext(adapter=adapter, label_names=("a", "b"), cache_dir=str(tmp_path)))
    for name, tensor in source.prompt_tensors().items():
        assert torch.equal(loaded.prompt_tensors()[name], tensor)


def test_init_file_names_the_shape_a_peft_adapter_must_have(cache_dir, tmp_path):
    adapter = make_adapter("tiny_bert", cache_dir)
    write_peft_adapter(tmp_path, trained_method(adapter, "input", tmp_path), adapter, base_model="tiny_bert")
    wrong = PromptTuning(n_tokens=5, init="file", init_file=str(tmp_path))
    with pytest.raises(ConfigError, match=r"prompt_embeddings of shape \(5, 64\).*n_tokens"):
        wrong.prepare(MethodContext(adapter=adapter, label_names=("a", "b"), cache_dir=str(tmp_path)))


def test_an_inconsistent_or_foreign_adapter_is_refused_with_a_sentence(cache_dir, tmp_path):
    adapter = make_adapter("tiny_bert", cache_dir)
    write_peft_adapter(tmp_path, trained_method(adapter, "input", tmp_path), adapter, base_model="tiny_bert")
    config = json.loads((tmp_path / ADAPTER_CONFIG).read_text())
    (tmp_path / ADAPTER_CONFIG).write_text(json.dumps({**config, "token_dim": 32}))
    with pytest.raises(ConfigError, match="token_dim=32.*inconsistent"):
        load_prompt_file(tmp_path)
    (tmp_path / ADAPTER_CONFIG).write_text(json.dumps({**config, "peft_type": "LORA"}))
    with pytest.raises(ConfigError, match="LORA adapter"):
        load_prompt_file(tmp_path)
    (tmp_path / ADAPTER_CONFIG).unlink()
    with pytest.raises(ConfigError, match="without adapter_config.json"):
        load_prompt_file(tmp_path)
    assert (tmp_path / ADAPTER_WEIGHTS).exists()


def test_input_dependent_prompts_are_not_exported(cache_dir):
    adapter = make_adapter("tiny_bert", cache_dir)
    assert "static prompt" in export_refusal(VIP.__new__(VIP), adapter)
