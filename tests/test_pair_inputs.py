"""Two-field tasks as text pairs (dataset.pair_encoding): [SEP] between the fields, token types 0/1 that
reach the backbone, joined texts as the option, caches keyed on the choice."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from hydra.utils import instantiate

from prompt_bench.build import build_experiment
from prompt_bench.data import csv_file
from prompt_bench.data.datamodule import PadCollator
from prompt_bench.data.inputs import encode_examples, pair_inputs, segments, token_type_ids
from prompt_bench.errors import ConfigError


@pytest.fixture
def pair_csv(tmp_path):
    rows = [
        {"premise": f"the cat sat on mat {i}", "hypothesis": f"a cat sat {i}", "label": "ab"[i % 2]} for i in range(40)
    ]
    path = tmp_path / "pairs.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture
def tiny(make_config):
    def _adapter(name: str):
        return instantiate(make_config(f"backbone={name}").backbone)

    return _adapter


def test_sources_keep_the_fields_and_subsets_carry_them(pair_csv):
    task = csv_file(pair_csv, text_column=["premise", "hypothesis"], label_column="label")
    assert task.train.fields is not None and len(task.train.fields) == len(task.train.texts)
    cells = task.train.fields[0]
    assert task.train.texts[0] == " ".join(cells) and len(cells) == 2
    assert task.train.subset([2, 0]).fields == (task.train.fields[2], task.train.fields[0])
    assert csv_file(pair_csv, text_column="premise", label_column="label").train.fields is None
    assert segments(("w", "s1", "s2")) == ("w s1", "s2") and segments(("", "b")) == ("", "b")


def test_pair_encoding_is_the_tokenizers_pair_with_sep_between_and_types_0_then_1(pair_csv, tiny):
    adapter = tiny("tiny_bert")
    tokenizer = adapter.tokenizer
    examples = csv_file(pair_csv, text_column=["premise", "hypothesis"], label_column="label").train.subset([0, 1, 2])
    pairs = pair_inputs(adapter, "pair", max_length=32)
    ids = encode_examples(examples, lambda texts: adapter.encode_texts(texts, 32), pairs)
    firsts, seconds = [c[0] for c in examples.fields], [c[1] for c in examples.fields]
    official = tokenizer(firsts, seconds, truncation=True, max_length=32, padding=True, return_tensors="pt")
    assert ids == [tokenizer(a, b, truncation=True, max_length=32)["input_ids"] for a, b in zip(firsts, seconds)]
    first = ids[0]
    assert first[0] == tokenizer.cls_token_id and first[-1] == tokenizer.sep_token_id
    assert first.count(tokenizer.sep_token_id) == 2  # [CLS] a [SEP] b [SEP]
    sep = first.index(tokenizer.sep_token_id)
    assert tokenizer.decode(first[1:sep]) == firsts[0] and tokenizer.decode(first[sep + 1 : -1]) == seconds[0]
    batch = PadCollator(tokenizer.pad_token_id, type_sep_id=pairs.type_sep_id)([(row, 0) for row in ids])
    assert torch.equal(batch["input_ids"], official["input_ids"])
    assert torch.equal(batch["token_type_ids"], official["token_type_ids"])  # 0 through the first [SEP], then 1
    assert set(batch["token_type_ids"][0].tolist()) == {0, 1}


def test_joined_is_the_option_and_other_families_join(pair_csv, tiny):
    adapter = tiny("tiny_bert")
    examples = csv_file(pair_csv, text_column=["premise", "hypothesis"], label_column="label").train.subset([0])
    joined = encode_examples(
        examples, lambda texts: adapter.encode_texts(texts, 32), pair_inputs(adapter, "joined", 32)
    )
    assert joined == adapter.encode_texts(list(examples.texts), 32)
    assert joined[0].count(adapter.tokenizer.sep_token_id) == 1
    assert pair_inputs(tiny("tiny_t5"), "pair", 32) is None  # a seq2seq tokenizer builds no [SEP] pairs
    single = csv_file(pair_csv, text_column="premise", label_column="label").train
    assert pair_inputs(adapter, "pair", 32, examples=single) is None  # one field: no pairs, no token types
    assert (
        pair_inputs(adapter, "pair", 32, template="hypothesis: {b}. premise: {a}") is None
    )  # a template makes one text
    roberta_pairs = pair_inputs(tiny("tiny_roberta"), "pair", 32)
    assert roberta_pairs is not None and roberta_pairs.type_sep_id is None  # a pair, but no token types
    with pytest.raises(ConfigError, match="dataset.pair_encoding 'both' is not one of pair, joined"):
        pair_inputs(adapter, "both", 32)
    tokens = torch.tensor([[101, 5, 102, 6, 7, 102, 0]])
    assert token_type_ids(tokens, (tokens != 0).long(), 102).tolist() == [[0, 0, 0, 1, 1, 1, 0]]


def test_token_types_reach_the_backbone_with_input_and_deep_prompts(tiny):
    adapter = tiny("tiny_bert").eval()
    ids = torch.tensor([[101, 2000, 102, 2001, 2002, 102]])
    mask = torch.ones_like(ids)
    types = torch.tensor([[0, 0, 0, 1, 1, 1]])
    with torch.no_grad():
        plain = adapter(ids, mask).hidden
        typed = adapter(ids, mask, token_type_ids=types).hidden
        direct = adapter.model.base_model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        assert not torch.allclose(plain, typed) and torch.allclose(typed, direct, atol=1e-5)
        prompt = torch.randn(1, 3, 64)
        prompted = adapter(ids, mask, prompt=prompt, token_type_ids=types)
        zero_typed = adapter(ids, mask, prompt=prompt, token_type_ids=torch.zeros_like(types))
        assert prompted.hidden.shape == (1, 9, 64) and not torch.allclose(prompted.hidden, zero_typed.hidden)
        assert torch.allclose(zero_typed.hidden, adapter(ids, mask, prompt=prompt).hidden)  # prompt positions: type 0
        geometry = adapter.prefix_geometry
        prefixes = torch.randn(geometry.n_layers, 2, 1, geometry.n_heads, 4, geometry.head_dim)
        deep = adapter(ids, mask, layer_prefixes=prefixes, token_type_ids=types).hidden
        assert not torch.allclose(deep, adapter(ids, mask, layer_prefixes=prefixes).hidden)


def test_a_run_batches_pairs_with_token_types_and_caches_per_encoding(make_config, pair_csv):
    common = (
        "dataset=csv",
        f"dataset.task.path={pair_csv}",
        "dataset.task.text_column=[premise,hypothesis]",
        "dataset.k_shot=4",
        "backbone=tiny_bert",
        "logger=none",
    )
    paired = build_experiment(make_config(*common))
    assert paired.datamodule.pairs is not None
    paired.datamodule.setup("fit")
    batch = next(iter(paired.datamodule.train_dataloader()))
    assert "token_type_ids" in batch and int(batch["token_type_ids"].max()) == 1
    assert int((batch["input_ids"] == paired.adapter.tokenizer.sep_token_id).sum(1).min()) == 2
    joined = build_experiment(make_config(*common, "dataset.pair_encoding=joined"))
    joined.datamodule.setup("fit")
    assert joined.datamodule.pairs is None and "token_type_ids" not in next(iter(joined.datamodule.train_dataloader()))
    assert joined.datamodule.cache_path != paired.datamodule.cache_path
    with torch.no_grad():
        assert paired.module(batch).shape == (batch["input_ids"].shape[0], 2)


def test_cb_is_selected_on_accuracy_and_encoded_as_premise_hypothesis_pairs(make_config, monkeypatch):
    import datasets

    from prompt_bench.data.sources import hub

    def toy_cb(path, name):  # super_glue/cb's columns and labels, offline
        labels = datasets.ClassLabel(names=["entailment", "contradiction", "neutral"])
        features = datasets.Features(
            {"premise": datasets.Value("string"), "hypothesis": datasets.Value("string"), "label": labels}
        )
        rows = {
            "premise": [f"premise number {i}" for i in range(60)],
            "hypothesis": [f"hypothesis {i}" for i in range(60)],
            "label": [i % 3 for i in range(60)],
        }
        split = datasets.Dataset.from_dict(rows, features=features)
        return datasets.DatasetDict({"train": split, "validation": split})

    monkeypatch.setattr(hub, "load_hub_dataset", toy_cb)
    experiment = build_experiment(
        make_config("dataset=cb", "dataset.k_shot=4", "backbone=tiny_bert", "head=linear", "logger=none")
    )
    assert experiment.split.metric == "acc" and experiment.module.primary_metric == "acc"  # monitor: val/acc
    experiment.datamodule.setup("fit")
    first = experiment.datamodule.encoded_parts()["train"][0]
    tokenizer = experiment.adapter.tokenizer
    premise, hypothesis = experiment.split.train.fields[0]
    assert first == tokenizer(premise, hypothesis)["input_ids"]
