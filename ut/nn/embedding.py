"""Token embedding scaled by sqrt(D) plus a position signal, then dropout (Vaswani et al. 2017, §3.4-3.5)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ut.nn.dropout import dropout as apply_dropout
from ut.nn.positions import PositionSignal


class TokenEmbedding(nn.Module):
    """``forward(tokens Long[B, L], positions Long[B, L] | None) -> Float[B, L, D]``.

    ``positions=None`` skips the position signal (the Universal Transformer adds it at every step itself).
    The embedding matrix is also the output softmax weight when weights are tied (``self.weight``).
    """

    def __init__(self, vocab_size: int, d_model: int, position: str, max_len: int, dropout: float, pad_id: int):
        super().__init__()
        self.d_model, self.dropout = d_model, dropout
        self.tokens = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        nn.init.normal_(self.tokens.weight, std=d_model**-0.5)  # t2t: N(0, D^-0.5), multiplied by sqrt(D) below
        with torch.no_grad():
            self.tokens.weight[pad_id].zero_()
        self.positions = PositionSignal(position, d_model, max_len)

    @property
    def weight(self) -> Tensor:
        return self.tokens.weight

    def forward(self, tokens: Tensor, positions: Tensor | None = None) -> Tensor:
        x = self.tokens(tokens) * math.sqrt(self.d_model)
        if positions is not None:
            x = x + self.positions(positions).to(x.dtype)
        return apply_dropout(x, self.dropout, self.training)
