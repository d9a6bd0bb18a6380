"""Every method x every backbone family x head on tiny random models: a few training steps.

Checks, per cell: only the intended parameters change (the backbone stays bit-identical for
prompt methods), the loss decreases and test accuracy beats chance on `synthetic`, and the saved
prompt (plus any trained head) reproduces the logits exactly in a freshly built model.
"""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from safetensors.torch import load_file, save_file

from prompt_bench.build import build_experiment

PROMPT_HEADS = ("verbalizer", "linear", "label_similarity")
FAMILIES = ("tiny_bert", "tiny_t5", "tiny_gpt2")
CELLS = (
    [("prompt_tuning", backbone, head) for backbone in FAMILIES for head in PROMPT_HEADS]
    + [("fine_tuning", backbone, head) for backbone in FAMILIES for head in PROMPT_HEADS]
    + [("linear_probe", backbone, "linear") for backbone in FAMILIES]
    # RoBERTa numbers positions from padding_idx + 1: a second encoder layout for the prompt path
    + [("prompt_tuning", "tiny_roberta", head) for head in PROMPT_HEADS]
    + [("vip", backbone, head) for backbone in (*FAMILIES, "tiny_roberta") for head in PROMPT_HEADS]
)
# Tiny random backbones learn faster with a larger rate than the paper's defaults for real models.
TRAIN_OVERRIDES = {
    "prompt_tuning": ["method/optimizer=adamw", "method.optimizer.lr=0.05", "method.head_lr=0.01"],
    "fine_tuning": ["method.optimizer.lr=1e-3", "method.head_lr=1e-2"],
    "linear_probe": ["method.optimizer.lr=0.05"],
    # codes matched to the tiny embeddings' norm (~0.2; the official 100 suits T5), 8 prompt tokens
    "vip": ["method/optimizer=adamw", "method.optimizer.lr=0.05", "method.head_lr=0.01", "method.module.module_lr=1e-3",
            "method.module.code_norm=null", "method.module.n_tokens=8"],
}
TRAIN_STEPS = 80
CHANCE = 0.25  # synthetic has 4 balanced classes


class LossHistory(pl.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> set[str]:
    return {name for name, p in module.named_parameters() if not torch.equal(before[name], p.detach())}


def train(experiment, steps: int) -> LossHistory:
    history = LossHistory()
    trainer = pl.Trainer(
        max_steps=steps, max_epochs=-1, logger=False, enable_checkpointing=False, limit_val_batches=0,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[history], accelerator="cpu",
    )
    trainer.fit(experiment.module, datamodule=experiment.datamodule)
    return history


@pytest.mark.parametrize(("method", "backbone", "head"), CELLS, ids=lambda value: str(value))
def test_method_family_head_cell(make_config, tmp_path, method, backbone, head):
    overrides = [f"method={method}", f"backbone={backbone}", f"head={head}", "dataset=synthetic", "logger=none",
                 *TRAIN_OVERRIDES[method]]
    experiment = build_experiment(make_config(*overrides))
    experiment.datamodule.setup("fit")
    module = experiment.module
    backbone_before, method_before = snapshot(module.backbone), snapshot(module.method)
    head_before = snapshot(module.head)

    history = train(experiment, TRAIN_STEPS)

    # only the intended parameters change
    backbone_changed = changed(backbone_before, module.backbone)
    if method == "fine_tuning":
        assert backbone_changed, "fine-tuning left the backbone untouched"
    else:
        assert not backbone_changed, f"frozen backbone changed: {sorted(backbone_changed)[:5]}"
    if method in ("prompt_tuning", "vip"):
        assert changed(method_before, module.method) == set(method_before), "prompt did not train"
    if head == "linear":
        assert changed(head_before, module.head), "linear head did not train"

    # it learns
    first, last = history.losses[:5], history.losses[-5:]
    assert sum(last) / len(last) < sum(first) / len(first), f"loss did not decrease: {first} -> {last}"
    test_scores = module.evaluate(experiment.datamodule.test_dataloader())
    assert test_scores["acc"] > CHANCE + 0.15, f"test accuracy {test_scores['acc']:.2f} is not clearly above chance"

    # save -> load into a freshly built model reproduces the logits exactly
    saved = {f"method.{k}": v for k, v in module.method.prompt_tensors().items()}
    saved.update({f"head.{k}": v for k, v in module.head.state_dict().items()})
    path = tmp_path / "trained.safetensors"
    save_file({k: v.contiguous() for k, v in saved.items()}, str(path))

    fresh = build_experiment(make_config(*overrides, run_dir=tmp_path / "fresh"))
    tensors = load_file(str(path))
    fresh.module.method.load_prompt_tensors({k[7:]: v for k, v in tensors.items() if k.startswith("method.")})
    fresh.module.head.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("head.")})
    if method == "fine_tuning":  # tied weights: a state dict, not safetensors (the test is about the prompt path)
        fresh.module.backbone.load_state_dict(module.backbone.state_dict())
    batch = next(iter(experiment.datamodule.test_dataloader()))
    module.eval()
    fresh.module.eval()
    with torch.no_grad():
        assert torch.equal(module(batch), fresh.module(batch))
