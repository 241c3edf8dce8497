"""Transformer encoder-decoder (Vaswani et al. 2017), the T-ED model of Liu et al. 2018.

Encoder: N x [self-attention, Add & Norm, feed-forward, Add & Norm]. Decoder: N x [masked self-attention,
encoder-decoder attention, feed-forward], each with Add & Norm. Token embeddings are multiplied by sqrt(D) and the
position signal is added (§3.4-3.5). Optionally one embedding matrix for source, target and the output softmax
(``share_embeddings``, ``tie_output``) as in the paper's base recipe.

Deviations, each a config field: ``norm="pre"`` is tensor2tensor's placement and our default (the paper is
post-norm: ``norm="post"``); attention dropout defaults to 0 (t2t: 0.1) because on CPU SDPA with dropout falls back
to its quadratic path.

Both stacks run through :func:`ut.nn.stack.run_stack` (N distinct layers, once); ``encode`` and ``decode`` return
its :class:`ut.nn.stack.StackOutput`. Incremental decoding (``start_decoding`` / ``decode_step``) is
:class:`ut.decoding.EncoderDecoderDecoding`: decoder layer i caches under ``("dec", i)``.

Shape legend: B batch, S source length, T target length, D width, V vocabulary, H heads.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ut.decoding import EncoderDecoderDecoding
from ut.models.config import Activation, ConfigBase, Norm, PositionKind, Transition
from ut.models.inputs import check_right_padded, source_inputs, token_mask
from ut.models.outputs import ModelOutput, final_states, model_output
from ut.nn.attention import DecodingCache, key_padding_mask
from ut.nn.embedding import TokenEmbedding
from ut.nn.layers import DecoderLayer, EncoderLayer
from ut.nn.positions import position_ids
from ut.nn.stack import StackOutput, key_by_layer, run_stack


@dataclass
class TransformerConfig(ConfigBase):
    src_vocab_size: int = 32  # source vocabulary size V_src
    tgt_vocab_size: int = 32  # target vocabulary size V_tgt (= V_src when embeddings are shared)
    d_model: int = 512  # model width D (base: 512)
    n_heads: int = 8  # attention heads H (base: 8)
    d_ff: int = 2048  # feed-forward inner width (base: 2048)
    n_encoder_layers: int = 6  # encoder depth (base: 6)
    n_decoder_layers: int = 6  # decoder depth (base: 6)
    dropout: float = 0.1  # residual, embedding and ffn dropout (paper: 0.1)
    attention_dropout: float = 0.0  # dropout on attention weights (t2t: 0.1; 0 keeps SDPA's fast kernels on CPU)
    norm: Norm = "pre"  # "pre" (t2t) or "post" (paper) LayerNorm placement
    transition: Transition = "ffn"  # "ffn" or "sepconv"
    activation: Activation = "relu"  # "relu" (paper) or "gelu"
    position: PositionKind = "sinusoidal"  # "sinusoidal" (paper) or "learned"
    max_len: int = 1024  # largest learned position (position="learned" only; sinusoids have no bound)
    share_embeddings: bool = False  # one embedding matrix for source and target (needs equal vocabularies)
    tie_output: bool = True  # output softmax weight = target embedding (paper §3.4)
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2

    def __post_init__(self):
        super().__post_init__()
        self._check(self.d_model % self.n_heads == 0, f"d_model={self.d_model} must divide by n_heads={self.n_heads}")
        self._check(min(self.src_vocab_size, self.tgt_vocab_size, self.d_model, self.d_ff) > 0, "sizes must be > 0")
        self._check(self.n_encoder_layers >= 1 and self.n_decoder_layers >= 1, "at least one layer each")
        self._check(0 <= self.dropout < 1 and 0 <= self.attention_dropout < 1, "dropouts must be in [0, 1)")
        if self.share_embeddings:
            self._check(self.src_vocab_size == self.tgt_vocab_size, "share_embeddings needs equal vocab sizes")


class TransformerEncoder(nn.Module):
    """A stack of encoder layers (+ final LayerNorm for pre-norm). ``forward(x, token_mask) -> StackOutput``."""

    def __init__(self, cfg: TransformerConfig, n_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(
            EncoderLayer(
                cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.dropout, cfg.attention_dropout, cfg.norm, cfg.transition,
                cfg.activation,
            )
            for _ in range(n_layers)
        )
        self.final_norm = nn.LayerNorm(cfg.d_model) if cfg.norm == "pre" else nn.Identity()

    def forward(self, x: Tensor, token_mask: Tensor | None, need_weights: bool = False) -> StackOutput:
        """x (B, S, D) embedded with positions, token_mask Bool[B, S] -> StackOutput (``.output`` (B, S, D))."""
        return run_stack(self.layers, x, final_norm=self.final_norm, token_mask=token_mask, need_weights=need_weights)


class TransformerEncoderDecoder(EncoderDecoderDecoding, nn.Module):
    """Transformer encoder-decoder. Training: ``forward(src, src_mask, tgt_in, ...)``; decoding:
    ``start_decoding`` + ``decode_step`` (:class:`ut.decoding.EncoderDecoderDecoding`)."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.src_embed = TokenEmbedding(cfg.src_vocab_size, cfg.d_model, cfg.position, cfg.max_len, cfg.dropout,
                                        cfg.pad_id)
        self.tgt_embed = (
            self.src_embed
            if cfg.share_embeddings
            else TokenEmbedding(cfg.tgt_vocab_size, cfg.d_model, cfg.position, cfg.max_len, cfg.dropout, cfg.pad_id)
        )
        self.encoder = TransformerEncoder(cfg, cfg.n_encoder_layers)
        self.decoder_layers = nn.ModuleList(
            DecoderLayer(
                cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.dropout, cfg.attention_dropout, cfg.norm, cfg.transition,
                activation=cfg.activation,
            )
            for _ in range(cfg.n_decoder_layers)
        )
        self.decoder_norm = nn.LayerNorm(cfg.d_model) if cfg.norm == "pre" else nn.Identity()
        self.output = nn.Linear(cfg.d_model, cfg.tgt_vocab_size, bias=False)
        if cfg.tie_output:
            self.output.weight = self.tgt_embed.weight

    def encode(self, src: Tensor, src_mask: Tensor | None = None, src_pos_offset: Tensor | None = None,
               need_weights: bool = False) -> StackOutput:
        """src Long[B, S] -> StackOutput: memory ``.output`` (B, S, D), the resolved ``.token_mask``, maps, aux."""
        src_mask, pos = source_inputs(src, src_mask, self.cfg.pad_id, src_pos_offset)
        return self.encoder(self.src_embed(src, pos), src_mask, need_weights)

    def decode(self, tgt_in: Tensor, memory: Tensor, src_mask: Tensor | None, *, tgt_mask: Tensor | None = None,
               positions: Tensor | None = None, cache: DecodingCache | None = None,
               need_weights: bool = False, project_output: bool = True) -> tuple[Tensor | None, StackOutput]:
        """Decoder over ``tgt_in`` (B, T) (all of it, or only the new positions with a cache) -> (logits (B, T, V),
        StackOutput). Target padding sits only at the end, after EOS: causal masking hides it from real tokens.
        ``src_mask`` None: every source position is real."""
        if positions is None:
            positions = position_ids(tgt_in.shape[1], tgt_in.shape[0], None, tgt_in.device)
        if cache is None:  # the full target: its padding inferred from pad_id when no mask is given
            tgt_mask = token_mask(tgt_in, tgt_mask, self.cfg.pad_id, "tgt_in", "tgt_mask")
            check_right_padded(tgt_mask, "tgt_mask")
        dec = run_stack(self.decoder_layers, self.tgt_embed(tgt_in, positions), final_norm=self.decoder_norm,
                        token_mask=tgt_mask, need_weights=need_weights, cache=cache, cache_key=key_by_layer,
                        memory=memory, memory_mask=None if src_mask is None else key_padding_mask(src_mask))
        return (self.output(dec.output) if project_output else None), dec

    def forward(self, src: Tensor, src_mask: Tensor | None, tgt_in: Tensor, tgt_mask: Tensor | None = None, *,
                src_pos_offset: Tensor | None = None, tgt_pos_offset: Tensor | None = None,
                need_weights: bool = False, project_output: bool = True) -> ModelOutput:
        """src Long[B, S], tgt_in Long[B, T] (BOS + y); a missing ``src_mask`` / ``tgt_mask`` is inferred from
        ``pad_id`` (the target must be right-padded)."""
        enc = self.encode(src, src_mask, src_pos_offset, need_weights)
        pos = position_ids(tgt_in.shape[1], tgt_in.shape[0], tgt_pos_offset, tgt_in.device)
        logits, dec = self.decode(tgt_in, enc.output, enc.token_mask, tgt_mask=tgt_mask, positions=pos,
                                  need_weights=need_weights, project_output=project_output)
        return model_output(logits, {"encoder": enc, "decoder": dec}, final_states=final_states(dec, project_output))
