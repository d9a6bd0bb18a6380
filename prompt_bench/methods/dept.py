"""DePT: Decoupled Prompt Tuning (Zhang et al., CVPR 2024), a switch over any CoOp-family learner.

A Channel Adjusted Transfer (CAT) head learns base-class knowledge in its own feature space while
the ITM head (z_itm = exp(s)·cos(f, T)) keeps the shared one:

- cwT(u) = a ⊙ u + b, a = 1, b = 0 at init, one for the input and one for the text features (D);
- a linear classifier W (C_base × D) + bias, trained on the 2B rows [cwT_txt(T[y]); cwT_img(f)]
  with labels [y; y] (features not L2-normalised, as the official TYPE='linear');
- loss L = (1 − λ)·CE(z_itm, y) + λ·CE(W·[cwT_txt(T[y]); cwT_img(f)], [y; y]), λ = 0.7;
- test: the trained (base) classes are scored by (1 − λ)·z_itm + λ·W·cwT_img(f) (logit fusion, as
  the official code) or log((1 − λ)·softmax(z_itm) + λ·softmax(z_cat)) (fusion="prob", the
  paper's wording); new classes by z_itm alone: W never scores a class it was not trained on.
- The CAT head trains at `lr_ratio` (6.5) × the prompt's learning rate.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from prompt_bench.errors import ConfigError
from prompt_bench.methods.base import MethodContext
from prompt_bench.methods.coop import ClassPromptMethod

FUSIONS = ("logit", "prob")


class FiLM(nn.Module):
    """cwT(u) = a ⊙ u + b over the last dimension D; a = 1, b = 0 at init (the identity)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))
        self.shift = nn.Parameter(torch.zeros(dim))

    def forward(self, features: Tensor) -> Tensor:
        return self.scale * features + self.shift


class CatHead(nn.Module):
    """cwT for text and input features, then W: (N, D) -> (N, C_base) logits."""

    def __init__(self, dim: int, n_classes: int, channel_transform: bool = True) -> None:
        super().__init__()
        self.film_text = FiLM(dim) if channel_transform else nn.Identity()
        self.film_input = FiLM(dim) if channel_transform else nn.Identity()
        self.classifier = nn.Linear(dim, n_classes)

    def input_logits(self, input_features: Tensor) -> Tensor:
        """(B, D) raw input features -> (B, C_base) z_cat = W·cwT_img(f) + bias."""
        return self.classifier(self.film_input(input_features))

    def training_logits(self, input_features: Tensor, label_text_features: Tensor) -> Tensor:
        """(B, D) inputs and (B, D) text features of their labels -> (2B, C_base), text rows first."""
        rows = torch.cat([self.film_text(label_text_features), self.film_input(input_features)])
        return self.classifier(rows)


class DePT(ClassPromptMethod):
    """`base` (CoOp, CoCoOp or KgCoOp) + the CAT head; see the module docstring for the equations."""

    def __init__(
        self,
        base: ClassPromptMethod,
        weight: float = 0.7,
        lr_ratio: float = 6.5,
        fusion: str = "logit",
        channel_transform: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(base, ClassPromptMethod):
            raise ConfigError(
                f"method.base must name a CoOp-family learner in method.learners (coop, cocoop, kgcoop), got {base!r}."
            )
        if not 0.0 <= weight <= 1.0:
            raise ConfigError(f"method.module.weight (λ) must be in [0, 1], got {weight}.")
        if fusion not in FUSIONS:
            raise ConfigError(f"method.module.fusion '{fusion}' is not one of {', '.join(FUSIONS)}.")
        self.base = base
        self.weight = weight
        self.lr_ratio = lr_ratio
        self.fusion = fusion
        self.channel_transform = channel_transform
        self.cat: CatHead | None = None

    @property
    def class_specific(self) -> bool:
        return self.base.class_specific

    @property
    def per_input(self) -> bool:
        return self.base.per_input

    def prepare(self, context: MethodContext) -> None:
        self.base.prepare(context)
        adapter = context.adapter
        with torch.random.fork_rng(devices=[]):  # the head's init leaves the global RNG (and so the base) untouched
            torch.manual_seed(getattr(self.base, "seed", 0))
            self.cat = CatHead(adapter.feature_size, len(context.label_names), self.channel_transform)
        self.cat.to(adapter.token_embedding.weight.device)

    def context(self, input_features: Tensor, n_classes: int) -> Tensor:
        return self.base.context(input_features, n_classes)

    def loss(
        self, itm_logits: Tensor, labels: Tensor, input_features: Tensor, class_features: Tensor
    ) -> dict[str, Tensor]:
        """{"ce_itm": (1−λ)·CE_itm, "ce_cat": λ·CE_cat, + the base's regulariser}; they sum to L."""
        terms = self.base.loss(itm_logits, labels, input_features, class_features)
        ce_itm = terms.pop("ce")
        if class_features.dim() == 2:  # (C, D) shared by the batch
            label_text = class_features[labels]
        else:  # (B, C, D) per input (CoCoOp)
            label_text = class_features[torch.arange(labels.shape[0], device=labels.device), labels]
        cat_logits = self.cat.training_logits(input_features, label_text)
        ce_cat = F.cross_entropy(cat_logits, torch.cat([labels, labels]))
        return {"ce_itm": (1.0 - self.weight) * ce_itm, "ce_cat": self.weight * ce_cat, **terms}

    def scores(self, itm_logits: Tensor, input_features: Tensor, training_classes: bool) -> Tensor:
        """Fused logits over the trained (base) classes; z_itm alone over any other class set."""
        if not training_classes:
            return itm_logits
        cat_logits = self.cat.input_logits(input_features)
        if self.fusion == "logit":
            return (1.0 - self.weight) * itm_logits + self.weight * cat_logits
        probabilities = (1.0 - self.weight) * itm_logits.softmax(-1) + self.weight * cat_logits.softmax(-1)
        return probabilities.clamp_min(torch.finfo(probabilities.dtype).tiny).log()

    def param_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """The prompt learner at base_lr, the CAT head (cwT + W) at lr_ratio × base_lr."""
        return [
            {"params": [p for p in self.base.parameters() if p.requires_grad], "name": "prompt"},
            {"params": list(self.cat.parameters()), "lr": self.lr_ratio * base_lr, "name": "cat_head"},
        ]

    def prompt_tensors(self) -> dict[str, Tensor]:
        tensors = self.base.prompt_tensors()
        tensors.update({f"cat.{name}": parameter.detach() for name, parameter in self.cat.named_parameters()})
        return tensors

    def load_prompt_tensors(self, tensors: dict[str, Tensor]) -> None:
        self.base.load_prompt_tensors({k: v for k, v in tensors.items() if not k.startswith("cat.")})
        with torch.no_grad():
            for name, parameter in self.cat.named_parameters():
                parameter.copy_(tensors[f"cat.{name}"])
