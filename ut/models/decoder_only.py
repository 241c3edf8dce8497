"""Decoder-only Transformer language model over ``[input; sep; target]``: the T-D model of Liu et al. 2018.

"Generating Wikipedia by Summarizing Long Sequences", §4.2: drop the encoder, concatenate input and target with a
separator, and train a language model; at test time the input and separator are the prefix and the target is
generated. The loss covers the target only by default (``loss_on="target"``) or the whole sequence (``"all"``):
:func:`ut.data.lm_batches.pack_input_target` builds the sequence and its loss mask (a data choice, so it is an
argument of the data module, ``WikiSumDataModule(loss_on=...)``, not of the model).

Layers are chosen by ``layer_pattern``, a "/"-separated string of self-attention kinds, one per layer, like
tensor2tensor's ``"locm/redm/locm/redm/locm"``; an empty pattern means ``n_layers`` full-attention layers.
:data:`ATTENTION_KINDS` maps each kind to the factory of its attention (full, and the long-input local and
memory-compressed attentions of ``ut/nn/long_attention.py``) and :data:`TRANSITION_KINDS` each layer-kind suffix
(``-moe``) to the factory of its transition; both tables are written out below, so that T-DMCA is a config change of
this model. The layers run through :func:`ut.nn.stack.run_stack` (layer i caches under ``("dec", i)``); decoding is
:class:`ut.decoding.DecoderOnlyDecoding`.

Shape legend: B batch, L length, D width, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from ut.decoding import DecoderOnlyDecoding
from ut.models.config import Activation, ConfigBase, MoEBalance, MoEPriority, Norm, PositionKind, Transition
from ut.models.inputs import lm_forward_masks
from ut.models.moe_transition import moe_feed_forward
from ut.models.outputs import ModelOutput, final_states, model_output
from ut.nn.attention import DecodingCache, MultiHeadAttention
from ut.nn.embedding import TokenEmbedding
from ut.nn.layers import DecoderLayer
from ut.nn.long_attention import LocalAttention, MemoryCompressedAttention
from ut.nn.stack import StackOutput, key_by_layer, run_stack


@dataclass
class DecoderOnlyConfig(ConfigBase):
    vocab_size: int = 32  # vocabulary size V (input and target share it)
    d_model: int = 512  # width D
    n_heads: int = 8  # attention heads
    d_ff: int = 2048  # feed-forward inner width
    n_layers: int = 6  # depth, used when layer_pattern is empty
    layer_pattern: str = ""  # "/"-separated attention kinds, one per layer (see ATTENTION_KINDS); "" = all "full"
    dropout: float = 0.1  # residual / embedding / ffn dropout
    attention_dropout: float = 0.0  # keep 0 for long inputs on CPU (SDPA's math path otherwise)
    norm: Norm = "pre"  # "pre" (t2t) or "post" (paper)
    transition: Transition = "ffn"  # "ffn" or "sepconv" (causal)
    activation: Activation = "relu"  # "relu" or "gelu"
    position: PositionKind = "sinusoidal"  # "sinusoidal" or "learned"
    max_len: int = 4096  # largest learned position
    tie_output: bool = True  # output softmax weight = token embedding
    # long-input attention settings (used by the kinds that need them; see ut/nn/long_attention.py)
    block_size: int = 256  # local attention block (Liu et al.: 256)
    compression: int = 3  # memory-compressed attention kernel = stride (Liu et al.: 3)
    # mixture of experts (used by "-moe" layers; see ut/nn/moe.py)
    n_experts: int = 16  # experts per MoE layer (Liu et al.: 128 or 256)
    moe_top_k: int = 2  # experts per token
    moe_capacity_factor: float = 1.25  # expert capacity = factor * tokens * k / n_experts
    moe_aux_loss_weight: float = 0.01  # load-balancing loss weight
    moe_priority: MoEPriority = "position"  # capacity priority: "position" (causal in training) or "choice" (GShard)
    moe_balance: MoEBalance = "importance"  # balancing loss: "importance" (Shazeer et al.) or "switch" (Fedus et al.)
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    sep_id: int = 3

    def __post_init__(self):
        super().__post_init__()
        self._check(self.d_model % self.n_heads == 0, f"d_model={self.d_model} must divide by n_heads={self.n_heads}")
        self._check(self.n_layers >= 1 or bool(self.layer_pattern), "need at least one layer")
        self._check(0 <= self.dropout < 1 and 0 <= self.attention_dropout < 1, "dropouts must be in [0, 1)")
        for kind in self.layer_kinds():
            self._check(kind_base(kind) in ATTENTION_KINDS,
                        f"unknown layer kind {kind!r} in layer_pattern; known: {sorted(ATTENTION_KINDS)}")
        check_long_input_fields(self)

    def layer_kinds(self) -> list[str]:
        if not self.layer_pattern:
            return ["full"] * self.n_layers
        return [k.strip() for k in self.layer_pattern.split("/")]


def kind_base(kind: str) -> str:
    """``"locm-moe"`` -> ``"locm"`` (the attention part of a layer kind)."""
    return kind.split("-")[0]


def _full_attention(cfg) -> nn.Module:
    return MultiHeadAttention(cfg.d_model, cfg.n_heads, cfg.attention_dropout)


def _local_attention(look_back: bool) -> Callable:
    def build(cfg) -> nn.Module:
        return LocalAttention(cfg.d_model, cfg.n_heads, cfg.block_size, look_back, cfg.attention_dropout)

    return build


def _memory_compressed_attention(order: str) -> Callable:
    def build(cfg) -> nn.Module:
        return MemoryCompressedAttention(cfg.d_model, cfg.n_heads, cfg.compression, order)

    return build


# attention kind -> factory(cfg) building the layer's self-attention module (MultiHeadAttention's call signature).
# Long-input kinds (ut/nn/long_attention.py; all causal, Liu et al. 2018 §4.2.2):
#   "loc", "locm"  local attention within blocks of cfg.block_size (the paper's; "locm" is the name t2t's shipped
#                  config "locm/redm/locm-moe/redm/locm" uses, so that pattern runs as the paper describes it)
#   "locm_prev"    local attention over the own block + the previous block (t2t's local_mask_right, which is what
#                  t2t's own "locm" layers compute)
#   "redm"         memory-compressed attention, project then compress (the paper), kernel = stride = cfg.compression
#   "redm_cp"      memory-compressed attention, compress then project (t2t's multihead_self_attention_reduced)
ATTENTION_KINDS: dict[str, Callable[[DecoderOnlyConfig], nn.Module]] = {
    "full": _full_attention,
    "loc": _local_attention(look_back=False),
    "locm": _local_attention(look_back=False),
    "locm_prev": _local_attention(look_back=True),
    "redm": _memory_compressed_attention("project_compress"),
    "redm_cp": _memory_compressed_attention("compress_project"),
}
# layer-kind suffix -> factory(cfg) building the layer's transition: "moe" = mixture of experts (ut/nn/moe.py)
# (ut/models/moe_transition.py); UT-DMCA's transition="moe" gives it to every layer of the pattern
TRANSITION_KINDS: dict[str, Callable[[DecoderOnlyConfig], nn.Module]] = {"moe": moe_feed_forward}


def check_long_input_fields(cfg) -> None:
    """Validate the long-input / MoE fields of a config with ``layer_kinds()`` (DecoderOnlyConfig, UT-DMCA's)."""
    cfg._check(cfg.block_size >= 1, f"block_size must be >= 1, got {cfg.block_size}")
    cfg._check(cfg.compression >= 1, f"compression must be >= 1, got {cfg.compression}")
    cfg._check(cfg.n_experts >= 1, f"n_experts must be >= 1, got {cfg.n_experts}")
    cfg._check(1 <= cfg.moe_top_k <= cfg.n_experts, f"need 1 <= moe_top_k <= n_experts, got {cfg.moe_top_k}")
    cfg._check(cfg.moe_capacity_factor > 0, f"moe_capacity_factor must be > 0, got {cfg.moe_capacity_factor}")
    cfg._check(cfg.moe_aux_loss_weight >= 0, f"moe_aux_loss_weight must be >= 0, got {cfg.moe_aux_loss_weight}")
    for kind in cfg.layer_kinds():
        for suffix in kind.split("-")[1:]:
            cfg._check(suffix in TRANSITION_KINDS,
                       f"unknown layer suffix {suffix!r} in {kind!r}; known: {sorted(TRANSITION_KINDS)}")
        if kind_base(kind).startswith("redm"):
            cfg._check(cfg.attention_dropout == 0,
                       "memory-compressed attention ('redm*') has no attention dropout: set attention_dropout=0")


def build_decoder_layer(cfg, kind: str) -> DecoderLayer:
    """One decoder-only layer of ``kind`` (e.g. "full", "locm", "redm-moe")."""
    base, *suffix = kind.split("-")
    name = cfg.transition  # a suffix overrides the config's transition (UT-DMCA's may itself be "moe")
    for s in suffix:
        if s not in TRANSITION_KINDS:
            raise ValueError(f"unknown layer suffix {s!r} in {kind!r}; known: {sorted(TRANSITION_KINDS)}")
        name = s
    transition: str | nn.Module = TRANSITION_KINDS[name](cfg) if name in TRANSITION_KINDS else name
    return DecoderLayer(
        cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.dropout, cfg.attention_dropout, cfg.norm, transition,
        cross_attention=False, self_attn=ATTENTION_KINDS[base](cfg), activation=cfg.activation,
    )


def blocks_follow_tensor_index(kinds: list[str]) -> bool:
    """True when some layer's attention (local, memory-compressed) cuts blocks by tensor index: such a model decodes
    a left-padded batch differently from each row alone (block boundaries move with the padding), so the decoding
    functions decode its rows one at a time when their prefixes differ in length (:mod:`ut.decoding`)."""
    return any(kind_base(k) != "full" for k in kinds)


class DecoderOnlyLM(DecoderOnlyDecoding, nn.Module):
    """Decoder-only LM (T-D; with a long-attention ``layer_pattern``, T-DMCA)."""

    def __init__(self, cfg: DecoderOnlyConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = TokenEmbedding(cfg.vocab_size, cfg.d_model, cfg.position, cfg.max_len, cfg.dropout, cfg.pad_id)
        self.layers = nn.ModuleList(build_decoder_layer(cfg, kind) for kind in cfg.layer_kinds())
        self.final_norm = nn.LayerNorm(cfg.d_model) if cfg.norm == "pre" else nn.Identity()
        self.output = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_output:
            self.output.weight = self.embed.weight

    @property
    def exact_with_padded_prefixes(self) -> bool:
        """False with local / memory-compressed layers (:func:`blocks_follow_tensor_index`, :mod:`ut.decoding`)."""
        return not blocks_follow_tensor_index(self.cfg.layer_kinds())

    def decoder_states(self, input_ids: Tensor, positions: Tensor, token_mask: Tensor | None,
                       self_mask: Tensor | None, cache: DecodingCache | None = None,
                       need_weights: bool = False) -> StackOutput:
        """Embedded ``input_ids`` (B, L) at ``positions`` through the layers -> StackOutput (final states
        (B, L, D)); with a cache, L new positions after the cached ones."""
        return run_stack(self.layers, self.embed(input_ids, positions), final_norm=self.final_norm,
                         token_mask=token_mask, need_weights=need_weights, cache=cache, cache_key=key_by_layer,
                         self_mask=self_mask)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, position_ids: Tensor | None = None,
                need_weights: bool = False, project_output: bool = True) -> ModelOutput:
        """input_ids Long[B, L] (left or right padded) -> ModelOutput with logits (B, L, V) (``project_output``
        False: ``final_states`` (B, L, D) instead, for the fused output loss)."""
        attention_mask, position_ids, self_mask = lm_forward_masks(input_ids, attention_mask, position_ids,
                                                                   self.cfg.pad_id)
        dec = self.decoder_states(input_ids, position_ids, attention_mask, self_mask, need_weights=need_weights)
        return model_output(self.output(dec.output) if project_output else None, {"decoder": dec},
                            final_states=final_states(dec, project_output))
