"""The CoOp family on dual encoders: learned context vectors in front of every class name.

- CoOp (Zhou et al., IJCV 2022): M context vectors [v]_1..[v]_M (shared, or one set per class with
  `class_specific`), random N(0, 0.02) or the embeddings of `ctx_init` ("a photo of a").
- CoCoOp (Zhou et al., CVPR 2022): a Meta-Net D -> D/16 -> d on the normalised input feature,
  whose output π(f) is added to every context vector: v_m(x) = v_m + π(f).
- KgCoOp (Yao et al., CVPR 2023): CoOp + w · (1 − mean_c cos(t_c, t_c^hand)), w = 2.0, pulling the
  learned class features towards those of the hand-crafted prompt.

Class text c is `[SOS] v_1..v_M <name_c>. [EOS]`, through the frozen text tower (the adapter
splices the context; see `DualEncoderAdapter.class_features`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from prompt_bench.errors import ConfigError
from prompt_bench.methods.base import Method, MethodContext


class ClassPromptMethod(Method):
    """A method of the `class` site: context vectors for a dual encoder's class texts, a loss, scores.

    `context(input_features, n_classes)` -> (M, d) shared, (C, M, d) class-specific or
    (B, M, d) per input; `loss(...)` -> named terms whose sum is minimised; `scores(...)` -> the
    logits a class set is scored with (the ITM logits, unless DePT fuses in its CAT head).
    """

    prompt_site = "class"
    families = ("dual_encoder",)
    required_head = "itm"
    class_specific = False
    per_input = False
    """True when the context depends on the input: context() is then (B, M, d)."""

    def context(self, input_features: Tensor, n_classes: int) -> Tensor:
        raise NotImplementedError

    def loss(
        self, itm_logits: Tensor, labels: Tensor, input_features: Tensor, class_features: Tensor
    ) -> dict[str, Tensor]:
        """{"ce": CE(z_itm, y)} plus any regulariser."""
        return {"ce": F.cross_entropy(itm_logits, labels)}

    def scores(self, itm_logits: Tensor, input_features: Tensor, training_classes: bool) -> Tensor:
        """(B, C) logits at evaluation; `training_classes` says whether these are the trained classes."""
        return itm_logits


class CoOp(ClassPromptMethod):
    """M learned context vectors (fp32) shared by all classes, or per class with class_specific."""

    def __init__(
        self,
        n_ctx: int = 16,
        ctx_init: str | None = None,
        class_specific: bool = False,
        init_std: float = 0.02,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if n_ctx < 1 and not ctx_init:
            raise ConfigError(f"method.module.n_ctx must be >= 1 (or give ctx_init), got {n_ctx}.")
        self.n_ctx = n_ctx
        self.ctx_init = ctx_init or None
        self.class_specific = class_specific
        self.init_std = init_std
        self.seed = seed
        self.ctx: nn.Parameter | None = None

    def prepare(self, context: MethodContext) -> None:
        """Create the context: the token embeddings of ctx_init (then M = its token count), or N(0, σ²)."""
        adapter = context.adapter
        table = adapter.token_embedding.weight.detach().float()
        n_rows = len(context.label_names) if self.class_specific else 1
        if self.ctx_init:
            ids = adapter.tokenizer(self.ctx_init, add_special_tokens=False)["input_ids"]
            if not ids:
                raise ConfigError(f"method.module.ctx_init '{self.ctx_init}' has no tokens.")
            self.n_ctx = len(ids)
            rows = table[torch.tensor(ids, device=table.device)].cpu().unsqueeze(0).repeat(n_rows, 1, 1)
        else:
            generator = torch.Generator().manual_seed(self.seed)
            rows = torch.randn(n_rows, self.n_ctx, table.shape[1], generator=generator) * self.init_std
        rows = rows if self.class_specific else rows[0]
        self.ctx = nn.Parameter(rows.clone().to(table.device))
        self.prepare_extra(context)

    def prepare_extra(self, context: MethodContext) -> None:
        """Subclass hook, after the context exists (Meta-Net, hand-crafted features)."""

    def context(self, input_features: Tensor, n_classes: int) -> Tensor:
        """(M, d) shared, or (C, M, d) class-specific."""
        if self.class_specific and self.ctx.shape[0] != n_classes:
            raise ConfigError(
                f"class-specific context was learned for {self.ctx.shape[0]} classes and cannot score {n_classes} "
                "other ones; use method.module.class_specific=false for base-to-new."
            )
        return self.ctx

    def prompt_tensors(self) -> dict[str, Tensor]:
        return {name: parameter.detach() for name, parameter in self.named_parameters()}

    def load_prompt_tensors(self, tensors: dict[str, Tensor]) -> None:
        with torch.no_grad():
            for name, parameter in self.named_parameters():
                parameter.copy_(tensors[name])


class CoCoOp(CoOp):
    """CoOp + Meta-Net π: context (B, M, d) = v + π(norm(f)), π = Linear(D, D/16)·ReLU·Linear(D/16, d)."""

    per_input = True

    def __init__(self, *args: Any, meta_ratio: int = 16, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.class_specific:
            raise ConfigError(
                "CoCoOp conditions one shared context on the input; set method.module.class_specific=false."
            )
        self.meta_ratio = meta_ratio
        self.meta_net: nn.Sequential | None = None

    def prepare_extra(self, context: MethodContext) -> None:
        adapter = context.adapter
        hidden = max(1, adapter.feature_size // self.meta_ratio)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.meta_net = nn.Sequential(
                nn.Linear(adapter.feature_size, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, adapter.hidden_size)
            )
        self.meta_net.to(adapter.token_embedding.weight.device)

    def context(self, input_features: Tensor, n_classes: int) -> Tensor:
        """(B, M, d): the shared context shifted per input by the Meta-Net's (B, d) output."""
        shift = self.meta_net(F.normalize(input_features, dim=-1))
        return self.ctx.unsqueeze(0) + shift.unsqueeze(1)


class KgCoOp(CoOp):
    """CoOp + w · (1 − mean_c cos(t_c, t_c^hand)) (the hand-crafted prompt's class features, fixed)."""

    def __init__(self, *args: Any, weight: float = 2.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.weight = weight

    def prepare_extra(self, context: MethodContext) -> None:
        features = context.adapter.template_features(context.label_names)
        self.register_buffer("hand_crafted", F.normalize(features, dim=-1), persistent=False)

    def loss(
        self, itm_logits: Tensor, labels: Tensor, input_features: Tensor, class_features: Tensor
    ) -> dict[str, Tensor]:
        """CE + w·(1 − mean cos); class_features (C, D) or (B, C, D) of the training classes."""
        terms = super().loss(itm_logits, labels, input_features, class_features)
        cosine = (F.normalize(class_features, dim=-1) * self.hand_crafted).sum(-1)
        terms["kg"] = self.weight * (1.0 - cosine.mean())
        return terms
