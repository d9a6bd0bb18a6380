"""Heads: backbone outputs -> class logits (B, C). All methods and metrics speak logits.

- label_similarity: cosine between the pooled input and the pooled label names, times a logit
  scale (CoOp-like; no parameters of its own, works for classes never trained on).
- linear: a trained classifier on the pooled input.
- verbalizer: label-word scores from the model's own LM (MLM at a mask, seq2seq decoding,
  causal next token).
- itm: a dual encoder's own image–text matching score between the input feature and each class
  text's feature (the class prompt site: CoOp family, DePT).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from prompt_bench.backbones import AdapterBase, BackboneAdapter, BackboneOutput
from prompt_bench.backbones.dual import DualEncoderAdapter, DualOutput, cosine_logits
from prompt_bench.errors import ConfigError
from prompt_bench.methods.bayesprompt.relation import relation_label_words


class Head(nn.Module):
    """Base class: forward(output, batch, adapter) -> (B, C) logits, where `output` is what the
    backbone gives (a BackboneOutput at the input site, a DualOutput of features at the class site).
    `adapter` is passed to forward (never stored as a submodule, so the backbone's weights are not
    registered twice)."""

    name: str = ""
    zero_shot_capable: bool = False

    def needs_mask_token(self, adapter: BackboneAdapter) -> bool:
        return False

    def forward(self, output: BackboneOutput, batch: dict[str, Tensor], adapter: BackboneAdapter) -> Tensor:
        raise NotImplementedError


class LabelSimilarityHead(Head):
    """logits_c = s · cos(pool(x), pool(label_text_c)), label texts from `label_template`."""

    name = "label_similarity"
    zero_shot_capable = True

    def __init__(
        self,
        label_names: Sequence[str],
        adapter: BackboneAdapter,
        logit_scale: float = 20.0,
        learn_scale: bool = False,
        label_template: str = "{label}",
        max_length: int = 32,
    ) -> None:
        super().__init__()
        label_texts = [label_template.format(label=name) for name in label_names]
        ids = adapter.encode_texts(label_texts, max_length=max_length)
        width = max(len(row) for row in ids)
        pad_id = adapter.tokenizer.pad_token_id
        self.register_buffer(
            "label_input_ids", torch.tensor([r + [pad_id] * (width - len(r)) for r in ids]), persistent=False
        )
        self.register_buffer(
            "label_mask", torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in ids]), persistent=False
        )
        log_scale = torch.tensor(math.log(logit_scale))
        self.log_scale = nn.Parameter(log_scale) if learn_scale else None
        if not learn_scale:
            self.register_buffer("fixed_log_scale", log_scale, persistent=False)
        self._cached_label_features: Tensor | None = None

    def label_features(self, adapter: BackboneAdapter) -> Tensor:
        """(C, d) normalised label-name vectors; cached while the backbone is frozen."""
        backbone_trains = adapter.trainable
        cached = self._cached_label_features
        if cached is not None and not backbone_trains and cached.device == self.label_input_ids.device:
            return cached
        if backbone_trains:
            return F.normalize(adapter.pool(adapter(self.label_input_ids, self.label_mask)).float(), dim=-1)
        was_training = adapter.training
        adapter.eval()  # the cached vectors must not carry one step's dropout noise
        with torch.no_grad():
            features = F.normalize(adapter.pool(adapter(self.label_input_ids, self.label_mask)).float(), dim=-1)
        adapter.train(was_training)  # back through AdapterBase.train: dropout on only if backbone_dropout says so
        self._cached_label_features = features
        return features

    def forward(self, output: BackboneOutput, batch: dict[str, Tensor], adapter: BackboneAdapter) -> Tensor:
        inputs = F.normalize(adapter.pool(output).float(), dim=-1)
        scale = (self.log_scale if self.log_scale is not None else self.fixed_log_scale).exp()
        return scale * inputs @ self.label_features(adapter).T


class LinearHead(Head):
    """logits = W · pool(x) + b, W: (C, d)."""

    name = "linear"

    def __init__(self, label_names: Sequence[str], adapter: BackboneAdapter, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(adapter.hidden_size, len(label_names))

    def forward(self, output: BackboneOutput, batch: dict[str, Tensor], adapter: BackboneAdapter) -> Tensor:
        return self.classifier(self.dropout(adapter.pool(output).float()))


class VerbalizerHead(Head):
    """logits_c = score of label word c under the backbone's LM (see the adapter's
    `label_word_scores`: first-token log-prob for MLM and causal, full sequence for seq2seq)."""

    name = "verbalizer"
    zero_shot_capable = True

    def __init__(
        self,
        label_names: Sequence[str],
        adapter: BackboneAdapter,
        label_words: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        reason = adapter.supports_verbalizer()
        if reason:
            raise ConfigError(reason + ".")
        words = list(label_words) if label_words is not None else list(label_names)
        if len(words) != len(label_names):
            raise ConfigError(
                f"head.label_words has {len(words)} words but the dataset has {len(label_names)} classes "
                f"({', '.join(label_names)}); give one word per class, in that order."
            )
        # BPE tokenizers (GPT-2, RoBERTa) mark word starts with a leading space.
        self.label_token_ids = [adapter.tokenizer.encode(" " + w.strip(), add_special_tokens=False) for w in words]
        if any(not ids for ids in self.label_token_ids):
            raise ConfigError(f"head.label_words {words} contain an empty word.")
        first_tokens = [ids[0] for ids in self.label_token_ids]
        if adapter.family != "seq2seq" and len(set(first_tokens)) < len(first_tokens):
            raise ConfigError(
                f"label words {words} share a first token, so the {adapter.family} verbalizer cannot tell them "
                "apart; set head.label_words to words that start differently."
            )

    def needs_mask_token(self, adapter: BackboneAdapter) -> bool:
        return adapter.verbalizer_needs_mask()

    def forward(self, output: BackboneOutput, batch: dict[str, Tensor], adapter: BackboneAdapter) -> Tensor:
        return adapter.label_word_scores(output, batch["input_ids"], self.label_token_ids)


class ItmHead(Head):
    """z_itm = exp(s) · cos(f, T) (B, C): the dual encoder's own score between the input feature f
    (B, D) and the class-text features T (C, D) or (B, C, D), at its temperature exp(s). No
    parameters of its own; scores any class set, so zero-shot capable (with hand-crafted texts)."""

    name = "itm"
    zero_shot_capable = True

    def __init__(self, label_names: Sequence[str], adapter: AdapterBase) -> None:
        super().__init__()
        if not isinstance(adapter, DualEncoderAdapter):
            raise ConfigError(
                f"head=itm scores with a dual encoder's two towers, but backbone '{adapter.name}' is a "
                f"{adapter.family} model; use head=label_similarity, linear or verbalizer (or head=auto)."
            )

    def forward(self, output: DualOutput, batch: dict[str, Tensor], adapter: DualEncoderAdapter) -> Tensor:
        return cosine_logits(output.input_features, output.class_features, adapter.logit_scale())


class RelationMLMHead(Head):
    """KnowPrompt's scoring (lit_models/transformer_full.py:222-230, `pvp`): the MLM logits at the
    template's <mask>, restricted to the R label tokens [class1..R]:

        logits_r = t(h_mask) · e_r + b_r   (B, R)   t: the MLM head's transform, e_r: [class_r]'s row

    e_r starts as the mean of the word pieces of relation r's name (get_label_word.py; official
    `init_answer_words`), b_r as the decoder bias of [class_r] (0 for a new token). Officially e_r is the
    [class_r] row of the tied embedding table; [class_r] never occurs in an input, so keeping the R rows
    here (`label_embeddings`, also written into the table) is the same function and keeps them in
    checkpoints when the backbone is frozen. The template (with its own <mask>) comes from the data.
    """

    name = "relation_mlm"

    def __init__(self, label_names: Sequence[str], adapter: BackboneAdapter) -> None:
        super().__init__()
        reason = adapter.supports_verbalizer() if adapter.family == "encoder" else None
        if adapter.family != "encoder":
            reason = f"backbone '{adapter.name}' is a {adapter.family} model"
        if reason:
            raise ConfigError(
                f"head=relation_mlm scores MLM logits at <mask>, but {reason}; the relation path needs an encoder "
                "with an MLM head (backbone=tiny_bert, tiny_roberta, bert_base, roberta_base, roberta_large)."
            )
        tokenizer = adapter.tokenizer
        vocab = tokenizer.get_vocab()
        class_tokens = [f"[class{i}]" for i in range(1, len(label_names) + 1)]
        if any(token not in vocab for token in class_tokens):
            raise ConfigError(
                "head=relation_mlm needs the [class_i] tokens in the tokenizer; it runs on a relation dataset "
                "(dataset=synthetic_relation, semeval, tacred, tacrev, retacred), which adds them."
            )
        self.label_token_ids = [vocab[token] for token in class_tokens]
        table = adapter.input_embeddings.weight
        rows = []
        for name in label_names:
            pieces = tokenizer.encode(" " + relation_label_words(name), add_special_tokens=False)
            rows.append(table[pieces].detach().float().mean(0))
        self.label_embeddings = nn.Parameter(torch.stack(rows))  # (R, d)
        with torch.no_grad():
            table[self.label_token_ids] = self.label_embeddings.to(table)
        decoder = adapter.model.get_output_embeddings()
        bias = getattr(decoder, "bias", None)
        start = bias[self.label_token_ids].detach().float() if bias is not None else torch.zeros(len(label_names))
        self.label_bias = nn.Parameter(start.clone())

    def forward(self, output: BackboneOutput, batch: dict[str, Tensor], adapter: BackboneAdapter) -> Tensor:
        input_ids = batch["input_ids"]
        is_mask = input_ids == adapter.tokenizer.mask_token_id
        if not bool((is_mask.sum(1) == 1).all()):
            raise ValueError("head=relation_mlm needs exactly one <mask> per input (the relation template's).")
        positions = is_mask.int().argmax(dim=1) + output.n_prompt
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        transformed = mlm_transform(adapter, output.hidden[rows, positions]).float()  # (B, d)
        return transformed @ self.label_embeddings.T + self.label_bias


def mlm_transform(adapter: BackboneAdapter, hidden: Tensor) -> Tensor:
    """(B, d) -> (B, d): the MLM head before its decoder (BERT: cls.predictions.transform;
    RoBERTa/MPNet: lm_head dense -> GELU -> layer_norm)."""
    model = adapter.model
    if hasattr(model, "cls"):
        return model.cls.predictions.transform(hidden)
    head = getattr(model, "lm_head", None)
    if head is not None and hasattr(head, "dense") and hasattr(head, "layer_norm"):
        return head.layer_norm(F.gelu(head.dense(hidden)))
    raise ConfigError(f"backbone '{adapter.name}' ({type(model).__name__}) has no BERT- or RoBERTa-style MLM head.")


HEADS: dict[str, type[Head]] = {
    "label_similarity": LabelSimilarityHead,
    "linear": LinearHead,
    "verbalizer": VerbalizerHead,
    "itm": ItmHead,
    "relation_mlm": RelationMLMHead,
}
