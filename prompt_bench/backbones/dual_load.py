"""Build a dual-encoder adapter from conf/backbone/<name>.yaml: CLIP (hub, path, tiny) or a sentence encoder.

`tiny_clip` is a random 2-layer, 64-wide CLIP (ViT on 32×32 images, patch 8) built from a config
with a fixed seed, MiniLM's WordPiece tokenizer and a CLIPImageProcessor made in code: offline.
"""

from __future__ import annotations

import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizerFast

from prompt_bench.backbones.dual import ClipAdapter, DualEncoderAdapter, SentencePairAdapter
from prompt_bench.backbones.load import DTYPES, load_model_and_tokenizer, package_model_dir
from prompt_bench.backbones.tiny import TINY_TOKENIZER_PACKAGE, build_tiny_tokenizer
from prompt_bench.errors import ConfigError, HubUnavailableError
from prompt_bench.hub import hub_is_reachable

KINDS = ("clip", "sentence")
TINY_CLIP_IMAGE_SIZE = 32
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def build_dual_encoder(
    name: str,
    kind: str,
    source: str,
    name_or_path: str | None,
    class_template: str = "{}",
    context_init: str | None = None,
    logit_scale: float = 20.0,
    params_m: float | None = None,
    dtype: str = "float32",
    cache_dir: str = "~/.cache/prompt_bench",
    seed: int = 0,
    family: str = "dual_encoder",
) -> DualEncoderAdapter:
    """A frozen `ClipAdapter` (kind=clip) or `SentencePairAdapter` (kind=sentence).

    source: clip -> hub | path | tiny; sentence -> package | mpnet_parts | path | hub (as the
    encoder backbones). `context_init` is the text CoCoOp/KgCoOp start their context from by
    default ("a photo of a"); `logit_scale` is exp(s) for sentence encoders (CLIP has its own).
    """
    if kind not in KINDS:
        raise ConfigError(f"backbone.kind '{kind}' is not one of {', '.join(KINDS)}.")
    if dtype not in DTYPES:
        raise ConfigError(f"backbone.dtype='{dtype}' is not an option; use one of: {', '.join(DTYPES)}.")
    if kind == "sentence":
        model, tokenizer = load_model_and_tokenizer(source, name_or_path, "encoder", cache_dir=cache_dir, dtype=dtype)
        adapter: DualEncoderAdapter = SentencePairAdapter(
            model, tokenizer, name, class_template=class_template, params_m=params_m, logit_scale=logit_scale
        )
    else:
        model, tokenizer, processor = load_clip(source, name_or_path, seed)
        adapter = ClipAdapter(
            model.to(DTYPES[dtype]),
            tokenizer,
            name,
            class_template=class_template,
            params_m=params_m,
            image_processor=processor,
        )
    adapter.context_init = context_init
    return adapter


def load_clip(source: str, name_or_path: str | None, seed: int):
    """(CLIPModel, tokenizer, image processor) from the hub, a directory, or the tiny preset."""
    if source == "tiny":
        return tiny_clip(seed)
    if source not in ("hub", "path") or not name_or_path:
        raise ConfigError(
            f"backbone.source={source} with name_or_path={name_or_path!r} cannot load CLIP; use source=hub "
            "name_or_path=openai/clip-vit-base-patch16, source=path name_or_path=/dir, or source=tiny."
        )
    local_only = source == "path" or not hub_is_reachable()
    try:
        model = CLIPModel.from_pretrained(name_or_path, local_files_only=local_only)
        tokenizer = CLIPTokenizerFast.from_pretrained(name_or_path, local_files_only=local_only)
        processor = CLIPImageProcessor.from_pretrained(name_or_path, local_files_only=local_only)
    except OSError as error:
        raise HubUnavailableError(
            f"could not load CLIP '{name_or_path}' (no network and not in the local HF cache, or not a CLIP "
            "directory). Use a local copy: backbone.source=path backbone.name_or_path=/dir/with/config.json."
        ) from error
    return model.eval(), tokenizer, processor


def tiny_clip(seed: int = 0):
    """A random tiny CLIP whose weights depend only on `seed`, with an offline tokenizer and processor."""
    tokenizer = build_tiny_tokenizer(package_model_dir(TINY_TOKENIZER_PACKAGE))
    tokenizer.name_or_path = "prompt_bench/tiny-clip-wordpiece"
    tower = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4}
    config = CLIPConfig(
        text_config={
            **tower,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": 77,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.cls_token_id,
            "eos_token_id": tokenizer.sep_token_id,
        },
        vision_config={**tower, "image_size": TINY_CLIP_IMAGE_SIZE, "patch_size": 8},
        projection_dim=32,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config)
    processor = CLIPImageProcessor(
        size={"shortest_edge": TINY_CLIP_IMAGE_SIZE},
        crop_size={"height": TINY_CLIP_IMAGE_SIZE, "width": TINY_CLIP_IMAGE_SIZE},
        image_mean=list(OPENAI_CLIP_MEAN),
        image_std=list(OPENAI_CLIP_STD),
    )
    return model.eval(), tokenizer, processor
