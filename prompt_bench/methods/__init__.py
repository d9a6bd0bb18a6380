"""Prompt methods, one file each, behind the `PromptMethod` interface."""

from prompt_bench.methods.base import MethodContext, PromptMethod

__all__ = ["MethodContext", "PromptMethod"]
