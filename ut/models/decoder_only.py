"""Decoder-only Transformer language model over ``[input; sep; target]``: the T-D model of Liu et al. 2018.

"Generating Wikipedia by Summarizing Long Sequences", §4.2: drop the encoder, concatenate input and target with a
separator, and train a language model; at test time the input and separator are the prefix and the target is
generated. The loss covers the target only by default (``loss_on="target"``) or the whole sequence (``"all"``):
:func:`pack_input_target` builds the sequence and its loss mask (a data choice, so it is an argument of the data
module, ``WikiSumDataModule(loss_on=...)``, not of the model).

Layers are chosen by ``layer_pattern``, a "/"-separated string of self-attention kinds, one per layer, like
tensor2tensor's ``"locm/redm/locm/redm/locm"``; an empty pattern means ``n_layers`` full-attention layers.
:data:`ATTENTION_KINDS` maps each kind to a factory; the long-input attentions (local, memory-compressed) and the
mixture-of-experts suffix register themselves there, so that T-DMCA is a config change of this model.

Shape legend: B batch, L length, P prefix length, D width, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ut.decoding import DecodeState
from ut.models.config import Activation, ConfigBase, MoEPriority, Norm, PositionKind, Transition
from ut.models.inputs import lm_padding, token_mask
from ut.models.outputs import ModelOutput
from ut.nn.attention import DecodingCache, MultiHeadAttention, key_padding_mask
from ut.nn.embedding import TokenEmbedding
from ut.nn.layers import DecoderLayer
from ut.nn.long_attention import LocalAttention, MemoryCompressedAttention
from ut.nn.moe import MoEFeedForward


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


def _moe_transition(cfg) -> nn.Module:
    return MoEFeedForward(cfg.d_model, cfg.d_ff, cfg.n_experts, cfg.moe_top_k, cfg.moe_capacity_factor,
                          cfg.moe_aux_loss_weight, dropout=cfg.dropout, activation=cfg.activation,
                          priority=cfg.moe_priority)


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
TRANSITION_KINDS: dict[str, Callable[[DecoderOnlyConfig], nn.Module]] = {"moe": _moe_transition}


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
    transition: str | nn.Module = cfg.transition
    for s in suffix:
        if s not in TRANSITION_KINDS:
            raise ValueError(f"unknown layer suffix {s!r} in {kind!r}; known: {sorted(TRANSITION_KINDS)}")
        transition = TRANSITION_KINDS[s](cfg)
    return DecoderLayer(
        cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.dropout, cfg.attention_dropout, cfg.norm, transition,
        cross_attention=False, self_attn=ATTENTION_KINDS[base](cfg), activation=cfg.activation,
    )


def pack_input_target(inputs: list[list[int]], targets: list[list[int]], sep_id: int, eos_id: int, pad_id: int,
                      loss_on: str = "target") -> dict[str, Tensor]:
    """Right-padded ``[input; sep; target; eos]`` rows with the LM batch keys (see CONTRIBUTING.md).

    ``loss_mask[:, i]`` is True where predicting token i+1 counts: from the separator (which predicts the first
    target token) to the token before the end, for ``loss_on="target"``; every real next token for ``"all"``.
    """
    rows = [list(x) + [sep_id] + list(y) + [eos_id] for x, y in zip(inputs, targets)]
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    attn = torch.zeros(len(rows), length, dtype=torch.bool)
    loss = torch.zeros(len(rows), length, dtype=torch.bool)
    for i, (row, x) in enumerate(zip(rows, inputs)):
        ids[i, : len(row)] = torch.tensor(row)
        attn[i, : len(row)] = True
        start = len(x) if loss_on == "target" else 0  # index of the separator
        loss[i, start : len(row) - 1] = True
    return {"input_ids": ids, "attention_mask": attn, "loss_mask": loss}


def left_align(ids: Tensor, mask: Tensor, pad_id: int) -> tuple[Tensor, Tensor]:
    """Move each row's real tokens to the right end (left padding), keeping their order."""
    order = torch.sort(mask.long(), dim=1, stable=True).indices  # pads (0) first, then real tokens, order kept
    ids = ids.gather(1, order)
    mask = mask.gather(1, order)
    return ids.masked_fill(~mask, pad_id), mask


def decoding_prefix(batch: dict[str, Tensor], pad_id: int) -> tuple[Tensor, Tensor, Tensor]:
    """The decoding protocol's prefix ``[input; sep]`` of an LM batch (any padding side), left-aligned so that every
    row's next token sits at the same index -> ``(ids Long[B, P], mask Bool[B, P], positions Long[B, P])``.

    The model runs ``[:, :-1]`` into its cache and feeds ``ids[:, -1]`` first; :func:`lm_decode_state` and
    :func:`next_step_inputs` keep the key mask and the next position (shared by every decoder-only model)."""
    ids = batch["input_ids"]
    mask = batch.get("attention_mask")
    mask = ids != pad_id if mask is None else mask.bool()
    ids, mask = left_align(ids, mask, pad_id)
    n_pad_columns = int((~mask).all(0).long().sum())  # columns of padding in every row (all of it, for one row)
    ids, mask = ids[:, n_pad_columns:], mask[:, n_pad_columns:]
    return ids, mask, (mask.long().cumsum(1) - 1).clamp(min=0)


def blocks_follow_tensor_index(kinds: list[str]) -> bool:
    """True when some layer's attention (local, memory-compressed) cuts blocks by tensor index: such a model decodes
    a left-padded batch differently from each row alone (block boundaries move with the padding), so the decoding
    functions decode its rows one at a time when their prefixes differ in length (:mod:`ut.decoding`)."""
    return any(kind_base(k) != "full" for k in kinds)


def lm_forward_masks(input_ids: Tensor, attention_mask: Tensor | None, position_ids: Tensor | None,
                     pad_id: int) -> tuple[Tensor, Tensor, Tensor | None]:
    """Whole-sequence LM inputs -> (token mask Bool[B, L], positions Long[B, L] counting real tokens only,
    self-attention key-padding mask or None). The key mask only matters when a real token could see a pad, i.e.
    with left padding (right padding sits after every real token, hidden by causality). A missing mask is inferred
    from ``pad_id``; a mask of another shape, or with padding between real tokens, is an error
    (:mod:`ut.models.inputs`)."""
    attention_mask = token_mask(input_ids, attention_mask, pad_id, "input_ids", "attention_mask")
    if position_ids is None:
        position_ids = (attention_mask.long().cumsum(1) - 1).clamp(min=0)
    elif position_ids.shape != input_ids.shape:
        raise ValueError(f"position_ids must have the shape of input_ids, {list(input_ids.shape)}, "
                         f"got {list(position_ids.shape)}")
    self_mask = None if lm_padding(attention_mask, "attention_mask") else key_padding_mask(attention_mask)
    return attention_mask, position_ids, self_mask


def lm_decode_state(cache: DecodingCache, mask: Tensor, positions: Tensor) -> DecodeState:
    """DecodeState after the prefix ``[:, :-1]`` ran into ``cache`` (``mask`` / ``positions`` of the whole prefix)."""
    return DecodeState(cache, {"key_mask": mask[:, :-1], "next_pos": positions[:, -1]})


def next_step_inputs(tokens: Tensor, state: DecodeState) -> tuple[Tensor, Tensor]:
    """Advance ``state`` by one fed token per row: -> (self-attention mask over cached + new keys, positions (B, 1))."""
    t = state.tensors
    key_mask = torch.cat([t["key_mask"], torch.ones_like(tokens[:, None], dtype=torch.bool)], dim=1)
    state.tensors = {"key_mask": key_mask, "next_pos": t["next_pos"] + 1}
    state.step += 1
    return key_padding_mask(key_mask), t["next_pos"][:, None]


class DecoderOnlyLM(nn.Module):
    """Decoder-only LM (T-D; with a long-attention ``layer_pattern``, T-DMCA)."""

    def __init__(self, cfg: DecoderOnlyConfig):
        super().__init__()
        self.cfg = cfg
        # ut.decoding: rows with prefixes of different lengths are decoded one at a time when this is False
        self.exact_with_padded_prefixes = not blocks_follow_tensor_index(cfg.layer_kinds())
        self.embed = TokenEmbedding(cfg.vocab_size, cfg.d_model, cfg.position, cfg.max_len, cfg.dropout, cfg.pad_id)
        self.layers = nn.ModuleList(build_decoder_layer(cfg, kind) for kind in cfg.layer_kinds())
        self.final_norm = nn.LayerNorm(cfg.d_model) if cfg.norm == "pre" else nn.Identity()
        self.output = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_output:
            self.output.weight = self.embed.weight

    def run_layers(self, x: Tensor, token_mask: Tensor | None, self_mask: Tensor | None,
                   cache: DecodingCache | None, need_weights: bool):
        weights, aux = [], None
        for i, layer in enumerate(self.layers):
            o = layer(x, self_mask=self_mask, token_mask=token_mask, cache=cache, cache_key=("dec", i),
                      need_weights=need_weights)
            x = o.x
            if need_weights:
                weights.append(o.self_weights)
            if o.aux_loss is not None:
                aux = o.aux_loss if aux is None else aux + o.aux_loss
        return self.output(self.final_norm(x)), weights, aux

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, position_ids: Tensor | None = None,
                need_weights: bool = False) -> ModelOutput:
        """input_ids Long[B, L] (left or right padded) -> ModelOutput with logits (B, L, V)."""
        attention_mask, position_ids, self_mask = lm_forward_masks(input_ids, attention_mask, position_ids,
                                                                   self.cfg.pad_id)
        x = self.embed(input_ids, position_ids)
        logits, weights, aux = self.run_layers(x, attention_mask, self_mask, None, need_weights)
        return ModelOutput(logits, aux, {"decoder_self": weights} if need_weights else {})

    # ------------------------------------------------------------------ incremental decoding
    def start_decoding(self, batch: dict[str, Tensor]) -> tuple[DecodeState, Tensor]:
        """Run the prefix ``[input; sep]`` (``input_ids``, ``attention_mask``; any padding side) into the cache.

        The prefix is left-aligned (:func:`decoding_prefix`) so that every row's next token sits at the same index;
        the last prefix token (the separator) is returned as the first token to feed.
        """
        ids, mask, pos = decoding_prefix(batch, self.cfg.pad_id)
        cache = DecodingCache()
        if ids.shape[1] > 1:
            pre_mask = mask[:, :-1]
            self.run_layers(self.embed(ids[:, :-1], pos[:, :-1]), pre_mask, key_padding_mask(pre_mask), cache, False)
        return lm_decode_state(cache, mask, pos), ids[:, -1]

    def decode_step(self, tokens: Tensor, state: DecodeState) -> Tensor:
        self_mask, pos = next_step_inputs(tokens, state)
        logits, _, _ = self.run_layers(self.embed(tokens[:, None], pos), None, self_mask, state.cache, False)
        return logits[:, -1]
