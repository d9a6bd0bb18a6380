"""The method interface: what every method provides to the builder and the one LightningModule.

`Method` is what both prompt sites share; `PromptMethod` is the base of the `input` site (the prompt
goes in front of the input tokens); the `class` site's base is `ClassPromptMethod` (methods/coop.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from prompt_bench.backbones import AdapterBase

PROMPT_FILE = "prompt.safetensors"  # a method's prompt tensors, saved alone in the run directory


@dataclass
class MethodContext:
    """What `prepare` may use for work done once before training.

    label_names: the target task's class names (label-initialised prompts use them).
    cache_dir: where shared artefacts live (source prompts, meta inits, teacher logits).
    extras: anything a later method needs (a transfer pair, a teacher), by name.
    train_texts: the split's training texts (k-shot); pool_texts: the task's whole train pool,
        unlabelled use only (BayesPrompt fits its mixture on it). Empty where a site has none.
    """

    adapter: AdapterBase
    label_names: tuple[str, ...]
    cache_dir: str
    extras: dict[str, Any] = field(default_factory=dict)
    train_texts: tuple[str, ...] = ()
    pool_texts: tuple[str, ...] = ()
    task_kind: str = "classification"  # or "relation": the texts are KnowPrompt records (data/sources/relations.py)
    max_length: int | None = None  # the dataset's max_length (the relation template's length)
    head: Any = None  # the run's head, built before `prepare` (PANDA's live teacher scores with a copy)


class Method(nn.Module):
    """What every method declares and offers, whichever prompt site: preparation, optimizer groups,
    the tensors saved as its prompt. Methods never branch on the backbone family; the adapter does."""

    prompt_site: str = ""
    """Where the prompt goes, which picks the builder's and the Lightning module's site: `input` (in
    front of the input tokens) or `class` (in front of a dual encoder's class texts)."""

    trains_backbone: bool = False
    """True only for full fine-tuning: the module leaves the backbone unfrozen."""

    families: tuple[str, ...] = ()
    """Backbone families this method supports (checked at config time)."""

    required_head: str | None = None
    """A head this method only makes sense with (e.g. linear_probe -> linear), or None."""

    preferred_head: str | None = None
    """The head head=auto builds for this method where the backbone's family takes it (PANDA ->
    pooler, its official head), else None; an explicit head=<name> overrides it."""

    needs: frozenset[str] = frozenset()
    """What the builder must make before `prepare`, handed in as `context.extras[name]`:
    "source_prompt" (the transfer pair's source prompt file), "teacher_logits" (PANDA's PoT teacher
    logits file), "teacher_model" (the PoT teacher's directory: prompt and head), "transferability"
    (the pair's MSS). Empty: the method transfers nothing, and a
    transfer pair given with it is dropped (it runs on the target alone)."""

    def prepare(self, context: MethodContext) -> None:
        """Work done once before training (initialise from the vocabulary, load a source prompt...)."""

    def record_info(self) -> dict[str, Any]:
        """Values decided while preparing (e.g. an adaptive KD weight) for the run's record."""
        return {}

    def extra_test_metrics(self, module: nn.Module, test_loaders: Any) -> dict[str, float]:
        """Metrics measured after the test on the tested module (e.g. a stochastic method's spread over
        repeated evaluations), named `test/...`; none by default."""
        return {}

    def param_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """Optimizer groups of this method's trainable parameters (two rates for VIP/DePT)."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": params, "name": "method"}] if params else []

    def epoch_diagnostics(self) -> dict[str, float]:
        """Named values over the training epoch that just ended (logged as train/<name>), then reset."""
        return {}

    def prompt_tensors(self) -> dict[str, Tensor]:
        """The tensors saved alone as prompt.safetensors (empty for methods without a prompt)."""
        return {}

    def load_prompt_tensors(self, tensors: dict[str, Tensor]) -> None:
        """Inverse of `prompt_tensors`."""
        self.load_state_dict(tensors, strict=True)


class PromptMethod(Method):
    """A prompt method of the `input` site: produces the prompt for a batch and any extra loss terms."""

    prompt_site = "input"

    families: tuple[str, ...] = ("encoder", "seq2seq", "causal")
    """Backbone families this method supports (checked at config time)."""

    def prompt(self, batch: dict[str, Tensor], input_embeds: Tensor | None = None) -> Tensor | None:
        """(B, n, d) prompt vectors for this batch, fp32, or None for no prompt."""
        return None

    def layer_prefixes(self, batch: dict[str, Tensor]) -> Tensor | None:
        """Deep prompts (P-tuning v2): (n_layers, 2, B, n_heads, m, head_dim) fp32 keys ([:, 0]) and
        values ([:, 1]) prepended to every self-attention layer, or None for none.

        n_layers, n_heads and head_dim are the adapter's `prefix_geometry`; the adapter casts to the
        backbone dtype and extends the key-side mask, so hidden states stay the input positions.
        """
        return None

    def extra_loss(
        self, batch: dict[str, Tensor], logits: Tensor, backbone: AdapterBase | None = None
    ) -> dict[str, Tensor]:
        """Named loss terms added to the cross-entropy (commitment, KD, ...); `backbone` is the run's
        (frozen) backbone, for a term that runs it again (PANDA's live teacher)."""
        return {}
