"""Deep prompts (P-tuning v2, Liu et al. 2022): trainable key/value prefixes for every attention layer."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from prompt_bench.backbones.prefixes import PrefixGeometry


class PrefixEncoder(nn.Module):
    """m prefix tokens -> the key and value prefixes of every self-attention layer.

    The table is P in R^{m x 2·N·H·h} (N layers, H key/value heads of size h; 2·N·H·h = 2·N·d for
    the usual H·h = d). With `projection`, P is reparameterised as P = W2 tanh(W1 E + b1) + b2 with
    E in R^{m x d} (P-tuning v2's prefix_projection, `projection_hidden` wide) and E, W1, W2 train
    instead of P.

    Init (`init_std`): P (or E) ~ N(0, init_std²), W1, W2 ~ N(0, init_std²), b1 = b2 = 0. This is
    what the official models get: they are built with `from_pretrained`, which re-initialises the
    modules missing from the checkpoint with the backbone's `_init_weights` (BERT/RoBERTa:
    initializer_range 0.02). init_std=None keeps the PyTorch constructors' own init instead
    (nn.Embedding N(0, 1), nn.Linear Kaiming-uniform): the project's behaviour before issue 14.

    forward(B) -> (N, 2, B, H, m, h): [:, 0] the keys, [:, 1] the values, dropout applied per
    example as the official code does on its past_key_values. Columns of P are laid out layer by
    layer, keys before values, as the official reshape (m, 2N, H, h) does.
    """

    def __init__(
        self,
        n_tokens: int,
        geometry: PrefixGeometry,
        model_dim: int,
        projection: bool = False,
        projection_hidden: int = 512,
        dropout: float = 0.1,
        seed: int = 0,
        init_std: float | None = 0.02,
    ) -> None:
        super().__init__()
        self.n_tokens = n_tokens
        self.geometry = geometry
        width = 2 * geometry.n_layers * geometry.n_heads * geometry.head_dim
        with torch.random.fork_rng(devices=[]):  # the same prefix for a seed, whatever ran before
            torch.default_generator.manual_seed(seed)  # CPU only: parameters are made on the CPU
            if projection:
                self.prefix_embeddings = nn.Parameter(torch.randn(n_tokens, model_dim))
                self.prefix_mlp: nn.Sequential | None = nn.Sequential(
                    nn.Linear(model_dim, projection_hidden), nn.Tanh(), nn.Linear(projection_hidden, width)
                )
            else:
                self.prefix_embeddings = nn.Parameter(torch.randn(n_tokens, width))
                self.prefix_mlp = None
            if init_std is not None:
                self._init_like_from_pretrained(init_std)
        self.dropout = nn.Dropout(dropout)

    @torch.no_grad()
    def _init_like_from_pretrained(self, std: float) -> None:
        """Embedding and linear weights N(0, std²), linear biases 0 (BertPreTrainedModel._init_weights)."""
        self.prefix_embeddings.normal_(0.0, std)
        for layer in self.prefix_mlp or ():
            if isinstance(layer, nn.Linear):
                layer.weight.normal_(0.0, std)
                layer.bias.zero_()

    def table(self) -> Tensor:
        """(m, 2·N·H·h) the prefix table P (through the MLP when reparameterised)."""
        if self.prefix_mlp is None:
            return self.prefix_embeddings
        return self.prefix_mlp(self.prefix_embeddings)

    def forward(self, batch_size: int) -> Tensor:
        geometry = self.geometry
        per_layer = self.table().view(self.n_tokens, geometry.n_layers, 2, geometry.n_heads, geometry.head_dim)
        per_layer = per_layer.permute(1, 2, 3, 0, 4)  # (N, 2, H, m, h)
        return self.dropout(per_layer.unsqueeze(2).expand(-1, -1, batch_size, -1, -1, -1))

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every tensor a saved prefix must hold to load into this encoder."""
        return {name: tuple(parameter.shape) for name, parameter in self.named_parameters()}
