"""BayesPrompt on the classification path: end to end on every text family, the particle write,
the evaluation modes, the particle artefact's reuse, the comparison sweep's config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prompt_bench.build import build_experiment
from prompt_bench.methods.bayesprompt.method import ARTEFACT_FILE, ARTEFACT_KIND
from prompt_bench.run import run_experiment
from tests.helpers.training import LossHistory, fit

FAMILIES = ("tiny_bert", "tiny_roberta", "tiny_t5", "tiny_gpt2")
HEADS = ("verbalizer", "linear", "label_similarity")
# 30 SVGD iterations instead of the official 1000 keep preparation well under a second here.
FAST = (
    "method=bayesprompt",
    "dataset=synthetic",
    "logger=none",
    "method.svgd.iterations=30",
    "method.module.n_tokens=20",
)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("backbone", FAMILIES)
def test_end_to_end_on_every_text_family(make_config, cache_dir, backbone, head):
    """Two short epochs (the particles are written from epoch 1), test, record, prompt file."""
    cfg = make_config(*FAST, f"backbone={backbone}", f"head={head}", "trainer=debug", "trainer.max_epochs=2")
    record = run_experiment(cfg)
    assert record["status"] == "ok", record.get("error")
    info = record["method_info"]
    assert info["eval_particles"] == "sample" and info["num_draw"] == 4 and info["particles"] == 64
    assert info["mixture_components"] == 4 and info["pool_size"] == 256
    metrics = record["metrics"]
    assert 0.0 <= metrics["test/acc"] <= 1.0
    # sample mode: the spread over 5 more scorings of the test set is recorded
    assert metrics["test/draws"] == 5.0 and metrics["test/acc_draws_std"] >= 0.0
    assert metrics["test/acc_draws_min"] <= metrics["test/acc_draws_mean"] <= metrics["test/acc_draws_max"]
    saved = load_file(str(Path(record["run_dir"]) / "prompt.safetensors"))
    assert saved["virtual_tokens"].shape[0] == 2 and saved["prompt_embeddings"].shape[0] == 20
    # epoch 1 wrote an average of 4 particles into both virtual rows: they hold one vector
    assert torch.equal(saved["virtual_tokens"][0], saved["virtual_tokens"][1])
    artefact = load_file(str(cache_dir / ARTEFACT_KIND / info["artefact_key"] / ARTEFACT_FILE))
    assert not torch.allclose(saved["virtual_tokens"][0], artefact["start_features"].mean(0))
    assert torch.equal(saved["particles"], artefact["particles"])


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def test_particle_write_changes_only_the_virtual_rows_in_a_training_step(make_config):
    """With lr 0 the optimizer moves nothing: every change in one real step is the write."""
    cfg = make_config(*FAST, "backbone=tiny_bert", "method/optimizer=adamw", "method.optimizer.lr=0.0")
    experiment = build_experiment(cfg)
    module, method = experiment.module, experiment.method
    method.epochs_done.fill_(method.start_epoch)  # as after epoch 0
    before = snapshot(module)
    fit(experiment, steps=1)
    after = module.state_dict()
    differing = {name for name, tensor in before.items() if not torch.equal(tensor, after[name])}
    assert differing - {"method.epochs_done"} == {"method.virtual_tokens"}  # the counter: the epoch ended
    # the written vector is an average of C = 4 of the particles
    particles = method.sampler.particles
    written = after["method.virtual_tokens"][0]
    distances = torch.cdist(written[None], particles)[0]
    assert distances.min() > 0  # not a single particle: a mean of several
    assert torch.all(after["method.virtual_tokens"] == written)


def test_before_start_epoch_the_start_rows_stay(make_config):
    experiment = build_experiment(make_config(*FAST, "backbone=tiny_bert"))
    method = experiment.method
    experiment.datamodule.setup("fit")
    batch = next(iter(experiment.datamodule.train_dataloader()))
    start = method.virtual_tokens.clone()
    method.train()
    method.prompt(batch)
    assert torch.equal(method.virtual_tokens, start)


def test_eval_mean_is_deterministic_and_sample_is_recorded(make_config, tmp_path):
    mean_run = build_experiment(make_config(*FAST, "backbone=tiny_bert", "method.eval_particles=mean"))
    mean_run.datamodule.setup("fit")
    batch = next(iter(mean_run.datamodule.test_dataloader()))
    module = mean_run.module
    module.method.epochs_done.fill_(1)
    module.eval()
    with torch.no_grad():
        first, second = module(batch), module(batch)
    assert torch.equal(first, second)
    assert torch.allclose(module.method.virtual_tokens[0], module.method.sampler.particles.mean(0))
    assert mean_run.method.record_info()["eval_particles"] == "mean"
    assert mean_run.method.extra_test_metrics(module, [mean_run.datamodule.test_dataloader()]) == {}

    sample_run = build_experiment(make_config(*FAST, "backbone=tiny_bert", run_dir=tmp_path / "sample"))
    assert sample_run.method.record_info()["eval_particles"] == "sample"
    method = sample_run.method
    method.epochs_done.fill_(1)
    method.eval()
    draws = []
    for _ in range(3):
        method.prompt(batch)
        draws.append(method.virtual_tokens[0].clone())
    assert not torch.equal(draws[0], draws[1]) or not torch.equal(draws[1], draws[2])


def test_particle_artefact_is_reused_and_keyed_by_settings(make_config, tmp_path):
    first = build_experiment(make_config(*FAST, "backbone=tiny_bert", "method.svgd.iterations=31"))
    info = first.method.record_info()
    assert not info["artefact_reused"]
    second = build_experiment(
        make_config(*FAST, "backbone=tiny_bert", "method.svgd.iterations=31", "seed=21", run_dir=tmp_path / "second")
    )
    # another seed samples another k-shot split: other particles, another artefact
    assert second.method.record_info()["artefact_key"] != info["artefact_key"]
    third = build_experiment(
        make_config(*FAST, "backbone=tiny_bert", "method.svgd.iterations=31", run_dir=tmp_path / "third")
    )
    assert third.method.record_info()["artefact_reused"]
    assert third.method.record_info()["artefact_key"] == info["artefact_key"]
    assert torch.equal(third.method.sampler.particles, first.method.sampler.particles)
    masked = build_experiment(
        make_config(
            *FAST,
            "backbone=tiny_bert",
            "method.svgd.iterations=31",
            "method.feature.mask_padding=true",
            run_dir=tmp_path / "masked",
        )
    )
    assert masked.method.record_info()["artefact_key"] != info["artefact_key"]


def test_comparison_sweep_composes(make_config):
    preset = make_config("experiment=bayesprompt_vs_pt", "method=bayesprompt")
    assert preset.sweep_name == "bayesprompt_vs_pt"
    assert preset.method.module._target_.endswith("BayesPrompt")


@pytest.mark.parametrize("head", HEADS)
def test_it_learns_with_particles_written_and_only_the_prompt_trains(make_config, head):
    """Particles from the first batch (start_epoch=0), 80 steps as the matrix: the loss falls, test accuracy
    (deterministic mean mode) clears chance, P trains, the backbone stays bit-identical."""
    cfg = make_config(
        *FAST,
        "backbone=tiny_bert",
        f"head={head}",
        "method.module.start_epoch=0",
        "method.eval_particles=mean",
        "method/optimizer=adamw",
        "method.optimizer.lr=0.05",
        "method.head_lr=0.01",
    )
    experiment = build_experiment(cfg)
    module = experiment.module
    backbone_before = {name: p.detach().clone() for name, p in module.backbone.named_parameters()}
    prompt_before = module.method.prompt_embeddings.detach().clone()
    history = LossHistory()
    fit(experiment, steps=80, callbacks=[history])
    losses = history.losses
    assert sum(losses[-5:]) < sum(losses[:5]), f"loss did not decrease: {losses[:5]} -> {losses[-5:]}"
    assert all(torch.equal(p.detach(), backbone_before[name]) for name, p in module.backbone.named_parameters())
    assert not torch.equal(module.method.prompt_embeddings.detach(), prompt_before)
    scores = module.evaluate(experiment.datamodule.test_dataloader())
    assert scores["acc"] > 1.0 / module.num_classes + 0.15, scores
