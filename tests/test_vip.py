"""VIP: shapes on every family, the straight-through path, the moving-average codebook by hand,
sampled (official, default) and deterministic eval, P from rows 0..n-1, the frozen PLM in eval mode,
learning `synthetic`, and exact save/load of all its state."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from safetensors.torch import load_file, save_file
from torch.nn import functional as F

from prompt_bench.build import build_experiment
from prompt_bench.errors import ConfigError
from prompt_bench.methods.vip import VIP
from prompt_bench.methods.vip.quantizer import SampledQuantizer
from prompt_bench.run import run_experiment
from tests.helpers.training import fit

# Tiny random backbones have embedding norms ~0.2: codes of norm 100 would drown the input, so the
# tests match the codebook to the backbone (code_norm=null); the official 100 is checked on its own.
TINY = ("method=vip", "dataset=synthetic", "logger=none", "method.module.n_tokens=4", "method.module.code_norm=null")
FAMILIES = ("tiny_bert", "tiny_roberta", "tiny_t5", "tiny_gpt2")


def build(make_config, *overrides: str, backbone: str = "tiny_bert", **kwargs):
    experiment = build_experiment(make_config(*TINY, f"backbone={backbone}", *overrides, **kwargs))
    experiment.datamodule.setup("fit")
    return experiment


def first_batch(experiment, split: str = "train") -> dict[str, torch.Tensor]:
    return next(iter(getattr(experiment.datamodule, f"{split}_dataloader")()))


@pytest.mark.parametrize("backbone", FAMILIES)
def test_prompt_and_logit_shapes_on_every_family(make_config, backbone):
    experiment = build(make_config, backbone=backbone)
    method, batch = experiment.method, first_batch(experiment)
    batch_size, hidden = batch["input_ids"].shape[0], experiment.adapter.hidden_size
    assert method.prompt(batch).shape == (batch_size, 4, hidden)
    assert method.quantizer.codebook.shape == (40, hidden)  # K = 10 n
    assert experiment.module(batch).shape == (batch_size, 4)


def test_official_codebook_rows_and_norm(make_config):
    experiment = build(make_config, "method.module.code_norm=100")
    table = experiment.adapter.input_embeddings.weight.detach()
    codebook = experiment.method.quantizer.codebook
    assert torch.allclose(codebook.norm(dim=-1), torch.full((40,), 100.0))
    assert torch.allclose(codebook, 100 * F.normalize(table[4:44], dim=-1))  # rows n .. n+K-1


def test_prompt_takes_rows_0_to_n_minus_1_and_the_codebook_the_rows_after(make_config):
    """Official: OpenPrompt's SoftTemplate copies rows [:n] (init_from_vocab), the codebook rows [n:n+K]."""
    experiment = build(make_config, "method.module.code_norm=100")
    table = experiment.adapter.input_embeddings.weight.detach()
    assert torch.equal(experiment.method.prompt_embeddings.detach(), table[:4])
    assert torch.allclose(experiment.method.quantizer.codebook, 100 * F.normalize(table[4:44], dim=-1))
    vocab = build(make_config, "method.module.init=vocab").method  # the former default stays an option
    assert not torch.equal(vocab.prompt_embeddings.detach(), table[:4])


def test_the_frozen_plm_stays_in_eval_mode_while_vip_trains(make_config):
    """Official plm_eval_mode: True: the backbone's dropout is off in training; the CQ module trains."""
    experiment = build(make_config)
    modes = []

    class Modes(pl.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            backbone = {m.training for m in experiment.adapter.model.modules()}
            modes.append((backbone, experiment.method.contextualizer.training))

    fit(experiment, steps=3, callbacks=[Modes()])
    assert modes == [({False}, True)] * 3


def test_straight_through_gradient_reaches_prompt_and_contextualizer(make_config):
    experiment = build(make_config)
    module, method, batch = experiment.module, experiment.method, first_batch(experiment)
    module.train()
    cross_entropy = F.cross_entropy(module(batch), batch["labels"])
    cross_entropy.backward()  # the task loss alone: its gradient crosses the quantiser unchanged
    assert method.prompt_embeddings.grad.abs().sum() > 0
    for name, parameter in method.contextualizer.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, f"no gradient reached {name}"
    assert not method.quantizer.codebook.requires_grad


def test_codebook_is_a_buffer_no_optimizer_holds(make_config):
    experiment = build(make_config)
    method = experiment.method
    assert "quantizer.codebook" in dict(method.named_buffers())
    assert "quantizer.codebook" in method.state_dict()
    assert all(parameter is not method.quantizer.codebook for parameter in method.parameters())
    groups = experiment.module.configure_optimizers().param_groups
    assert [(group["name"], group["lr"]) for group in groups] == [("prompt", 0.3), ("vip_module", 1e-4)]
    assert sum(len(group["params"]) for group in groups) == len(list(method.parameters()))


def test_ema_update_by_hand_on_one_token():
    """Codes c = ±100 (d = 1), p^c = 90: D = (100, 36100), so all r = 10 draws pick code 0."""
    quantizer = SampledQuantizer(torch.tensor([[100.0], [-100.0]])).train()
    output = quantizer(torch.tensor([[[90.0]]]))
    assert output.counts.tolist() == [[10.0, 0.0]]
    assert output.straight_through.item() == pytest.approx(100.0)  # q = 10 · c_0 / 10
    assert output.commitment.item() == pytest.approx(0.1 * (100 - 90) ** 2)
    # N = 0.99 · 1/2 + 0.01 · (1, 0) = (0.505, 0.495); ΣN = 1; Laplace: (N + 0.01) / 1.02
    smoothed = [0.515 / 1.02, 0.505 / 1.02]
    assert quantizer.cluster_size.tolist() == pytest.approx(smoothed)
    # C = 0.99 C + 0.01 · dW / N with dW = (90, 0)
    assert quantizer.codebook.squeeze(1).tolist() == pytest.approx([99 + 0.9 / smoothed[0], -99.0])


def hand_update(codebook, cluster_size, flat, counts, r=10, decay=0.99, epsilon=0.01, textbook_sums=None):
    """The moving-average rules written out per code k (see SampledQuantizer)."""
    n_codes = codebook.shape[0]
    new_size = decay * cluster_size + (1 - decay) * counts.sum(0) / r
    total = new_size.sum()
    smoothed = (new_size + epsilon) / (total + n_codes * epsilon) * total
    new_codebook = torch.empty_like(codebook)
    new_sums = None if textbook_sums is None else torch.empty_like(codebook)
    for k in range(n_codes):
        dw_k = sum(counts[i, k] * flat[i] for i in range(flat.shape[0])) / r
        if textbook_sums is None:
            new_codebook[k] = decay * codebook[k] + (1 - decay) * dw_k / smoothed[k]
        else:
            new_sums[k] = decay * textbook_sums[k] + (1 - decay) * dw_k
            new_codebook[k] = new_sums[k] / smoothed[k]
    return new_codebook, (new_size if textbook_sums is not None else smoothed), new_sums


@pytest.mark.parametrize("textbook", [False, True], ids=["official", "textbook"])
def test_codebook_moves_only_by_the_ema_rule_while_training(make_config, monkeypatch, textbook):
    experiment = build(make_config, f"method.module.textbook_ema={str(textbook).lower()}")
    quantizer = experiment.method.quantizer
    start = {name: buffer.clone() for name, buffer in quantizer.named_buffers()}
    steps = []
    update = quantizer.ema_update
    monkeypatch.setattr(
        quantizer,
        "ema_update",
        lambda flat, counts: (steps.append((flat.clone(), counts.clone())), update(flat, counts)),
    )
    fit(experiment, steps=6)
    assert len(steps) == 6  # one update per training step, none in any other pass

    codebook, cluster_size, sums = start["codebook"], start["cluster_size"], start.get("code_sums")
    for flat, counts in steps:
        codebook, cluster_size, sums = hand_update(codebook, cluster_size, flat, counts, textbook_sums=sums)
    assert torch.allclose(quantizer.codebook, codebook, atol=1e-5)
    assert torch.allclose(quantizer.cluster_size, cluster_size, atol=1e-7)
    assert not torch.equal(quantizer.codebook, start["codebook"])

    experiment.module.eval()  # no update outside training
    before = quantizer.codebook.clone()
    experiment.module(first_batch(experiment, "test"))
    assert torch.equal(quantizer.codebook, before)


@pytest.mark.parametrize("eval_code", ["expected", "nearest"])
def test_deterministic_eval_gives_identical_logits(make_config, eval_code):
    experiment = build(make_config, "method.sample_at_eval=false", f"method.module.eval_code={eval_code}")
    module, batch = experiment.module, first_batch(experiment, "test")
    module.eval()
    with torch.no_grad():
        assert torch.equal(module(batch), module(batch))


def test_eval_samples_by_default_stochastic_but_repeats_with_a_seed(make_config):
    """Official: the quantiser samples at eval too (prompt_gen_module.py samples unconditionally)."""
    experiment = build(make_config)
    assert experiment.method.quantizer.sample_at_eval
    module, batch = experiment.module, first_batch(experiment, "test")
    module.eval()
    with torch.no_grad():
        torch.manual_seed(0)
        first = module(batch)
        second = module(batch)
        torch.manual_seed(0)
        repeated = module(batch)
    assert not torch.equal(first, second)
    assert torch.equal(first, repeated)


def test_epoch_diagnostics_are_logged(make_config):
    experiment = build(make_config, "trainer=debug")
    trainer = fit(experiment, steps=4)  # synthetic: 64 train examples, batch 8 -> the first epoch ends
    logged = trainer.callback_metrics
    for name in ("codebook_perplexity", "codes_used", "commitment_epoch", "quantized_norm", "prompt_norm"):
        assert f"train/{name}" in logged, f"train/{name} was not logged"
    assert 1.0 <= float(logged["train/codebook_perplexity"]) <= 40.0
    assert 1 <= float(logged["train/codes_used"]) <= 40


def test_vip_learns_synthetic(make_config):
    experiment = build(
        make_config,
        "method/optimizer=adamw",
        "method.optimizer.lr=0.05",
        "method.module.module_lr=1e-3",
        "method.module.n_tokens=8",
    )
    losses = []

    class Losses(pl.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            losses.append(float(outputs["loss"]))

    fit(experiment, steps=80, callbacks=[Losses()])
    assert sum(losses[-5:]) < sum(losses[:5]), f"loss did not decrease: {losses[:5]} -> {losses[-5:]}"
    assert experiment.module.evaluate(experiment.datamodule.test_dataloader())["acc"] > 0.4  # chance 0.25


def seeded(module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The module's logits with the global generator reset, so sampled codes repeat."""
    torch.manual_seed(0)
    return module(batch)


def test_save_load_round_trips_prompt_module_and_codebook(make_config, tmp_path):
    experiment = build(make_config)
    fit(experiment, steps=4)
    saved = experiment.method.prompt_tensors()
    assert {"prompt_embeddings", "quantizer.codebook", "quantizer.cluster_size", "contextualizer.fc_in.weight"} <= set(
        saved
    )
    path = tmp_path / "prompt.safetensors"
    save_file({name: tensor.contiguous() for name, tensor in saved.items()}, str(path))

    fresh = build(make_config, "seed=99", "method.module.init=vocab", run_dir=tmp_path / "fresh")  # another init
    assert not torch.equal(fresh.method.quantizer.codebook, experiment.method.quantizer.codebook)
    fresh.method.load_prompt_tensors(load_file(str(path)))
    batch = first_batch(experiment, "test")
    experiment.module.eval()
    fresh.module.eval()
    with torch.no_grad():  # eval samples codes (official): the same seed, the same draws
        assert torch.equal(seeded(experiment.module, batch), seeded(fresh.module, batch))

    # a Lightning checkpoint keeps the same state (trainable and buffers), never the backbone
    checkpoint = {"state_dict": experiment.module.state_dict()}
    experiment.module.on_save_checkpoint(checkpoint)
    assert "method.quantizer.codebook" in checkpoint["state_dict"]
    assert not any(key.startswith("backbone.") for key in checkpoint["state_dict"])
    restored = build(make_config, "seed=99", "method.module.init=vocab", run_dir=tmp_path / "restored")
    restored.module.load_state_dict(checkpoint["state_dict"], strict=False)
    restored.module.eval()
    with torch.no_grad():
        assert torch.equal(seeded(experiment.module, batch), seeded(restored.module, batch))


def test_deep_vip_is_refused():
    with pytest.raises(ConfigError, match="depth=input"):
        VIP(depth="deep", init="random")


def test_record_says_which_eval_rule_was_used(make_config):
    record = run_experiment(make_config(*TINY, "backbone=tiny_bert", "trainer=debug"))
    assert record["status"] == "ok", record.get("error")
    method = record["config"]["method"]
    assert method["sample_at_eval"] is True and method["module"]["eval_code"] == "expected"
    assert method["backbone_dropout"] is False  # official plm_eval_mode: True


def test_official_defaults_and_sweep_preset_compose(make_config):
    from hydra.utils import instantiate

    cfg = make_config("method=vip")
    method = instantiate(cfg.method.module)
    assert (method.n_tokens, method.n_codes, method.module_lr, cfg.method.optimizer.lr) == (100, 1000, 1e-4, 0.3)
    # the official code builds transformers' Adafactor (src/train.py:292-316), weight decay left at 0.0
    assert cfg.method.optimizer._target_ == "transformers.optimization.Adafactor"
    assert cfg.method.optimizer.weight_decay == 0.0
    assert method.quantizer_options == dict(
        n_samples=10,
        temperature=100.0,
        commitment_cost=0.1,
        ema_decay=0.99,
        ema_epsilon=0.01,
        textbook_ema=False,
        eval_code="expected",
        sample_at_eval=True,
    )
    assert method.code_norm == 100.0 and method.context_options["width"] == 32
    assert method.init == "first_rows" and cfg.method.backbone_dropout is False
    preset = make_config("experiment=vip_vs_prompt_tuning", "method=vip")
    assert preset.sweep_name == "vip_vs_prompt_tuning"
