"""Family adapters: one interface over encoder, seq2seq and causal Hugging Face models.

Everything that differs between model families lives here, once: where the input embeddings
are, how soft prompts are prepended, how a sentence vector is pooled, and how label words are
scored. Methods and heads never branch on the family.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from prompt_bench.errors import ConfigError

POOLINGS = ("mean", "cls", "last")


@dataclass
class BackboneOutput:
    """What a forward pass returns to the head.

    hidden: (B, n+L, d) last hidden states (the encoder's for seq2seq), prompt positions first.
    attention_mask: (B, n+L) the input mask extended with ones for the n prompt positions.
    n_prompt: n, the number of prompt positions in front of the input tokens.
    """

    hidden: Tensor
    attention_mask: Tensor
    n_prompt: int


class BackboneAdapter(nn.Module):
    """A frozen-or-not Hugging Face model behind the family-independent interface."""

    family: str = ""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        name: str,
        pooling: str = "mean",
        default_head: str = "label_similarity",
        params_m: float | None = None,
        lm_head: bool = False,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"backbone.pooling '{pooling}' is not one of {', '.join(POOLINGS)}.")
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.pooling = pooling
        self.default_head = default_head
        self.has_lm_head = lm_head
        self.trainable = False
        self.params_m = params_m if params_m is not None else self.num_parameters() / 1e6

    def set_trainable(self, trainable: bool) -> None:
        """Freeze (prompt methods) or unfreeze (fine-tuning) every backbone weight."""
        self.requires_grad_(trainable)
        self.trainable = trainable

    # ---- shape facts -------------------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        return self.input_embeddings.embedding_dim

    @property
    def input_embeddings(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    @property
    def dtype(self) -> torch.dtype:
        return self.input_embeddings.weight.dtype

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def tokenizer_id(self) -> str:
        """A stable string naming the tokenizer, for cache keys."""
        return f"{self.name}:{getattr(self.tokenizer, 'name_or_path', '')}:{len(self.tokenizer)}"

    # ---- tokenising -----------------------------------------------------------------------
    def encode_texts(self, texts: Sequence[str], max_length: int, add_mask: bool = False) -> list[list[int]]:
        """Texts -> token ids, truncated to max_length (the prompt comes on top).

        add_mask puts the tokenizer's mask token at the end of the text (before a final
        separator), for the MLM verbalizer: "<text> [MASK] [SEP]".
        """
        budget = max_length - 1 if add_mask else max_length
        ids = self.tokenizer(list(texts), truncation=True, max_length=budget)["input_ids"]
        if not add_mask:
            return ids
        mask_id = self.tokenizer.mask_token_id
        closing = {self.tokenizer.sep_token_id, self.tokenizer.eos_token_id} - {None}
        return [row[:-1] + [mask_id, row[-1]] if row and row[-1] in closing else row + [mask_id] for row in ids]

    # ---- forward ---------------------------------------------------------------------------
    def embed(self, input_ids: Tensor) -> Tensor:
        """(B, L) token ids -> (B, L, d) word embeddings (no positions)."""
        return self.input_embeddings(input_ids)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, prompt: Tensor | None = None) -> BackboneOutput:
        """Run the body on [P; E(x)] (Lester et al. 2021, eq. 1): prompt (B, n, d) goes first.

        The prompt is kept in fp32 by its owner and cast to the backbone dtype at the concat.
        """
        inputs_embeds = self.embed(input_ids)
        n_prompt = 0
        if prompt is not None:
            n_prompt = prompt.shape[1]
            inputs_embeds = torch.cat([prompt.to(inputs_embeds.dtype), inputs_embeds], dim=1)
            prompt_mask = attention_mask.new_ones(attention_mask.shape[0], n_prompt)
            attention_mask = torch.cat([prompt_mask, attention_mask], dim=1)
        hidden = self.body(inputs_embeds, attention_mask)
        return BackboneOutput(hidden=hidden, attention_mask=attention_mask, n_prompt=n_prompt)

    def body(self, inputs_embeds: Tensor, attention_mask: Tensor) -> Tensor:
        """(B, T, d) embeddings -> (B, T, d) last hidden states."""
        raise NotImplementedError

    def pool(self, output: BackboneOutput) -> Tensor:
        """(B, T, d) hidden -> (B, d) sentence vector: mean over unmasked positions (prompt
        included), the first input token (after the prompt), or the last unmasked one."""
        hidden, mask = output.hidden, output.attention_mask
        if self.pooling == "mean":
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        if self.pooling == "cls":
            return hidden[:, output.n_prompt]
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last_positions(mask)]

    # ---- label-word scores (verbalizer) ------------------------------------------------------
    def supports_verbalizer(self) -> str | None:
        """None when label words can be scored, else a sentence saying why not."""
        return None

    def verbalizer_needs_mask(self) -> bool:
        return False

    def label_word_scores(self, output: BackboneOutput, input_ids: Tensor, label_token_ids: list[list[int]]) -> Tensor:
        """(B, C) log-likelihood-style scores of each class's label word."""
        raise NotImplementedError


def last_positions(attention_mask: Tensor) -> Tensor:
    """(B, T) right-padded mask -> (B,) index of the last unmasked position."""
    return attention_mask.sum(dim=1).long() - 1


class EncoderAdapter(BackboneAdapter):
    """BERT / RoBERTa / MPNet / MiniLM. The verbalizer reads the MLM head at the [MASK] token."""

    family = "encoder"

    def body(self, inputs_embeds: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model.base_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state

    def supports_verbalizer(self) -> str | None:
        if not self.has_lm_head or self._mlm_head() is None:
            return (
                f"backbone '{self.name}' has no MLM head, so the verbalizer head cannot score label words; "
                "use head=label_similarity or head=linear (or a backbone with lm_head: true)"
            )
        if self.tokenizer.mask_token_id is None:
            return f"backbone '{self.name}' has no mask token, so the MLM verbalizer cannot be used"
        return None

    def verbalizer_needs_mask(self) -> bool:
        return True

    def _mlm_head(self) -> nn.Module | None:
        for attribute in ("cls", "lm_head"):  # BERT-style, RoBERTa/MPNet-style
            if hasattr(self.model, attribute):
                return getattr(self.model, attribute)
        return None

    def label_word_scores(self, output: BackboneOutput, input_ids: Tensor, label_token_ids: list[list[int]]) -> Tensor:
        """MLM log-probabilities at the mask position of each class's first label-word token."""
        mask_positions = (input_ids == self.tokenizer.mask_token_id).int().argmax(dim=1) + output.n_prompt
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        vocab_logits = self._mlm_head()(output.hidden[rows, mask_positions])  # (B, V)
        first_tokens = torch.tensor([ids[0] for ids in label_token_ids], device=input_ids.device)
        return vocab_logits.float().log_softmax(-1)[:, first_tokens]


class Seq2SeqAdapter(BackboneAdapter):
    """T5-style encoder-decoder: prompts enter the encoder; label words are decoded."""

    family = "seq2seq"

    def body(self, inputs_embeds: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model.get_encoder()(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state

    def label_word_scores(self, output: BackboneOutput, input_ids: Tensor, label_token_ids: list[list[int]]) -> Tensor:
        """Sum of decoder token log-probs of each label word (rank classification, teacher forced).

        All C label sequences are decoded in one (B*C)-row batch against the shared encoder states.
        """
        batch, classes = output.hidden.shape[0], len(label_token_ids)
        pad_id = self.tokenizer.pad_token_id
        length = max(len(ids) for ids in label_token_ids)
        targets = torch.full((classes, length), -100, dtype=torch.long, device=input_ids.device)
        for c, ids in enumerate(label_token_ids):
            targets[c, : len(ids)] = torch.tensor(ids, device=input_ids.device)
        start_id = self.model.config.decoder_start_token_id
        start_id = pad_id if start_id is None else start_id
        decoder_inputs = torch.cat([targets.new_full((classes, 1), start_id), targets[:, :-1]], dim=1)
        decoder_inputs = decoder_inputs.masked_fill(decoder_inputs == -100, pad_id)
        hidden = output.hidden.repeat_interleave(classes, dim=0)
        mask = output.attention_mask.repeat_interleave(classes, dim=0)
        logits = self.model(
            encoder_outputs=(hidden,),
            attention_mask=mask,
            decoder_input_ids=decoder_inputs.repeat(batch, 1),
        ).logits.float()  # (B*C, length, V)
        tiled_targets = targets.repeat(batch, 1)
        token_logp = logits.log_softmax(-1).gather(-1, tiled_targets.clamp_min(0).unsqueeze(-1)).squeeze(-1)
        token_logp = token_logp.masked_fill(tiled_targets == -100, 0.0)
        return token_logp.sum(-1).view(batch, classes)


class CausalAdapter(BackboneAdapter):
    """GPT-2 / OPT / Llama-style decoder: the verbalizer reads the next token after the input."""

    family = "causal"

    def body(self, inputs_embeds: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model.base_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state

    def label_word_scores(self, output: BackboneOutput, input_ids: Tensor, label_token_ids: list[list[int]]) -> Tensor:
        """Next-token log-probs, after the last input token, of each class's first label-word token."""
        rows = torch.arange(output.hidden.shape[0], device=output.hidden.device)
        last_hidden = output.hidden[rows, last_positions(output.attention_mask)]
        vocab_logits = self.model.get_output_embeddings()(last_hidden)
        first_tokens = torch.tensor([ids[0] for ids in label_token_ids], device=last_hidden.device)
        return F.log_softmax(vocab_logits.float(), dim=-1)[:, first_tokens]


ADAPTERS: dict[str, type[BackboneAdapter]] = {
    "encoder": EncoderAdapter,
    "seq2seq": Seq2SeqAdapter,
    "causal": CausalAdapter,
}
