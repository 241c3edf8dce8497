"""Multi-head attention (self- and cross-attention) and its decoding caches.

Vaswani et al. 2017, "Attention Is All You Need", §3.2.2: h heads, each with its own projections of the queries,
keys and values (:class:`HeadProjections`); each head attends (:func:`ut.nn.attend.attend`: the mask, the empty-row
guard, the softmax precision and the choice of SDPA / manual / chunked-dropout back end live there); the heads are
concatenated and projected by W_o. All positions are computed at once as matrix products.

Mask convention (the whole project; ut/nn/masks.py): boolean, ``True`` = "may attend", broadcastable to
``[B, H, Lq, Lk]``. The mask helpers and the back ends are importable from here too.

Incremental decoding: a :class:`KVCache` per attention *call site and executed step* (see :class:`DecodingCache`),
so that weight-shared layers (Universal Transformer) cache each application separately.

Shape legend: B batch, H heads, Lq / Lk query / key length, D model width, Dh = D / H head width.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from torch import Tensor, nn

from ut.nn.attend import attend, manual_attention, sdpa_attention
from ut.nn.chunked_dropout_attention import DROPOUT_ATTENTION_MAX_SCORES, dropout_attention
from ut.nn.masks import causal_mask, check_mask_shape, combine_masks, elide_mask, key_padding_mask

__all__ = [
    "DROPOUT_ATTENTION_MAX_SCORES", "AttentionOutput", "DecodingCache", "HeadProjections", "KVCache",
    "MultiHeadAttention", "attend", "causal_mask", "check_mask_shape", "combine_masks", "dropout_attention",
    "elide_mask", "key_padding_mask", "manual_attention", "sdpa_attention",
]

# ----------------------------------------------------------------------------------------------------------------
# caches


class KVCache:
    """Keys and values of one attention call site at one executed step, grown one chunk at a time.

    ``static=True`` marks a cross-attention cache: keys/values are computed once from the encoder memory. They are
    the same for every beam of one example, so a beam reorder within examples leaves them as they are
    (:meth:`DecodingCache.reorder_`, ``within_examples``).

    ``k`` / ``v`` (B, H, T, Dh) are views of the first T positions of preallocated buffers: :meth:`append` writes the
    new chunk in place. A full buffer is reallocated with T spare positions (doubling), at least ``MIN_GROWTH`` and
    at most ``MAX_GROWTH``: decoding n tokens after a short prefix copies the cache a handful of times instead of at
    every token (concatenation), and a long prefix gets at most ``MAX_GROWTH`` spare positions (Hugging Face's
    static cache preallocates too, to the maximum length). Code that assigns ``k`` / ``v`` itself (the long-input
    attentions' caches) gets plain tensors: the next :meth:`append` then starts a new buffer from them.
    """

    MIN_GROWTH = 16  # spare positions added at least when a buffer is (re)allocated
    MAX_GROWTH = 512  # spare positions added at most

    def __init__(self, static: bool = False):
        self.static = static
        self.k: Tensor | None = None  # (B, H, T, Dh)
        self.v: Tensor | None = None
        self._buffers: tuple[Tensor, Tensor] | None = None  # (B, H, capacity, Dh) each; k / v view their prefix

    @property
    def per_example(self) -> bool:
        """Whether every beam of one example holds the same keys and values (a cross-attention cache)."""
        return self.static

    def __len__(self) -> int:
        return 0 if self.k is None else self.k.shape[2]

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if self.k is None:
            self.k, self.v, self._buffers = k, v, None
            return self.k, self.v
        n, m = self.k.shape[2], k.shape[2]
        if not self._views_buffers() or n + m > self._buffers[0].shape[2]:
            self._grow(n + m)
        kb, vb = self._buffers
        kb[:, :, n : n + m] = k
        vb[:, :, n : n + m] = v
        self.k, self.v = kb[:, :, : n + m], vb[:, :, : n + m]
        return self.k, self.v

    def _views_buffers(self) -> bool:
        """Whether ``k`` / ``v`` are still the prefixes of the buffers (nobody assigned them since)."""
        if self._buffers is None:
            return False
        kb, vb = self._buffers
        return (self.k.data_ptr() == kb.data_ptr() and self.v.data_ptr() == vb.data_ptr()
                and self.k.stride() == kb.stride() and self.v.stride() == vb.stride()
                and self.k.shape[:2] == kb.shape[:2] and self.v.shape[2] == self.k.shape[2])

    def _grow(self, needed: int) -> None:
        """New buffers holding ``k`` / ``v`` with room for at least ``needed`` positions."""
        n = self.k.shape[2]
        capacity = max(needed, n + min(max(n, self.MIN_GROWTH), self.MAX_GROWTH))
        buffers = []
        for x in (self.k, self.v):
            buf = x.new_empty(x.shape[0], x.shape[1], capacity, x.shape[3])
            buf[:, :, :n] = x
            buffers.append(buf)
        self._buffers = (buffers[0], buffers[1])

    def reorder_(self, index: Tensor) -> None:
        """Select / reorder batch rows (beam search)."""
        if self.k is None:
            return
        if self._views_buffers():  # the whole buffers, so that the next appends stay in place
            n = self.k.shape[2]
            kb, vb = (b.index_select(0, index) for b in self._buffers)
            self._buffers = (kb, vb)
            self.k, self.v = kb[:, :, :n], vb[:, :, :n]
        else:
            self.k = self.k.index_select(0, index)
            self.v = self.v.index_select(0, index)


class DecodingCache:
    """All per-site caches of one decoding run, keyed by (site, executed step).

    Keys are anything hashable, e.g. ``("dec", layer_index, "self")`` for a Transformer or
    ``("dec", step, "self")`` for a Universal Transformer (one shared layer, one cache per executed step: a cache
    keyed by module would mix the steps). Values are any object with ``reorder_(index)`` (KVCache, the convolution
    caches of the separable-conv transition, the long-attention caches).

    Several keys may hold one object (:meth:`get_shared`): the cross-attention keys and values of a shared layer are
    the same at every step (they depend on the encoder memory alone), so its steps share one cache. An object is
    reordered once however many keys hold it.
    """

    def __init__(self):
        self.sites: dict[Hashable, object] = {}
        self._shared: dict[Hashable, object] = {}  # shared_key -> the object its keys hold

    def get(self, key: Hashable, factory=KVCache):
        if key not in self.sites:
            self.sites[key] = factory()
        return self.sites[key]

    def get_shared(self, key: Hashable, shared_key: Hashable, factory=KVCache):
        """The site under ``key``; a new key gets the object of ``shared_key`` (built by ``factory`` at its first
        use), so every key given the same ``shared_key`` holds one object."""
        if key not in self.sites:
            if shared_key not in self._shared:
                self._shared[shared_key] = factory()
            self.sites[key] = self._shared[shared_key]
        return self.sites[key]

    def __contains__(self, key: Hashable) -> bool:
        return key in self.sites

    def reorder_(self, index: Tensor, within_examples: bool = False) -> None:
        """Select / reorder batch rows ``index`` of every site. ``within_examples``: the index only moves rows among
        the beams of one example (beam search's step), so sites whose ``per_example`` is True (the same for every
        beam of an example: cross-attention caches) are left as they are."""
        done: set[int] = set()
        for site in self.sites.values():
            if id(site) in done or (within_examples and getattr(site, "per_example", False)):
                continue
            done.add(id(site))
            site.reorder_(index)


@dataclass
class AttentionOutput:
    out: Tensor  # (B, Lq, D)
    weights: Tensor | None  # (B, H, Lq, Lk) when asked for, else None



# ----------------------------------------------------------------------------------------------------------------
# the modules


class HeadProjections(nn.Module):
    """The Q/K/V/O projections of multi-head attention (Vaswani §3.2.2) and the split into / merge of heads.

    Shared by :class:`MultiHeadAttention` and the long-input attentions (ut/nn/long_attention.py), so that all
    of them have the same parameters under the same names (``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``).

    Args:
        d_model: model width D.
        n_heads: number of heads H (D must divide by H).
        bias: bias in the Q/K/V/O projections.
        kv_dim: width of the key/value input when it differs from D (cross-attention over another width).
    """

    def __init__(self, d_model: int, n_heads: int, bias: bool = True, kv_dim: int | None = None):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        kv_dim = kv_dim or d_model
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(kv_dim, d_model, bias=bias)
        self.v_proj = nn.Linear(kv_dim, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def split_heads(self, x: Tensor) -> Tensor:
        """(B, L, D) -> (B, H, L, Dh), i.e. ``rearrange(x, "b l (h d) -> b h l d")``, written as a reshape and a
        transpose: einops' recipe lookup costs ~15 us a call, ~7% of a cached decoding step
        (benchmarks/decoding_speed.py)."""
        return x.reshape(*x.shape[:-1], self.n_heads, self.head_dim).transpose(-3, -2)

    @staticmethod
    def merge_heads(x: Tensor) -> Tensor:
        """(B, H, L, Dh) -> (B, L, D), i.e. ``rearrange(x, "b h l d -> b l (h d)")``."""
        x = x.transpose(-3, -2)
        return x.reshape(*x.shape[:-2], x.shape[-2] * x.shape[-1])

    def project_kv(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values of ``x`` (B, L, kv_dim) -> two (B, H, L, Dh)."""
        return self.split_heads(self.k_proj(x)), self.split_heads(self.v_proj(x))


class MultiHeadAttention(HeadProjections):
    """Multi-head (self- or cross-) attention (Vaswani §3.2.2), through :func:`ut.nn.attend.attend`.

    Args:
        d_model, n_heads, bias, kv_dim: as :class:`HeadProjections`.
        dropout: dropout on the attention weights (Vaswani: 0.1 inside "residual dropout" only; t2t's
            ``attention_dropout``). Default 0. With dropout > 0 in training on CPU, attention runs the chunked back
            end (ut/nn/chunked_dropout_attention.py): memory stays linear in Lq instead of SDPA's quadratic math
            path (benchmarks/attention_dropout_memory.py).
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, bias: bool = True, kv_dim: int | None = None):
        super().__init__(d_model, n_heads, bias, kv_dim)
        self.dropout = dropout

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
        need_weights: bool = False,
    ) -> AttentionOutput:
        """Attend from ``x`` (B, Lq, D) to ``memory`` (cross-attention) or to ``x`` itself (self-attention).

        Args:
            mask: boolean, True = may attend, broadcastable to (B, H, Lq, Lk) where Lk counts cached keys too.
            causal: add the causal constraint (query i sees keys up to its own position; with a cache the queries
                are the last Lq positions).
            cache: a KVCache to read and extend (self-attention) or to fill once and then read (static,
                cross-attention).
            need_weights: use the manual back end and return the weights (B, H, Lq, Lk).
        """
        q = self.split_heads(self.q_proj(x))  # (B, H, Lq, Dh)
        if cache is not None and cache.static and cache.k is not None:
            k, v = cache.k, cache.v  # cross-attention: the memory's keys and values, projected at the first call
        else:
            k, v = self.project_kv(x if memory is None else memory)  # (B, H, Lk, Dh)
            k, v = (k, v) if cache is None else cache.append(k, v)
        dropout_p = self.dropout if self.training else 0.0
        out, weights = attend(q, k, v, mask, causal=causal, dropout_p=dropout_p, need_weights=need_weights)
        return AttentionOutput(self.out_proj(self.merge_heads(out)), weights)
