"""Trained prompts out of prompt_bench (PEFT adapters) and back in (init=file, prompt-bench-eval, load)."""
