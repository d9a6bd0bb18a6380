"""Input templates (prompt_bench/data/templates.py, `dataset.template`): formatting, the sources that
apply them, and VIP's templates as the seq2seq defaults of the SuperGLUE / MNLI configs."""

from __future__ import annotations

import csv

import pytest

from prompt_bench.data import csv_file, hf_dataset
from prompt_bench.data.templates import format_rows
from prompt_bench.errors import ConfigError

# declare-lab/VIP verbalizer_template/<task>_tem.txt:1, with OpenPrompt's text_a / text_b as {a} / {b}
VIP_TEMPLATES = {
    "cb": "hypothesis: {b}. premise: {a}",
    "mnli": "hypothesis: {b}. premise: {a}",
    "rte": "sentence1: {a} sentence2: {b}",
    "wic": "sentence1: {sentence1} sentence2: {sentence2} word: {word}",
    "copa": "choice1\uff1a {choice1} choice2: {choice2} premise: {premise} question: {question}",
    "wsc": '{text} "{span2_text}" refers to "{span1_text}"',
}


def test_letters_follow_the_field_order_and_names_work_too():
    rows = [("A cat sat", "A cat is sitting"), ("", "empty premise")]
    texts = format_rows("hypothesis: {b}. premise: {a}", ["premise", "hypothesis"], rows)
    assert texts == ["hypothesis: A cat is sitting. premise: A cat sat", "hypothesis: empty premise. premise:"]
    assert format_rows("{hypothesis} / {a}", ["premise", "hypothesis"], rows[:1]) == ["A cat is sitting / A cat sat"]


def test_vip_wsc_template_fills_the_spans_in_quotes():
    row = ("Mark told Pete many lies about himself.", "Pete", "himself")
    text = format_rows(VIP_TEMPLATES["wsc"], ["text", "span1_text", "span2_text"], [row])[0]
    assert text == 'Mark told Pete many lies about himself. "himself" refers to "Pete"'


@pytest.mark.parametrize(
    ("template", "match"),
    [
        ("premise: {c}", r"uses \{c\}, which is not a text field; the fields here are \{a\}, \{b\}"),
        ("premise: {label}", r"by name \{premise\}, \{hypothesis\}"),
        ("premise: {}", r"uses \{\}"),
        ("premise: {a", "not a valid format string"),
    ],
)
def test_unknown_placeholders_are_refused_with_the_known_ones(template, match):
    with pytest.raises(ConfigError, match=match):
        format_rows(template, ["premise", "hypothesis"], [("p", "h")])


def test_csv_source_fills_the_template_instead_of_joining(tmp_path):
    path = tmp_path / "pairs.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["premise", "hypothesis", "label"])
        writer.writeheader()
        writer.writerows({"premise": f"p{i}", "hypothesis": f"h{i}", "label": "ab"[i % 2]} for i in range(10))
    joined = csv_file(path, text_column=["premise", "hypothesis"], label_column="label", test_fraction=0.5)
    templated = csv_file(
        path, ["premise", "hypothesis"], "label", test_fraction=0.5, template="hypothesis: {b}. premise: {a}"
    )
    assert "p3 h3" in joined.train.texts + joined.test.texts
    assert "hypothesis: h3. premise: p3" in templated.train.texts + templated.test.texts


def test_hub_source_fills_the_template(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    features = datasets.Features(
        {
            "premise": datasets.Value("string"),
            "hypothesis": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["yes", "no"]),
        }
    )
    data_dir = tmp_path / "toy_nli"
    data_dir.mkdir()
    for split_name in ("train", "validation"):
        columns = {
            "premise": [f"p{i}" for i in range(6)],
            "hypothesis": [f"h{i}" for i in range(6)],
            "label": [0, 1] * 3,
        }
        datasets.Dataset.from_dict(columns, features=features).to_parquet(str(data_dir / f"{split_name}.parquet"))
    task = hf_dataset(
        str(data_dir), text_fields=["premise", "hypothesis"], test_split="validation", template=VIP_TEMPLATES["cb"]
    )
    assert task.train.texts[2] == "hypothesis: h2. premise: p2"
    assert (
        hf_dataset(str(data_dir), text_fields=["premise", "hypothesis"], test_split="validation").test.texts[2]
        == "p2 h2"
    )


@pytest.mark.parametrize("dataset", sorted(VIP_TEMPLATES))
def test_vip_templates_are_the_seq2seq_default_and_only_there(make_config, dataset):
    t5 = make_config(f"dataset={dataset}", "backbone=tiny_t5")
    assert t5.dataset.template == t5.dataset.task.template == VIP_TEMPLATES[dataset]
    bert = make_config(f"dataset={dataset}", "backbone=tiny_bert")
    assert bert.dataset.template is None and bert.dataset.task.template is None  # fields joined (or paired) as before
    own = make_config(f"dataset={dataset}", "backbone=tiny_bert", 'dataset.template="{a}!"')
    assert own.dataset.task.template == "{a}!"
    plain = make_config(f"dataset={dataset}", "backbone=tiny_t5", "dataset.template=null")
    assert plain.dataset.task.template is None


def test_a_transfer_source_follows_its_own_template(make_config):
    cfg = make_config("transfer=sst2_to_rte", "backbone=tiny_t5", "method=spot")
    assert cfg.dataset.task.template == VIP_TEMPLATES["rte"]
    assert cfg.transfer.source.task.template is None  # sst2 has no VIP default: one field, unchanged


def test_sources_without_fields_have_no_template_key(make_config):
    cfg = make_config("dataset=synthetic", "backbone=tiny_t5")
    assert "template" not in cfg.dataset and "template" not in cfg.dataset.task
    assert make_config("dataset=csv").dataset.task.template is None
