"""CoOp, CoCoOp and KgCoOp on a tiny random CLIP: context shapes and inits, input dependence, losses,
and that training moves the prompt learner only."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from prompt_bench.backbones.dual import cosine_logits
from prompt_bench.backbones.dual_load import build_dual_encoder
from prompt_bench.build import build_experiment
from prompt_bench.methods.base import MethodContext
from prompt_bench.methods.coop import CoCoOp, CoOp, KgCoOp
from prompt_bench.schedules import warmup_cosine
from tests.helpers.training import fit

NAMES = ("red", "green", "blue")
TRAIN = ("backbone=tiny_clip", "dataset=synthetic_images", "logger=none", "method.optimizer.lr=0.05")


@pytest.fixture(scope="module")
def tiny_clip():
    return build_dual_encoder("tiny_clip", "clip", "tiny", "tiny_clip", class_template="a photo of a {}.")


def prepared(method, adapter, names=NAMES):
    method.prepare(MethodContext(adapter=adapter, label_names=names, cache_dir="unused"))
    return method


def test_coop_random_context_is_small_normal_and_seeded(tiny_clip):
    first = prepared(CoOp(n_ctx=16, seed=3), tiny_clip)
    assert first.ctx.shape == (16, tiny_clip.hidden_size) and first.ctx.dtype == torch.float32
    assert 0.01 < float(first.ctx.std()) < 0.03
    assert torch.equal(first.ctx, prepared(CoOp(n_ctx=16, seed=3), tiny_clip).ctx)
    assert not torch.equal(first.ctx, prepared(CoOp(n_ctx=16, seed=4), tiny_clip).ctx)


def test_coop_text_init_copies_the_token_embeddings(tiny_clip):
    method = prepared(CoOp(n_ctx=16, ctx_init="a photo of a"), tiny_clip)
    ids = tiny_clip.tokenizer("a photo of a", add_special_tokens=False)["input_ids"]
    assert method.n_ctx == len(ids) == 4
    assert torch.equal(method.ctx, tiny_clip.token_embedding.weight[ids])


def test_class_specific_context_has_one_set_per_class(tiny_clip):
    method = prepared(CoOp(n_ctx=2, class_specific=True), tiny_clip)
    assert method.context(torch.zeros(5, tiny_clip.feature_size), len(NAMES)).shape == (3, 2, tiny_clip.hidden_size)
    with pytest.raises(Exception, match="class_specific=false"):
        method.context(torch.zeros(5, tiny_clip.feature_size), 4)


def test_cocoop_context_depends_on_the_input(tiny_clip):
    method = prepared(CoCoOp(n_ctx=4, ctx_init="a photo of a", seed=0), tiny_clip)
    first, second = method.meta_net[0], method.meta_net[2]
    assert (first.in_features, first.out_features) == (tiny_clip.feature_size, tiny_clip.feature_size // 16)
    assert second.out_features == tiny_clip.hidden_size
    features = torch.randn(2, tiny_clip.feature_size)
    context = method.context(features, len(NAMES))
    assert context.shape == (2, 4, tiny_clip.hidden_size)
    assert not torch.allclose(context[0], context[1])
    shift = method.meta_net(F.normalize(features, dim=-1))
    assert torch.allclose(context, method.ctx + shift.unsqueeze(1))


def test_kgcoop_adds_w_times_one_minus_cosine_to_the_hand_crafted_prompt(tiny_clip):
    method = prepared(KgCoOp(n_ctx=4, weight=2.0), tiny_clip)
    hand = tiny_clip.template_features(NAMES)
    class_features = torch.randn(3, tiny_clip.feature_size)
    logits, labels = torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1])
    terms = method.loss(logits, labels, torch.randn(5, tiny_clip.feature_size), class_features)
    expected = 2.0 * (1 - F.cosine_similarity(class_features, hand, dim=-1).mean())
    assert torch.allclose(terms["kg"], expected, atol=1e-6)
    assert torch.allclose(terms["ce"], F.cross_entropy(logits, labels))
    assert float(method.loss(logits, labels, class_features[:1], hand)["kg"]) == pytest.approx(0.0, abs=1e-6)


def lr_per_epoch(max_epochs=10, **options):
    parameters = [torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD([{"params": parameters, "lr": 0.01}, {"params": [], "lr": 0.065}], lr=0.01)
    scheduler = warmup_cosine(optimizer, max_epochs=max_epochs, warmup_epochs=1, warmup_lr=1e-5, **options)
    rates = []
    for _ in range(max_epochs):
        rates.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return rates


def test_warmup_cosine_recounts_after_the_warmup_as_dassl():
    """Dassl (WARMUP_RECOUNT=True): epoch 0 at 1e-5, epoch 1 at the full lr, epoch e at ½lr(1 + cos(π(e − 1)/E))."""
    rates = lr_per_epoch()
    assert rates[0] == pytest.approx([1e-5, 1e-5])
    assert rates[1][0] == pytest.approx(0.01)
    assert rates[2][0] == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi / 10)))
    assert rates[9][0] == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi * 8 / 10)))
    assert rates[5][1] / rates[5][0] == pytest.approx(6.5)


def test_warmup_cosine_without_recount_keeps_the_old_schedule():
    rates = lr_per_epoch(warmup_recount=False)
    assert rates[0][0] == pytest.approx(1e-5)
    assert rates[1][0] == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi / 10)))
    recounted = lr_per_epoch()
    summed_old, summed_dassl = sum(r[0] for r in rates[1:]), sum(r[0] for r in recounted[1:])
    assert summed_old / summed_dassl == pytest.approx(0.82, abs=0.01)  # the "18% lower"
    assert rates[9][0] / recounted[9][0] == pytest.approx(0.26, abs=0.01)


def snapshot(module):
    return {name: p.detach().clone() for name, p in module.named_parameters()}


@pytest.mark.parametrize("method", ["coop", "cocoop", "kgcoop"])
def test_training_moves_the_learner_only(make_config, method):
    experiment = build_experiment(make_config(f"method={method}", *TRAIN))
    module = experiment.module
    towers, learner = snapshot(module.backbone), snapshot(module.method)
    fit(experiment, 6)
    assert all(torch.equal(towers[name], p) for name, p in module.backbone.named_parameters()), "a tower changed"
    moved = {name for name, p in module.method.named_parameters() if not torch.equal(learner[name], p.detach())}
    assert "ctx" in moved
    if method == "cocoop":
        assert any(name.startswith("meta_net.") for name in moved)


def test_coop_scores_are_the_cosine_logits(make_config):
    experiment = build_experiment(make_config("method=coop", *TRAIN))
    experiment.datamodule.setup()
    module = experiment.module.eval()
    batch = next(iter(experiment.datamodule.test_dataloader()[1]))  # the new classes
    features, class_features = module.features(batch, "new")
    expected = cosine_logits(features, class_features, module.backbone.logit_scale())
    assert torch.equal(module(batch, "new"), expected)
    assert class_features.shape == (len(module.class_names["new"]), module.backbone.feature_size)


@pytest.mark.parametrize(
    ("overrides", "interval"),
    [
        (("method=coop", *TRAIN), "epoch"),  # the class site steps Dassl's schedule per epoch
        (("method=coop", *TRAIN, "+method.scheduler_interval=step"), "step"),
        (
            (
                "method=prompt_tuning",
                "backbone=tiny_bert",
                "dataset=synthetic",
                "logger=none",
                "method.scheduler={_target_:torch.optim.lr_scheduler.StepLR,_partial_:true,step_size:2}",
            ),
            "step",
        ),
    ],
)
def test_scheduler_interval_defaults_per_site_and_follows_the_config(make_config, overrides, interval):
    experiment = build_experiment(make_config(*overrides))
    assert experiment.module.configure_optimizers()["lr_scheduler"]["interval"] == interval


def test_an_unknown_scheduler_interval_fails_with_a_sentence(make_config):
    from prompt_bench.errors import ConfigError

    with pytest.raises(ConfigError, match="scheduler_interval 'batch' is not one of step, epoch"):
        build_experiment(make_config("method=coop", *TRAIN, "+method.scheduler_interval=batch"))
