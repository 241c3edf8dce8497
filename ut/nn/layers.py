"""Encoder and decoder layers, position-wise feed-forward and separable-convolution transitions.

Vaswani et al. 2017, §3.1: each sub-layer (self-attention, encoder-decoder attention, feed-forward) is wrapped in a
residual connection and layer normalisation. Two placements are offered (:class:`Residual`):

- ``post`` (the paper's, and the Universal Transformer paper's equations): ``LN(x + Dropout(f(x)))``;
- ``pre`` (tensor2tensor's default, more stable for deep or recurrent stacks): ``x + Dropout(f(LN(x)))``, with a
  final LayerNorm after the stack, applied by the model.

Transitions (the position-wise part of a layer):

- :class:`FeedForward`: ``W2 relu(W1 x)`` (Vaswani §3.3; the UT's "fc" transition).
- :class:`SeparableConvTransition`: the UT's separable-convolution transition (Dehghani et al. 2019, §2.1;
  t2t ``sepconv_relu_sepconv``): depthwise-separable conv (kernel 3) -> ReLU -> depthwise-separable conv
  (kernel 5). ``causal=True`` pads on the left only (t2t ``padding="LEFT"``), for the decoder; padding positions
  are zeroed before each convolution so that they cannot leak into real tokens.

Every transition has the signature ``forward(x, token_mask=None, cache=None) -> Tensor | (Tensor, aux_loss)``;
the mixture-of-experts transition (:class:`ut.nn.moe.MoEFeedForward`) returns an auxiliary load-balancing loss,
which the layer passes up.

Routing under a halting loop: the layers take ``active`` Bool[B, L], the positions that run this step (a halting
loop's running positions, given by :func:`ut.nn.stack.run_stack`). A mixture-of-experts transition routes only
those (a halted position runs no step, so it takes no expert slot and no part in the balancing loss; its transition
output, never read, is 0); the other transitions ignore it.

A subset of query positions: ``EncoderLayer`` / ``DecoderLayer`` take ``queries`` Long[B, La] (distinct positions
per row) and then compute the attention queries, the transition and the residuals at those positions only, with
keys and values from every position of ``x``; the returned ``x`` is the input with those positions replaced. This is
ACT's compute skipping (:mod:`ut.nn.act`: halted positions are still keys and values, but their own output is
unused). It needs full attention (:class:`MultiHeadAttention`) and a position-wise transition; a convolution needs
its neighbours' outputs, so ``sepconv`` raises. A mixture of experts then routes the query positions (and of those
the ``active`` ones) at their places in the whole sequence, so that its causal capacity priority and its capacity
(which counts the real tokens of ``x``) are those of the computation over every position.

Dropout everywhere here is :func:`ut.nn.dropout.dropout` (``F.dropout``'s function with a ~3x cheaper mask source on
CPU; see that module).

Shape legend: B batch, L length, D width, F inner (ffn) width, La query positions, S memory length, H heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ut.nn.act import gather_positions, scatter_positions
from ut.nn.attention import DecodingCache, KVCache, MultiHeadAttention, key_padding_mask
from ut.nn.dropout import dropout as apply_dropout
from ut.nn.moe import MoEFeedForward

NormPlacement = Literal["pre", "post"]


class FeedForward(nn.Module):
    """Position-wise feed-forward: Linear(D, F) -> activation -> dropout -> Linear(F, D)."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0, activation: str = "relu"):
        super().__init__()
        self.w1, self.w2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)
        self.activation = {"relu": F.relu, "gelu": F.gelu}[activation]
        self.dropout = dropout

    def forward(self, x: Tensor, token_mask: Tensor | None = None, cache=None) -> Tensor:
        h = self.activation(self.w1(x))
        if self.dropout > 0:
            h = apply_dropout(h, self.dropout, self.training)
        return self.w2(h)


class ConvCache:
    """The last ``kernel - 1`` inputs of each causal convolution of a layer, for incremental decoding."""

    def __init__(self):
        self.history: dict[str, Tensor] = {}

    def reorder_(self, index: Tensor) -> None:
        self.history = {k: v.index_select(0, index) for k, v in self.history.items()}


class SeparableConv1d(nn.Module):
    """Depthwise (per-channel, kernel k) then pointwise (1x1) convolution over the length axis of (B, L, C)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, causal: bool):
        super().__init__()
        self.kernel, self.causal = kernel, causal
        self.depthwise = nn.Conv1d(in_ch, in_ch, kernel, groups=in_ch, bias=False)
        self.pointwise = nn.Linear(in_ch, out_ch)

    def forward(self, x: Tensor, history: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """x (B, L, C) -> (B, L, out); with ``history`` (B, k-1, C), the causal left context is that history."""
        k = self.kernel
        xt = x.transpose(1, 2)  # (B, C, L)
        if self.causal:
            left = xt.new_zeros(x.shape[0], x.shape[2], k - 1) if history is None else history.transpose(1, 2)
            xt = torch.cat([left, xt], dim=2)
            new_history = xt[:, :, -(k - 1) :].transpose(1, 2) if k > 1 else None
        else:
            xt = F.pad(xt, ((k - 1) // 2, k // 2))
            new_history = None
        return self.pointwise(self.depthwise(xt).transpose(1, 2)), new_history


class SeparableConvTransition(nn.Module):
    """UT separable-convolution transition: sepconv(k1) -> ReLU -> dropout -> sepconv(k2)."""

    def __init__(
        self, d_model: int, d_ff: int, dropout: float = 0.0, kernels: tuple[int, int] = (3, 5), causal: bool = False
    ):
        super().__init__()
        self.conv1 = SeparableConv1d(d_model, d_ff, kernels[0], causal)
        self.conv2 = SeparableConv1d(d_ff, d_model, kernels[1], causal)
        self.dropout, self.causal = dropout, causal

    def forward(self, x: Tensor, token_mask: Tensor | None = None, cache: ConvCache | None = None) -> Tensor:
        if cache is not None and not self.causal:
            raise ValueError("incremental decoding needs a causal separable-conv transition")
        hist = cache.history if cache is not None else {}
        if token_mask is not None:
            x = x * token_mask[..., None].to(x.dtype)
        h, h1 = self.conv1(x, hist.get("conv1"))
        h = F.relu(h)
        if self.dropout > 0:
            h = apply_dropout(h, self.dropout, self.training)
        if token_mask is not None:
            h = h * token_mask[..., None].to(h.dtype)
        out, h2 = self.conv2(h, hist.get("conv2"))
        if cache is not None:
            cache.history = {"conv1": h1, "conv2": h2}
        return out


def make_transition(kind: str, d_model: int, d_ff: int, dropout: float, causal: bool, activation: str = "relu"):
    """``kind``: ``ffn`` (position-wise feed-forward) or ``sepconv`` (UT separable convolutions)."""
    if kind == "ffn":
        return FeedForward(d_model, d_ff, dropout, activation)
    if kind == "sepconv":
        return SeparableConvTransition(d_model, d_ff, dropout, causal=causal)
    raise ValueError(f"unknown transition {kind!r}; expected 'ffn' or 'sepconv'")


class Residual(nn.Module):
    """Add & Norm around one sub-layer, pre- or post-norm (see module docstring)."""

    def __init__(self, d_model: int, norm: NormPlacement, dropout: float):
        super().__init__()
        if norm not in ("pre", "post"):
            raise ValueError(f"norm must be 'pre' or 'post', got {norm!r}")
        self.norm_placement, self.dropout = norm, dropout
        self.norm = nn.LayerNorm(d_model)

    def inner_input(self, x: Tensor) -> Tensor:
        return self.norm(x) if self.norm_placement == "pre" else x

    def combine(self, x: Tensor, fx: Tensor) -> Tensor:
        if self.dropout > 0:
            fx = apply_dropout(fx, self.dropout, self.training)
        return x + fx if self.norm_placement == "pre" else self.norm(x + fx)


@dataclass
class LayerOutput:
    x: Tensor  # (B, L, D)
    self_weights: Tensor | None = None  # (B, H, L, Lk) when asked for
    cross_weights: Tensor | None = None  # (B, H, L, S) when asked for
    aux_loss: Tensor | None = None  # e.g. the MoE load-balancing loss


def _static_kv_cache() -> KVCache:
    return KVCache(static=True)


def _split_aux(result) -> tuple[Tensor, Tensor | None]:
    return result if isinstance(result, tuple) else (result, None)


def apply_transition(transition: nn.Module, x: Tensor, token_mask: Tensor | None, cache=None, *,
                     active: Tensor | None = None, queries: Tensor | None = None,
                     full_mask: Tensor | None = None, length: int | None = None) -> tuple[Tensor, Tensor | None]:
    """The transition on ``x`` -> (output, aux loss or None). ``x`` (B, L, D) with ``token_mask`` its real tokens,
    or (B, La, D) at ``queries`` of a length-``length`` sequence whose real tokens are ``full_mask`` (``token_mask``
    then the queries' own). ``active`` Bool[B, length]: the positions a mixture of experts may route (module
    docstring); the other transitions ignore it."""
    if not isinstance(transition, MoEFeedForward):
        return _split_aux(transition(x, token_mask, cache))
    if queries is None:
        return transition(x, token_mask, route_mask=active)
    # at their places in the whole sequence: the capacity and the causal priority see every real position
    bsz, _, d = x.shape
    at_queries = torch.zeros(bsz, length, dtype=torch.bool, device=x.device).scatter_(1, queries, True)
    route = at_queries if active is None else at_queries & active
    out, aux = transition(scatter_positions(x.new_zeros(bsz, length, d), queries, x), full_mask, route_mask=route)
    return gather_positions(out, queries), aux


def _query_rows(mask: Tensor | None, queries: Tensor) -> Tensor | None:
    """Rows ``queries`` (B, La) of a mask broadcastable to (B, H, L, Lk); a mask without a query axis as it is."""
    if mask is None or mask.dim() < 2 or mask.shape[-2] == 1:
        return mask
    mask = mask.expand(queries.shape[0], mask.shape[-3] if mask.dim() >= 3 else 1, *mask.shape[-2:])
    return mask.gather(2, queries[:, None, :, None].expand(-1, mask.shape[1], -1, mask.shape[3]))


def _check_queries(transition: nn.Module, attention: nn.Module) -> None:
    if isinstance(transition, SeparableConvTransition):
        raise ValueError("a subset of query positions needs a position-wise transition, got 'sepconv' (a convolution "
                         "reads its neighbours' outputs)")
    if not isinstance(attention, MultiHeadAttention):
        raise ValueError(f"a subset of query positions needs full attention, got {type(attention).__name__}")


class EncoderLayer(nn.Module):
    """Self-attention -> Add & Norm -> transition -> Add & Norm (Vaswani §3.1, encoder)."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        norm: NormPlacement = "pre",
        transition: str | nn.Module = "ffn",
        activation: str = "relu",
    ):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, attention_dropout)
        self.attn_res = Residual(d_model, norm, dropout)
        self.transition = (
            transition
            if isinstance(transition, nn.Module)
            else make_transition(transition, d_model, d_ff, dropout, causal=False, activation=activation)
        )
        self.ffn_res = Residual(d_model, norm, dropout)

    def forward(
        self, x: Tensor, token_mask: Tensor | None = None, *, attn_mask: Tensor | None = None, need_weights=False,
        queries: Tensor | None = None, active: Tensor | None = None,
    ) -> LayerOutput:
        """x (B, L, D); ``token_mask`` Bool[B, L] True on real tokens (padding may not be attended to);
        ``queries`` Long[B, La]: compute only these positions; ``active`` Bool[B, L]: the positions a mixture of
        experts routes (module docstring)."""
        mask = attn_mask if attn_mask is not None else (None if token_mask is None else key_padding_mask(token_mask))
        if queries is None:
            a = self.self_attn(self.attn_res.inner_input(x), mask=mask, need_weights=need_weights)
            h = self.attn_res.combine(x, a.out)
            f, aux = apply_transition(self.transition, self.ffn_res.inner_input(h), token_mask, active=active)
            return LayerOutput(self.ffn_res.combine(h, f), self_weights=a.weights, aux_loss=aux)
        _check_queries(self.transition, self.self_attn)
        xq = gather_positions(x, queries)
        a = self.self_attn(self.attn_res.inner_input(xq), self.attn_res.inner_input(x), mask=_query_rows(mask, queries),
                           need_weights=need_weights)
        h = self.attn_res.combine(xq, a.out)
        q_mask = None if token_mask is None else token_mask.gather(1, queries)
        f, aux = apply_transition(self.transition, self.ffn_res.inner_input(h), q_mask, active=active,
                                  queries=queries, full_mask=token_mask, length=x.shape[1])
        return LayerOutput(scatter_positions(x, queries, self.ffn_res.combine(h, f)), self_weights=a.weights,
                           aux_loss=aux)


class DecoderLayer(nn.Module):
    """Masked self-attention -> [encoder-decoder attention] -> transition, each with Add & Norm (Vaswani §3.1).

    ``cross_attention=False`` gives the decoder-only (language-model) layer of T-D (Liu et al. 2018).
    ``self_attn`` may be any module with MultiHeadAttention's call signature (the long-input attentions); its
    ``cache_factory`` attribute, when present, builds its decoding cache (default :class:`KVCache`).
    Decoding caches live in a :class:`DecodingCache` under ``(cache_key, "self" | "cross" | "conv")``; the
    cross-attention cache (keys and values of the memory, the same at every application of the layer) is one object
    for every ``cache_key`` of this layer (:meth:`DecodingCache.get_shared`), so a weight-shared layer (Universal
    Transformer) projects the memory once, not once per step.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        norm: NormPlacement = "pre",
        transition: str | nn.Module = "ffn",
        cross_attention: bool = True,
        self_attn: nn.Module | None = None,
        activation: str = "relu",
        memory_dim: int | None = None,
    ):
        super().__init__()
        self.self_attn = self_attn if self_attn is not None else MultiHeadAttention(d_model, n_heads, attention_dropout)
        self.self_res = Residual(d_model, norm, dropout)
        self.cross_attn = (
            MultiHeadAttention(d_model, n_heads, attention_dropout, kv_dim=memory_dim) if cross_attention else None
        )
        self.cross_res = Residual(d_model, norm, dropout) if cross_attention else None
        self.transition = (
            transition
            if isinstance(transition, nn.Module)
            else make_transition(transition, d_model, d_ff, dropout, causal=True, activation=activation)
        )
        self.ffn_res = Residual(d_model, norm, dropout)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        *,
        self_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        token_mask: Tensor | None = None,
        cache: DecodingCache | None = None,
        cache_key=None,
        need_weights: bool = False,
        queries: Tensor | None = None,
        active: Tensor | None = None,
    ) -> LayerOutput:
        """x (B, L, D) -> LayerOutput.

        Args:
            memory: encoder output (B, S, D) for cross-attention.
            self_mask: extra self-attention mask (e.g. key padding over cached + new keys), True = may attend;
                the causal constraint is always added.
            memory_mask: cross-attention mask, e.g. ``key_padding_mask(src_mask)``.
            token_mask: Bool[B, L] real tokens of x (for the convolutional transition).
            cache / cache_key: incremental decoding; x holds only the new positions.
            queries: Long[B, La], compute only these positions (module docstring); not with a cache.
            active: Bool[B, L], the positions a mixture-of-experts transition routes (module docstring).
        """
        if queries is not None:
            if cache is not None:
                raise ValueError("a subset of query positions cannot be decoded incrementally (cache given)")
            _check_queries(self.transition, self.self_attn)
        site = (lambda name, factory=KVCache: cache.get((cache_key, name), factory)) if cache is not None else None
        if queries is None:
            a = self.self_attn(
                self.self_res.inner_input(x),
                mask=self_mask,
                causal=True,
                cache=site("self", getattr(self.self_attn, "cache_factory", KVCache)) if site else None,
                need_weights=need_weights,
            )
            h, self_w = self.self_res.combine(x, a.out), a.weights
        else:
            h, self_w = self._self_attention_at(x, queries, self_mask, need_weights)
            full_mask, token_mask = token_mask, None if token_mask is None else token_mask.gather(1, queries)
        cross_w = None
        if self.cross_attn is not None:
            if memory is None:
                raise ValueError("this decoder layer has cross-attention but got no encoder memory")
            c = self.cross_attn(
                self.cross_res.inner_input(h),
                memory,
                mask=memory_mask,
                cache=None if cache is None else cache.get_shared((cache_key, "cross"), (self.cross_attn, "cross"),
                                                                  _static_kv_cache),
                need_weights=need_weights,
            )
            h = self.cross_res.combine(h, c.out)
            cross_w = c.weights
        conv_cache = site("conv", ConvCache) if site and isinstance(self.transition, SeparableConvTransition) else None
        at = {} if queries is None else {"queries": queries, "full_mask": full_mask, "length": x.shape[1]}
        f, aux = apply_transition(self.transition, self.ffn_res.inner_input(h), token_mask, conv_cache, active=active,
                                  **at)
        out = self.ffn_res.combine(h, f)
        return LayerOutput(out if queries is None else scatter_positions(x, queries, out), self_w, cross_w, aux)

    def _self_attention_at(self, x: Tensor, queries: Tensor, self_mask: Tensor | None,
                           need_weights: bool) -> tuple[Tensor, Tensor | None]:
        """The self-attention sub-layer for the queries ``queries`` (B, La) only, keys and values from all of ``x``:
        query k, at position ``queries[:, k]``, sees the keys up to that position -> (states (B, La, D), weights)."""
        causal = torch.arange(x.shape[1], device=x.device)[None, None, None, :] <= queries[:, None, :, None]
        mask = causal if self_mask is None else causal & _query_rows(self_mask, queries)
        xq = gather_positions(x, queries)
        a = self.self_attn(self.self_res.inner_input(xq), self.self_res.inner_input(x), mask=mask,
                           need_weights=need_weights)
        return self.self_res.combine(xq, a.out), a.weights
