"""Linear probe: frozen backbone, trained linear classifier on the pooled input."""

from __future__ import annotations

from prompt_bench.methods.base import PromptMethod


class LinearProbe(PromptMethod):
    """No prompt and no parameters of its own; only the linear head trains."""

    required_head = "linear"
