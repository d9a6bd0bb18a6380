"""The one LightningModule base (metrics, best-on-dev, evaluate, schedule, trimmed checkpoints) and
its two prompt sites: `input` (in front of the input tokens) and `class` (in front of the class texts)."""

from prompt_bench.lit.base import PromptLightningModule, split_metrics
from prompt_bench.lit.class_site import ClassSiteModule
from prompt_bench.lit.input_site import InputSiteModule

__all__ = ["ClassSiteModule", "InputSiteModule", "PromptLightningModule", "split_metrics"]
