"""One vector per bAbI fact: word embeddings summed under a LEARNED multiplicative positional mask.

The Universal Transformer paper (Dehghani et al. 2019, §3.1, bAbI): "we first encode each fact in the story by
applying a learned multiplicative positional mask to each word's embedding, and summing up all embeddings. We
embed the question in the same way", following Henaff et al. 2016 (EntNet, §2.1), whose masks generalise the fixed
position encoding (PE) of End-To-End Memory Networks (Sukhbaatar et al. 2015, §4.1):

    f = sum_j  m_j * e(w_j)        (m_j in R^D: one learned vector per word position j, * elementwise)

MemN2N's PE fixes ``m_j[k] = (1 - j/J) - (k/D) (1 - 2j/J)`` (1-based j, k; J the sentence's length). Here:

- the masks are parameters, one set per stream (``"fact"`` and ``"question"``: a question's word order differs
  from a fact's), with ONE word embedding shared by both streams;
- they are initialised with MemN2N's PE at J = ``max_words`` (a learned mask is indexed by the word position
  only, so it cannot use each sentence's own J);
- the embedding follows the repo's convention (``ut.nn.embedding.TokenEmbedding``: N(0, D^-0.5) init, times
  sqrt(D)), and dropout is applied to the fact vectors.

Padding words (id ``pad_id`` or ``word_mask`` False) contribute exactly zero, so a fact's vector does not depend on
how far its row is padded. ``forward(words Long[..., W], stream) -> Float[..., D]``; W <= ``max_words``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ut.nn.dropout import dropout as apply_dropout

STREAMS = ("fact", "question")


def memn2n_position_encoding(n_words: int, d_model: int) -> Tensor:
    """MemN2N's PE (Sukhbaatar et al. 2015, §4.1) as a (n_words, d_model) float tensor, for sentences of J = n_words."""
    j = torch.arange(1, n_words + 1, dtype=torch.float64)[:, None]
    k = torch.arange(1, d_model + 1, dtype=torch.float64)[None, :]
    big_j = float(n_words)
    return ((1 - j / big_j) - (k / d_model) * (1 - 2 * j / big_j)).float()


class FactEncoder(nn.Module):
    """Word embedding shared by facts and question, one learned positional mask per stream (see module docstring).

    Args:
        vocab_size: word vocabulary size.
        d_model: width D of the fact vectors.
        max_words: the longest fact / question in words (the masks' length).
        pad_id: padding word id (its embedding is zero and it is masked out).
        dropout: dropout on the fact vectors.
    """

    def __init__(self, vocab_size: int, d_model: int, max_words: int, pad_id: int = 0, dropout: float = 0.0):
        super().__init__()
        if min(vocab_size, d_model, max_words) < 1:
            raise ValueError(f"vocab_size, d_model and max_words must be >= 1, got {vocab_size}, {d_model}, "
                             f"{max_words}")
        self.d_model, self.max_words, self.pad_id, self.dropout = d_model, max_words, pad_id, dropout
        self.words = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        nn.init.normal_(self.words.weight, std=d_model**-0.5)
        with torch.no_grad():
            self.words.weight[pad_id].zero_()
        pe = memn2n_position_encoding(max_words, d_model)
        self.masks = nn.ParameterDict({s: nn.Parameter(pe.clone()) for s in STREAMS})

    def forward(self, words: Tensor, stream: str = "fact", word_mask: Tensor | None = None) -> Tensor:
        """words Long[..., W] -> Float[..., D]; ``word_mask`` Bool[..., W] (default ``words != pad_id``)."""
        if stream not in STREAMS:
            raise ValueError(f"stream must be one of {STREAMS}, got {stream!r}")
        n_words = words.shape[-1]
        if n_words > self.max_words:
            raise ValueError(f"a {stream} has {n_words} words but the encoder's max_words is {self.max_words}; "
                             "raise model_config.max_words")
        if word_mask is None:
            word_mask = words != self.pad_id
        e = self.words(words) * math.sqrt(self.d_model)  # (..., W, D)
        m = self.masks[stream][:n_words].to(e.dtype)  # (W, D)
        f = (e * m * word_mask[..., None].to(e.dtype)).sum(-2)  # (..., D)
        return apply_dropout(f, self.dropout, self.training)
