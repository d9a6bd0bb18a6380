"""Full fine-tuning: every backbone weight trains (the model-tuning reference)."""

from __future__ import annotations

from prompt_bench.methods.base import PromptMethod


class FineTuning(PromptMethod):
    """No prompt; the module leaves the backbone unfrozen and puts it in the optimizer."""

    trains_backbone = True
