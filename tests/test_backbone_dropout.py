"""method.backbone_dropout (issue 14, item 7): whether the backbone's own dropout is on in training
steps, decided in one place (AdapterBase.train) and set per method from the official code.

Lightning never calls train() itself, and before the fix the mode depended on the path taken: a
zero-shot score (evaluate) or the label_similarity head's label-vector cache called
`adapter.train(True)` and switched the whole backbone into train mode from then on, while the
verbalizer head left it in eval mode. These tests watch every module of the wrapped model during
training steps, across validation, after a zero-shot score, with the head that used to flip it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from prompt_bench.build import build_experiment
from prompt_bench.errors import ConfigError
from prompt_bench.run import run_experiment

CONF_METHODS = Path(__file__).resolve().parents[1] / "conf" / "method"

# The official choice per method (docs/defaults/backbone_dropout.md gives the source lines).
OFFICIAL = {
    "prompt_tuning": True,  # T5X finetune.gin DROPOUT_RATE = 0.1 on the frozen T5
    "prompt_tuning_minilm": True,  # prompt tuning's preset: inherits its decision
    "spot": True,  # the same T5X recipe
    "panda": True,  # HF Trainer model.train() every step, BERT hidden_dropout_prob 0.1
    "vip": False,  # plm_eval_mode: True
    "metapt": False,  # no official code; follows PPT
    "ppt": False,  # PPT's T5 configs: dropout_rate 0.0
    "bayesprompt": True,  # Lightning 1.3 model.train(); RoBERTa dropout 0.1
    "bayesprompt_relation": True,
    "fine_tuning": True,  # the backbone trains, HF Trainer train mode
    "linear_probe": False,  # frozen features (project choice, no official code)
    "coop": False,  # CLIP has no dropout; the dual encoder stays in eval mode
    "cocoop": False,
    "kgcoop": False,
    "dept": False,
    "dept_coop": False,
    "dept_cocoop": False,
    "dept_kgcoop": False,
}

TINY = ("dataset=synthetic", "logger=none", "method.module.n_tokens=4")


def test_every_method_config_sets_the_official_backbone_dropout(make_config):
    assert set(OFFICIAL) == {path.stem for path in CONF_METHODS.glob("*.yaml")}, "a method file without a decision"
    for method, expected in OFFICIAL.items():
        assert make_config(f"method={method}").method.backbone_dropout is expected, method


def model_modes(experiment) -> set[bool]:
    """The `training` flags of every module of the wrapped HF model (dropout layers, attention blocks)."""
    return {module.training for module in experiment.adapter.model.modules()}


class ModeWatch(pl.Callback):
    """Records the backbone's modes at every training step's start and end and at every forward
    pass that builds a graph (the input pass, not the no-grad label-vector cache)."""

    def __init__(self, experiment) -> None:
        self.experiment = experiment
        self.seen: list[set[bool]] = []
        experiment.adapter.register_forward_pre_hook(self._on_forward)

    def _on_forward(self, module, args) -> None:
        if torch.is_grad_enabled() and self.experiment.module.training:
            self.seen.append(model_modes(self.experiment))

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.seen.append(model_modes(self.experiment))

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.seen.append(model_modes(self.experiment))


@pytest.mark.parametrize("dropout", [True, False], ids=["on", "off"])
@pytest.mark.parametrize(
    ("backbone", "head"), [("tiny_bert", "label_similarity"), ("tiny_t5", "verbalizer")], ids=["bert", "t5"]
)
def test_backbone_modes_during_training_steps(make_config, tmp_path, dropout, backbone, head):
    experiment = build_experiment(
        make_config(*TINY, f"backbone={backbone}", f"head={head}", f"method.backbone_dropout={str(dropout).lower()}")
    )
    experiment.datamodule.setup("fit")
    assert model_modes(experiment) == {dropout}  # set at build time, before Lightning runs
    experiment.module.evaluate(experiment.datamodule.test_dataloader(), use_prompt=False)  # the zero-shot score
    watch = ModeWatch(experiment)
    trainer = pl.Trainer(
        max_steps=4,
        val_check_interval=2,  # a validation pass between steps: its eval/restore must not change the mode
        limit_val_batches=1,
        num_sanity_val_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        callbacks=[watch],
        default_root_dir=str(tmp_path),
    )
    trainer.fit(experiment.module, datamodule=experiment.datamodule)
    assert len(watch.seen) >= 3 * 4
    assert all(modes == {dropout} for modes in watch.seen), watch.seen
    experiment.module.eval()
    assert model_modes(experiment) == {False}  # eval mode is always dropout-free


def test_the_label_cache_leaves_the_backbone_as_it_found_it(make_config):
    experiment = build_experiment(make_config(*TINY, "backbone=tiny_bert", "head=label_similarity"))
    experiment.datamodule.setup("fit")
    experiment.module.train()
    assert model_modes(experiment) == {True}  # prompt_tuning: dropout on while training
    experiment.adapter.set_dropout(False)
    experiment.head._cached_label_features = None
    experiment.module(next(iter(experiment.datamodule.train_dataloader())))  # computes and caches label vectors
    assert model_modes(experiment) == {False}


def test_a_dual_encoder_refuses_backbone_dropout_with_the_fix(make_config):
    with pytest.raises(ConfigError, match="method.backbone_dropout=false"):
        build_experiment(
            make_config("method=coop", "backbone=tiny_clip", "dataset=synthetic", "method.backbone_dropout=true")
        )


def test_the_record_holds_the_choice(make_config):
    record = run_experiment(make_config(*TINY, "backbone=tiny_bert", "trainer=debug", "method.backbone_dropout=false"))
    assert record["status"] == "ok", record.get("error")
    assert record["config"]["method"]["backbone_dropout"] is False
