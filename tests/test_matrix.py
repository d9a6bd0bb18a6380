"""Every method x every backbone family x head: a few training steps, on both prompt sites.

Input site: tiny random models of each text family on `synthetic`, with each head. Class site (the
CoOp family and DePT, head itm): the tiny random CLIP on `synthetic_images` (base-to-new) and the
MiniLM sentence-pair dual encoder on `synthetic` (every class).

Checks, per cell: only the intended parameters change (the backbone stays bit-identical for
prompt methods), the loss decreases and accuracy on the trained classes beats chance, and the saved
prompt (plus any trained head) reproduces the logits of every test set exactly in a freshly built
model.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from prompt_bench.build import build_experiment
from tests.helpers.training import changed, snapshot, train

PROMPT_HEADS = ("verbalizer", "linear", "label_similarity")
FAMILIES = ("tiny_bert", "tiny_t5", "tiny_gpt2")
CELLS = (
    [("prompt_tuning", backbone, head) for backbone in FAMILIES for head in PROMPT_HEADS]
    + [("fine_tuning", backbone, head) for backbone in FAMILIES for head in PROMPT_HEADS]
    + [("linear_probe", backbone, "linear") for backbone in FAMILIES]
    # RoBERTa numbers positions from padding_idx + 1: a second encoder layout for the prompt path
    + [("prompt_tuning", "tiny_roberta", head) for head in PROMPT_HEADS]
    # BERT's pooler + classifier (PANDA's head): encoders only
    + [("prompt_tuning", backbone, "pooler") for backbone in ("tiny_bert", "tiny_roberta")]
    + [("vip", backbone, head) for backbone in (*FAMILIES, "tiny_roberta") for head in PROMPT_HEADS]
    # text-to-text (the seq2seq default): token loss on label text + EOS, greedy exact match
    + [(method, "tiny_t5", "generate") for method in ("prompt_tuning", "fine_tuning", "vip")]
)
CLASS_METHODS = ("coop", "cocoop", "kgcoop", "dept_coop", "dept_cocoop", "dept_kgcoop")
CLASS_CELLS = [(method, "tiny_clip", "itm") for method in CLASS_METHODS] + [
    (method, "minilm_dual", "itm") for method in ("coop", "cocoop", "kgcoop", "dept_coop")
]
CLASS_DATASETS = {"tiny_clip": "synthetic_images", "minilm_dual": "synthetic"}
# A constant rate over the few steps (Dassl's warm-up epoch would hold 1e-5), 4 inputs a batch for
# CoCoOp too; MiniLM is slow on two CPU cores and its loss falls within a few steps.
CLASS_OVERRIDES = ["method.optimizer.lr=0.01", "method.scheduler=null", "method.batch_size=4"]
CLASS_STEPS = {"tiny_clip": 80, "minilm_dual": 20}
# Tiny random backbones learn faster with a larger rate than the paper's defaults for real models.
TRAIN_OVERRIDES = {
    "prompt_tuning": ["method/optimizer=adamw", "method.optimizer.lr=0.05", "method.head_lr=0.01"],
    "fine_tuning": ["method.optimizer.lr=1e-3", "method.head_lr=1e-2"],
    "linear_probe": ["method.optimizer.lr=0.05"],
    # codes matched to the tiny embeddings' norm (~0.2; the official 100 suits T5), 8 prompt tokens
    "vip": [
        "method/optimizer=adamw",
        "method.optimizer.lr=0.05",
        "method.head_lr=0.01",
        "method.module.module_lr=1e-3",
        "method.module.code_norm=null",
        "method.module.n_tokens=8",
    ],
}
# The generating head writes label + EOS out of the whole vocabulary: a prompt on a tiny random T5
# learns that format within the steps at a larger rate (VIP with more tokens), but not yet to tell the
# classes apart by greedy decoding, so those cells check the format (invalid_rate) instead of accuracy.
GENERATE_OVERRIDES = {
    "prompt_tuning": ["method.optimizer.lr=0.3"],
    "vip": ["method.optimizer.lr=0.3", "method.module.n_tokens=20"],
    "fine_tuning": [],
}
TRAIN_STEPS = 80


def overrides_of(method: str, backbone: str, head: str) -> tuple[list[str], int]:
    """The cell's config overrides and training steps."""
    if backbone in CLASS_DATASETS:  # head=auto resolves to the class site's itm head
        overrides = [f"dataset={CLASS_DATASETS[backbone]}", *CLASS_OVERRIDES]
        return [f"method={method}", f"backbone={backbone}", "logger=none", *overrides], CLASS_STEPS[backbone]
    overrides = [f"head={head}", "dataset=synthetic", *TRAIN_OVERRIDES[method]]
    if head == "generate":
        overrides += GENERATE_OVERRIDES[method]
    return [f"method={method}", f"backbone={backbone}", "logger=none", *overrides], TRAIN_STEPS


def loaders_of(experiment) -> list:
    """One loader per test set of the module (a base-to-new run has two)."""
    loaders = experiment.datamodule.test_dataloader()
    return loaders if isinstance(loaders, list) else [loaders]


@pytest.mark.parametrize(("method", "backbone", "head"), CELLS + CLASS_CELLS, ids=lambda value: str(value))
def test_method_family_head_cell(make_config, tmp_path, method, backbone, head):
    overrides, steps = overrides_of(method, backbone, head)
    experiment = build_experiment(make_config(*overrides))
    assert experiment.head.name == head
    experiment.datamodule.setup("fit")
    module = experiment.module
    backbone_before, method_before = snapshot(module.backbone), snapshot(module.method)
    head_before = snapshot(module.head)
    untrained = module.evaluate(loaders_of(experiment)) if head == "generate" else {}

    history = train(experiment, steps)

    # only the intended parameters change
    backbone_changed = changed(backbone_before, module.backbone)
    if method == "fine_tuning":
        assert backbone_changed, "fine-tuning left the backbone untouched"
    else:
        assert not backbone_changed, f"frozen backbone changed: {sorted(backbone_changed)[:5]}"
    if method in ("prompt_tuning", "vip", *CLASS_METHODS):
        assert changed(method_before, module.method) == set(method_before), "prompt did not train"
    if head in ("linear", "pooler"):
        assert changed(head_before, module.head), f"{head} head did not train"

    # it learns: accuracy on the trained classes (the first test set) clearly above chance
    first, last = history.losses[:5], history.losses[-5:]
    assert sum(last) / len(last) < sum(first) / len(first), f"loss did not decrease: {first} -> {last}"
    test_scores = module.evaluate(loaders_of(experiment))
    trained = "acc" if len(module.test_sets) == 1 else f"{module.test_sets[0]}_acc"
    chance = 1.0 / module.num_classes
    if head == "generate" and method != "fine_tuning":  # it writes label texts now (see GENERATE_OVERRIDES)
        before, after = untrained["invalid_rate"], test_scores["invalid_rate"]
        assert after < before - 0.3, f"invalid_rate {before:.2f} -> {after:.2f}: the label-text format was not learned"
    else:
        assert test_scores[trained] > chance + 0.15, (
            f"test accuracy {test_scores[trained]:.2f} is not clearly above chance"
        )

    # save -> load into a freshly built model reproduces the logits of every test set exactly
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
    module.eval()
    fresh.module.eval()
    for test_set, loader in zip(module.test_sets, loaders_of(experiment)):
        batch = next(iter(loader))
        with torch.no_grad():  # the same seed before each: VIP samples codes at eval (official)
            torch.manual_seed(0)
            logits = module.set_logits(batch, test_set)
            torch.manual_seed(0)
            assert torch.equal(logits, fresh.module.set_logits(batch, test_set)), test_set
