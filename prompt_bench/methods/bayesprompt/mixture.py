"""The known distribution of BayesPrompt: a Gaussian mixture over sentence features, in torch.

    log p(x)   = logsumexp_k [ log π_k + log N(x | μ_k, Σ_k) ]                        (n,)
    ∇_x log p  = − Σ_k r_k(x) · P_k (x − μ_k),   r_k = π_k N(x | μ_k, Σ_k) / p(x)     (n, d)

with precisions P_k = Σ_k⁻¹ computed ONCE, from a Cholesky factor, when the mixture is built.
The official gradient (lit_models/transformer_full.py:262-281, `gmm_gradient.dlnprob`) loops over
components, calls `torch.inverse(Σ_k)` on every SVGD iteration and forms r_k as
exp(log π_k N_k) / (exp(log p) + 1e-10); here the same quantity is a softmax in log space, and the
1e-10 is the `epsilon` argument of `score` (0: the exact gradient, which autograd checks).

The fit follows the official `get_gmm` (transformer_full.py:140-142):
`GaussianMixture(n_components=min(N, num_relations), reg_covar=1e-1)`, every other argument at
scikit-learn's default: covariance_type="full", tol=1e-3, max_iter=100, n_init=1,
init_params="kmeans". It is fit on the features of the whole unlabelled training pool
(`all_<dataset>.txt`, transformer_full.py:124-127), not on the k-shot split. One deliberate
difference: the official fit is unseeded (random_state=None); here random_state defaults to 0 so a
run is reproducible and its artefact key means something. Pass None for the official behaviour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

OFFICIAL_REG_COVAR = 0.1  # transformer_full.py:141 (reg_covar=1e-1)
OFFICIAL_SCORE_EPSILON = 1e-10  # transformer_full.py:272 (added to p(x) before dividing)
COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


@dataclass(frozen=True, eq=False)  # tensors: compare fields with torch, not ==
class GaussianMixtureDensity:
    """A fitted Gaussian mixture as torch tensors, with its precisions cached.

    Shapes (K components, d features):
        weights (K,), means (K, d), covariances (K, d, d), precisions (K, d, d),
        log_norms (K,) = log π_k − d/2·log 2π − ½·log det Σ_k,
        origin (d,) = Σ_k π_k μ_k, a shift that keeps the expanded quadratic form accurate,
        means_precision (K, d) = P_k (μ_k − o), means_mahalanobis (K,) = (μ_k − o)ᵀ P_k (μ_k − o),
        precisions_flat (d, K·d) = [P_1 | … | P_K].
    Build it with `from_covariances` or `from_sklearn`, not by hand.

    Cost: one (n, d)·(d, K·d) matrix product per call, and no (n, K, d) temporaries beyond its
    result: (x − μ_k)ᵀ P_k (x − μ_k) = x'ᵀ P_k x' − 2 (P_k μ'_k)ᵀ x' + μ'_kᵀ P_k μ'_k with
    x' = x − o, μ'_k = μ_k − o.
    """

    weights: Tensor
    means: Tensor
    covariances: Tensor
    precisions: Tensor
    log_norms: Tensor
    origin: Tensor
    means_precision: Tensor
    means_mahalanobis: Tensor
    precisions_flat: Tensor

    @classmethod
    def from_covariances(
        cls,
        weights: Tensor | np.ndarray,
        means: Tensor | np.ndarray,
        covariances: Tensor | np.ndarray,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> GaussianMixtureDensity:
        """Mixture from weights (K,), means (K, d) and full covariances (K, d, d)."""
        weights = torch.as_tensor(weights, dtype=dtype, device=device)
        means = torch.as_tensor(means, dtype=dtype, device=device)
        covariances = torch.as_tensor(covariances, dtype=dtype, device=device)
        num_components, dim = means.shape
        if weights.shape != (num_components,) or covariances.shape != (num_components, dim, dim):
            raise ValueError(
                f"mixture shapes disagree: weights {tuple(weights.shape)}, means "
                f"{tuple(means.shape)}, covariances {tuple(covariances.shape)}; expected "
                f"({num_components},), ({num_components}, {dim}), "
                f"({num_components}, {dim}, {dim})"
            )
        cholesky, info = torch.linalg.cholesky_ex(covariances)
        if bool((info != 0).any()):
            bad = torch.nonzero(info).flatten().tolist()
            raise ValueError(
                f"covariances of components {bad} are not positive definite; raise reg_covar "
                f"(official 0.1) or fit in float64"
            )
        precisions = torch.cholesky_inverse(cholesky)
        precisions = 0.5 * (precisions + precisions.transpose(-1, -2))
        log_det_covariance = 2.0 * torch.log(torch.diagonal(cholesky, dim1=-2, dim2=-1)).sum(-1)
        log_norms = torch.log(weights) - 0.5 * dim * math.log(2 * math.pi) - 0.5 * log_det_covariance
        origin = weights @ means
        shifted_means = means - origin
        means_precision = torch.einsum("kij,kj->ki", precisions, shifted_means)
        means_mahalanobis = (means_precision * shifted_means).sum(-1)
        # x @ precisions_flat gives [P_1 x | … | P_K x] in one matrix product (P_k is symmetric).
        precisions_flat = precisions.permute(1, 0, 2).reshape(dim, num_components * dim)
        return cls(
            weights=weights,
            means=means,
            covariances=covariances,
            precisions=precisions,
            log_norms=log_norms,
            origin=origin,
            means_precision=means_precision,
            means_mahalanobis=means_mahalanobis,
            precisions_flat=precisions_flat.contiguous(),
        )

    @classmethod
    def from_sklearn(
        cls,
        gmm,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> GaussianMixtureDensity:
        """Mixture from a fitted sklearn.mixture.GaussianMixture (any covariance_type)."""
        num_components, dim = gmm.means_.shape
        covariances = np.asarray(gmm.covariances_, dtype=np.float64)
        if gmm.covariance_type == "tied":
            covariances = np.broadcast_to(covariances, (num_components, dim, dim))
        elif gmm.covariance_type == "diag":
            covariances = np.stack([np.diag(row) for row in covariances])
        elif gmm.covariance_type == "spherical":
            covariances = covariances[:, None, None] * np.eye(dim)
        return cls.from_covariances(gmm.weights_, gmm.means_, covariances, dtype, device)

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None):
        """The same mixture with every tensor moved/cast (the cached precisions included)."""
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return type(self)(**{name: t.to(device=device, dtype=dtype) for name, t in fields.items()})

    def _check(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected points of shape (n, {self.dim}), got {tuple(x.shape)}")
        return x.to(self.means.dtype)

    def _joint_and_precision_products(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """log π_k N(x | μ_k, Σ_k) (n, K) and P_k (x − o) (n, K, d) for x (n, d)."""
        x = self._check(x)
        shifted = x - self.origin  # (n, d)
        precision_x = (shifted @ self.precisions_flat).view(x.shape[0], self.num_components, -1)
        quadratic = torch.bmm(precision_x, shifted.unsqueeze(-1)).squeeze(-1)  # (n, K)
        cross = shifted @ self.means_precision.T  # (n, K)
        mahalanobis = (quadratic - 2.0 * cross + self.means_mahalanobis).clamp_min(0.0)
        return self.log_norms - 0.5 * mahalanobis, precision_x

    def component_log_densities(self, x: Tensor) -> Tensor:
        """log π_k + log N(x | μ_k, Σ_k) for x (n, d): (n, K)."""
        return self._joint_and_precision_products(x)[0]

    def log_density(self, x: Tensor) -> Tensor:
        """log p(x) for x (n, d): (n,). Equals sklearn's `score_samples`."""
        return torch.logsumexp(self.component_log_densities(x), dim=-1)

    def score(self, x: Tensor, epsilon: float = 0.0) -> Tensor:
        """∇_x log p(x) = −Σ_k r_k(x) P_k (x − μ_k) for x (n, d): (n, d), in closed form.

        epsilon: added to p(x) in the responsibilities' denominator, as the official
        `dlnprob` does with 1e-10 (OFFICIAL_SCORE_EPSILON); 0 gives the exact gradient. Far from
        every component (p ≪ epsilon) the score then fades to 0, as it does officially.
        """
        joint, precision_x = self._joint_and_precision_products(x)
        log_p = torch.logsumexp(joint, dim=-1, keepdim=True)  # (n, 1)
        if epsilon > 0:
            log_p = torch.logaddexp(log_p, torch.full_like(log_p, math.log(epsilon)))
        responsibilities = torch.exp(joint - log_p)  # (n, K)
        # Σ_k r_k P_k (x − μ_k) = Σ_k r_k P_k (x − o) − Σ_k r_k P_k (μ_k − o)
        pulled = torch.bmm(responsibilities.unsqueeze(1), precision_x).squeeze(1)  # (n, d)
        return responsibilities @ self.means_precision - pulled


def fit_mixture(
    features: Tensor | np.ndarray,
    num_components: int,
    reg_covar: float = OFFICIAL_REG_COVAR,
    covariance_type: str = "full",
    random_state: int | None = 0,
    max_iter: int = 100,
    dtype: torch.dtype = torch.float64,
    **gaussian_mixture_options,
) -> GaussianMixtureDensity:
    """Fit sklearn's GaussianMixture on the pool's features (N, d) and convert it to torch.

    num_components: the number of relations; the mixture gets min(N, num_components)
    components, as transformer_full.py:141. Other defaults are the official ones (see the module
    docstring); `random_state` is 0 instead of the official None, for reproducibility.
    """
    from sklearn.mixture import GaussianMixture

    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"covariance_type {covariance_type!r} is not one of {COVARIANCE_TYPES} (official: 'full')")
    if reg_covar <= 0:
        raise ValueError(f"reg_covar must be positive (official 0.1), got {reg_covar}")
    if isinstance(features, Tensor):
        features = features.detach().cpu().to(torch.float64).numpy()
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 1:
        raise ValueError(f"features must be (N, d) with N >= 1, got shape {features.shape}")
    gmm = GaussianMixture(
        n_components=min(features.shape[0], num_components),
        covariance_type=covariance_type,
        reg_covar=reg_covar,
        random_state=random_state,
        max_iter=max_iter,
        **gaussian_mixture_options,
    )
    gmm.fit(features)
    return GaussianMixtureDensity.from_sklearn(gmm, dtype=dtype)
