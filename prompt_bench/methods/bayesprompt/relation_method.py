"""BayesPrompt on relation extraction, as the official code (FF2127/bayesprompt, built on KnowPrompt).

The input is KnowPrompt's template (encoding.py), scored by head=relation_mlm. There is no soft
prompt: the particle average v (mean of C = #relations particles drawn without replacement) is
written into the embedding-table rows of the virtual type words [sub] and [obj] once per batch, from
epoch `start_epoch` (1) on (transformer_full.py:157-172, `add_sample_abstraction`):

    E[[sub]] = E[[obj]] = v        (d,)   no gradient; E: the backbone's input embedding table

Features (transformer_full.py:174-179, `store_inputdata`): the mean of the input embedding rows of the
TEMPLATED input (markers and type words included), padded to max_length (official 256). The GMM is
fitted on the whole train pool's features, the particles start as the k-shot training features.
Official setting: every backbone weight trains (`train_backbone: true`, AdamW lr 3e-5); with
`train_backbone: false` only the head's label rows (and bias) train and [sub]/[obj] are only written.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from prompt_bench.errors import ConfigError
from prompt_bench.methods.base import MethodContext
from prompt_bench.methods.bayesprompt.encoding import add_relation_tokens, encode_relation_texts
from prompt_bench.methods.bayesprompt.method import BayesPrompt


class BayesPromptRelation(BayesPrompt):
    """BayesPrompt's relation path: particles written into the [sub]/[obj] rows; no soft prompt.

    Args: train_backbone (official true: full fine-tuning); the rest as BayesPrompt (n_virtual is
    fixed at 2: [sub], [obj]; the soft-prompt options are unused).
    """

    families = ("encoder",)

    def __init__(self, train_backbone: bool = True, **bayesprompt: Any) -> None:
        bayesprompt["n_virtual"] = 2
        super().__init__(**bayesprompt)
        self.trains_backbone = bool(train_backbone)
        self.virtual_ids: tuple[int, int] | None = None
        self._table: torch.nn.Embedding | None = None

    def prepare(self, context: MethodContext) -> None:
        """The [sub]/[obj] ids, then the particles (artefact, or GMM + SVGD on templated features)."""
        if context.task_kind != "relation":
            raise ConfigError(
                "method=bayesprompt_relation runs on a relation dataset (dataset=synthetic_relation, semeval, tacred, "
                "tacrev, retacred); for sentence classification use method=bayesprompt."
            )
        self.relation_max_length = context.max_length or self.feature["max_length"]
        vocab = add_relation_tokens(context.adapter, len(context.label_names))  # present already: adds nothing
        self.virtual_ids = vocab.virtual_ids
        # The backbone's table, held outside nn.Module's registry (it is the backbone's parameter, not the method's).
        object.__setattr__(self, "_table", context.adapter.input_embeddings)
        self._prepare_particles(context)
        self.info["train_backbone"] = self.trains_backbone

    def _encode(self, context: MethodContext, texts: tuple[str, ...]) -> list[list[int]]:
        """Token ids of the templated relation inputs (what the official features average)."""
        return encode_relation_texts(context.adapter, texts, self.relation_max_length)

    def prompt(self, batch: dict[str, Tensor], input_embeds: Tensor | None = None) -> None:
        """Writes v into E[[sub]] and E[[obj]] from `start_epoch` on; no prompt vectors (None)."""
        if int(self.epochs_done) >= self.start_epoch:
            vector = self.sampler.vector(self.training)
            with torch.no_grad():
                self.virtual_tokens.copy_(vector.to(self.virtual_tokens).expand_as(self.virtual_tokens))
                self._table.weight[list(self.virtual_ids)] = self.virtual_tokens.to(self._table.weight)
        return None

    def layer_prefixes(self, batch: dict[str, Tensor]) -> None:
        return None

    def param_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """None of its own: the backbone (train_backbone) and the head's label rows train."""
        return []

    def prompt_tensors(self) -> dict[str, Tensor]:
        """{"virtual_tokens": (2, d), "particles": (P, d)}."""
        return {"virtual_tokens": self.virtual_tokens.detach(), "particles": self.sampler.particles.detach()}

    def load_prompt_tensors(self, tensors: dict[str, Tensor]) -> None:
        with torch.no_grad():
            self.virtual_tokens.copy_(tensors["virtual_tokens"])
            self.sampler.particles.copy_(tensors["particles"])
