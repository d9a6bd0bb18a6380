"""VIP's contextualiser (Bhardwaj et al., 2022, sec. 2.1): the soft prompt read together with the
input, through a small Transformer encoder, gives input-dependent prompt tokens."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Contextualizer(nn.Module):
    """P^c = fc_out(Enc(fc_in([P; E(x)]))[:, :n]).

    fc_in: d -> width; Enc: `layers` post-LN Transformer encoder layers (`heads` heads, feed-forward
    `feedforward`, ReLU, `dropout`: PyTorch's defaults, as the official module); fc_out: width -> d.
    No position embeddings (the official module has none). d is the backbone's hidden size.
    """

    def __init__(
        self,
        model_dim: int,
        width: int = 32,
        heads: int = 4,
        feedforward: int = 64,
        layers: int = 2,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.fc_in = nn.Linear(model_dim, width)
        layer = nn.TransformerEncoderLayer(
            d_model=width, nhead=heads, dim_feedforward=feedforward, dropout=dropout, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)
        self.fc_out = nn.Linear(width, model_dim)

    def forward(self, prompt: Tensor, input_embeds: Tensor, attention_mask: Tensor) -> Tensor:
        """prompt (B, n, d), input_embeds (B, L, d), attention_mask (B, L) -> (B, n, d) P^c.

        The n prompt positions are always attended to; padded input positions never are.
        """
        n_prompt = prompt.shape[1]
        tokens = torch.cat([prompt, input_embeds.to(prompt.dtype)], dim=1)
        valid = torch.cat([attention_mask.new_ones(attention_mask.shape[0], n_prompt), attention_mask], dim=1)
        encoded = self.encoder(self.fc_in(tokens), src_key_padding_mask=~valid.bool())
        return self.fc_out(encoded[:, :n_prompt])
