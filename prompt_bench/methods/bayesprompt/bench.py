"""Time SVGD toward a Gaussian mixture at the sizes BayesPrompt meets (official: 1000 iterations).

    python -m prompt_bench.methods.bayesprompt.bench --dim 768 --particles 100 --components 19

The mixture is random (low-rank-plus-0.1·I covariances, like a GMM fit with reg_covar 0.1 on
fewer points than dimensions), the particles start near its means. It prints the build time (the
one Cholesky per component), the SVGD wall time and CPU time, and the mean distance moved.
On a shared machine pass `--threads 1`: with more OpenMP threads than free cores every matrix
product waits on descheduled threads (measured here: 3-5x slower with 2 threads on 2 busy cores).
"""

from __future__ import annotations

import argparse
import time

import torch

from prompt_bench.methods.bayesprompt.mixture import OFFICIAL_REG_COVAR, GaussianMixtureDensity
from prompt_bench.methods.bayesprompt.svgd import DTYPES, SVGDConfig, move_particles


def random_mixture(dim: int, components: int, rank: int = 64, seed: int = 0) -> GaussianMixtureDensity:
    """Weights uniform, means N(0, 0.1²), covariances A Aᵀ + reg_covar·I with A (d, rank)."""
    generator = torch.Generator().manual_seed(seed)
    factors = 0.05 * torch.randn(components, dim, rank, generator=generator, dtype=torch.float64)
    covariances = factors @ factors.transpose(1, 2) + OFFICIAL_REG_COVAR * torch.eye(dim, dtype=torch.float64)
    means = 0.1 * torch.randn(components, dim, generator=generator, dtype=torch.float64)
    weights = torch.full((components,), 1.0 / components, dtype=torch.float64)
    return GaussianMixtureDensity.from_covariances(weights, means, covariances)


def time_svgd(
    dim: int, particles: int, components: int, iterations: int, dtype: str, seed: int = 0
) -> dict[str, float]:
    """Seconds to build the mixture and to run SVGD; the mean distance the particles moved."""
    start = time.perf_counter()
    mixture = random_mixture(dim, components, seed=seed)  # float64, as fit_mixture builds it
    build_s = time.perf_counter() - start
    generator = torch.Generator().manual_seed(seed + 1)
    start_points = mixture.means[:5].mean(0).float() + 0.05 * torch.randn(particles, dim, generator=generator)
    wall, cpu = time.perf_counter(), time.process_time()
    config = SVGDConfig(iterations=iterations, dtype=dtype)
    moved = move_particles(start_points, mixture, config)
    return {
        "build_s": build_s,
        "svgd_wall_s": time.perf_counter() - wall,
        "svgd_cpu_s": time.process_time() - cpu,
        "mean_move": (moved - start_points).norm(dim=1).mean().item(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--particles", type=int, default=100)
    parser.add_argument("--components", type=int, default=19)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=SVGDConfig.dtype)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    result = time_svgd(args.dim, args.particles, args.components, args.iterations, args.dtype)
    print(
        f"d={args.dim} n={args.particles} K={args.components} iterations={args.iterations} "
        f"{args.dtype} threads={torch.get_num_threads()}: build {result['build_s']:.2f}s, "
        f"svgd {result['svgd_wall_s']:.2f}s wall ({result['svgd_cpu_s']:.2f}s CPU), "
        f"mean move {result['mean_move']:.3f}"
    )


if __name__ == "__main__":
    main()
