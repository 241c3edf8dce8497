"""Universal Transformer: encoder-decoder and encoder-only classifier (Dehghani et al., ICLR 2019).

"Universal Transformers", §2: ONE encoder layer (self-attention + transition) whose weights are shared across depth
is applied T times -- a recurrence in depth, not in time -- and likewise one shared decoder layer (causal
self-attention, attention over the FINAL encoder state, transition). Before every application the position signal P
and the timestep signal S_t are added: ``x_t = H^{t-1} + P + S_t`` (§2.1, eq. 1-2 with the coordinate embedding).
The embedding H^0 carries no position signal of its own (the paper's H^0 is the plain embedding).

Position start index per step (config ``position_start_index``, tensor2tensor's hparam of the same name read by
``universal_transformer_util.add_position_timing_signal``): ``"zero"`` (default, t2t's default None) adds P at the
positions themselves; ``"random"`` (t2t's setting for the algorithmic tasks) adds ``P_t = sinusoid(positions + k_t)``
with ONE start index k_t uniform in [0, L) drawn at EVERY step t, L the padded length of that stack's input, one
draw per BATCH shared by all its examples (as t2t: ``tf.random_uniform([], maxval=shape(x)[1])``), drawn
separately by the encoder and the decoder (t2t calls it once per step in each), in training AND in evaluation (as
t2t, which has no mode switch there: a model trained on random starts sees, at k_t = 0 for every step, a sum of
position signals it never saw in training), from torch's global generator (``seed_everything`` fixes it). Cached
decoding: the encoder draws once per source as in the full pass; the decoder draws its k_t of every step ONCE per
decode (kept in the cache, so every decoded position of step t shares one k_t as in a full pass), uniform in [0, S)
with S the source length. Deviation, named: t2t's UT decodes without a cache, re-running the whole prefix and
redrawing at every token with the prefix length as the bound. ``stack.fixed_start_indices`` (one int per step)
replaces the draws, e.g. to compare a full pass with a cached decode exactly; the indices used in the last pass are
in ``stack.last_start_indices``. ``"random"`` needs ``position="sinusoidal"`` (t2t's timing signal; a shift of a
learned table has no meaning beyond its rows).

Recurrence (config ``recurrence``, :mod:`ut.models.halting`):

- ``"fixed"``: T = ``n_steps`` applications (the paper's "UT base" for MT, no ACT).
- ``"act"``: dynamic halting per position with Adaptive Computation Time (Graves 2016; UT §2.2), at most
  ``act_max_steps`` (default 2 x ``n_steps``) applications; see :mod:`ut.nn.act` for the algorithm, the defects of
  the reference implementations fixed there, and the frozen-halted-state semantics. The ponder loss
  ``act_loss_weight * mean(n + r)`` of the encoder and of the decoder goes into ``ModelOutput.ponder_loss`` (and
  ``aux_loss``); per-position ponder time and update counts into ``ModelOutput.ponder_time`` / ``n_updates``.
- ``"pondernet"`` (:mod:`ut.nn.pondernet`) and ``"stick_breaking"`` (:mod:`ut.nn.stick_breaking`): the same frozen
  states and decoding scheme; their regularisers go into ``ponder_loss``. PonderNet's expectation is per target
  token in the decoder (``ModelOutput.step_logits`` / ``step_weights`` in training) and per example in the
  classifier; the encoder of the encoder-decoder outputs the p-weighted state (a named approximation).

Both stacks are a :class:`UniversalStack` (the shared layer, timestep signal, ACT, final LayerNorm) applied through
:func:`ut.nn.stack.run_stack`, which returns a :class:`ut.nn.stack.StackOutput` (``encode`` returns the encoder's).

Options and deviations, each a config field: ``timestep="sinusoidal"`` (paper, default) or ``"learned"`` (t2t's
default ``step_timing_signal_type``); ``norm="pre"`` (t2t, our default: ``x + f(LN(x))`` with a final LayerNorm
after the loop) or ``"post"`` (the paper's equations); ``transition="ffn"`` (t2t "fc", default), ``"sepconv"``
(causal in the decoder) or ``"moe"``, a mixture of experts inside the shared layer (the sparse UT, Tan et al. 2023;
Csordas et al. 2024; :mod:`ut.models.moe_transition`: its balancing loss goes into ``ModelOutput.moe_loss``, apart
from the halting loss, and under a halting loop only running positions are routed). With ACT we freeze the state of
halted positions (UT paper) instead of t2t's keep-transforming; ``act_skip_halted`` then runs the shared layer only
on the running positions (keys and values still from all positions) when the transition is position-wise (ffn,
moe) -- same outputs, less compute (tested).

Incremental decoding (``start_decoding`` / ``decode_step``, :class:`ut.decoding.EncoderDecoderDecoding`): the
shared decoder layer has one cache per EXECUTED STEP, under ``DecodingCache`` keys ``(("dec", t), "self" | "cross" |
"conv")`` -- a cache keyed by module would mix the steps (t2t has no UT decoding cache at all). The exception is
the cross-attention cache: the memory's keys and values are the same at every step, so all steps hold one object
(:class:`ut.nn.layers.DecoderLayer`).

UT+ACT decoding scheme (exact, tested against the full forward pass): each new position runs its own ACT loop, one
executed step t at a time with the step-t cache, until it halts in every row (rows that halted earlier are frozen
and, exactly as in the full pass, still compute their step-t keys from the frozen state). Under frozen-state
semantics the key/value of an earlier position j at step t is a function of j's FINAL state alone when j halted
before t: ``x_t(j) = H_frozen(j) + P(j) + S_t``. The model keeps ``H_frozen + P`` of every decoded position
(:class:`FrozenStates`, a cache site, reordered with the beams). Each step-t cache holds a contiguous prefix of the
positions; before step t runs for position i, the missing positions ``len(cache_t) .. i-1`` (all of which halted
before step t) are filled from their frozen states: for the position-wise ``ffn`` and ``moe`` transitions only their
keys and values are projected (``MultiHeadAttention.project_kv``); for ``sepconv`` the layer is run on them as a
chunk (which also fills the causal-convolution history) and its outputs are discarded. Each (position, step) is
filled at most once, so decoding costs no more than t2t's compute-everything forward pass.

Shape legend: B batch, S source length, T target length, D width, V vocabulary, H heads, C classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Literal

import torch
from torch import Tensor, nn

from ut.decoding import EncoderDecoderDecoding
from ut.models.config import Activation, Norm, Pooling, PositionKind, UniversalTransition
from ut.models.encoder_classifier import ClassificationHead
from ut.models.halting import HaltingConfig, build_halting
from ut.models.inputs import check_right_padded, source_inputs, token_mask
from ut.models.moe_transition import MoETransitionConfig, shared_layer_transition
from ut.models.outputs import ModelOutput, final_states, model_output
from ut.nn.act import FrozenStates
from ut.nn.attention import DecodingCache, key_padding_mask
from ut.nn.embedding import TokenEmbedding
from ut.nn.layers import DecoderLayer, EncoderLayer
from ut.nn.positions import TimestepSignal, draw_start_index, position_ids, shift_sinusoid
from ut.nn.stack import CacheKey, StackOutput, key_by_step, run_stack

# ----------------------------------------------------------------------------------------------------------------
# configs


POSITION_WISE_TRANSITIONS = ("ffn", "moe")  # transitions that act on each position alone (act_skip_halted applies)


@dataclass
class UniversalCommonConfig(MoETransitionConfig, HaltingConfig):
    """Fields shared by the UT encoder-decoder and the UT classifier (the recurrence's: :class:`HaltingConfig`; the
    mixture of experts': :class:`ut.models.moe_transition.MoETransitionConfig`, used by ``transition="moe"``)."""

    d_model: int = 512  # width D (t2t universal_transformer_small: 512; base: 1024)
    n_heads: int = 8  # attention heads H
    d_ff: int = 2048  # transition inner width (transition="moe": each expert's)
    timestep: PositionKind = "sinusoidal"  # timestep signal S_t: "sinusoidal" (paper) or "learned" (t2t)
    dropout: float = 0.1  # residual / embedding / transition dropout
    attention_dropout: float = 0.0  # dropout on attention weights (0 keeps SDPA's fast kernels on CPU)
    norm: Norm = "pre"  # "pre" (t2t, final LN after the loop) or "post" (paper equations)
    # "ffn" (t2t "fc"), "sepconv" (separable convolutions, causal in the decoder) or "moe" (mixture of experts, the
    # sparse UT: ut/models/moe_transition.py, its fields n_experts, moe_top_k, moe_capacity_factor, moe_*)
    transition: UniversalTransition = "ffn"  # the shared layer's transition: "ffn", "sepconv" or "moe" (sparse UT)
    activation: Activation = "relu"  # "relu" or "gelu"
    position: PositionKind = "sinusoidal"  # position signal P: "sinusoidal" (paper) or "learned"
    position_start_index: Literal["zero", "random"] = "zero"  # P's start per step (random: t2t, per step and batch)
    max_len: int = 1024  # largest learned position
    pad_id: int = 0

    def __post_init__(self):
        super().__post_init__()
        self._check(self.d_model % self.n_heads == 0, f"d_model={self.d_model} must divide by n_heads={self.n_heads}")
        self._check(min(self.d_model, self.d_ff) > 0, "d_model and d_ff must be > 0")
        self._check(0 <= self.dropout < 1 and 0 <= self.attention_dropout < 1, "dropouts must be in [0, 1)")
        self._check(not self.act_skip_halted or self.transition in POSITION_WISE_TRANSITIONS,
                    "act_skip_halted=True needs transition='ffn' or 'moe' (a separable convolution mixes neighbouring "
                    f"positions, so halted ones cannot be skipped), got transition={self.transition!r}; leave it null")
        self._check(self.position_start_index == "zero" or self.position == "sinusoidal",
                    "position_start_index='random' shifts the sinusoid (t2t's timing signal): needs "
                    f"position='sinusoidal', got position={self.position!r}")

    @property
    def skips_halted(self) -> bool:
        """Whether a halting loop runs the shared layer on the still-running positions only: ``act_skip_halted``
        True, or None (the default) where it applies (the ffn and moe transitions act per position)."""
        return self.act_skip_halted is not False and self.transition in POSITION_WISE_TRANSITIONS


@dataclass
class UniversalTransformerConfig(UniversalCommonConfig):
    src_vocab_size: int = 32  # source vocabulary size
    tgt_vocab_size: int = 32  # target vocabulary size
    share_embeddings: bool = False  # one embedding matrix for source and target (needs equal vocabularies)
    tie_output: bool = True  # output softmax weight = target embedding
    bos_id: int = 1
    eos_id: int = 2

    def __post_init__(self):
        super().__post_init__()
        self._check(min(self.src_vocab_size, self.tgt_vocab_size) > 0, "vocabulary sizes must be > 0")
        if self.share_embeddings:
            self._check(self.src_vocab_size == self.tgt_vocab_size, "share_embeddings needs equal vocab sizes")


@dataclass
class UniversalClassifierConfig(UniversalCommonConfig):
    vocab_size: int = 32  # input vocabulary size
    n_classes: int = 32  # answer classes C
    pooling: Pooling = "mean"  # "mean" (t2t class-label modality, over real tokens), "first" or "last"

    def __post_init__(self):
        super().__post_init__()
        self._check(min(self.vocab_size, self.n_classes) > 0, "vocab_size and n_classes must be > 0")


# ----------------------------------------------------------------------------------------------------------------
# the recurrent stacks


class UniversalStack(nn.Module):
    """One shared layer (or a shared pattern of layers, ``nn.ModuleList``), the timestep signal, the recurrence
    (fixed, or a halting loop: ``act``, ``pondernet`` or ``stick_breaking``, the one of ``cfg.recurrence``, the
    others None; :attr:`halting` is the one present) and the final LayerNorm (pre-norm); :meth:`run` applies it
    through :func:`ut.nn.stack.run_stack`.

    ``skip_halted``: under a halting loop, run the layer on the running positions only (one layer with full
    attention and a position-wise transition; :mod:`ut.nn.layers`). ``readout``: PonderNet's
    (:mod:`ut.nn.pondernet`)."""

    def __init__(self, cfg: UniversalCommonConfig, layer: nn.Module, skip_halted: bool = False,
                 readout: str = "per_position"):
        super().__init__()
        self.layer = layer
        self.n_steps = cfg.n_steps
        self.timestep = TimestepSignal(cfg.timestep, cfg.d_model, cfg.max_steps)
        halting = build_halting(cfg, cfg.d_model, readout)
        self.act = halting if cfg.recurrence == "act" else None
        self.pondernet = halting if cfg.recurrence == "pondernet" else None
        self.stick_breaking = halting if cfg.recurrence == "stick_breaking" else None
        self.position_wise = cfg.transition in POSITION_WISE_TRANSITIONS
        self.skip_halted = skip_halted
        self.final_norm = nn.LayerNorm(cfg.d_model) if cfg.norm == "pre" else nn.Identity()
        self.random_start = cfg.position_start_index == "random"
        self.fixed_start_indices: list[int] | None = None  # replaces the random draws (one k per step) when set
        self.last_start_indices: list[Tensor] = []  # k_t of every step of the last pass (random start)
        self._sinusoid_steps: dict[tuple, Tensor] = {}  # S_t of the sinusoidal kind by (t, device, dtype)

    @property
    def halting(self) -> nn.Module | None:
        """The halting loop (ACT, PonderNet or stick-breaking); None at fixed depth."""
        return next((m for m in (self.act, self.pondernet, self.stick_breaking) if m is not None), None)

    def step_signal(self, step: int, device, dtype: torch.dtype) -> Tensor:
        """S_t (D,) in ``dtype``. The sinusoidal kind is a constant of (t, D): computed once per step, device and
        dtype (incremental decoding asks for it at every executed step of every token)."""
        if self.timestep.kind != "sinusoidal" or torch.compiler.is_compiling():
            return self.timestep(step, device).to(dtype)
        key = (step, torch.device(device) if device is not None else None, dtype)
        if key not in self._sinusoid_steps:
            self._sinusoid_steps[key] = self.timestep(step, device).to(dtype)
        return self._sinusoid_steps[key]

    def start_index(self, step: int, length: int, device) -> Tensor | None:
        """k_t of step ``step``: None without random start, else ``fixed_start_indices[step]`` or a fresh draw in
        [0, length) (see the module docstring)."""
        if not self.random_start:
            return None
        if self.fixed_start_indices is not None:
            k = torch.tensor(self.fixed_start_indices[step], device=device)
        else:
            k = draw_start_index(length, device)
        self.last_start_indices.append(k)
        return k

    def step_input(self, state: Tensor, pos_signal: Tensor, step: int, start: Tensor | None = None) -> Tensor:
        """x_t = H + P_t + S_t (UT §2.1); P_t = P shifted by the start index ``start`` (k_t) when given, else P."""
        if start is not None:
            pos_signal = shift_sinusoid(pos_signal, start)
        return state + pos_signal + self.step_signal(step, state.device, state.dtype)

    def run(self, x: Tensor, pos_signal: Tensor, *, start: Callable[[int], Tensor | None] | None = None,
            cache_key: CacheKey = key_by_step, **stack_inputs) -> StackOutput:
        """The recurrence over ``x`` (B, L, D) (H^0) with position signal ``pos_signal`` (B, L, D) -> StackOutput.

        ``start(t) -> k_t``: the start index of step t (default: :meth:`start_index`, drawn per step over this
        input's length); ``stack_inputs``: :func:`ut.nn.stack.run_stack`'s (token_mask, cache, before_step, ...)
        and the layers' (memory, memory_mask, self_mask)."""
        pos_signal = pos_signal.to(x.dtype)
        if start is None:
            self.last_start_indices = []
            start = partial(self.start_index, length=x.shape[1], device=x.device)

        def step_input(state: Tensor, t: int) -> Tensor:
            return self.step_input(state, pos_signal, t, start(t))

        layers = self.layer if isinstance(self.layer, nn.ModuleList) else [self.layer]
        return run_stack(layers, x, n_steps=self.n_steps, step_input=step_input, act=self.halting,
                         skip_halted=self.skip_halted, final_norm=self.final_norm, cache_key=cache_key,
                         **stack_inputs)


class UniversalEncoder(UniversalStack):
    """The UT encoder: one shared :class:`EncoderLayer` applied at every step. ``readout``: PonderNet's, default
    the p-weighted state (the encoder of an encoder-decoder); the classifiers read per example."""

    def __init__(self, cfg: UniversalCommonConfig, readout: str = "expected_state"):
        layer = EncoderLayer(cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.dropout, cfg.attention_dropout, cfg.norm,
                             shared_layer_transition(cfg), cfg.activation)
        super().__init__(cfg, layer, skip_halted=cfg.skips_halted, readout=readout)

    def forward(self, x: Tensor, pos_signal: Tensor, token_mask: Tensor | None,
                need_weights: bool = False) -> StackOutput:
        """x (B, S, D) embedded tokens (no position), pos_signal (B, S, D), token_mask Bool[B, S]."""
        return self.run(x, pos_signal, token_mask=token_mask, need_weights=need_weights)


class UniversalDecoder(UniversalStack):
    """The UT decoder: one shared :class:`DecoderLayer` (causal self-attention, attention over the final encoder
    state, transition) applied at every step; full-sequence ``forward`` and cached ``forward_incremental``."""

    def __init__(self, cfg: UniversalCommonConfig):
        layer = DecoderLayer(cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.dropout, cfg.attention_dropout, cfg.norm,
                             shared_layer_transition(cfg), activation=cfg.activation)
        super().__init__(cfg, layer, skip_halted=cfg.skips_halted)

    def forward(self, x: Tensor, pos_signal: Tensor, memory: Tensor, memory_mask: Tensor | None,
                token_mask: Tensor | None = None, need_weights: bool = False) -> StackOutput:
        """x (B, T, D) embedded targets, memory (B, S, D) final encoder state, memory_mask broadcastable mask."""
        return self.run(x, pos_signal, token_mask=token_mask, need_weights=need_weights, memory=memory,
                        memory_mask=memory_mask)

    def forward_incremental(self, x: Tensor, pos_signal: Tensor, memory: Tensor, memory_mask: Tensor | None,
                            cache: DecodingCache) -> StackOutput:
        """New positions ``x`` (B, Tn, D) after the cached ones -> StackOutput (final states (B, Tn, D)); extends
        ``cache`` (module docstring: the UT+ACT decoding scheme)."""
        pos_signal = pos_signal.to(x.dtype)
        starts = cache.get(("dec", "start_index"), DecodeStartIndices) if self.random_start else None

        def start(t: int) -> Tensor | None:  # one k_t per step for the whole decode, drawn at its first use
            if starts is None:
                return None
            if t not in starts.by_step:
                if not starts.by_step:  # a new decode
                    self.last_start_indices = []
                starts.by_step[t] = self.start_index(t, memory.shape[1], x.device)
            return starts.by_step[t]

        if self.halting is None:
            return self.run(x, pos_signal, start=start, cache=cache, memory=memory, memory_mask=memory_mask)
        frozen: FrozenStates = cache.get(("dec", "frozen"), FrozenStates)
        # random start: P is shifted differently at every step, so the frozen H and P are kept apart
        frozen_pos: FrozenStates | None = cache.get(("dec", "frozen_pos"), FrozenStates) if self.random_start else None
        n_prev = len(frozen)
        dec = self.run(x, pos_signal, start=start, cache=cache, memory=memory, memory_mask=memory_mask,
                       before_step=lambda t: self._fill_from_frozen(cache, frozen, n_prev, t, memory, memory_mask,
                                                                    frozen_pos, start(t)))
        if frozen_pos is None:
            frozen.append(dec.halting.state + pos_signal)
        else:
            frozen.append(dec.halting.state)
            frozen_pos.append(pos_signal)
        return dec

    def _fill_from_frozen(self, cache: DecodingCache, frozen: FrozenStates, n_prev: int, t: int, memory: Tensor,
                          memory_mask: Tensor | None, frozen_pos: FrozenStates | None = None,
                          start: Tensor | None = None) -> None:
        """Give the step-t cache the positions ``len(cache_t) .. n_prev-1``, which halted before step t. ``frozen``
        holds H_frozen + P, or H_frozen alone with P in ``frozen_pos`` (random start: P_t = P shifted by ``start``)."""
        kv = cache.get((key_by_step(t, 0), "self"))
        have = len(kv)
        if have >= n_prev:
            return
        x_t = frozen.base[:, have:n_prev]
        if frozen_pos is not None:
            x_t = x_t + shift_sinusoid(frozen_pos.base[:, have:n_prev], start)
        x_t = x_t + self.step_signal(t, x_t.device, x_t.dtype)
        if self.position_wise:  # only their keys and values are ever read
            kv.append(*self.layer.self_attn.project_kv(self.layer.self_res.inner_input(x_t)))
        else:  # convolution neighbours too: run the layer on them, discard the outputs
            self.layer(x_t, memory, memory_mask=memory_mask, cache=cache, cache_key=key_by_step(t, 0))


class DecodeStartIndices:
    """A :class:`ut.nn.attention.DecodingCache` site: the decoder's start index k_t of every step for one decode
    (random start), shared by all rows, so beam reordering leaves it as it is."""

    def __init__(self):
        self.by_step: dict[int, Tensor | None] = {}

    def reorder_(self, index: Tensor) -> None:
        pass


# ----------------------------------------------------------------------------------------------------------------
# models


class UniversalTransformerEncoderDecoder(EncoderDecoderDecoding, nn.Module):
    """UT encoder-decoder. Training: ``forward(src, src_mask, tgt_in, ...)``; decoding: ``start_decoding`` +
    ``decode_step`` (:class:`ut.decoding.EncoderDecoderDecoding`; the module docstring for the cache)."""

    def __init__(self, cfg: UniversalTransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.src_embed = TokenEmbedding(cfg.src_vocab_size, cfg.d_model, cfg.position, cfg.max_len, cfg.dropout,
                                        cfg.pad_id)
        self.tgt_embed = (
            self.src_embed
            if cfg.share_embeddings
            else TokenEmbedding(cfg.tgt_vocab_size, cfg.d_model, cfg.position, cfg.max_len, cfg.dropout, cfg.pad_id)
        )
        self.encoder = UniversalEncoder(cfg)
        self.decoder = UniversalDecoder(cfg)
        self.output = nn.Linear(cfg.d_model, cfg.tgt_vocab_size, bias=False)
        if cfg.tie_output:
            self.output.weight = self.tgt_embed.weight

    def encode(self, src: Tensor, src_mask: Tensor | None = None, src_pos_offset: Tensor | None = None,
               need_weights: bool = False) -> StackOutput:
        """src Long[B, S] -> StackOutput (``.output`` is the final encoder state (B, S, D))."""
        src_mask, pos = source_inputs(src, src_mask, self.cfg.pad_id, src_pos_offset)
        return self.encoder(self.src_embed(src), self.src_embed.positions(pos), src_mask, need_weights)

    def decode(self, tgt_in: Tensor, memory: Tensor, src_mask: Tensor | None, *, tgt_mask: Tensor | None = None,
               positions: Tensor | None = None, cache: DecodingCache | None = None,
               need_weights: bool = False, project_output: bool = True) -> tuple[Tensor | None, StackOutput]:
        """Decoder over ``tgt_in`` (B, T) -> (logits (B, T, V), StackOutput); without a cache the whole target (a
        missing ``tgt_mask`` inferred from ``pad_id``: padding never runs the ACT loop), with one only the new
        positions (:meth:`UniversalDecoder.forward_incremental`). ``src_mask`` None: every source position is real."""
        if positions is None:
            positions = position_ids(tgt_in.shape[1], tgt_in.shape[0], None, tgt_in.device)
        x, pos_signal = self.tgt_embed(tgt_in), self.tgt_embed.positions(positions)
        memory_mask = None if src_mask is None else key_padding_mask(src_mask)
        if cache is not None:
            dec = self.decoder.forward_incremental(x, pos_signal, memory, memory_mask, cache)
            return self.output(dec.output), dec
        tgt_mask = token_mask(tgt_in, tgt_mask, self.cfg.pad_id, "tgt_in", "tgt_mask")
        check_right_padded(tgt_mask, "tgt_mask")
        dec = self.decoder(x, pos_signal, memory, memory_mask, tgt_mask, need_weights)
        return (self.output(dec.output) if project_output else None), dec

    def forward(self, src: Tensor, src_mask: Tensor | None, tgt_in: Tensor, tgt_mask: Tensor | None = None, *,
                src_pos_offset: Tensor | None = None, tgt_pos_offset: Tensor | None = None,
                need_weights: bool = False, project_output: bool = True) -> ModelOutput:
        """src Long[B, S], tgt_in Long[B, T] (BOS + y); a missing ``src_mask`` / ``tgt_mask`` is inferred from
        ``pad_id`` for both, so target padding takes no part in ACT halting or the ponder loss."""
        enc = self.encode(src, src_mask, src_pos_offset, need_weights)
        pos = position_ids(tgt_in.shape[1], tgt_in.shape[0], tgt_pos_offset, tgt_in.device)
        logits, dec = self.decode(tgt_in, enc.output, enc.token_mask, tgt_mask=tgt_mask, positions=pos,
                                  need_weights=need_weights, project_output=project_output)
        return model_output(logits, {"encoder": enc, "decoder": dec}, self.cfg.act_loss_weight, self.output,
                            final_states=final_states(dec, project_output))


class UniversalTransformerClassifier(nn.Module):
    """UT encoder-only with a classification / answer head (bAbI; UT §3.1): embedding -> UT encoder (fixed or ACT)
    -> :class:`ut.models.encoder_classifier.ClassificationHead` (shared with the Transformer twin)."""

    def __init__(self, cfg: UniversalClassifierConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = TokenEmbedding(cfg.vocab_size, cfg.d_model, cfg.position, cfg.max_len, cfg.dropout, cfg.pad_id)
        self.encoder = UniversalEncoder(cfg, readout="per_example")
        self.head = ClassificationHead(cfg.d_model, cfg.n_classes, cfg.pooling)

    def forward(self, src: Tensor, src_mask: Tensor | None = None, *, src_pos_offset: Tensor | None = None,
                need_weights: bool = False) -> ModelOutput:
        """src Long[B, S] -> ModelOutput(logits (B, C), aux_loss = ponder loss under ACT, ponder_time["encoder"])."""
        src_mask, pos = source_inputs(src, src_mask, self.cfg.pad_id, src_pos_offset)
        enc = self.encoder(self.embed(src), self.embed.positions(pos), src_mask, need_weights)
        return model_output(self.head(enc.output, src_mask), {"encoder": enc}, self.cfg.act_loss_weight,
                            lambda h: self.head(h, src_mask))
