"""What the two long-input self-attentions of T-DMCA share: their decoding cache, their mask reader, their call check.

Liu et al. 2018, "Generating Wikipedia by Summarizing Long Sequences", §4.2.2: local attention
(ut/nn/local_attention.py) and memory-compressed attention (ut/nn/memory_compressed_attention.py) are causal
self-attentions of a decoder. Both have :class:`~ut.nn.attention.MultiHeadAttention`'s call signature
``forward(x, memory=None, *, mask, causal, cache, need_weights)``, so a decoder layer takes either in place of full
attention; :func:`check_self_attention_call` rejects what they cannot do (``memory``, ``causal=False``).

Masks: only key-padding masks (broadcastable to ``[B, 1, 1, Lk]``, True = real token) are accepted
(:func:`key_padding_from_mask`) -- the causal / local structure is the module's own; a general ``[Lq, Lk]`` mask
would be quadratic.

Incremental decoding: a decoder layer builds the module's cache through its ``cache_factory``, a
:class:`LongAttentionCache`: a :class:`~ut.nn.attention.KVCache` (so that ``reorder_`` follows beams) with a token
counter ``n_seen``. What ``cache.k`` / ``cache.v`` hold is each module's own (its module docstring).

Shape legend: B batch, Lk key length.
"""

from __future__ import annotations

from torch import Tensor

from ut.nn.attention import KVCache


class LongAttentionCache(KVCache):
    """A :class:`KVCache` that also counts the tokens seen so far (the layout of ``k`` / ``v``: each module's
    docstring)."""

    def __init__(self):
        super().__init__(static=False)
        self.n_seen = 0


def tokens_seen(cache: KVCache | None) -> int:
    """Tokens a long-input attention has seen before this call: 0 without a cache."""
    if cache is None:
        return 0
    if not isinstance(cache, LongAttentionCache):
        raise TypeError(f"long-input attentions need a LongAttentionCache (their cache_factory), got {type(cache)}")
    return cache.n_seen


def key_padding_from_mask(mask: Tensor | None, k_len: int) -> Tensor | None:
    """A key-padding attention mask broadcastable to ``[B, 1, 1, Lk]`` -> ``Bool[B or 1, Lk]`` (None stays None).

    Any other mask (a per-query ``[.., Lq, Lk]`` mask, per-head masks) is an error: the long attentions build their
    own causal / local structure and never materialise an Lq x Lk mask.
    """
    if mask is None:
        return None
    m = mask
    while m.dim() < 4:
        m = m.unsqueeze(0)
    if m.dim() != 4 or m.shape[1] != 1 or m.shape[2] != 1 or m.shape[3] != k_len:
        raise ValueError(
            f"long-input attention takes key-padding masks [B, 1, 1, Lk={k_len}] only, got shape {tuple(mask.shape)}"
        )
    return m[:, 0, 0, :].bool()


def check_self_attention_call(memory: Tensor | None, causal: bool) -> None:
    """Reject what a long-input (causal self-) attention cannot do."""
    if memory is not None:
        raise ValueError("long-input attentions are self-attentions: memory must be None")
    if not causal:
        raise ValueError("long-input attentions are causal (decoder) attentions: causal=False is not supported")
