"""Encoder-only Transformer with a classification / answer head: the Transformer baseline of the UT bAbI runs.

Dehghani et al. 2019, §3.1 (bAbI QA): story and question are encoded together and the answer is predicted from the
encoder output. The same :class:`ClassificationHead` serves this model and
:class:`ut.models.universal.UniversalTransformerClassifier`, so that the two differ only in the encoder (a stack of
N distinct layers here, one shared layer applied T times there).

:class:`ClassificationHead` pools the final encoder states over the REAL tokens, then a linear layer gives the class
logits. ``pooling="mean"`` follows tensor2tensor's class-label modality (mean over positions, then a dense layer;
deviation: t2t averages over the padding too, we average over real tokens only); ``"first"`` reads the first token
(BERT's [CLS] style); ``"last"`` reads the last real token (in bAbI, the end of the question).

Batch format (CONTRIBUTING.md, classification): ``src Long[B, S]``, ``src_mask Bool[B, S]``, ``label Long[B]``.

Shape legend: B batch, S source length, D width, C classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ut.models.config import Activation, ConfigBase, Norm, Pooling, PositionKind, Transition
from ut.models.inputs import source_inputs
from ut.models.outputs import ModelOutput, model_output
from ut.models.transformer import TransformerConfig, TransformerEncoder
from ut.nn.embedding import TokenEmbedding

POOLING = ("mean", "first", "last")


def pool(h: Tensor, token_mask: Tensor, pooling: str) -> Tensor:
    """Pool the encoder states ``h`` (B, S, D) over real tokens (``token_mask`` Bool[B, S]) -> (B, D)."""
    if pooling == "mean":
        m = token_mask.to(h.dtype)[..., None]
        return (h * m).sum(1) / m.sum(1).clamp_min(1.0)
    if pooling == "first":
        return h[:, 0]
    if pooling == "last":
        last = (token_mask.long().cumsum(1).argmax(1))  # index of the last real token
        return h[torch.arange(h.shape[0], device=h.device), last]
    raise ValueError(f"pooling must be one of {POOLING}, got {pooling!r}")


class ClassificationHead(nn.Module):
    """``forward(h (B, S, D), token_mask Bool[B, S]) -> logits (B, C)``: pool, then one linear layer."""

    def __init__(self, d_model: int, n_classes: int, pooling: str = "mean"):
        super().__init__()
        if pooling not in POOLING:
            raise ValueError(f"pooling must be one of {POOLING}, got {pooling!r}")
        self.pooling = pooling
        self.proj = nn.Linear(d_model, n_classes)

    def forward(self, h: Tensor, token_mask: Tensor) -> Tensor:
        return self.proj(pool(h, token_mask, self.pooling))


@dataclass
class TransformerClassifierConfig(ConfigBase):
    vocab_size: int = 32  # input vocabulary size V
    n_classes: int = 32  # answer classes C (bAbI: the answer-word vocabulary)
    d_model: int = 128  # width D (t2t tiny: 128)
    n_heads: int = 4  # attention heads H
    d_ff: int = 512  # feed-forward inner width
    n_layers: int = 6  # encoder depth (the UT compares against a Transformer of equal depth)
    dropout: float = 0.1  # residual / embedding / ffn dropout
    attention_dropout: float = 0.0  # dropout on attention weights (0 keeps SDPA's fast kernels on CPU)
    norm: Norm = "pre"  # "pre" (t2t) or "post" (paper)
    transition: Transition = "ffn"  # "ffn" or "sepconv"
    activation: Activation = "relu"  # "relu" or "gelu"
    position: PositionKind = "sinusoidal"  # "sinusoidal" (paper) or "learned"
    max_len: int = 1024  # largest learned position
    pooling: Pooling = "mean"  # "mean" (t2t class-label modality, over real tokens), "first" or "last"
    pad_id: int = 0

    def __post_init__(self):
        super().__post_init__()
        self._check(self.d_model % self.n_heads == 0, f"d_model={self.d_model} must divide by n_heads={self.n_heads}")
        self._check(min(self.vocab_size, self.n_classes, self.d_model, self.d_ff, self.n_layers) > 0,
                    "sizes must be > 0")
        self._check(0 <= self.dropout < 1 and 0 <= self.attention_dropout < 1, "dropouts must be in [0, 1)")


def encoder_stack(cfg) -> TransformerEncoder:
    """The N-layer :class:`TransformerEncoder` of an encoder-only config (this classifier's, the fact-QA model's):
    the fields it shares with :class:`TransformerConfig` carried over."""
    enc_cfg = TransformerConfig(
        src_vocab_size=cfg.vocab_size, tgt_vocab_size=cfg.vocab_size, d_model=cfg.d_model, n_heads=cfg.n_heads,
        d_ff=cfg.d_ff, n_encoder_layers=cfg.n_layers, dropout=cfg.dropout,
        attention_dropout=cfg.attention_dropout, norm=cfg.norm, transition=cfg.transition,
        activation=cfg.activation, position=cfg.position, max_len=cfg.max_len, pad_id=cfg.pad_id,
    )
    return TransformerEncoder(enc_cfg, cfg.n_layers)


class TransformerEncoderClassifier(nn.Module):
    """Token embedding + position -> :class:`TransformerEncoder` (N layers) -> :class:`ClassificationHead`."""

    def __init__(self, cfg: TransformerClassifierConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = TokenEmbedding(cfg.vocab_size, cfg.d_model, cfg.position, cfg.max_len, cfg.dropout, cfg.pad_id)
        self.encoder = encoder_stack(cfg)
        self.head = ClassificationHead(cfg.d_model, cfg.n_classes, cfg.pooling)

    def forward(self, src: Tensor, src_mask: Tensor | None = None, *, src_pos_offset: Tensor | None = None,
                need_weights: bool = False) -> ModelOutput:
        """src Long[B, S] -> ModelOutput(logits (B, C), attentions {"encoder": one (B, H, S, S) per layer})."""
        src_mask, pos = source_inputs(src, src_mask, self.cfg.pad_id, src_pos_offset)
        enc = self.encoder(self.embed(src, pos), src_mask, need_weights)
        return model_output(self.head(enc.output, src_mask), {"encoder": enc})
