"""Transformer encoder-decoder (Vaswani et al. 2017), the T-ED model of Liu et al. 2018.

Encoder: N x [self-attention, Add & Norm, feed-forward, Add & Norm]. Decoder: N x [masked self-attention,
encoder-decoder attention, feed-forward], each with Add & Norm. Token embeddings are multiplied by sqrt(D) and the
position signal is added (§3.4-3.5). Optionally one embedding matrix for source, target and the output softmax
(``share_embeddings``, ``tie_output``) as in the paper's base recipe.

Deviations, each a config field: ``norm="pre"`` is tensor2tensor's placement and our default (the paper is
post-norm: ``norm="post"``); attention dropout defaults to 0 (t2t: 0.1) because on CPU SDPA with dropout falls back
to its quadratic path.

Shape legend: B batch, S source length, T target length, D width, V vocabulary, H heads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ut.decoding import DecodeState
from ut.models.config import Activation, ConfigBase, Norm, PositionKind, Transition
from ut.models.inputs import check_right_padded, token_mask
from ut.models.outputs import ModelOutput
from ut.nn.attention import DecodingCache, key_padding_mask
from ut.nn.embedding import TokenEmbedding
from ut.nn.layers import DecoderLayer, EncoderLayer
from ut.nn.positions import position_ids


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
    """A stack of encoder layers (+ final LayerNorm for pre-norm). ``forward(x, token_mask) -> (h, weights)``."""

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

    def forward(self, x: Tensor, token_mask: Tensor | None, need_weights: bool = False):
        weights, aux = [], None
        for layer in self.layers:
            o = layer(x, token_mask, need_weights=need_weights)
            x = o.x
            if need_weights:
                weights.append(o.self_weights)
            if o.aux_loss is not None:
                aux = o.aux_loss if aux is None else aux + o.aux_loss
        return self.final_norm(x), weights, aux


class TransformerEncoderDecoder(nn.Module):
    """Transformer encoder-decoder. Training: ``forward(src, src_mask, tgt_in, ...)``; decoding:
    ``start_decoding`` + ``decode_step`` (see :mod:`ut.decoding`)."""

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

    # ------------------------------------------------------------------ training / scoring
    def encode(self, src: Tensor, src_mask: Tensor | None = None, src_pos_offset: Tensor | None = None,
               need_weights: bool = False):
        """src Long[B, S] -> memory (B, S, D), encoder self-attention weights, aux loss."""
        src_mask = token_mask(src, src_mask, self.cfg.pad_id, "src", "src_mask")
        pos = position_ids(src.shape[1], src.shape[0], src_pos_offset, src.device)
        return self.encoder(self.src_embed(src, pos), src_mask, need_weights)

    def decode(self, tgt_in: Tensor, memory: Tensor, src_mask: Tensor, *, tgt_mask: Tensor | None = None,
               positions: Tensor | None = None, cache: DecodingCache | None = None, need_weights: bool = False):
        """Decoder over ``tgt_in`` (B, T) (all of it, or only new positions with a cache) -> (logits, weights)."""
        if positions is None:
            positions = position_ids(tgt_in.shape[1], tgt_in.shape[0], None, tgt_in.device)
        if cache is None:  # the full target: its padding inferred from pad_id when no mask is given
            tgt_mask = token_mask(tgt_in, tgt_mask, self.cfg.pad_id, "tgt_in", "tgt_mask")
            check_right_padded(tgt_mask, "tgt_mask")
        x = self.tgt_embed(tgt_in, positions)
        self_w, cross_w, aux = [], [], None
        mem_mask = key_padding_mask(src_mask)
        # target padding sits only at the end, after EOS: causal masking already hides it from real tokens
        for i, layer in enumerate(self.decoder_layers):
            o = layer(x, memory, memory_mask=mem_mask, token_mask=tgt_mask, cache=cache, cache_key=("dec", i),
                      need_weights=need_weights)
            x = o.x
            if need_weights:
                self_w.append(o.self_weights)
                cross_w.append(o.cross_weights)
            if o.aux_loss is not None:
                aux = o.aux_loss if aux is None else aux + o.aux_loss
        return self.output(self.decoder_norm(x)), self_w, cross_w, aux

    def forward(self, src: Tensor, src_mask: Tensor | None, tgt_in: Tensor, tgt_mask: Tensor | None = None, *,
                src_pos_offset: Tensor | None = None, tgt_pos_offset: Tensor | None = None,
                need_weights: bool = False) -> ModelOutput:
        """src Long[B, S], tgt_in Long[B, T] (BOS + y); a missing ``src_mask`` / ``tgt_mask`` is inferred from
        ``pad_id`` (the target must be right-padded)."""
        src_mask = token_mask(src, src_mask, self.cfg.pad_id, "src", "src_mask")
        memory, enc_w, enc_aux = self.encode(src, src_mask, src_pos_offset, need_weights)
        pos = position_ids(tgt_in.shape[1], tgt_in.shape[0], tgt_pos_offset, tgt_in.device)
        logits, self_w, cross_w, dec_aux = self.decode(tgt_in, memory, src_mask, tgt_mask=tgt_mask, positions=pos,
                                                       need_weights=need_weights)
        aux = [a for a in (enc_aux, dec_aux) if a is not None]
        attentions = {"encoder": enc_w, "decoder_self": self_w, "decoder_cross": cross_w} if need_weights else {}
        return ModelOutput(logits, sum(aux) if aux else None, attentions)

    # ------------------------------------------------------------------ incremental decoding
    def start_decoding(self, batch: dict[str, Tensor]) -> tuple[DecodeState, Tensor]:
        """Encode the source once; the first decoder input is BOS. Returns (state, first tokens Long[B])."""
        src = batch["src"]
        src_mask = token_mask(src, batch.get("src_mask"), self.cfg.pad_id, "src", "src_mask")
        memory, _, _ = self.encode(src, src_mask, batch.get("src_pos_offset"))
        offset = batch.get("tgt_pos_offset")
        offset = torch.zeros(src.shape[0], dtype=torch.long, device=src.device) if offset is None else offset
        state = DecodeState(DecodingCache(), {"memory": memory, "src_mask": src_mask, "offset": offset})
        return state, torch.full((src.shape[0],), self.cfg.bos_id, dtype=torch.long, device=src.device)

    def decode_step(self, tokens: Tensor, state: DecodeState) -> Tensor:
        """Feed one token per row (Long[B]) and return the next-token logits (B, V); advances the cache."""
        t = state.tensors
        positions = (t["offset"] + state.step)[:, None]
        logits, _, _, _ = self.decode(tokens[:, None], t["memory"], t["src_mask"], positions=positions,
                                      cache=state.cache)
        state.step += 1
        return logits[:, -1]
