"""What a packed run cannot do, each said as a sentence that names the value and the way out.

A pack trains its runs' prompts through one shared frozen backbone pass, in a plain PyTorch loop
(prompt_bench/packing/loop.py) that mirrors the Lightning path step for step. What that loop does not
mirror, or what cannot share a frozen backbone, is refused: `config_refusal` before anything is built
(the sweep planner runs such a job alone, the ordinary way), `built_refusal` once a run is built.
"""

from __future__ import annotations

from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig

PRECISIONS = {"32-true": None, "32": None, 32: None, "bf16-mixed": "bf16"}
"""trainer.precision values a pack runs: fp32, or bf16 autocast (the prompts stay fp32)."""


def config_refusal(cfg: DictConfig) -> str | None:
    """Why this run cannot join a pack (read from its config alone), or None when it can."""
    method_class = get_class(cfg.method.module._target_)
    name = cfg.method.name
    if getattr(method_class, "prompt_site", "") != "input":
        return (
            f"method '{name}' puts its prompt in front of a dual encoder's class texts (prompt_site=class), and a pack "
            "stacks input rows only; run it unpacked (pack=off)"
        )
    if getattr(method_class, "trains_backbone", False) or cfg.method.module.get("train_backbone", False):
        return f"method '{name}' trains the backbone, which a pack shares frozen among its runs; run it unpacked (pack=off)"
    if cfg.method.module.get("depth", "input") != "input":
        return (
            f"method.module.depth={cfg.method.module.depth} (per-layer key/value prefixes) is not packed: a pack "
            "stacks input-level prompts only; run deep prompts unpacked (pack=off) or use depth=input"
        )
    if ".relations." in str(cfg.dataset.task.get("_target_", "")):
        return (
            f"dataset '{cfg.dataset.name}' is a relation task, which adds its marker tokens to the backbone's "
            "vocabulary, and a pack shares one backbone; run it unpacked (pack=off)"
        )
    return trainer_refusal(cfg.trainer) or logger_refusal(cfg)


def trainer_refusal(trainer: DictConfig) -> str | None:
    """The trainer settings the pack loop mirrors: one device, fp32 or bf16-mixed, no accumulation,
    no sanity validation, validation at epoch ends. Anything else is a sentence."""
    checks: list[tuple[bool, str]] = [
        (
            trainer.get("precision", "32-true") not in PRECISIONS,
            f"trainer.precision={trainer.get('precision')} is not packed; packs run 32-true or bf16-mixed",
        ),
        (
            str(trainer.get("devices", 1)) not in ("1", "auto") or trainer.get("strategy") not in (None, "auto"),
            "a pack runs on one device; set trainer.devices=1 (and no trainer.strategy) or run unpacked (pack=off)",
        ),
        (
            int(trainer.get("accumulate_grad_batches", 1) or 1) != 1,
            "trainer.accumulate_grad_batches is not packed; set it to 1 or run unpacked (pack=off)",
        ),
        (
            int(trainer.get("num_sanity_val_steps", 0) or 0) != 0,
            "trainer.num_sanity_val_steps is not packed; set it to 0 or run unpacked (pack=off)",
        ),
        (
            trainer.get("val_check_interval") not in (None, 1.0),
            "trainer.val_check_interval is not packed (a pack validates at epoch ends); drop it or run unpacked",
        ),
    ]
    return next((sentence for refused, sentence in checks if refused), None)


def logger_refusal(cfg: DictConfig) -> str | None:
    """Packs write each run's csv/metrics.csv themselves; a wandb run per packed run is not opened."""
    for node in (cfg.get("logger") or {}).values():
        target = str(node.get("_target_", ""))
        if not target.endswith("CSVLogger"):
            return f"logger {target} is not packed (packs log to csv only); use logger=csv or logger=none"
    return None


def built_refusal(experiment: Any) -> str | None:
    """Why a built run cannot share the pack's backbone pass, or None."""
    from prompt_bench.lit import InputSiteModule

    if not isinstance(experiment.module, InputSiteModule):
        return f"{type(experiment.module).__name__} is not an input-site module; a pack stacks input rows only"
    return None
