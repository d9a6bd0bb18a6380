"""Vanilla prompt tuning (Lester et al., 2021): a learned P in R^{n x d} before the input."""

from __future__ import annotations

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from prompt_bench.errors import ConfigError
from prompt_bench.methods.base import MethodContext, PromptMethod

INITS = ("random", "vocab", "text", "labels", "file")


class PromptTuning(PromptMethod):
    """n soft tokens, shared by all inputs: prompt(batch) = P expanded to (B, n, d).

    Initialisation (Lester et al. sec. 3): `random` N(0, init_std²); `vocab` rows sampled from the
    `vocab_top_k` first (most frequent, for BPE/WordPiece vocabularies roughly) token embeddings;
    `text` the embeddings of `init_text` tokens, repeated to length n; `labels` the class-name
    token embeddings, then vocab rows for the rest; `file` a prompt.safetensors from another run.
    """

    def __init__(
        self,
        n_tokens: int = 20,
        init: str = "vocab",
        init_text: str | None = None,
        init_file: str | None = None,
        init_std: float = 0.02,
        vocab_top_k: int = 5000,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if init not in INITS:
            raise ConfigError(f"method.module.init '{init}' is not one of {', '.join(INITS)}.")
        if init == "text" and not init_text:
            raise ConfigError("method.module.init=text needs method.module.init_text='a sentence to start from'.")
        if init == "file" and not init_file:
            raise ConfigError("method.module.init=file needs method.module.init_file=/path/to/prompt.safetensors.")
        if n_tokens < 1:
            raise ConfigError(f"method.module.n_tokens must be >= 1, got {n_tokens}.")
        self.n_tokens = n_tokens
        self.init = init
        self.init_text = init_text
        self.init_file = init_file
        self.init_std = init_std
        self.vocab_top_k = vocab_top_k
        self.seed = seed
        self.prompt_embeddings: nn.Parameter | None = None

    def prepare(self, context: MethodContext) -> None:
        """Create P (fp32, whatever the backbone dtype) from the chosen initialisation."""
        table = context.adapter.input_embeddings.weight.detach().float()
        generator = torch.Generator().manual_seed(self.seed)
        rows = self._initial_rows(table, context, generator)
        self.prompt_embeddings = nn.Parameter(rows.clone().to(table.device))

    def _initial_rows(self, table: Tensor, context: MethodContext, generator: torch.Generator) -> Tensor:
        n, d = self.n_tokens, table.shape[1]
        if self.init == "random":
            return torch.randn(n, d, generator=generator) * self.init_std
        if self.init == "file":
            return self._rows_from_file(d)
        if self.init in ("text", "labels"):
            tokenizer = context.adapter.tokenizer
            words = self.init_text if self.init == "text" else " ".join(context.label_names)
            token_ids = tokenizer.encode(words, add_special_tokens=False)[:n]
            rows = table[torch.tensor(token_ids, dtype=torch.long)] if token_ids else table[:0]
            if self.init == "text" and len(token_ids) > 0:
                repeats = -(-n // len(token_ids))
                return rows.repeat(repeats, 1)[:n].cpu()
            vocab_rows = self._vocab_rows(table, n - len(token_ids), generator, tokenizer)
            return torch.cat([rows.cpu(), vocab_rows])[:n]
        return self._vocab_rows(table, n, generator, context.adapter.tokenizer)

    def _vocab_rows(self, table: Tensor, count: int, generator: torch.Generator, tokenizer) -> Tensor:
        """`count` rows drawn from the first `vocab_top_k` ordinary tokens (special and
        placeholder tokens such as [unused12] or <s> skipped)."""
        special = set(tokenizer.all_special_ids)
        ordinary = [
            token_id
            for token_id, token in enumerate(tokenizer.convert_ids_to_tokens(range(table.shape[0])))
            if token_id not in special and not (token[:1] in "[<" and token[-1:] in "]>")
        ][: self.vocab_top_k]
        picks = torch.tensor(ordinary)[torch.randint(0, len(ordinary), (count,), generator=generator)]
        return table.cpu()[picks]

    def _rows_from_file(self, hidden_size: int) -> Tensor:
        tensors = load_file(self.init_file)
        rows = tensors.get("prompt_embeddings")
        if rows is None or rows.shape != (self.n_tokens, hidden_size):
            found = {k: tuple(v.shape) for k, v in tensors.items()}
            raise ConfigError(
                f"{self.init_file} holds {found}, but this run needs prompt_embeddings of shape "
                f"({self.n_tokens}, {hidden_size}); match method.module.n_tokens and the backbone."
            )
        return rows.float()

    def prompt(self, batch: dict[str, Tensor], input_embeds: Tensor | None = None) -> Tensor:
        batch_size = batch["input_ids"].shape[0]
        return self.prompt_embeddings.unsqueeze(0).expand(batch_size, -1, -1)

    def prompt_tensors(self) -> dict[str, Tensor]:
        return {"prompt_embeddings": self.prompt_embeddings.detach()}

    def load_prompt_tensors(self, tensors: dict[str, Tensor]) -> None:
        with torch.no_grad():
            self.prompt_embeddings.copy_(tensors["prompt_embeddings"])
