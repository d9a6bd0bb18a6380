"""The hand-written sides the benchmark sets beside prompt_bench's Lightning train step.

All three compute prompt tuning's math on the same frozen HF model, the same batches and the
same label-similarity head:
    logits = s · cos(mean_pool(body([P; E(x)])), label vectors),  loss = CE(logits, y)
- `FloorSide`: forward and backward to the input embeddings only: no prompt parameter (the
  (B, n+L, d) input is a leaf that requires grad), no optimizer, no Lightning. What any prompt
  tuner must pay at this shape.
- `ReferenceSide`: the same by hand with a fp32 prompt parameter (n, d) and prompt_bench's own
  optimizer factory (Adafactor by default), stepped every batch.
- `PeftSide`: HF PEFT `PromptTuning` (task FEATURE_EXTRACTION) wrapped around the same body,
  the same optimizer, the head math above on its last hidden state. What differs from
  prompt_bench is PEFT's own: its prompt is an `nn.Embedding` looked up by index every step and
  cast to the input dtype, and it builds the prompt's attention mask each forward.
Each `step(batch)` runs one training step and returns the loss; `logits(batch)` scores in eval.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from prompt_bench.bench.workload import Workload, body_of, mean_pool


class HandSide:
    """Shared by the hand-written sides: the body, the label vectors, the head math."""

    name = ""

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self.model = workload.model
        self.body = body_of(self.model)
        self.word_embeddings = self.model.get_input_embeddings()
        self.device = workload.device
        self.label_vectors = self._label_vectors(workload.label_input_ids, workload.label_mask)

    @torch.no_grad()
    def _label_vectors(self, label_input_ids: Tensor, label_mask: Tensor) -> Tensor:
        """(C, d) unit mean-pooled label-name vectors, computed once in eval mode, fp32."""
        was_training = self.model.training
        self.model.eval()
        hidden = self.body(input_ids=label_input_ids, attention_mask=label_mask).last_hidden_state
        self.model.train(was_training)
        return F.normalize(mean_pool(hidden, label_mask).float(), dim=-1)

    def head(self, hidden: Tensor, mask: Tensor) -> Tensor:
        """(B, T, d) last hidden states, (B, T) mask -> (B, C) logits."""
        sentence_vectors = F.normalize(mean_pool(hidden, mask).float(), dim=-1)
        return self.workload.logit_scale * sentence_vectors @ self.label_vectors.T

    def to_device(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return {name: tensor.to(self.device, non_blocking=True) for name, tensor in batch.items()}

    @staticmethod
    def prompt_mask(attention_mask: Tensor, n_prompt: int) -> Tensor:
        return torch.cat([attention_mask.new_ones(attention_mask.shape[0], n_prompt), attention_mask], dim=1)


class FloorSide(HandSide):
    """Forward + backward to the input at the benchmark's shape; nothing is updated."""

    name = "floor"

    def __init__(self, workload: Workload, initial_prompt: Tensor) -> None:
        super().__init__(workload)
        self.prompt = initial_prompt.detach().float().to(self.device)

    def step(self, batch: dict[str, Tensor]) -> Tensor:
        batch = self.to_device(batch)
        with self.workload.autocast():
            with torch.no_grad():  # the lookup and concat are not part of the floor's gradient
                words = self.word_embeddings(batch["input_ids"])
                prompt = self.prompt.to(words.dtype).unsqueeze(0).expand(words.shape[0], -1, -1)
                inputs = torch.cat([prompt, words], dim=1)
            inputs.requires_grad_(True)
            mask = self.prompt_mask(batch["attention_mask"], self.prompt.shape[0])
            hidden = self.body(inputs_embeds=inputs, attention_mask=mask).last_hidden_state
            loss = F.cross_entropy(self.head(hidden, mask), batch["labels"])
        loss.backward()
        return loss.detach()


class TrainedSide(HandSide):
    """A side that trains a prompt: cross-entropy on `logits(batch)`, one step of `self.optimizer`."""

    optimizer: torch.optim.Optimizer

    def logits(self, batch: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def step(self, batch: dict[str, Tensor]) -> Tensor:
        batch = self.to_device(batch)
        with self.workload.autocast():
            loss = F.cross_entropy(self.logits(batch), batch["labels"])
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()


class ReferenceSide(TrainedSide):
    """Prompt tuning by hand: its own fp32 prompt (n, d) and prompt_bench's optimizer settings."""

    name = "hand-written"

    def __init__(self, workload: Workload, initial_prompt: Tensor) -> None:
        super().__init__(workload)
        self.prompt = nn.Parameter(initial_prompt.detach().clone().float().to(self.device))
        self.optimizer = workload.experiment.module.optimizer_factory(params=[self.prompt])

    def logits(self, batch: dict[str, Tensor]) -> Tensor:
        word_vectors = self.word_embeddings(batch["input_ids"])
        prompt = self.prompt.to(word_vectors.dtype).unsqueeze(0).expand(word_vectors.shape[0], -1, -1)
        inputs = torch.cat([prompt, word_vectors], dim=1)
        mask = self.prompt_mask(batch["attention_mask"], self.prompt.shape[0])
        return self.head(self.body(inputs_embeds=inputs, attention_mask=mask).last_hidden_state, mask)


def peft_body(model: nn.Module) -> nn.Module:
    """The PreTrainedModel PEFT wraps: the base model (BERT, MPNet, GPT-2 without their LM heads), or
    for T5 a T5EncoderModel view sharing the model's own embedding and encoder (no copy)."""
    if not model.config.is_encoder_decoder:
        return model.base_model
    from transformers import T5EncoderModel

    with torch.device("meta"):  # a copy of the config: T5EncoderModel sets is_encoder_decoder=False on its own
        view = T5EncoderModel(copy.deepcopy(model.config))
    view.shared = model.get_input_embeddings()
    view.encoder = model.get_encoder()
    return view


class PeftSide(TrainedSide):
    """HF PEFT PromptTuning with the prompt_bench prompt's initial values copied in."""

    name = "peft"

    def __init__(self, workload: Workload, initial_prompt: Tensor) -> None:
        super().__init__(workload)
        import peft

        n_tokens, hidden_size = initial_prompt.shape
        config = peft.PromptTuningConfig(
            task_type=peft.TaskType.FEATURE_EXTRACTION,
            num_virtual_tokens=n_tokens,
            token_dim=hidden_size,
            num_transformer_submodules=1,
            prompt_tuning_init=peft.PromptTuningInit.RANDOM,
        )
        self.peft_model = peft.get_peft_model(peft_body(self.model), config)
        embedding = self.peft_model.prompt_encoder["default"].embedding
        with torch.no_grad():
            embedding.weight.copy_(initial_prompt.detach().float())
        self.peft_model.to(self.device)
        self.n_tokens = n_tokens
        self.optimizer = workload.experiment.module.optimizer_factory(
            params=[p for p in self.peft_model.parameters() if p.requires_grad]
        )

    def logits(self, batch: dict[str, Tensor]) -> Tensor:
        hidden = self.peft_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        return self.head(hidden, self.prompt_mask(batch["attention_mask"], self.n_tokens))


def peft_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("peft") is not None
