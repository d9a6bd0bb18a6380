"""Read a prompt from a prompt_bench prompt.safetensors or a Hugging Face PEFT adapter directory.

`load_prompt_file` returns prompt_bench tensor names, so `method.module.init=file` takes either:
a PEFT PromptTuning adapter's `prompt_embeddings` (n, d) is an input prompt, a PrefixTuning
adapter's `prompt_embeddings` (m, 2·N·H·h) a deep prompt's `prefix_embeddings` (same layout, see
prompt_bench/export/peft.py).
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file
from torch import Tensor

from prompt_bench.errors import ConfigError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def is_peft_adapter(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def load_prompt_file(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a prompt_bench prompt.safetensors, or of a PEFT adapter directory renamed to
    prompt_bench's names: a PromptTuning adapter -> {"prompt_embeddings": (n, d)} (its encoder
    rows, the first n, when PEFT kept decoder rows too), a PrefixTuning adapter ->
    {"prefix_embeddings": (m, 2·N·H·h)}. The caller checks the shapes against its run."""
    path = Path(path)
    if not path.is_dir():
        return load_file(str(path))
    if not is_peft_adapter(path):
        raise ConfigError(
            f"{path} is a directory without {ADAPTER_CONFIG}; init_file takes a prompt.safetensors "
            "or a PEFT prompt/prefix tuning adapter directory."
        )
    config = json.loads((path / ADAPTER_CONFIG).read_text())
    peft_type = config.get("peft_type")
    if peft_type not in ("PROMPT_TUNING", "PREFIX_TUNING"):
        raise ConfigError(
            f"{path} is a PEFT {peft_type} adapter; init_file takes PROMPT_TUNING (depth=input) or "
            "PREFIX_TUNING (depth=deep) adapters."
        )
    weights = path / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise ConfigError(f"{path} has {ADAPTER_CONFIG} but no {ADAPTER_WEIGHTS} (a .bin adapter is not read).")
    table = load_file(str(weights)).get("prompt_embeddings")
    n_tokens, token_dim = config.get("num_virtual_tokens"), config.get("token_dim")
    if table is None:
        raise ConfigError(f"{weights} holds no `prompt_embeddings` tensor, which PEFT prompt adapters save.")
    if peft_type == "PROMPT_TUNING":
        if table.shape[0] < n_tokens or table.shape[1] != token_dim:
            raise ConfigError(
                f"{weights} holds prompt_embeddings of shape {tuple(table.shape)}, but its {ADAPTER_CONFIG} says "
                f"num_virtual_tokens={n_tokens}, token_dim={token_dim}; the adapter is inconsistent."
            )
        return {"prompt_embeddings": table[:n_tokens].float()}
    width = 2 * config.get("num_layers", 0) * token_dim
    if tuple(table.shape) != (n_tokens, width):
        raise ConfigError(
            f"{weights} holds a prefix table of shape {tuple(table.shape)}, but its {ADAPTER_CONFIG} says "
            f"({n_tokens}, 2·num_layers·token_dim = {width}); the adapter is inconsistent."
        )
    return {"prefix_embeddings": table.float()}
