"""head=generate (T5 text-to-text, the seq2seq default): the token loss on label text + EOS (T5X, with
z-loss), greedy decoding with exact match where a text that is no label counts wrong, the metrics
that report it (lit/exact_match.py), and end-to-end runs of prompt tuning, SPoT and VIP on tiny_t5."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from torch.nn import functional as F
from torchmetrics.classification import MulticlassF1Score
from transformers.modeling_outputs import BaseModelOutput

from prompt_bench.backbones import BackboneOutput
from prompt_bench.build import build_experiment
from prompt_bench.errors import ConfigError
from prompt_bench.heads import GenerateHead, VerbalizerHead
from prompt_bench.lit.exact_match import MacroF1WithInvalid, exact_match_metrics, predicted_ids
from prompt_bench.run import run_experiment
from tests.conftest import compose_config

LABELS = ("red", "green", "blue")
WORDS = ["dark red", "green", "light blue sky"]  # 2, 1 and 3 tokens: targets of different lengths


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("generate")
    return instantiate(compose_config(["backbone=tiny_t5"], run_dir, run_dir / "cache").backbone)


def encoder_output(adapter, batch: int = 4, length: int = 5, seed: int = 0) -> BackboneOutput:
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch, length, adapter.hidden_size, generator=generator)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[0, -2:] = 0  # a padded row: the decoder must not read past its mask
    return BackboneOutput(hidden=hidden, attention_mask=mask, n_prompt=0)


def hand_token_losses(adapter, output: BackboneOutput, label_text: str, row: int, z_loss: float) -> torch.Tensor:
    """CE + z·(log Z)² per target token of label text + EOS for one example, from the raw model."""
    label_ids = adapter.tokenizer(label_text, add_special_tokens=False)["input_ids"]
    target = torch.tensor([label_ids + [adapter.model.config.eos_token_id]])
    decoder_input = torch.tensor([[adapter.model.config.decoder_start_token_id] + label_ids])
    logits = adapter.model(
        encoder_outputs=(output.hidden[row : row + 1],),
        attention_mask=output.attention_mask[row : row + 1],
        decoder_input_ids=decoder_input,
    ).logits[0]
    cross_entropy = F.cross_entropy(logits, target[0], reduction="none")
    return cross_entropy + z_loss * logits.logsumexp(-1).square()


@pytest.mark.parametrize("reduction", ["sequence_sum", "batch_sum"])
def test_loss_is_the_cross_entropy_on_label_text_and_eos_with_z_loss(tiny_t5, reduction):
    head = GenerateHead(LABELS, tiny_t5, label_words=WORDS, z_loss=1e-4, loss_reduction=reduction)
    output = encoder_output(tiny_t5)
    labels = torch.tensor([2, 0, 1, 2])
    with torch.no_grad():
        scores, loss = head.training_scores(output, {"labels": labels}, tiny_t5)
        per_example = [hand_token_losses(tiny_t5, output, WORDS[y], b, 1e-4).sum() for b, y in enumerate(labels)]
        # rank scores: log p(label text + EOS | x), no z-loss
        rank = [[-hand_token_losses(tiny_t5, output, w, b, 0.0).sum() for w in WORDS] for b in range(4)]
    expected = torch.stack(per_example)
    expected = expected.sum() if reduction == "batch_sum" else expected.mean()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(scores, torch.tensor(rank), rtol=1e-5, atol=1e-5)
    assert head.decoder_inputs.shape == (3, 4) and head.target_ids[1].tolist()[2:] == [-100, -100]


def test_z_loss_is_the_t5x_coefficient_and_zero_removes_it(tiny_t5):
    output, labels = encoder_output(tiny_t5), {"labels": torch.tensor([0, 1, 2, 0])}
    with torch.no_grad():
        with_z = GenerateHead(LABELS, tiny_t5, label_words=WORDS).training_scores(output, labels, tiny_t5)[1]
        without = GenerateHead(LABELS, tiny_t5, label_words=WORDS, z_loss=0.0).training_scores(output, labels, tiny_t5)
        plain = [hand_token_losses(tiny_t5, output, WORDS[y], b, 0.0).sum() for b, y in enumerate([0, 1, 2, 0])]
    torch.testing.assert_close(without[1], torch.stack(plain).mean(), rtol=1e-5, atol=1e-5)
    assert with_z > without[1]  # 1e-4 · (log Z)² per token on top (prompt-tuning t5_1_1_prompt.gin:107)


def test_a_decoder_prefix_is_read_but_carries_no_loss(tiny_t5):
    head = GenerateHead(LABELS, tiny_t5, decoder_prefix="color :")
    prefix = tiny_t5.tokenizer("color :", add_special_tokens=False)["input_ids"]
    red = tiny_t5.tokenizer("red", add_special_tokens=False)["input_ids"]
    start, eos = tiny_t5.model.config.decoder_start_token_id, tiny_t5.model.config.eos_token_id
    assert head.decoder_inputs[0].tolist() == [start, *prefix, *red]
    assert head.target_ids[0].tolist() == [-100] * len(prefix) + red + [eos]


def test_greedy_decode_is_hugging_face_greedy_generation(tiny_t5):
    output = encoder_output(tiny_t5, seed=3)
    with torch.no_grad():
        ours = tiny_t5.greedy_decode(output, [], max_new_tokens=4)
        theirs = tiny_t5.model.generate(
            encoder_outputs=BaseModelOutput(last_hidden_state=output.hidden),
            attention_mask=output.attention_mask,
            do_sample=False,
            num_beams=1,
            max_new_tokens=4,
        )[:, 1:]
    eos = tiny_t5.model.config.eos_token_id
    for row_ours, row_theirs in zip(ours.tolist(), theirs.tolist()):
        stop = row_theirs.index(eos) + 1 if eos in row_theirs else len(row_theirs)
        assert row_ours[:stop] == row_theirs[:stop]


def test_exact_match_counts_an_output_that_is_no_label_wrong(tiny_t5, monkeypatch):
    head = GenerateHead(LABELS, tiny_t5, label_words=WORDS)
    ids = {word: tiny_t5.tokenizer(word, add_special_tokens=False)["input_ids"] for word in WORDS}
    eos, pad = tiny_t5.model.config.eos_token_id, tiny_t5.tokenizer.pad_token_id
    width = head.label_targets.max_new_tokens  # longest label (3) + EOS
    assert width == 4
    rows = [
        ids["green"] + [eos],  # class 1
        ids["dark red"] + ids["green"],  # a label followed by more text, never ended: invalid
        ids["dark red"][:1] + [eos],  # "dark": a prefix of a label is no label: invalid
        ids["light blue sky"] + [eos],  # class 2
    ]
    forced = torch.tensor([row + [pad] * (width - len(row)) for row in rows])
    monkeypatch.setattr(tiny_t5, "greedy_decode", lambda output, prefix, max_new_tokens: forced)
    scores = head(encoder_output(tiny_t5), {}, tiny_t5)
    assert torch.equal(scores[0], torch.tensor([float("-inf"), 0.0, float("-inf")]))
    assert torch.isinf(scores[1]).all() and torch.isinf(scores[2]).all()  # rows that name no class
    assert predicted_ids(scores).tolist() == [1, 3, 3, 2]

    metrics = exact_match_metrics(num_classes=3)
    labels = torch.tensor([1, 0, 2, 0])
    values = {name: float(metric(predicted_ids(scores), labels)) for name, metric in metrics.items()}
    assert values["acc"] == 0.25 and values["invalid_rate"] == 0.5
    # per class (tp, fp, fn): red (0, 0, 2), green (1, 0, 0), blue (0, 1, 1): F1 = (0 + 1 + 0) / 3
    assert values["f1"] == pytest.approx(1 / 3)


def test_macro_f1_with_no_invalid_prediction_is_torchmetrics_macro_f1():
    generator = torch.Generator().manual_seed(0)
    predictions, labels = (
        torch.randint(0, 4, (50,), generator=generator),
        torch.randint(0, 4, (50,), generator=generator),
    )
    predictions[predictions == 3] = 2  # class 3 is never predicted; class 0 .. 2 are
    ours = MacroF1WithInvalid(4)(predictions, labels)
    theirs = MulticlassF1Score(num_classes=4, average="macro")(predictions, labels)
    torch.testing.assert_close(ours, theirs)


def test_generate_is_the_seq2seq_default_and_rank_classification_stays_an_option(make_config):
    auto = build_experiment(make_config("backbone=tiny_t5", "dataset=synthetic", "logger=none"))
    assert isinstance(auto.head, GenerateHead) and auto.head.abstains
    assert auto.head.z_loss == 1e-4 and auto.head.loss_reduction == "sequence_sum"
    rank = build_experiment(make_config("backbone=tiny_t5", "dataset=synthetic", "logger=none", "head=verbalizer"))
    assert isinstance(rank.head, VerbalizerHead) and not rank.head.abstains
    with pytest.raises(ConfigError, match="head=generate decodes the label text with an encoder-decoder"):
        build_experiment(make_config("backbone=tiny_bert", "dataset=synthetic", "logger=none", "head=generate"))


def test_label_texts_the_tokenizer_writes_alike_are_refused(tiny_t5):
    with pytest.raises(ConfigError, match=r"\['red'\] name several classes"):
        GenerateHead(LABELS, tiny_t5, label_words=["Red", "red", "blue"])  # the tiny vocabulary is uncased


RUNS = {
    "prompt_tuning": ("method=prompt_tuning", "dataset=synthetic"),
    "vip": ("method=vip", "dataset=synthetic", "method.module.n_tokens=4", "method.module.code_norm=null"),
    "spot": ("method=spot", "transfer=tweets_airline_to_cars"),
}


@pytest.mark.parametrize("method", sorted(RUNS))
def test_end_to_end_run_with_the_generate_head(make_config, method):
    overrides = (*RUNS[method], "backbone=tiny_t5", "trainer=debug", "logger=csv")
    cfg = make_config(*overrides)
    assert cfg.head.name == "auto"  # head=auto picks generate on T5
    record = run_experiment(cfg)
    assert record["status"] == "ok", record.get("error")
    metrics = record["metrics"]
    for split in ("test", "zero_shot"):
        assert 0.0 <= metrics[f"{split}/invalid_rate"] <= 1.0
        assert metrics[f"{split}/acc"] <= 1.0 - metrics[f"{split}/invalid_rate"] + 1e-6  # invalid counts wrong
    logged = next(Path(record["run_dir"]).rglob("metrics.csv"))
    with logged.open() as handle:
        assert "val/invalid_rate" in next(csv.reader(handle))
