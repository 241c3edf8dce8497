"""UT-DMCA: a decoder-only Universal Transformer with local / memory-compressed attention (beyond both papers).

T-DMCA (Liu et al. 2018, §4.2.2; ``ut/models/decoder_only.py`` with a ``layer_pattern``) stacks distinct layers of
local and memory-compressed attention over ``[input; sep; target]``; the Universal Transformer (Dehghani et al.
2019) applies ONE layer T times with shared weights, with dynamic halting (ACT) optionally. UT-DMCA combines them:

- one step of the recurrence is a short *pattern* of layers, ``layer_pattern`` (default ``"locm/redm"``: one
  blockwise local-attention layer then one memory-compressed layer, any T-DMCA layer kind allowed, ``-moe``
  included, or ``transition="moe"`` for every layer: the sparse UT of :mod:`ut.models.moe_transition`). The layers
  of the pattern are the shared weights: the whole pattern is applied T times. A single
  attention kind cannot do the job alone -- local attention never sees beyond its block(s) and memory-compressed
  attention sees far tokens only compressed -- so one shared layer per attention kind is the smallest recurrent
  block that keeps T-DMCA's mix; parameters do not grow with T (tested);
- before every application of the pattern the position and timestep signals are added, ``x_t = H + P + S_t``
  (UT §2.1, through :class:`ut.models.universal.UniversalStack` and :func:`ut.nn.stack.run_stack`), P at the
  positions themselves (``position_start_index`` has no effect here), and the final LayerNorm follows the loop
  (pre-norm);
- ``recurrence="fixed"``: T = ``n_steps`` applications; ``recurrence="act"``: per-position halting with
  :class:`ut.nn.act.AdaptiveComputationTime` (frozen halted states, at most ``act_max_steps``), the halting unit
  reading ``x_t``; the ponder loss ``act_loss_weight * mean(n + r)`` goes into ``ModelOutput.ponder_loss``, the MoE
  balancing losses of every application, summed, into ``moe_loss``, and their sum into ``aux_loss``;
  ``recurrence="pondernet"`` / ``"stick_breaking"`` (:mod:`ut.models.halting`): the same frozen states and cache
  scheme, PonderNet's expected loss per token (``ModelOutput.step_logits`` / ``step_weights`` in training).

The cost per step is T-DMCA's (linear in L for local attention, L^2 / c for memory-compressed), times the steps.

Incremental decoding (``start_decoding`` / ``decode_step``, :class:`ut.decoding.DecoderOnlyDecoding`): pattern
layer j at executed step t has its own caches, ``DecodingCache`` key ``(("dec", t, j), "self" | "conv")`` -- keyed
by executed step, not by module, since every step runs the same modules. Under ACT, each new position runs its own
ACT loop with the step-t caches; a step t that earlier positions never ran (they halted before t) is first brought
up to date from their frozen states ``H_frozen + P`` (:class:`ut.nn.act.FrozenStates`) by running the pattern on
them with the step-t caches and discarding the outputs -- the scheme of ``ut/models/universal.py``, generalised to
the long attentions' caches, which are only ever extended by running the module. Each (position, step) is computed
once.

Shape legend: B batch, L length, D width, V vocabulary, T steps, P pattern layers per step.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ut.decoding import DecoderOnlyDecoding
from ut.models.decoder_only import (
    ATTENTION_KINDS,
    blocks_follow_tensor_index,
    build_decoder_layer,
    check_long_input_fields,
    kind_base,
)
from ut.models.inputs import lm_forward_masks
from ut.models.outputs import ModelOutput, final_states, model_output
from ut.models.universal import UniversalCommonConfig, UniversalStack
from ut.nn.act import FrozenStates
from ut.nn.attention import DecodingCache
from ut.nn.embedding import TokenEmbedding
from ut.nn.stack import StackOutput, apply_layers, key_by_step_and_layer


@dataclass
class UniversalDecoderOnlyConfig(UniversalCommonConfig):
    """UniversalCommonConfig (steps, ACT, timestep, norm, widths) plus the decoder-only / long-input fields.

    The mixture-of-experts fields (``n_experts``, ``moe_top_k``, ...) are :class:`ut.models.moe_transition.
    MoETransitionConfig`'s: used by ``"-moe"`` layers of the pattern, or by every layer with ``transition="moe"``.

    ``act_skip_halted`` does not apply here (null or False; True is an error): the long attentions compute whole
    blocks, so every position runs each executed step (halted ones from their frozen state, as the ACT loop requires).
    """

    act_skip_halted: bool | None = None  # does not apply: every position runs each executed step (see above)
    vocab_size: int = 32  # vocabulary size V (input and target share it)
    layer_pattern: str = "locm/redm"  # ONE recurrence step: "/"-separated T-DMCA layer kinds, weights shared over T
    block_size: int = 256  # local attention block (Liu et al.: 256)
    compression: int = 3  # memory-compressed attention kernel = stride (Liu et al.: 3)
    max_len: int = 16384  # largest learned position (long inputs)
    tie_output: bool = True  # output softmax weight = token embedding
    bos_id: int = 1
    eos_id: int = 2
    sep_id: int = 3

    def __post_init__(self):
        super().__post_init__()
        self._check(self.act_skip_halted is not True,
                    "act_skip_halted=True cannot apply to UT-DMCA: every position runs each executed step (the "
                    "long attentions compute whole blocks); leave it null")
        self._check(self.vocab_size > 0, "vocab_size must be > 0")
        self._check(bool(self.layer_pattern.strip()), "layer_pattern must name at least one layer kind")
        for kind in self.layer_kinds():
            self._check(kind_base(kind) in ATTENTION_KINDS,
                        f"unknown layer kind {kind!r} in layer_pattern; known: {sorted(ATTENTION_KINDS)}")
        check_long_input_fields(self)

    def layer_kinds(self) -> list[str]:
        return [k.strip() for k in self.layer_pattern.split("/")]


class StepProgress:
    """How many positions each executed step's caches hold (ACT decoding); not batch-indexed, so reorder is a no-op."""

    def __init__(self):
        self.filled: dict[int, int] = {}

    def reorder_(self, index: Tensor) -> None:
        pass


class UniversalDecoderOnlyLM(DecoderOnlyDecoding, nn.Module):
    """UT-DMCA language model over ``[input; sep; target]`` (see the module docstring)."""

    def __init__(self, cfg: UniversalDecoderOnlyConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = TokenEmbedding(cfg.vocab_size, cfg.d_model, cfg.position, cfg.max_len, cfg.dropout, cfg.pad_id)
        # the shared block: one layer per kind of the pattern, applied at every step (UniversalStack: S_t, ACT, LN)
        self.stack = UniversalStack(cfg, nn.ModuleList(build_decoder_layer(cfg, k) for k in cfg.layer_kinds()))
        self.output = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_output:
            self.output.weight = self.embed.weight

    @property
    def layers(self) -> nn.ModuleList:
        return self.stack.layer

    @property
    def exact_with_padded_prefixes(self) -> bool:
        """False with local / memory-compressed layers (:func:`ut.models.decoder_only.blocks_follow_tensor_index`)."""
        return not blocks_follow_tensor_index(self.cfg.layer_kinds())

    def decoder_states(self, input_ids: Tensor, positions: Tensor, token_mask: Tensor | None,
                       self_mask: Tensor | None, cache: DecodingCache | None = None,
                       need_weights: bool = False) -> StackOutput:
        """The recurrence over the new positions ``input_ids`` (B, n) -> StackOutput (final states (B, n, D), maps,
        MoE loss, ACT bookkeeping); with a cache, extends every executed step's caches (module docstring)."""
        x = self.embed(input_ids)
        pos_signal = self.embed.positions(positions).to(x.dtype)
        frozen = progress = before_step = None
        if cache is not None and self.stack.halting is not None:
            frozen = cache.get(("dec", "frozen"), FrozenStates)
            progress = cache.get(("dec", "progress"), StepProgress)
            n_prev = len(frozen)

            def before_step(t: int) -> None:
                self._fill_from_frozen(cache, frozen, progress, n_prev, t, self_mask)
                progress.filled[t] = n_prev + x.shape[1]

        # P is added at the positions themselves at every step (no random start index)
        dec = self.stack.run(x, pos_signal, start=lambda t: None, token_mask=token_mask, self_mask=self_mask,
                             cache=cache, cache_key=key_by_step_and_layer, before_step=before_step,
                             need_weights=need_weights)
        if frozen is not None:
            frozen.append(dec.halting.state + pos_signal)
        return dec

    def _fill_from_frozen(self, cache: DecodingCache, frozen: FrozenStates, progress: StepProgress, n_prev: int,
                          t: int, self_mask: Tensor | None) -> None:
        """Bring the step-t caches up to position ``n_prev``: positions that halted before step t ran no step t."""
        have = progress.filled.get(t, 0)
        if have >= n_prev:
            return
        x_t = frozen.base[:, have:n_prev]
        x_t = x_t + self.stack.step_signal(t, x_t.device, x_t.dtype)
        mask = None if self_mask is None else self_mask[..., :n_prev]
        # fills the caches; the outputs (and their MoE losses) are discarded
        apply_layers(self.layers, x_t, StackOutput(x_t), step=t, cache=cache, cache_key=key_by_step_and_layer,
                     self_mask=mask, token_mask=None)
        progress.filled[t] = n_prev

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, position_ids: Tensor | None = None,
                need_weights: bool = False, project_output: bool = True) -> ModelOutput:
        """input_ids Long[B, L] (left or right padded) -> ModelOutput (logits (B, L, V), aux_loss, ponder time)."""
        attention_mask, position_ids, self_mask = lm_forward_masks(input_ids, attention_mask, position_ids,
                                                                   self.cfg.pad_id)
        dec = self.decoder_states(input_ids, position_ids, attention_mask, self_mask, need_weights=need_weights)
        return model_output(self.output(dec.output) if project_output else None, {"decoder": dec},
                            self.cfg.act_loss_weight, self.output, final_states=final_states(dec, project_output))
