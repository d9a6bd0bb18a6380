"""The pooler head (BERT's sequence-classification head, PANDA's and P-tuning v2's) and head=auto's order."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from prompt_bench.backbones import BackboneOutput
from prompt_bench.errors import ConfigError
from prompt_bench.heads import HEADS, PoolerHead, auto_head_name


@pytest.fixture
def adapter_of(make_config):
    def _adapter(*overrides: str):
        return instantiate(make_config(*overrides).backbone)

    return _adapter


def test_pooler_head_init_is_bert_s_n_0_002_with_zero_bias(adapter_of):
    adapter = adapter_of("backbone=tiny_bert")  # an MLM model: no pooler of its own, so a fresh one
    torch.manual_seed(0)
    head = PoolerHead(label_names=[f"c{i}" for i in range(200)], adapter=adapter)
    assert head.classifier.weight.shape == (200, 64) and head.pooler.weight.shape == (64, 64)
    for layer in (head.classifier, head.pooler):
        assert float(layer.weight.mean()) == pytest.approx(0.0, abs=2e-3)
        assert float(layer.weight.std()) == pytest.approx(0.02, rel=0.05)  # 12,800 and 4,096 draws
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias))
    assert not head.pretrained_pooler and head.pooler.weight.requires_grad  # a fresh pooler trains
    assert head.dropout.p == 0.1


def test_pooler_head_uses_the_backbones_own_pooler_frozen_on_the_first_input_token(adapter_of):
    adapter = adapter_of("backbone=tiny_bert", "backbone.lm_head=false")  # BertModel: has a pooler
    head = PoolerHead(label_names=["a", "b", "c"], adapter=adapter).eval()
    own = adapter.model.pooler.dense
    assert (
        head.pretrained_pooler
        and torch.equal(head.pooler.weight, own.weight)
        and torch.equal(head.pooler.bias, own.bias)
    )
    assert not head.pooler.weight.requires_grad and head.classifier.weight.requires_grad  # frozen, as officially
    assert [name for name, p in head.named_parameters() if p.requires_grad] == ["classifier.weight", "classifier.bias"]
    hidden = torch.randn(2, 7, 64)
    output = BackboneOutput(hidden=hidden, attention_mask=torch.ones(2, 7), n_prompt=3)
    logits = head(output, {}, adapter)
    expected = head.classifier(torch.tanh(own(hidden[:, 3])))  # h_0: the first token after 3 prompt positions
    assert logits.shape == (2, 3) and torch.allclose(logits, expected, atol=1e-6)


def test_pooler_head_refuses_non_encoders(adapter_of):
    with pytest.raises(ConfigError, match="head=pooler reads the first token of an encoder"):
        PoolerHead(label_names=["a", "b"], adapter=adapter_of("backbone=tiny_t5"))


def test_auto_head_order_required_then_preferred_then_backbone_default():
    assert HEADS["pooler"] is PoolerHead
    assert auto_head_name("linear", "pooler", "encoder", "verbalizer") == "linear"  # required wins
    assert auto_head_name(None, "pooler", "encoder", "verbalizer") == "pooler"  # then preferred
    assert auto_head_name(None, "pooler", "seq2seq", "verbalizer") == "verbalizer"  # not for this family
    assert auto_head_name(None, None, "encoder", "label_similarity") == "label_similarity"


def test_panda_gets_the_pooler_head_and_so_do_its_source_and_teacher_runs(make_config, tmp_path):
    from prompt_bench.build import build_head
    from prompt_bench.methods.panda import PANDA
    from prompt_bench.methods.prompt_tuning import PromptTuning
    from prompt_bench.transfer.pairs import source_config, teacher_config

    cfg = make_config("method=panda", "transfer=tweets_airline_to_cars", "backbone=tiny_bert")
    assert cfg.head.name == "auto" and PANDA.preferred_head == "pooler"
    adapter = instantiate(cfg.backbone)
    assert build_head(cfg.head, adapter, ("a", "b"), PANDA(), "panda").name == "pooler"
    assert build_head(cfg.head, adapter, ("a", "b"), PromptTuning(), "prompt_tuning").name == "verbalizer"
    for derived in (source_config(cfg, tmp_path), teacher_config(cfg, tmp_path)):
        assert derived.head.name == "pooler" and derived.head._target_ == "prompt_bench.heads.PoolerHead"
    explicit = make_config("method=panda", "transfer=tweets_airline_to_cars", "backbone=tiny_bert", "head=linear")
    assert source_config(explicit, tmp_path).head.name == "linear"  # an explicit head is kept
    spot = make_config("method=spot", "transfer=tweets_airline_to_cars", "backbone=tiny_bert")
    assert source_config(spot, tmp_path).head.name == "auto"  # SPoT prefers none: its source keeps auto
