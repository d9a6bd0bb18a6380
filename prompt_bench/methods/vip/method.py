"""VIP: vector-quantised input-contextualised prompts (Bhardwaj, Saha, Hoi, Poria, EMNLP 2022).

    P^c = Contextualizer([P; E(x)])             (B, n, d)   sec. 2.1
    q̃   = SampledQuantizer(P^c)                 (B, n, d)   sec. 2.2, straight-through
    prompt given to the backbone = P + q̃        (B, n, d)   the skip connection of fig. 1
    L = CE + β · mean((sg(q) − P^c)²)                        commitment, β = 0.1

P is an input-level soft prompt, initialised by default from embedding rows 0..n-1 (OpenPrompt's
SoftTemplate, what the official codebook offset n assumes). The codebook moves only by
its moving-average rule, in training forward passes; P trains at the optimiser's rate (Adafactor
0.3) and the contextualiser at `module_lr` (1e-4), as the official code's two optimisers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from prompt_bench.errors import ConfigError
from prompt_bench.methods.base import MethodContext
from prompt_bench.methods.prompt_tuning import INITS, PromptTuning
from prompt_bench.methods.vip.contextualizer import Contextualizer
from prompt_bench.methods.vip.quantizer import EVAL_CODES, SampledQuantizer

CODEBOOK_INITS = ("offset_rows", "vocab")


class VIP(PromptTuning):
    """Prompt tuning's P plus an input-dependent, quantised correction q̃ (see the module docstring).

    P init: `first_rows` (default) copies embedding rows 0 … n−1, as OpenPrompt's SoftTemplate with
    initialize_from_vocab; prompt tuning's inits (`vocab`, `random`, ...) are the options.
    Codebook: K = n_codes (-1: 10·n) rows of the input embedding table, `offset_rows` n … n+K−1 as
    the official code (the rows after P's) or `vocab` rows sampled like P's vocab init, rescaled to
    norm `code_norm` (None: the mean norm of the backbone's embedding rows; 100 suits T5, not MiniLM's ~1).
    Eval: `sample_at_eval` (default, official) samples codes as in training, so predictions are
    stochastic (repeatable under a seed); `sample_at_eval=False` uses `eval_code` (expected | nearest).
    """

    inits = (*INITS, "first_rows")

    def __init__(
        self,
        n_codes: int = -1,
        n_samples: int = 10,
        temperature: float = 100.0,
        commitment_cost: float = 0.1,
        ema_decay: float = 0.99,
        ema_epsilon: float = 1e-2,
        textbook_ema: bool = False,
        code_norm: float | None = 100.0,
        codebook_init: str = "offset_rows",
        context_width: int = 32,
        context_heads: int = 4,
        context_feedforward: int = 64,
        context_layers: int = 2,
        context_dropout: float = 0.1,
        module_lr: float = 1e-4,
        sample_at_eval: bool = True,
        eval_code: str = "expected",
        **prompt_tuning_options,
    ) -> None:
        super().__init__(**{"init": "first_rows", **prompt_tuning_options})
        if self.depth != "input":
            raise ConfigError("method=vip contextualises input-level prompt tokens; set method.module.depth=input.")
        if eval_code not in EVAL_CODES:
            raise ConfigError(f"method.module.eval_code '{eval_code}' is not one of {', '.join(EVAL_CODES)}.")
        if codebook_init not in CODEBOOK_INITS:
            raise ConfigError(
                f"method.module.codebook_init '{codebook_init}' is not one of {', '.join(CODEBOOK_INITS)}."
            )
        if n_samples < 1 or temperature <= 0 or not 0.0 <= ema_decay < 1.0:
            raise ConfigError(
                f"method.module needs n_samples >= 1, temperature > 0 and 0 <= ema_decay < 1; got "
                f"n_samples={n_samples}, temperature={temperature}, ema_decay={ema_decay}."
            )
        if context_width % context_heads:
            raise ConfigError(
                f"method.module.context_width={context_width} must be divisible by context_heads={context_heads}."
            )
        self.n_codes = n_codes if n_codes > 0 else 10 * self.n_tokens
        self.quantizer_options = dict(
            n_samples=n_samples,
            temperature=temperature,
            commitment_cost=commitment_cost,
            ema_decay=ema_decay,
            ema_epsilon=ema_epsilon,
            textbook_ema=textbook_ema,
            eval_code=eval_code,
            sample_at_eval=sample_at_eval,
        )
        self.context_options = dict(
            width=context_width,
            heads=context_heads,
            feedforward=context_feedforward,
            layers=context_layers,
            dropout=context_dropout,
        )
        self.code_norm = code_norm
        self.codebook_init = codebook_init
        self.module_lr = module_lr
        self.contextualizer: Contextualizer | None = None
        self.quantizer: SampledQuantizer | None = None
        self._embed_tokens: Callable[[Tensor], Tensor] | None = None  # the adapter's E(x), not a submodule
        self._last_commitment: Tensor | None = None
        self._epoch = EpochStats()

    def prepare(self, context: MethodContext) -> None:
        """P (prompt tuning's init), the contextualiser at the backbone's width, the codebook."""
        super().prepare(context)
        adapter = context.adapter
        table = adapter.input_embeddings.weight.detach().float()
        device = table.device
        self.contextualizer = Contextualizer(adapter.hidden_size, **self.context_options).to(device)
        self.quantizer = SampledQuantizer(self._initial_codebook(table, context), **self.quantizer_options).to(device)
        self._embed_tokens = adapter.embed  # a bound method: the frozen table stays out of this state dict

    def _initial_rows(self, table: Tensor, context: MethodContext, generator: torch.Generator) -> Tensor:
        """(n, d) P: rows 0 … n−1 for `first_rows`, otherwise prompt tuning's init."""
        if self.init == "first_rows":
            return table[: self.n_tokens].cpu()
        return super()._initial_rows(table, context, generator)

    def _initial_codebook(self, table: Tensor, context: MethodContext) -> Tensor:
        """(K, d) codes of norm `code_norm` from the input embedding table."""
        if self.codebook_init == "offset_rows":
            first, last = self.n_tokens, self.n_tokens + self.n_codes
            if last > table.shape[0]:
                raise ConfigError(
                    f"method.module.n_codes={self.n_codes} codes from rows {first}..{last - 1} need a vocabulary of "
                    f"{last} rows, but backbone '{context.adapter.name}' has {table.shape[0]}; lower n_codes."
                )
            rows = table[first:last]
        else:
            generator = torch.Generator().manual_seed(self.seed + 1)
            rows = self._vocab_rows(table, self.n_codes, generator, context.adapter.tokenizer).to(table.device)
        norm = self.code_norm if self.code_norm is not None else float(table.norm(dim=-1).mean())
        return norm * nn.functional.normalize(rows, dim=-1)

    # ---- the prompt ----------------------------------------------------------------------------
    def prompt(self, batch: dict[str, Tensor], input_embeds: Tensor | None = None) -> Tensor:
        """(B, n, d) P + q̃ for this batch; input_embeds (B, L, d) is E(x), taken from the adapter if None."""
        soft_prompt = super().prompt(batch)
        if input_embeds is None:
            input_embeds = self._embed_tokens(batch["input_ids"])
        contextual = self.contextualizer(soft_prompt, input_embeds.float(), batch["attention_mask"])
        quantized = self.quantizer(contextual)
        self._last_commitment = quantized.commitment
        if self.training:
            self._epoch.add(quantized, soft_prompt)
        return soft_prompt + quantized.straight_through

    def extra_loss(self, batch: dict[str, Tensor], logits: Tensor, backbone=None) -> dict[str, Tensor]:
        """{"commitment": β · mean((sg(q) − P^c)²)} of the last `prompt` call (this batch's)."""
        return {"commitment": self._last_commitment}

    def param_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """P at the optimiser's rate; the contextualiser at module_lr. The codebook is a buffer."""
        return [
            {"params": [self.prompt_embeddings], "lr": base_lr, "name": "prompt"},
            {"params": list(self.contextualizer.parameters()), "lr": self.module_lr, "name": "vip_module"},
        ]

    def epoch_diagnostics(self) -> dict[str, float]:
        """Codebook perplexity and codes used, commitment, ‖q̃‖ and ‖P‖ over this training epoch."""
        return self._epoch.summary_and_reset()

    # ---- saving: P, the contextualiser and the codebook state --------------------------------
    def prompt_tensors(self) -> dict[str, Tensor]:
        """Everything trained: prompt_embeddings (n, d), contextualizer.*, quantizer.codebook (K, d),
        quantizer.cluster_size (K,) (and quantizer.code_sums with textbook_ema)."""
        return {name: tensor.detach() for name, tensor in self.state_dict().items()}

    def load_prompt_tensors(self, tensors: dict[str, Tensor]) -> None:
        self.load_state_dict(tensors, strict=True)


class EpochStats:
    """Running sums over one training epoch for `VIP.epoch_diagnostics`."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.code_counts: Tensor | None = None
        self.sums = {"commitment_epoch": 0.0, "quantized_norm": 0.0, "prompt_norm": 0.0}
        self.batches = 0

    @torch.no_grad()
    def add(self, quantized, soft_prompt: Tensor) -> None:
        counts = quantized.counts.sum(0)
        self.code_counts = counts if self.code_counts is None else self.code_counts + counts
        self.sums["commitment_epoch"] += quantized.commitment.detach()
        self.sums["quantized_norm"] += quantized.straight_through.detach().norm(dim=-1).mean()
        self.sums["prompt_norm"] += soft_prompt.detach().norm(dim=-1).mean()
        self.batches += 1

    def summary_and_reset(self) -> dict[str, float]:
        """codebook_perplexity = exp(H(code frequencies over the epoch)), codes_used = codes drawn at
        least once, and the per-batch means of commitment, ‖q̃_i‖ and ‖P_i‖; {} before any batch."""
        if not self.batches:
            return {}
        frequencies = self.code_counts / self.code_counts.sum()
        entropy = -(frequencies * torch.log(frequencies + 1e-10)).sum()
        summary = {
            "codebook_perplexity": float(entropy.exp()),
            "codes_used": float((self.code_counts > 0).sum()),
            **{name: float(total) / self.batches for name, total in self.sums.items()},
        }
        self.reset()
        return summary
