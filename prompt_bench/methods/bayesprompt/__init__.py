"""BayesPrompt (Li et al., ICLR 2024; official code FF2127/bayesprompt): the model-free core.

    features   z = mean input embedding of a sentence                       (N, d)
    mixture    GMM (K = #relations, reg_covar 0.1) on the pool's features   log p, ∇ log p
    svgd       k-shot features moved toward the GMM by SVGD                 (n, d) particles
    particles  average of C drawn particles written into [sub]/[obj] rows   per batch
    relation   KnowPrompt data, template, k-shot splits, micro-F1, synthetic task

The method class (prepare: fit + SVGD once; prompt: write the rows per batch) builds on these.
"""

from prompt_bench.methods.bayesprompt.features import collect_features, sentence_features
from prompt_bench.methods.bayesprompt.mixture import GaussianMixtureDensity, fit_mixture
from prompt_bench.methods.bayesprompt.particles import (
    EVAL_MODES,
    ParticleSampler,
    draw_particle_average,
    write_embedding_rows,
)
from prompt_bench.methods.bayesprompt.relation import (
    RelationExample,
    RelationPrompt,
    build_relation_prompt,
    k_shot_split,
    k_shot_splits,
    micro_f1,
    read_relation_file,
    synthetic_relation_examples,
    synthetic_relation_splits,
)
from prompt_bench.methods.bayesprompt.svgd import SVGDConfig, move_particles, run_svgd

__all__ = [
    "EVAL_MODES",
    "GaussianMixtureDensity",
    "ParticleSampler",
    "RelationExample",
    "RelationPrompt",
    "SVGDConfig",
    "build_relation_prompt",
    "collect_features",
    "draw_particle_average",
    "fit_mixture",
    "k_shot_split",
    "k_shot_splits",
    "micro_f1",
    "move_particles",
    "read_relation_file",
    "run_svgd",
    "sentence_features",
    "synthetic_relation_examples",
    "synthetic_relation_splits",
    "write_embedding_rows",
]
