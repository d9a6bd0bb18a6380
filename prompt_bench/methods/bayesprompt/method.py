"""BayesPrompt for sentence classification: virtual domain tokens, filled from SVGD particles, in
front of a soft prompt (Li et al., ICLR 2024; official code FF2127/bayesprompt).

    prompt(batch) = [V; P] expanded to (B, m + n, d)
        V (m, d): the virtual domain tokens (official: [sub] and [obj], m = 2), a buffer, never trained
        P (n, d): the soft prompt of prompt tuning (trained)

`prepare` (once, cached as an artefact):
    z_i     = mean input word embedding of sentence i                      features.py
    GMM     fit on the whole train pool's z (K = #classes, reg_covar 0.1)  mixture.py
    θ       = the k-shot train examples' z moved toward the GMM by SVGD    svgd.py
From epoch `start_epoch` (official 1) on, every batch writes v = mean of C = #classes particles,
drawn without replacement, into every row of V (particles.py). At evaluation `eval_particles`
picks `sample` (official: a fresh draw per batch, so scores are stochastic) or `mean` (the mean of
all particles, the draw's expectation: deterministic).

Before `start_epoch`, V holds the mean of the k-shot features (official: KnowPrompt's type-word
initialisation, which sentence classification has no counterpart of).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from prompt_bench.artefacts import ArtefactStore, artefact_key
from prompt_bench.errors import ConfigError
from prompt_bench.methods.base import MethodContext
from prompt_bench.methods.bayesprompt.features import collect_features
from prompt_bench.methods.bayesprompt.mixture import (
    COVARIANCE_TYPES,
    OFFICIAL_REG_COVAR,
    fit_mixture,
)
from prompt_bench.methods.bayesprompt.particles import EVAL_MODES, ParticleSampler
from prompt_bench.methods.bayesprompt.svgd import SVGDConfig, move_particles
from prompt_bench.methods.prompt_tuning import PromptTuning

log = logging.getLogger("prompt_bench")

ARTEFACT_KIND = "bayesprompt_particles"
ARTEFACT_FILE = "particles.safetensors"
FEATURE_BATCH = 64  # sentences per feature batch (memory only; the features do not depend on it)


class BayesPrompt(PromptTuning):
    """Prompt tuning with m virtual domain tokens in front, written from SVGD particles per batch.

    Args beyond PromptTuning's (input depth only):
        n_virtual: m, the virtual domain tokens (official 2: [sub], [obj]); all get the same vector.
        eval_particles: "sample" (official, stochastic) | "mean" (deterministic).
        start_epoch: the first epoch whose batches write particles (official 1: after epoch 0).
        eval_draws: with eval_particles=sample, the tested module scores the test set this many more
            times after the test and the spread goes into the record's metrics; < 2: not measured.
        feature: {mask_padding (official false: padding rows averaged in), max_length (tokens kept
            per sentence), pad_to (official: every sentence padded to max_seq_length; null = the
            batch's own length)}.
        mixture: {reg_covar (0.1), covariance_type (full), random_state (0; official unseeded),
            max_iter (100)}; the components are the number of classes, as official.
        svgd: SVGDConfig's fields (official: 1000 iterations, step 0.01, momentum 0.9, fudge 1e-6).
    """

    def __init__(
        self,
        n_virtual: int = 2,
        eval_particles: str = "sample",
        start_epoch: int = 1,
        eval_draws: int = 5,
        feature: dict | None = None,
        mixture: dict | None = None,
        svgd: dict | None = None,
        **prompt_tuning: Any,
    ) -> None:
        super().__init__(**prompt_tuning)
        if self.depth != "input":
            raise ConfigError("method=bayesprompt writes virtual tokens at the input; set method.module.depth=input.")
        if n_virtual < 1:
            raise ConfigError(f"method.module.n_virtual must be >= 1 (official 2: [sub], [obj]), got {n_virtual}.")
        if eval_particles not in EVAL_MODES:
            raise ConfigError(
                f"method.eval_particles '{eval_particles}' is not one of {', '.join(EVAL_MODES)} (official: sample)."
            )
        if start_epoch < 0:
            raise ConfigError(f"method.module.start_epoch must be >= 0 (official 1), got {start_epoch}.")
        self.n_virtual = n_virtual
        self.eval_particles = eval_particles
        self.start_epoch = start_epoch
        self.eval_draws = eval_draws
        self.feature = {"mask_padding": False, "max_length": 256, "pad_to": 256, **dict(feature or {})}
        self.mixture = {
            "reg_covar": OFFICIAL_REG_COVAR,
            "covariance_type": "full",
            "random_state": 0,
            "max_iter": 100,
            **dict(mixture or {}),
        }
        if self.mixture["covariance_type"] not in COVARIANCE_TYPES:
            raise ConfigError(
                f"method.mixture.covariance_type '{self.mixture['covariance_type']}' is not one of "
                f"{', '.join(COVARIANCE_TYPES)} (official: full)."
            )
        try:
            self.svgd = SVGDConfig(**dict(svgd or {}))
        except (TypeError, ValueError) as error:
            raise ConfigError(f"method.svgd: {error}") from error
        self.sampler: ParticleSampler | None = None
        # A buffer, so a resumed run (last.ckpt) keeps writing particles; the best checkpoint is tested
        # as it was validated (from epoch 0: with the start rows).
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))
        self.info: dict[str, Any] = {}

    # ---- preparation ---------------------------------------------------------------------------
    def prepare(self, context: MethodContext) -> None:
        """P as prompt tuning; then the particles (from the artefact, or GMM + SVGD) and V."""
        super().prepare(context)
        if context.task_kind != "classification":
            raise ConfigError(
                f"method=bayesprompt is the sentence-classification path; a {context.task_kind} task needs "
                "method=bayesprompt_relation."
            )
        self._prepare_particles(context)

    def _prepare_particles(self, context: MethodContext) -> None:
        """The particles (from the artefact, or GMM + SVGD) and V."""
        if not context.train_texts or not context.pool_texts:
            raise ConfigError(
                "method=bayesprompt needs the split's train texts and the task's train pool in its MethodContext; "
                "it runs on the input site (a few-shot split of a text task)."
            )
        started = time.perf_counter()
        spec = self.artefact_spec(context)
        store = ArtefactStore(context.cache_dir)
        reused = store.exists(ARTEFACT_KIND, spec)
        directory = store.get_or_make(ARTEFACT_KIND, spec, lambda workspace: self._make_particles(context, workspace))
        tensors = load_file(str(directory / ARTEFACT_FILE))
        device = context.adapter.input_embeddings.weight.device
        num_classes = len(context.label_names)
        self.sampler = ParticleSampler(tensors["particles"].float(), num_classes, self.eval_particles, self.seed)
        self.sampler.to(device)
        start_rows = tensors["start_features"].float().mean(0).expand(self.n_virtual, -1).clone()
        self.register_buffer("virtual_tokens", start_rows.to(device))
        self.info = {
            "artefact_key": artefact_key(spec),
            "artefact_reused": reused,
            "prepare_seconds": round(time.perf_counter() - started, 3),
            "particles": int(tensors["particles"].shape[0]),
            "mixture_components": int(tensors["mixture_means"].shape[0]),
            "pool_size": len(context.pool_texts),
            "eval_particles": self.eval_particles,
            "num_draw": num_classes,
            "n_virtual": self.n_virtual,
            "start_epoch": self.start_epoch,
        }

    def artefact_spec(self, context: MethodContext) -> dict[str, Any]:
        """What makes the particles: the data (pool and k-shot texts), the features (tokenizer,
        embedding table, feature settings) and the mixture and SVGD settings."""
        table = context.adapter.input_embeddings.weight.detach().float().cpu().contiguous()
        return {
            "pool_sha256": _texts_digest(context.pool_texts),
            "train_sha256": _texts_digest(context.train_texts),
            "num_classes": len(context.label_names),
            "tokenizer": context.adapter.tokenizer_id,
            "embedding_sha256": hashlib.sha256(table.numpy().tobytes()).hexdigest()[:16],
            "feature": dict(self.feature),
            "mixture": dict(self.mixture),
            "svgd": asdict(self.svgd),
        }

    def _make_particles(self, context: MethodContext, workspace) -> None:
        """Features of pool and k-shot texts, GMM on the pool, SVGD of the k-shot features."""
        timings = {}
        started = time.perf_counter()
        pool = self._features(context, context.pool_texts)
        train = self._features(context, context.train_texts)
        timings["features_s"] = time.perf_counter() - started
        started = time.perf_counter()
        density = fit_mixture(pool, len(context.label_names), **self.mixture)
        timings["mixture_s"] = time.perf_counter() - started
        started = time.perf_counter()
        particles = move_particles(train, density, self.svgd)
        timings["svgd_s"] = time.perf_counter() - started
        log.info(
            "bayesprompt: %d pool features, %d particles, d=%d; features %.1fs, GMM %.1fs, SVGD %.1fs",
            pool.shape[0],
            train.shape[0],
            pool.shape[1],
            timings["features_s"],
            timings["mixture_s"],
            timings["svgd_s"],
        )
        save_file(
            {
                "particles": particles.float().contiguous(),
                "start_features": train.float().contiguous(),
                "mixture_weights": density.weights.contiguous(),
                "mixture_means": density.means.contiguous(),
                "mixture_covariances": density.covariances.contiguous(),
            },
            str(workspace / ARTEFACT_FILE),
            metadata={name: f"{value:.3f}" for name, value in timings.items()},
        )

    def _encode(self, context: MethodContext, texts: tuple[str, ...]) -> list[list[int]]:
        """Token ids of the texts the features average (here: the sentence alone, as the run tokenises it)."""
        return context.adapter.encode_texts(list(texts), max_length=self.feature["max_length"])

    def _features(self, context: MethodContext, texts: tuple[str, ...]) -> Tensor:
        """(N, d) mean input embeddings of the texts as tokenised for the model (CPU, fp32)."""
        adapter = context.adapter
        pad_id = adapter.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = adapter.tokenizer.eos_token_id
        ids = self._encode(context, texts)
        pad_to = self.feature["pad_to"]
        if pad_to is not None and pad_to < max(len(row) for row in ids):
            raise ConfigError(
                f"method.feature.pad_to={pad_to} is shorter than method.feature.max_length's longest sentence; "
                "set pad_to >= max_length (official: both the max sequence length)."
            )

        def batches():
            for start in range(0, len(ids), FEATURE_BATCH):
                rows = ids[start : start + FEATURE_BATCH]
                length = max(len(row) for row in rows)
                input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
                mask = torch.zeros((len(rows), length), dtype=torch.long)
                for index, row in enumerate(rows):
                    input_ids[index, : len(row)] = torch.tensor(row, dtype=torch.long)
                    mask[index, : len(row)] = 1
                yield input_ids, mask

        table = adapter.input_embeddings.weight.detach().float().cpu()
        return collect_features(batches(), table, self.feature["mask_padding"], pad_to, pad_id)

    # ---- per batch -----------------------------------------------------------------------------
    def prompt(self, batch: dict[str, Tensor], input_embeds: Tensor | None = None) -> Tensor:
        """(B, m + n, d): the virtual rows (written from the particles from `start_epoch` on) then P."""
        if int(self.epochs_done) >= self.start_epoch:
            vector = self.sampler.vector(self.training)
            with torch.no_grad():
                self.virtual_tokens.copy_(vector.to(self.virtual_tokens).expand_as(self.virtual_tokens))
        rows = torch.cat([self.virtual_tokens, self.prompt_embeddings], dim=0)
        return rows.unsqueeze(0).expand(batch["input_ids"].shape[0], -1, -1)

    def epoch_diagnostics(self) -> dict[str, float]:
        """Called once at the end of every training epoch: counts epochs for `start_epoch`."""
        self.epochs_done += 1
        return {}

    def record_info(self) -> dict[str, Any]:
        return dict(self.info)

    def extra_test_metrics(self, module: torch.nn.Module, test_loaders: Any) -> dict[str, float]:
        """With eval_particles=sample: eval_draws more scorings of the test set by the tested module (each
        batch draws anew), as test/<metric>_draws_{mean,std,min,max} (std unbiased, over the draws) and
        test/draws. Empty in mean mode, which is deterministic."""
        if self.eval_particles != "sample" or self.eval_draws < 2:
            return {}
        draws = [module.evaluate(test_loaders) for _ in range(self.eval_draws)]
        spread: dict[str, float] = {}
        for name in draws[0]:
            values = torch.tensor([draw[name] for draw in draws], dtype=torch.float64)
            spread[f"test/{name}_draws_mean"] = float(values.mean())
            spread[f"test/{name}_draws_std"] = float(values.std())
            spread[f"test/{name}_draws_min"] = float(values.min())
            spread[f"test/{name}_draws_max"] = float(values.max())
        spread["test/draws"] = float(len(draws))
        return spread

    # ---- saving --------------------------------------------------------------------------------
    def prompt_tensors(self) -> dict[str, Tensor]:
        """{"prompt_embeddings": (n, d), "virtual_tokens": (m, d), "particles": (P, d)}."""
        return {
            "prompt_embeddings": self.prompt_embeddings.detach(),
            "virtual_tokens": self.virtual_tokens.detach(),
            "particles": self.sampler.particles.detach(),
        }

    def load_prompt_tensors(self, tensors: dict[str, Tensor]) -> None:
        with torch.no_grad():
            self.prompt_embeddings.copy_(tensors["prompt_embeddings"])
            self.virtual_tokens.copy_(tensors["virtual_tokens"])
            self.sampler.particles.copy_(tensors["particles"])


def _texts_digest(texts: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]
