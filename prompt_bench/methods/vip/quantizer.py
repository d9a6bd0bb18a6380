"""VIP's quantiser (Bhardwaj et al., 2022, sec. 2.2): a codebook of K codes, sampled soft
quantisation, a straight-through estimator and a moving-average codebook.

The codebook is a buffer, never a Parameter: no optimiser can move it, only `ema_update`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

EVAL_CODES = ("expected", "nearest")


@dataclass
class Quantized:
    """One quantiser pass over B·n contextual prompt tokens.

    straight_through: (B, n, d) q̃ = P^c + sg(q − P^c): the value of q, the gradient of P^c.
    commitment: β · mean((sg(q) − P^c)²), a scalar.
    counts: (B·n, K) how often each code was drawn per token (rows sum to r), or None when
        nothing was sampled (deterministic eval).
    """

    straight_through: Tensor
    commitment: Tensor
    counts: Tensor | None


class SampledQuantizer(nn.Module):
    """Codebook C (K, d) with q_i = (s_i · C) / r, s_i ~ Multinomial(r, softmax(−D_i / τ)).

    D_ik = ‖p^c_i − c_k‖² (eq. 3 of the paper; the official code's logits). Eval samples too when
    `sample_at_eval` (the official code); without sampling (`sample_at_eval=False`), q_i is
    `expected` = softmax(−D_i/τ) · C, the mean of the sampled average, or `nearest` = the code
    with the smallest D_ik.

    EMA rule (official, `textbook_ema=False`), per training step with counts s (B·n, K):
        N ← γN + (1−γ)·Σ_rows(s)/r;   N ← (N + ε) / (ΣN + Kε) · ΣN        (Laplace)
        C ← γC + (1−γ)·(sᵀ P^c / r) / N
    `textbook_ema=True` is the VQ-VAE rule instead (van den Oord et al. 2017, app. A.1): the same
    N kept unsmoothed, m ← γm + (1−γ)·sᵀP^c/r, and C = m / smoothed(N).
    """

    def __init__(
        self,
        codebook: Tensor,
        n_samples: int = 10,
        temperature: float = 100.0,
        commitment_cost: float = 0.1,
        ema_decay: float = 0.99,
        ema_epsilon: float = 1e-2,
        textbook_ema: bool = False,
        eval_code: str = "expected",
        sample_at_eval: bool = True,
    ) -> None:
        super().__init__()
        n_codes = codebook.shape[0]
        self.register_buffer("codebook", codebook.float().clone())
        self.register_buffer("cluster_size", torch.full((n_codes,), 1.0 / n_codes))
        if textbook_ema:  # the running code sums m, so that C = m / N at the start
            self.register_buffer("code_sums", self.codebook * self.cluster_size[:, None])
        self.n_samples = n_samples
        self.temperature = temperature
        self.commitment_cost = commitment_cost
        self.ema_decay = ema_decay
        self.ema_epsilon = ema_epsilon
        self.textbook_ema = textbook_ema
        self.eval_code = eval_code
        self.sample_at_eval = sample_at_eval

    @property
    def n_codes(self) -> int:
        return self.codebook.shape[0]

    def distances(self, flat: Tensor) -> Tensor:
        """(M, d) tokens -> (M, K) squared Euclidean distances to every code."""
        return flat.pow(2).sum(1, keepdim=True) + self.codebook.pow(2).sum(1) - 2 * flat @ self.codebook.t()

    def sample_counts(self, distances: Tensor) -> Tensor:
        """(M, K) distances -> (M, K) counts of r draws from softmax(−D/τ) (rows sum to r)."""
        probabilities = torch.softmax(-distances / self.temperature, dim=-1)
        draws = torch.multinomial(probabilities, self.n_samples, replacement=True)  # (M, r) code indices
        return torch.zeros_like(probabilities).scatter_add_(1, draws, torch.ones_like(draws, dtype=probabilities.dtype))

    def forward(self, contextual: Tensor) -> Quantized:
        """(B, n, d) contextual prompts P^c -> q̃, the commitment loss and the sampled counts.

        Updates the codebook (`ema_update`) when training. Runs in fp32 even under autocast:
        with ‖c‖ = 100, ‖c‖² = 1e4 leaves bf16 no digits for the differences between codes.
        """
        with torch.autocast(device_type=contextual.device.type, enabled=False):
            contextual = contextual.float()
            flat = contextual.reshape(-1, contextual.shape[-1])
            with torch.no_grad():
                distances = self.distances(flat.detach())
                counts = None
                if self.training or self.sample_at_eval:
                    counts = self.sample_counts(distances)
                    quantized = counts @ self.codebook / self.n_samples
                elif self.eval_code == "expected":
                    quantized = torch.softmax(-distances / self.temperature, dim=-1) @ self.codebook
                else:
                    quantized = self.codebook[distances.argmin(dim=-1)]
                quantized = quantized.view_as(contextual)
            commitment = self.commitment_cost * (quantized - contextual).pow(2).mean()
            if self.training:
                self.ema_update(flat.detach(), counts)
            straight_through = contextual + (quantized - contextual).detach()
        return Quantized(straight_through=straight_through, commitment=commitment, counts=counts)

    @torch.no_grad()
    def ema_update(self, flat: Tensor, counts: Tensor) -> None:
        """One moving-average step from (M, d) tokens and their (M, K) sample counts (see class doc)."""
        decay, r = self.ema_decay, self.n_samples
        cluster_size = decay * self.cluster_size + (1 - decay) * counts.sum(0) / r
        total = cluster_size.sum()
        smoothed = (cluster_size + self.ema_epsilon) / (total + self.n_codes * self.ema_epsilon) * total
        code_sums = counts.t() @ flat / r  # (K, d) dW
        if self.textbook_ema:  # keeps the raw N; divides by the smoothed one
            self.code_sums.mul_(decay).add_((1 - decay) * code_sums)
            self.codebook.copy_(self.code_sums / smoothed[:, None])
            self.cluster_size.copy_(cluster_size)
        else:  # the official code keeps the smoothed N and decays C itself, not a running sum
            self.codebook.mul_(decay).add_((1 - decay) * code_sums / smoothed[:, None])
            self.cluster_size.copy_(smoothed)
