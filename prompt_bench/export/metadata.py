"""prompt.json: what a saved prompt is, and everything needed to rebuild its classifier.

Fields: method (name, module options, n_tokens, depth), backbone (name, source, id, family,
pooling and its whole config node), head (the resolved name and options), label_names, dataset
and task, split hash, tensor shapes, and whether a PEFT adapter was written beside it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from prompt_bench.backbones.load import package_model_dir
from prompt_bench.errors import ConfigError
from prompt_bench.heads import HEADS

if TYPE_CHECKING:  # annotations only: build imports training, which imports this module
    from prompt_bench.build import Experiment

HEAD_FILE = "head.safetensors"  # a trained head's own parameters (linear classifier, learned scale)
MACHINE_KEYS = ("cache_dir",)  # where this machine caches things: not part of what the backbone is


def base_model_reference(cfg: DictConfig) -> str:
    """What `from_pretrained` loads the backbone from: the hub id, the local path, the installed
    package's model directory; the preset name for tiny (random, prompt_bench only) backbones."""
    source, name_or_path = cfg.backbone.get("source"), cfg.backbone.get("name_or_path")
    if source == "package" and name_or_path:
        try:
            return str(package_model_dir(name_or_path))
        except ConfigError:  # a package missing here still names the backbone
            return str(name_or_path)
    return str(name_or_path or cfg.backbone.get("name"))


def head_node(cfg: DictConfig, experiment: Experiment) -> dict[str, Any]:
    """The head as run: `auto` replaced by the head it chose, with that head's options."""
    node = OmegaConf.to_container(cfg.head, resolve=True)
    chosen = next((name for name, cls in HEADS.items() if type(experiment.head) is cls), node.get("name"))
    if node.get("name") == "auto":
        node = {"name": chosen}
    return node


def prompt_metadata(experiment: Experiment, cfg: DictConfig, tensors: dict[str, Tensor]) -> dict[str, Any]:
    """The content of prompt.json (see the module docstring)."""
    method_config = OmegaConf.to_container(cfg.method.module, resolve=True)
    backbone_config = OmegaConf.to_container(cfg.backbone, resolve=True)
    for key in MACHINE_KEYS:
        backbone_config.pop(key, None)
    return {
        "method": cfg.method.name,
        "method_config": method_config,
        "n_tokens": method_config.get("n_tokens"),
        "depth": method_config.get("depth", "input"),
        "prompt_site": experiment.method.prompt_site,
        "backbone": experiment.adapter.name,
        "backbone_source": backbone_config.get("source"),
        "backbone_id": base_model_reference(cfg),
        "family": experiment.adapter.family,
        "pooling": backbone_config.get("pooling"),
        "backbone_config": backbone_config,
        "hidden_size": experiment.adapter.hidden_size,
        "head": head_node(cfg, experiment),
        "dataset": cfg.dataset.name,
        "task": experiment.split.task_name,
        "label_names": list(experiment.split.label_names),
        "split_hash": experiment.split.content_hash,
        "shapes": {name: list(t.shape) for name, t in tensors.items()},
    }
