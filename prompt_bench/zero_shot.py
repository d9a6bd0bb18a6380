"""A run's zero-shot scores (backbone + head without the prompt, on the test set), computed once and
shared: a run whose zero-shot pass would see exactly the same inputs reads the scores another run
stored in the artefact store (artefacts.py) instead of scoring the whole test set again. The five
seeds of a sweep, and every method on the same backbone, head and test set, share one pass.

"Exactly the same inputs" is hashed from what the pass reads, not guessed from the config:
- the test token ids and labels, and how they are batched (eval batch size, the collator);
- the backbone: its config without cache_dir (source, name, dtype, seed: the weights) and a hash of
  its input embedding table (a method that adds tokens, KnowPrompt's relation tokens, changes it);
- the head: its class, every tensor it holds (label-name token ids, scale) and its options;
- the method's class, the module's class, the device type and the trainer precision;
- the code: a hash of prompt_bench's own .py files, so an edited adapter or head never reads a stale score.
Input-site runs only, and only while no forward hook sits on the backbone; any other run scores as before.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig, OmegaConf

from prompt_bench.artefacts import ArtefactStore
from prompt_bench.lit.input_site import InputSiteModule
from prompt_bench.source_hash import source_hash

if TYPE_CHECKING:
    from prompt_bench.build import Experiment

log = logging.getLogger("prompt_bench")
KIND = "zero_shot"
SCORES_FILE = "scores.json"


def zero_shot_scores(cfg: DictConfig, experiment: Experiment) -> dict[str, float]:
    """{"acc", "f1", ...} of the backbone + head without the prompt on the test set (module.evaluate)."""
    module, datamodule = experiment.module, experiment.datamodule

    def score() -> dict[str, float]:
        return module.evaluate(datamodule.test_dataloader(), use_prompt=False)

    spec = zero_shot_spec(cfg, experiment)
    if spec is None:
        return score()

    scored = []

    def make(directory: Path) -> None:
        (directory / SCORES_FILE).write_text(json.dumps(score()))
        scored.append(True)

    store = ArtefactStore(Path(cfg.paths.cache_dir) / "artefacts")
    directory = store.get_or_make(KIND, spec, make)
    if not scored:
        log.info("zero-shot scores read from %s (the same backbone, head and test set)", directory)
        # The one draw the pass takes from torch's global stream (the test loader's base seed, made with its
        # iterator; without the prompt nothing else draws), so what the run draws next (dropout, sampled
        # prompts) does not depend on whether another run had scored first.
        iter(datamodule.test_dataloader())
    return json.loads((directory / SCORES_FILE).read_text())


def zero_shot_spec(cfg: DictConfig, experiment: Experiment) -> dict[str, Any] | None:
    """What the zero-shot pass reads, hashed; None when it cannot be shared (see the module docstring)."""
    module, datamodule, adapter = experiment.module, experiment.datamodule, experiment.adapter
    if type(module) is not InputSiteModule or has_forward_hooks(adapter):
        return None
    backbone = OmegaConf.to_container(cfg.backbone, resolve=True)
    backbone.pop("cache_dir", None)
    test_ids = datamodule.encoded_parts()["test"]
    return {
        "code": source_hash(),
        "backbone": backbone,
        "embedding_table": tensor_hash(adapter.input_embeddings.weight),
        "head": {
            "class": type(experiment.head).__qualname__,
            "options": OmegaConf.to_container(cfg.head, resolve=True),
            "tensors": {name: tensor_hash(tensor) for name, tensor in head_tensors(experiment.head).items()},
        },
        "method_class": type(experiment.method).__qualname__,
        "module_class": type(module).__qualname__,
        "test_sets": module.test_set_sizes,
        "no_relation": module.no_relation,
        "test": hashlib.sha256(
            json.dumps([test_ids, list(map(int, datamodule.split.test.labels))]).encode()
        ).hexdigest(),
        "eval_batch_size": datamodule.eval_batch_size,
        "collate": repr(getattr(datamodule, "collate", None)),
        "device": cfg.trainer.get("accelerator"),
        "precision": str(cfg.trainer.get("precision")),
    }


def head_tensors(head: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of the head, persistent or not (label ids, masks, scales)."""
    return {**dict(head.named_parameters()), **dict(head.named_buffers())}


def tensor_hash(tensor: torch.Tensor) -> str:
    """sha256 of a tensor's dtype, shape and bytes."""
    data = tensor.detach().to("cpu").contiguous()
    digest = hashlib.sha256(f"{data.dtype}|{tuple(data.shape)}|".encode())
    digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def has_forward_hooks(module: torch.nn.Module) -> bool:
    """Whether any submodule carries a forward hook or pre-hook (a method that captures activations)."""
    return any(m._forward_hooks or m._forward_pre_hooks for m in module.modules())
