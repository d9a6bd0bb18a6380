"""Heads: backbone outputs -> class logits (B, C). All methods and metrics speak logits.

- label_similarity: cosine between the pooled input and the pooled label names, times a logit
  scale (CoOp-like; no parameters of its own, works for classes never trained on).
- linear: a trained classifier on the pooled input.
- pooler: BERT's sequence-classification head (P-tuning v2 / PANDA): pooler dense + tanh on the
  first token, dropout, a trained linear classifier.
- verbalizer: label-word scores from the model's own LM (MLM at a mask, seq2seq decoding,
  causal next token); on seq2seq, rank classification over the summed label log-probs.
- generate: text-to-text (seq2seq): token cross-entropy on the label text + EOS, greedy decoding and
  exact match at evaluation; a text that is no label counts wrong (the seq2seq default).
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
from prompt_bench.generation import (
    LOSS_REDUCTIONS,
    LabelTargets,
    exact_match_scores,
    generated_texts,
    match_labels,
    sequence_log_likelihood,
    token_loss,
)
from prompt_bench.methods.bayesprompt.relation import relation_label_words


class Head(nn.Module):
    """Base class: forward(output, batch, adapter) -> (B, C) logits, where `output` is what the
    backbone gives (a BackboneOutput at the input site, a DualOutput of features at the class site).
    `adapter` is passed to forward (never stored as a submodule, so the backbone's weights are not
    registered twice)."""

    name: str = ""
    zero_shot_capable: bool = False
    abstains: bool = False
    """True when `forward` can give a row that names no class (all −inf: a generated text that is no
    label text); the metrics then count it wrong and report its rate (lit/exact_match.py)."""
    families: tuple[str, ...] | None = None
    """Backbone families this head scores (None: any); head=auto skips a method's preferred head
    whose families exclude the backbone's."""

    def needs_mask_token(self, adapter: BackboneAdapter) -> bool:
        return False

    def forward(self, output: BackboneOutput, batch: dict[str, Tensor], adapter: BackboneAdapter) -> Tensor:
        raise NotImplementedError

    def training_scores(
        self, output: BackboneOutput, batch: dict[str, Tensor], adapter: BackboneAdapter
    ) -> tuple[Tensor, Tensor | None]:
        """(logits (B, C) for the train metrics and the method's terms, the head's own loss, or None for
        the cross-entropy over those logits)."""
        return self(output, batch, adapter), None

    def class_scores(self, output: BackboneOutput, batch: dict[str, Tensor], adapter: BackboneAdapter) -> Tensor:
        """(B, C) finite class scores, e.g. a teacher's cached logits: `forward`'s unless the head abstains."""
        return self(output, batch, adapter)


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


class PoolerHead(Head):
    """BERT's sequence-classification head, as P-tuning v2 and PANDA use it (BertPrefixForSequenceClassification):

        logits = W · dropout(tanh(W_p h_0 + b_p)) + b   (B, C)

    h_0: the first input token's last hidden state ([CLS]/<s>, after any input-level prompt), (B, d).
    W_p, b_p: the backbone's own pre-trained pooler when the loaded model has one, copied in and frozen
    (the official model keeps BertModel's pooler frozen with the rest of the backbone); a model loaded
    without one (an MLM checkpoint, a tiny test model) gets a fresh pooler N(0, init_std²), zero bias,
    trained with the classifier. W (C, d) ~ N(0, init_std²), b = 0: what `from_pretrained` gives the new
    classifier (BERT's `_init_weights`, initializer_range 0.02).
    """

    name = "pooler"
    families = ("encoder",)

    def __init__(
        self, label_names: Sequence[str], adapter: BackboneAdapter, dropout: float = 0.1, init_std: float = 0.02
    ) -> None:
        super().__init__()
        if adapter.family not in self.families:
            raise ConfigError(
                f"head=pooler reads the first token of an encoder, but backbone '{adapter.name}' is a "
                f"{adapter.family} model; use head=linear, label_similarity or verbalizer (or head=auto)."
            )
        hidden = adapter.hidden_size
        self.pooler = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, len(label_names))
        pretrained = backbone_pooler(adapter)
        with torch.no_grad():
            for layer in (self.pooler, self.classifier):
                layer.weight.normal_(0.0, init_std)
                layer.bias.zero_()
            if pretrained is not None:
                self.pooler.weight.copy_(pretrained.weight)
                self.pooler.bias.copy_(pretrained.bias)
        self.pooler.requires_grad_(pretrained is None)
        self.pretrained_pooler = pretrained is not None

    def forward(self, output: BackboneOutput, batch: dict[str, Tensor], adapter: BackboneAdapter) -> Tensor:
        first = output.hidden[:, output.n_prompt].float()  # (B, d)
        return self.classifier(self.dropout(torch.tanh(self.pooler(first))))


def backbone_pooler(adapter: BackboneAdapter) -> nn.Linear | None:
    """The dense layer of the loaded model's own pooler (BERT / RoBERTa / MPNet `pooler.dense`), or None."""
    pooler = getattr(adapter.model.base_model, "pooler", None)
    dense = getattr(pooler, "dense", None)
    return dense if isinstance(dense, nn.Linear) else None


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


class GenerateHead(Head):
    """Text-to-text classification, as official T5 prompt tuning (T5X) and VIP (OpenPrompt's
    PromptForGeneration): the decoder writes the label text (prompt_bench/generation.py).

    Training: token cross-entropy on label text + EOS, with T5X's z-loss; the train logits (B, C) are
    the summed log-likelihoods of each label text + EOS (rank classification, for the train metrics
    and the methods' terms). Evaluation (`forward`): greedy decoding for the longest label + 1 tokens,
    exact match against the label texts: (B, C) rows 0 at the matched class and −inf elsewhere, all
    −inf for a text that is no label (counted wrong, reported as invalid_rate).

    label_words: the C label texts (null = the label names); z_loss: T5X's coefficient on (log Z)²;
    loss_reduction: sequence_sum (Σ tokens, mean over the batch: OpenPrompt/VIP) or batch_sum (Σ over
    the batch: T5X); decoder_prefix: a text forced in front of every target, without loss ("" = none;
    VIP's OpenPrompt T5-LM wrapper forces "<extra_id_0>").
    """

    name = "generate"
    zero_shot_capable = True
    abstains = True

    def __init__(
        self,
        label_names: Sequence[str],
        adapter: BackboneAdapter,
        label_words: Sequence[str] | None = None,
        z_loss: float = 1e-4,
        loss_reduction: str = "sequence_sum",
        decoder_prefix: str = "",
    ) -> None:
        super().__init__()
        reason = adapter.generation_support()
        if reason:
            raise ConfigError(f"{reason}; use head=verbalizer, label_similarity or linear (or head=auto).")
        texts = list(label_words) if label_words is not None else list(label_names)
        if len(texts) != len(label_names):
            raise ConfigError(
                f"head.label_words has {len(texts)} texts but the dataset has {len(label_names)} classes "
                f"({', '.join(label_names)}); give one text per class, in that order."
            )
        if loss_reduction not in LOSS_REDUCTIONS:
            raise ConfigError(f"head.loss_reduction '{loss_reduction}' is not one of {', '.join(LOSS_REDUCTIONS)}.")
        prefix_ids = adapter.tokenizer(decoder_prefix, add_special_tokens=False)["input_ids"] if decoder_prefix else []
        self.label_targets = LabelTargets(
            texts, adapter.tokenizer, adapter.decoder_start_id, adapter.eos_id, prefix_ids
        )
        self.register_buffer("decoder_inputs", self.label_targets.decoder_inputs, persistent=False)
        self.register_buffer("target_ids", self.label_targets.targets, persistent=False)
        self.z_loss = z_loss
        self.loss_reduction = loss_reduction

    def forward(self, output: BackboneOutput, batch: dict[str, Tensor], adapter: BackboneAdapter) -> Tensor:
        tokens = adapter.greedy_decode(output, self.label_targets.prefix_ids, self.label_targets.max_new_tokens)
        texts = generated_texts(tokens, adapter.tokenizer, adapter.eos_id)
        class_ids = match_labels(texts, self.label_targets.texts)
        return exact_match_scores(class_ids, len(self.label_targets.texts), device=output.hidden.device)

    def class_scores(self, output: BackboneOutput, batch: dict[str, Tensor], adapter: BackboneAdapter) -> Tensor:
        """(B, C) log p(label text c + EOS | x): every label decoded against the same encoder states."""
        return self._all_label_logits(output, adapter)[0]

    def training_scores(
        self, output: BackboneOutput, batch: dict[str, Tensor], adapter: BackboneAdapter
    ) -> tuple[Tensor, Tensor]:
        """((B, C) label log-likelihoods, the token loss of each example's own label text + EOS)."""
        scores, logits = self._all_label_logits(output, adapter)
        classes = self.target_ids.shape[0]
        rows = torch.arange(scores.shape[0], device=scores.device) * classes + batch["labels"]
        loss = token_loss(logits[rows], self.target_ids[batch["labels"]], self.z_loss, self.loss_reduction)
        return scores, loss

    def _all_label_logits(self, output: BackboneOutput, adapter: BackboneAdapter) -> tuple[Tensor, Tensor]:
        """((B, C) summed log-likelihoods, (B·C, T, V) decoder logits; row b·C + c is example b, class c)."""
        batch, classes = output.hidden.shape[0], self.decoder_inputs.shape[0]
        logits = adapter.decoder_logits(output, self.decoder_inputs.repeat(batch, 1))
        scores = sequence_log_likelihood(logits, self.target_ids.repeat(batch, 1)).view(batch, classes)
        return scores, logits


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
    "pooler": PoolerHead,
    "verbalizer": VerbalizerHead,
    "generate": GenerateHead,
    "itm": ItmHead,
    "relation_mlm": RelationMLMHead,
}


def auto_head_name(required: str | None, preferred: str | None, family: str, default_head: str) -> str:
    """What head=auto builds: the method's required head, else its preferred head where that head
    scores the backbone's family, else the backbone's default head (`backbone.default_head`, which
    falls back to the family adapter's own default)."""
    if required:
        return required
    preferred_class = HEADS.get(preferred) if preferred else None
    if preferred_class is not None and (preferred_class.families is None or family in preferred_class.families):
        return preferred
    return default_head
