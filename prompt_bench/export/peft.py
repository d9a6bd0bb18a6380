"""Prompts to and from Hugging Face PEFT adapters (adapter_config.json + adapter_model.safetensors).

Export: a static input prompt P (n, d) is a PEFT `PromptTuningConfig` adapter whose one tensor,
`prompt_embeddings`, is P itself; a deep prompt (P-tuning v2) is a `PrefixTuningConfig` adapter
whose `prompt_embeddings` is the prefix table (m, 2·N·H·h), laid out as PEFT's `get_prompt` reads
it: view (m, 2N, H, h), row 2l the keys and row 2l+1 the values of layer l (prompt_bench's
`PrefixEncoder` uses the same layout). A reparameterised prefix (prefix_projection) is exported as
its projected table with `prefix_projection: false`, which is what it computes at inference.

Import: prompt_bench/export/peft_files.py reads either back (`init=file`).

Families (checked by tests/test_peft_export.py against PeftModel.from_pretrained):
input prompts: encoder, seq2seq (encoder prompt only: num_transformer_submodules=1), causal.
Deep prompts: encoder (BERT/RoBERTa/MiniLM) and causal; not MPNet (PEFT hands prefixes to the
model as a cache, which MPNet's attention does not take) and not seq2seq (PEFT's T5 prefix also
enters the decoder, prompt_bench's only the encoder).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import Tensor

from prompt_bench.errors import ConfigError
from prompt_bench.export.peft_files import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from prompt_bench.methods.prompt_tuning import PromptTuning
from prompt_bench.records import share_file

PEFT_TASK_TYPES = {"encoder": "FEATURE_EXTRACTION", "seq2seq": "SEQ_2_SEQ_LM", "causal": "CAUSAL_LM"}


def is_static_prompt_class(method_class: type) -> bool:
    """Whether a method class's prompt is prompt tuning's one static P (or prefix table): SPoT, PANDA
    and MetaPT only start or regularise it differently; VIP and BayesPrompt make it per input."""
    return (
        issubclass(method_class, PromptTuning)
        and method_class.prompt is PromptTuning.prompt
        and method_class.layer_prefixes is PromptTuning.layer_prefixes
    )


def export_refusal(method: Any, adapter: Any) -> str | None:
    """None when `method`'s trained prompt on `adapter` is a PEFT adapter, else a sentence why not."""
    name = type(method).__name__
    if not is_static_prompt_class(type(method)):
        return (
            f"method {name} does not train one static prompt (PEFT prompt and prefix tuning adapters hold "
            "exactly that), so no PEFT adapter is written; prompt.safetensors keeps all its tensors"
        )
    family = getattr(adapter, "family", "")
    if family not in PEFT_TASK_TYPES:
        return f"backbone '{adapter.name}' is a {family} model; PEFT export covers {', '.join(PEFT_TASK_TYPES)}"
    if method.depth != "deep":
        return None
    if family == "seq2seq":
        return (
            f"backbone '{adapter.name}' is seq2seq: PEFT's prefix tuning puts the prefix into the decoder too, "
            "while prompt_bench's deep prompt reaches only the encoder, so the adapter would compute something else"
        )
    if adapter.model.config.model_type == "mpnet":
        return (
            f"backbone '{adapter.name}' is MPNet, whose attention takes no key/value cache; PEFT hands prefixes "
            "to the model as a cache, so it cannot load this deep prompt"
        )
    return None


def peft_adapter(method: Any, adapter: Any, base_model: str) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """(adapter_config.json content, {"prompt_embeddings": fp32 tensor}) for a trained method.

    Input prompt: PromptTuningConfig, tensor (n, d). Deep: PrefixTuningConfig, tensor (m, 2·N·H·h).
    Raises ConfigError with `export_refusal`'s sentence when there is no faithful adapter.
    """
    reason = export_refusal(method, adapter)
    if reason:
        raise ConfigError(reason)
    config: dict[str, Any] = {
        "task_type": PEFT_TASK_TYPES[adapter.family],
        "base_model_name_or_path": base_model,
        "revision": None,
        "inference_mode": True,
        "num_virtual_tokens": method.n_tokens,
        "num_transformer_submodules": 1,
    }
    if method.depth == "deep":
        geometry = adapter.prefix_geometry
        was_training = method.prefix_encoder.training
        method.prefix_encoder.eval()
        table = method.prefix_encoder.table().detach()
        method.prefix_encoder.train(was_training)
        config.update(
            peft_type="PREFIX_TUNING",
            token_dim=geometry.n_heads * geometry.head_dim,  # PEFT splits it into num_attention_heads heads
            num_attention_heads=geometry.n_heads,
            num_layers=geometry.n_layers,
            encoder_hidden_size=geometry.n_heads * geometry.head_dim,
            prefix_projection=False,
        )
    else:
        table = method.prompt_embeddings.detach()
        config.update(
            peft_type="PROMPT_TUNING",
            token_dim=adapter.hidden_size,
            num_attention_heads=adapter.model.config.num_attention_heads,
            num_layers=adapter.model.config.num_hidden_layers,
            prompt_tuning_init="RANDOM",
            prompt_tuning_init_text=None,
            tokenizer_name_or_path=None,
        )
    return config, {"prompt_embeddings": table.float().cpu().contiguous()}


def write_peft_adapter(directory: Path, method: Any, adapter: Any, base_model: str) -> str | None:
    """Write adapter_config.json + adapter_model.safetensors into `directory`; returns None, or the
    sentence saying why this prompt has no PEFT adapter (nothing is written then)."""
    reason = export_refusal(method, adapter)
    if reason:
        return reason
    config, tensors = peft_adapter(method, adapter, base_model)
    directory = Path(directory)
    save_file(tensors, str(directory / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    share_file(directory / ADAPTER_WEIGHTS)
    (directory / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2))
    return None
