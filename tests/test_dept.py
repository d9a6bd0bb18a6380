"""DePT's CAT head and fusion, its reduction to the base method at λ = 0, and base-to-new runs that
write base/new/H (tiny CLIP on synthetic images and on Fashion-MNIST)."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch.nn import functional as F

from prompt_bench.backbones.dual import cosine_logits
from prompt_bench.build import build_experiment
from prompt_bench.data.sources.images import FASHION_MNIST_DIR, fashion_mnist_available
from prompt_bench.methods.dept import CatHead, FiLM
from prompt_bench.run import run_experiment
from prompt_bench.scores import harmonic_mean
from tests.helpers.training import fit as helpers_fit

TINY = ("backbone=tiny_clip", "dataset=synthetic_images", "logger=none")
D, C_BASE = 32, 3


def test_film_starts_as_the_identity():
    film = FiLM(D)
    assert torch.equal(film.scale, torch.ones(D)) and torch.equal(film.shift, torch.zeros(D))
    features = torch.randn(4, D)
    assert torch.equal(film(features), features)


def test_cat_head_shapes():
    head = CatHead(D, C_BASE)
    assert head.classifier.weight.shape == (C_BASE, D) and head.classifier.bias.shape == (C_BASE,)
    assert head.input_logits(torch.randn(5, D)).shape == (5, C_BASE)
    assert head.training_logits(torch.randn(5, D), torch.randn(5, D)).shape == (10, C_BASE)
    assert isinstance(CatHead(D, C_BASE, channel_transform=False).film_text, torch.nn.Identity)


@pytest.fixture
def dept_experiment(make_config):
    def _build(*overrides: str):
        experiment = build_experiment(make_config("method=dept", *TINY, *overrides))
        experiment.datamodule.setup()
        return experiment

    return _build


def test_cat_head_is_sized_for_the_base_classes(dept_experiment):
    experiment = dept_experiment()
    assert experiment.method.cat.classifier.out_features == len(experiment.module.class_names["base"]) == C_BASE


def test_loss_is_the_weighted_sum_of_itm_and_cat_cross_entropies(dept_experiment):
    method = dept_experiment().method
    input_features, class_features = torch.randn(4, D), torch.randn(C_BASE, D)
    labels = torch.tensor([0, 2, 1, 2])
    itm_logits = cosine_logits(input_features, class_features, torch.tensor(10.0))
    terms = method.loss(itm_logits, labels, input_features, class_features)
    cat = method.cat
    rows = torch.cat([cat.film_text(class_features[labels]), cat.film_input(input_features)])
    expected_cat = F.cross_entropy(cat.classifier(rows), torch.cat([labels, labels]))
    assert torch.allclose(terms["ce_itm"], 0.3 * F.cross_entropy(itm_logits, labels))
    assert torch.allclose(terms["ce_cat"], 0.7 * expected_cat)


def test_cocoop_dept_takes_each_inputs_own_label_text(dept_experiment):
    method = dept_experiment("method.base=cocoop").method
    input_features, class_features = torch.randn(2, D), torch.randn(2, C_BASE, D)
    labels = torch.tensor([1, 2])
    terms = method.loss(torch.randn(2, C_BASE), labels, input_features, class_features)
    rows = torch.cat([class_features[0, 1:2], class_features[1, 2:3], input_features])
    expected = F.cross_entropy(method.cat.classifier(rows), torch.cat([labels, labels]))
    assert torch.allclose(terms["ce_cat"], 0.7 * expected)


def test_fused_base_logits_equal_a_hand_computation(dept_experiment):
    experiment = dept_experiment()
    module = experiment.module.eval()
    with torch.no_grad():  # a trained-looking head, so the fusion is not trivially the identity
        module.method.cat.film_input.scale.uniform_(0.5, 1.5)
        module.method.cat.classifier.weight.normal_()
    batch = next(iter(experiment.datamodule.test_dataloader()[0]))
    features, class_features = module.features(batch, "base")
    z_itm = cosine_logits(features, class_features, module.backbone.logit_scale())
    cat = module.method.cat
    z_cat = (cat.film_input.scale * features + cat.film_input.shift) @ cat.classifier.weight.T + cat.classifier.bias
    assert torch.allclose(module(batch, "base"), 0.3 * z_itm + 0.7 * z_cat, atol=1e-5)
    module.method.fusion = "prob"
    expected = (0.3 * z_itm.softmax(-1) + 0.7 * z_cat.softmax(-1)).log()
    assert torch.allclose(module(batch, "base"), expected, atol=1e-5)


def test_the_cat_classifier_never_scores_new_classes(dept_experiment):
    experiment = dept_experiment()
    module = experiment.module.eval()
    called = []
    module.method.cat.classifier.register_forward_hook(lambda *args: called.append(True))
    batch = next(iter(experiment.datamodule.test_dataloader()[1]))
    features, class_features = module.features(batch, "new")
    z_itm = cosine_logits(features, class_features, module.backbone.logit_scale())
    assert torch.equal(module(batch, "new"), z_itm)
    assert not called, "the CAT classifier ran on the new classes"
    module(batch, "base")
    assert called


def test_head_learning_rate_is_lr_ratio_times_the_prompts(dept_experiment):
    experiment = dept_experiment()
    optimizer = experiment.module.configure_optimizers()["optimizer"]
    prompt, head = optimizer.param_groups
    assert head["initial_lr"] == pytest.approx(6.5 * prompt["initial_lr"])  # before the warm-up
    assert {id(p) for p in head["params"]} == {id(p) for p in experiment.method.cat.parameters()}


def fit(experiment, steps: int) -> None:
    pl.seed_everything(0)
    helpers_fit(experiment, steps)


@pytest.mark.parametrize("base", ["coop", "kgcoop", "cocoop"])
def test_lambda_zero_reduces_dept_to_its_base_exactly(make_config, tmp_path, base):
    overrides = (*TINY, "method.optimizer.lr=0.05", "method.batch_size=4")
    plain = build_experiment(make_config(f"method={base}", *overrides, run_dir=tmp_path / "plain"))
    dept = build_experiment(
        make_config(
            "method=dept", f"method.base={base}", "method.module.weight=0.0", *overrides, run_dir=tmp_path / "dept"
        )
    )
    towers = {name: p.detach().clone() for name, p in dept.module.backbone.named_parameters()}
    fit(plain, 8)
    fit(dept, 8)
    for name, parameter in plain.method.named_parameters():
        assert torch.equal(parameter, dict(dept.method.base.named_parameters())[name]), name
    assert all(torch.equal(towers[name], p) for name, p in dept.module.backbone.named_parameters())
    batch = next(iter(dept.datamodule.test_dataloader()[0]))
    assert torch.equal(plain.module.eval()(batch, "base"), dept.module.eval()(batch, "base"))


def test_dept_training_changes_the_head_and_prompt_never_the_towers(dept_experiment):
    experiment = dept_experiment("method.optimizer.lr=0.05")
    module = experiment.module
    towers = {name: p.detach().clone() for name, p in module.backbone.named_parameters()}
    head = {name: p.detach().clone() for name, p in module.method.cat.named_parameters()}
    context = module.method.base.ctx.detach().clone()
    fit(experiment, 6)
    assert all(torch.equal(towers[name], p) for name, p in module.backbone.named_parameters())
    assert not torch.equal(context, module.method.base.ctx)
    assert all(not torch.equal(head[name], p) for name, p in module.method.cat.named_parameters())


def check_base_to_new_record(record: dict) -> None:
    assert record["status"] == "ok", record.get("error")
    metrics = record["metrics"]
    for name in (
        "test/base_acc",
        "test/new_acc",
        "test/hmean",
        "zero_shot/base_acc",
        "zero_shot/new_acc",
        "zero_shot/hmean",
    ):
        assert 0.0 <= metrics[name] <= 1.0, name
    assert metrics["test/hmean"] == pytest.approx(
        harmonic_mean(metrics["test/base_acc"], metrics["test/new_acc"]), abs=1e-6
    )
    assert metrics["primary_metric"] == "hmean" and metrics["test/primary"] == metrics["test/hmean"]


@pytest.mark.parametrize("method", ["dept", "coop"])
def test_tiny_clip_base_to_new_run_on_synthetic_images_writes_base_new_h(make_config, tmp_path, method):
    record = run_experiment(make_config(f"method={method}", *TINY, "trainer=debug", run_dir=tmp_path / "run"))
    check_base_to_new_record(record)
    prompt_file = tmp_path / "run" / "prompt.safetensors"
    assert prompt_file.exists()


@pytest.mark.skipif(
    not fashion_mnist_available(),
    reason=f"Fashion-MNIST not installed ({FASHION_MNIST_DIR}): sudo apt-get install dataset-fashion-mnist",
)
def test_tiny_clip_base_to_new_run_on_fashion_mnist_writes_base_new_h(make_config, tmp_path):
    record = run_experiment(
        make_config(
            "method=dept",
            "backbone=tiny_clip",
            "dataset=fashion_mnist",
            "dataset.k_shot=4",
            "dataset.max_test_examples=50",
            "trainer=debug",
            "logger=none",
            run_dir=tmp_path / "run",
        )
    )
    check_base_to_new_record(record)
    assert record["config"]["dataset"]["name"] == "fashion_mnist"


def test_dept_base2new_preset_is_the_papers_grid_and_a_cell_runs(make_config, tmp_path):
    from omegaconf import OmegaConf

    cfg = make_config("experiment=dept_base2new", "method=dept_coop")
    preset = OmegaConf.load(__file__.replace("tests/test_dept.py", "conf/experiment/dept_base2new.yaml"))
    params = OmegaConf.to_container(preset.hydra.sweeper.params)
    assert params["method"].split(",") == ["coop", "dept_coop", "cocoop", "dept_cocoop", "kgcoop", "dept_kgcoop"]
    assert len(params["dataset"].split(",")) == 11 and params["seed"] == "1,2,3"
    assert cfg.backbone.name == "clip_vit_b16" and cfg.trainer.max_epochs == 10 and cfg.dataset.k_shot == 16
    assert cfg.method.optimizer._target_ == "torch.optim.SGD" and cfg.method.scheduler.warmup_epochs == 1
    for dataset in params["dataset"].split(","):
        assert make_config("experiment=dept_base2new", f"dataset={dataset}").dataset.classes == "base"
    cell = make_config(
        "experiment=dept_base2new",
        "method=dept_kgcoop",
        "backbone=tiny_clip",
        "dataset=synthetic_images",
        "trainer=debug",
        "logger=none",
        run_dir=tmp_path / "cell",
    )
    check_base_to_new_record(run_experiment(cell))


# ---------------------------------------------------------------- the base / new / H report


def write_b2n_record(root, index, method, seed, base, new, zero_shot=(0.8, 0.7)):
    import json

    run_dir = root / f"{index}_{method}_s{seed}"
    run_dir.mkdir(parents=True)
    metrics = {
        "test/base_acc": base,
        "test/new_acc": new,
        "test/hmean": harmonic_mean(base, new),
        "zero_shot/base_acc": zero_shot[0],
        "zero_shot/new_acc": zero_shot[1],
        "zero_shot/hmean": harmonic_mean(*zero_shot),
        "test/primary": harmonic_mean(base, new),
        "primary_metric": "hmean",
    }
    record = {
        "run_key": f"{method}{seed}",
        "status": "ok",
        "metrics": metrics,
        "config": {
            "method": {"name": method},
            "backbone": {"name": "minilm_dual"},
            "dataset": {"name": "bbc_news"},
            "seed": seed,
        },
    }
    (run_dir / "record.json").write_text(json.dumps(record))


def test_report_writes_a_base_new_h_table(tmp_path, capsys):
    from prompt_bench.report import main
    from prompt_bench.report.base_to_new import base_to_new_summary
    from prompt_bench.report.load import load_records

    root = tmp_path / "sweep"
    for seed, (coop, dept) in enumerate([((0.9, 0.6), (0.94, 0.66)), ((0.8, 0.6), (0.9, 0.64))], start=1):
        write_b2n_record(root, seed, "coop", seed, *coop)
        write_b2n_record(root, 10 + seed, "coop+dept", seed, *dept)
    summary = base_to_new_summary(load_records(root)).set_index("method")
    assert list(summary.index) == ["zero-shot", "coop", "coop+dept"]
    assert summary.loc["coop", "base"] == pytest.approx(0.85) and summary.loc["coop", "new"] == pytest.approx(0.6)
    assert summary.loc["coop", "H"] == pytest.approx(harmonic_mean(0.85, 0.6))
    assert summary.loc["coop+dept", "dH"] == pytest.approx(harmonic_mean(0.92, 0.65) - harmonic_mean(0.85, 0.6))
    assert summary.loc["zero-shot", "H"] == pytest.approx(harmonic_mean(0.8, 0.7))
    assert main([str(root), "--out", str(tmp_path / "out")]) == 0
    markdown = (tmp_path / "out" / "base2new.md").read_text()
    assert "| coop+dept | minilm_dual | bbc_news | 92.0 ± 2.8 | 65.0 ± 1.4 |" in markdown
    assert "base-to-new" in capsys.readouterr().out
