"""Stein variational gradient descent (Liu & Wang, 2016), as BayesPrompt runs it.

For particles x_1..x_n (n, d) and a target score s(x) = ∇ log p(x):

    k(x, y) = exp(−‖x − y‖² / (2h²)),   h = sqrt(½ · median(D²) / log(n + 1))
    φ(x_i)  = (1/n) Σ_j [ k(x_j, x_i) s(x_j) + ∇_{x_j} k(x_j, x_i) ]          (n, d)
            = (K·S + (x_i Σ_j K_ij − (K·X)_i) / h²) / n
    G_0 = φ²,  G_t = α G_{t−1} + (1 − α) φ²,   x ← x + ε · φ / (fudge + √G)

The first term pulls particles up the density, the second (the kernel's gradient) pushes them
apart, which keeps them from collapsing onto one mode.

Official values (FF2127/bayesprompt, lit_models/transformer_full.py): 1000 iterations and step
0.01 (the call at :134); α = 0.9 and fudge 1e-6 (:307, :315); the bandwidth is recomputed every
iteration from the median of the full n×n matrix of squared distances, diagonal zeros included,
with `torch.median`, which takes the lower of the two middle values (:292-296; `median="lower"`;
"average" is np.median, as in Dilin Wang's numpy reference code); the "AdaGrad with momentum" is
the exponential average above, seeded with φ² on the first iteration (:326-332). The official
kernel gradient loops over the d columns (:302-303); here it is one expression.

Deliberate differences: the run is in float32 by default (option `dtype`; officially the GMM
score is float64, the particles float32), which halves the time for the same result to ~1e-2 per
coordinate. Two only touch degenerate cases: the diagonal of D² is exactly 0 (the Gram-matrix
form leaves rounding there), and h is floored at 1e-8 so identical particles give K = 1, not 0/0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

MEDIANS = ("lower", "average")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class SVGDConfig:
    """SVGD settings; defaults are the official values (see the module docstring)."""

    iterations: int = 1000  # n_iter, transformer_full.py:134
    step_size: float = 0.01  # stepsize, transformer_full.py:134
    momentum: float = 0.9  # alpha of the AdaGrad-with-momentum, transformer_full.py:307
    fudge: float = 1e-6  # fudge_factor, transformer_full.py:315
    bandwidth: float | None = None  # None: median heuristic on every iteration (h=-1 officially)
    median: str = "lower"  # "lower": torch.median as official; "average": np.median
    score_epsilon: float = 1e-10  # added to p(x) in the GMM responsibilities, :272
    # Precision of the run. Official: float32 particles, float64 GMM score. float32 here halves
    # the time; at d=768 the moved particles differ from a float64 run by 0.015 at most per
    # coordinate (after moving ~4 in norm) with the same mean log-density to 4 digits.
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.iterations < 0:
            raise ValueError(f"iterations must be >= 0 (official 1000), got {self.iterations}")
        if self.step_size <= 0:
            raise ValueError(f"step_size must be positive (official 0.01), got {self.step_size}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1) (official 0.9), got {self.momentum}")
        if self.bandwidth is not None and self.bandwidth <= 0:
            raise ValueError(f"bandwidth must be positive, or None for the median heuristic; got {self.bandwidth}")
        if self.median not in MEDIANS:
            raise ValueError(f"median {self.median!r} is not one of {MEDIANS} (official: lower)")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r} is not one of {sorted(DTYPES)}")


def pairwise_sq_distances(x: Tensor) -> Tensor:
    """‖x_i − x_j‖² for x (n, d): (n, n), clamped at 0, with an exact zero diagonal."""
    gram = x @ x.T
    sq_norms = gram.diagonal()
    distances = (sq_norms.unsqueeze(1) - 2.0 * gram + sq_norms.unsqueeze(0)).clamp_min(0.0)
    return distances.fill_diagonal_(0.0)


def median_bandwidth(sq_distances: Tensor, median: str = "lower") -> Tensor:
    """h = sqrt(½ · median(D²) / log(n + 1)) over the full (n, n) matrix: a 0-dim tensor."""
    if median == "lower":
        middle = torch.median(sq_distances)
    else:
        middle = torch.quantile(sq_distances.flatten(), 0.5)
    n = sq_distances.shape[0]
    bandwidth = torch.sqrt(0.5 * middle / math.log(n + 1.0))
    # All particles equal: D² = 0 everywhere; any h gives K = 1 and a zero kernel gradient.
    return bandwidth.clamp_min(1e-8)


def rbf_kernel(x: Tensor, bandwidth: float | Tensor) -> tuple[Tensor, Tensor]:
    """RBF kernel matrix K (n, n) and the repulsive term Σ_j ∇_{x_j} k(x_j, x_i) (n, d)."""
    kernel = torch.exp(-pairwise_sq_distances(x) / (2.0 * bandwidth**2))
    repulsion = (x * kernel.sum(dim=1, keepdim=True) - kernel @ x) / bandwidth**2
    return kernel, repulsion


def svgd_direction(x: Tensor, scores: Tensor, bandwidth: float | None = None, median: str = "lower") -> Tensor:
    """The SVGD update direction φ (n, d) for particles x (n, d) with scores ∇log p(x) (n, d)."""
    h = median_bandwidth(pairwise_sq_distances(x), median) if bandwidth is None else bandwidth
    kernel, repulsion = rbf_kernel(x, h)
    return (kernel @ scores + repulsion) / x.shape[0]


@torch.no_grad()
def run_svgd(
    particles: Tensor,
    score_fn: Callable[[Tensor], Tensor],
    config: SVGDConfig | None = None,
) -> Tensor:
    """Move particles (n, d) along SVGD toward the density whose score_fn gives ∇log p: (n, d).

    The particles are not modified in place; the result has their dtype and device. Use
    `move_particles` for a GaussianMixtureDensity target.
    """
    config = config or SVGDConfig()
    if particles.dim() != 2 or particles.shape[0] < 1:
        raise ValueError(f"particles must be (n, d) with n >= 1, got {tuple(particles.shape)}")
    theta = particles.clone()
    historical = torch.zeros_like(theta)
    for iteration in range(config.iterations):
        direction = svgd_direction(theta, score_fn(theta), config.bandwidth, config.median)
        if iteration == 0:
            historical = direction**2
        else:
            historical = config.momentum * historical + (1.0 - config.momentum) * direction**2
        theta = theta + config.step_size * direction / (config.fudge + historical.sqrt())
    return theta


def move_particles(particles: Tensor, mixture, config: SVGDConfig | None = None) -> Tensor:
    """SVGD of particles (n, d) toward a GaussianMixtureDensity, in `config.dtype`.

    Returns (n, d) in the particles' dtype. The official run does this once, at the end of
    epoch 0, on the k-shot training features (transformer_full.py:121-134). Build the mixture in
    float64 (fit_mixture does): its precisions are then cast, not computed, in float32.
    """
    config = config or SVGDConfig()
    mixture = mixture.to(dtype=DTYPES[config.dtype])
    work = particles.detach().to(dtype=mixture.means.dtype, device=mixture.means.device)
    moved = run_svgd(work, lambda x: mixture.score(x, epsilon=config.score_epsilon), config)
    return moved.to(dtype=particles.dtype, device=particles.device)
