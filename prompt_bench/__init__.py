"""prompt_bench: config-driven prompt-tuning experiments (Hydra + PyTorch Lightning)."""

__version__ = "0.1.0"
