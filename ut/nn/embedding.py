"""Token embedding scaled by sqrt(D) plus a position signal, then dropout (Vaswani et al. 2017, §3.4-3.5)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ut.nn.dropout import dropout as apply_dropout
from ut.nn.positions import PositionSignal


def check_token_ids(tokens: Tensor, vocab_size: int) -> None:
    """Raise a clear error unless ``tokens`` is an integer tensor with every id in ``[0, vocab_size)``.

    One reduction and one read of two numbers per call (``nn.Embedding`` would raise a bare ``IndexError`` on CPU
    and a device-side assert on CUDA); skipped under ``torch.compile``, where a data-dependent branch breaks the graph.
    """
    if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
        raise TypeError(f"token ids must be an integer tensor, got {tokens.dtype}")
    if tokens.numel() == 0 or torch.compiler.is_compiling():
        return
    lo, hi = torch.stack(torch.aminmax(tokens)).tolist()
    if lo < 0 or hi >= vocab_size:
        bad = lo if lo < 0 else hi
        raise ValueError(f"token id {bad} is outside the vocabulary of size {vocab_size} (ids must be in "
                         f"[0, {vocab_size}); this batch has min {lo}, max {hi}): check the model's vocabulary size "
                         f"against the tokenizer / data")


class TokenEmbedding(nn.Module):
    """``forward(tokens Long[B, L], positions Long[B, L] | None) -> Float[B, L, D]``.

    ``positions=None`` skips the position signal (the Universal Transformer adds it at every step itself).
    The embedding matrix is also the output softmax weight when weights are tied (``self.weight``).
    Ids outside ``[0, vocab_size)`` raise a ValueError naming the vocabulary size (:func:`check_token_ids`).
    """

    def __init__(self, vocab_size: int, d_model: int, position: str, max_len: int, dropout: float, pad_id: int):
        super().__init__()
        self.vocab_size, self.d_model, self.dropout = vocab_size, d_model, dropout
        self.tokens = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        nn.init.normal_(self.tokens.weight, std=d_model**-0.5)  # t2t: N(0, D^-0.5), multiplied by sqrt(D) below
        with torch.no_grad():
            self.tokens.weight[pad_id].zero_()
        self.positions = PositionSignal(position, d_model, max_len)

    @property
    def weight(self) -> Tensor:
        return self.tokens.weight

    def forward(self, tokens: Tensor, positions: Tensor | None = None) -> Tensor:
        check_token_ids(tokens, self.vocab_size)
        x = self.tokens(tokens) * math.sqrt(self.d_model)
        if positions is not None:
            x = x + self.positions(positions).to(x.dtype)
        return apply_dropout(x, self.dropout, self.training)
