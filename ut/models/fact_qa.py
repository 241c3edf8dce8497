"""bAbI QA over FACTS: each story sentence and the question become one vector, and the (Universal) Transformer
encoder runs over these vectors (Dehghani et al. 2019, §3.1).

"We first encode each fact in the story by applying a learned multiplicative positional mask to each word's
embedding, and summing up all embeddings. We embed the question in the same way, and then feed the (Universal)
Transformer with these embeddings of the facts and questions." The fact encoding is :class:`ut.nn.fact_encoder.
FactEncoder` (MemN2N's position encoding made learnable, Sukhbaatar et al. 2015; Henaff et al. 2016).

The encoder's sequence is ``[question, fact_1, ..., fact_F]``: the question vector first, then the facts in the
order the data module gives them (``ut.data.babi``: newest first by default), padding facts last, so that the real
items are a prefix and ``src_mask = [True, fact_mask]``. The position signal indexes this sequence (question 0,
facts 1..F). The answer is read from the question's final state (``pooling="first"``: the question acts as the
query) or from the mean over the question and the real facts (``"mean"``), with the shared
:class:`ut.models.encoder_classifier.ClassificationHead`. Deviation, named: the paper does not say where the
answer is read from; t2t reads its class-label modality from the mean.

Two registered models differ only in the encoder (same fact encoder, positions and head):

- ``transformer_fact_qa`` (:class:`TransformerFactQA`): the paper's Transformer baseline, N distinct layers
  (:class:`ut.models.transformer.TransformerEncoder`), position signal added once;
- ``universal_fact_qa`` (:class:`UniversalFactQA`): the UT encoder (:class:`ut.models.universal.UniversalEncoder`,
  fixed T steps or a halting loop, :mod:`ut.models.halting`), position and timestep signals added at every step;
  under ACT the ponder time is per fact (``ponder_time["encoder"]`` (B, 1 + F), the paper's Fig. 5 reads it per
  task); under PonderNet the halting is per example (one answer per example, :mod:`ut.nn.pondernet`).

Inputs: ``facts Long[B, F, W]`` (0 = padding word; an all-padding row is a padding fact), ``question Long[B, Wq]``.
Output: :class:`ut.models.outputs.ModelOutput` with ``logits (B, C)``; attentions ``{"encoder": (B, H, 1+F, 1+F)
per layer / step}`` when asked.

Shape legend: B batch, F facts, W words per fact, Wq question words, D width, H heads, C classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from ut.models.config import Activation, ConfigBase, Norm, PositionKind, Transition
from ut.models.encoder_classifier import ClassificationHead, encoder_stack
from ut.models.outputs import ModelOutput, model_output
from ut.models.universal import UniversalCommonConfig, UniversalEncoder
from ut.nn.fact_encoder import FactEncoder
from ut.nn.positions import PositionSignal, position_ids

FactPooling = Literal["first", "mean"]  # the ClassificationHead poolings (POOLING) that read the question


def _check_fact_fields(cfg) -> None:
    cfg._check(min(cfg.vocab_size, cfg.n_classes, cfg.max_words) > 0, "vocab_size, n_classes, max_words must be > 0")


@dataclass
class TransformerFactQAConfig(ConfigBase):
    vocab_size: int = 32  # word vocabulary size
    n_classes: int = 32  # answer classes C
    max_words: int = 16  # longest fact / question in words (the positional masks' length)
    d_model: int = 64  # width D
    n_heads: int = 4  # attention heads H
    d_ff: int = 128  # feed-forward inner width
    n_layers: int = 4  # encoder depth (as deep as the UT's T steps)
    dropout: float = 0.1  # fact-vector / residual / ffn dropout
    attention_dropout: float = 0.0  # dropout on attention weights
    norm: Norm = "pre"  # "pre" (t2t) or "post" (paper)
    transition: Transition = "ffn"  # "ffn" or "sepconv"
    activation: Activation = "relu"  # "relu" or "gelu"
    position: PositionKind = "sinusoidal"  # position signal over the [question, facts] sequence
    max_len: int = 256  # most items (1 + facts) for learned positions
    pooling: FactPooling = "first"  # "first": the question's final state; "mean": mean over question + real facts
    pad_id: int = 0

    def __post_init__(self):
        super().__post_init__()
        self._check(self.d_model % self.n_heads == 0, f"d_model={self.d_model} must divide by n_heads={self.n_heads}")
        self._check(min(self.d_model, self.d_ff, self.n_layers) > 0, "d_model, d_ff and n_layers must be > 0")
        self._check(0 <= self.dropout < 1 and 0 <= self.attention_dropout < 1, "dropouts must be in [0, 1)")
        _check_fact_fields(self)


@dataclass
class UniversalFactQAConfig(UniversalCommonConfig):
    vocab_size: int = 32  # word vocabulary size
    n_classes: int = 32  # answer classes C
    max_words: int = 16  # longest fact / question in words (the positional masks' length)
    pooling: FactPooling = "first"  # "first": the question's final state; "mean": mean over question + real facts
    max_len: int = 256  # most items (1 + facts) for learned positions

    def __post_init__(self):
        super().__post_init__()
        _check_fact_fields(self)


class _FactQABase(nn.Module):
    """Fact / question vectors, the item sequence and its mask, positions, and the answer head."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.facts = FactEncoder(cfg.vocab_size, cfg.d_model, cfg.max_words, cfg.pad_id, cfg.dropout)
        self.positions = PositionSignal(cfg.position, cfg.d_model, cfg.max_len)
        self.head = ClassificationHead(cfg.d_model, cfg.n_classes, cfg.pooling)

    def items(self, facts: Tensor, question: Tensor, fact_mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """(x (B, 1+F, D) without position, position signal (B, 1+F, D), item mask Bool[B, 1+F])."""
        if facts.dim() != 3 or question.dim() != 2 or facts.shape[0] != question.shape[0]:
            raise ValueError(f"expected facts Long[B, F, W] and question Long[B, Wq], got {tuple(facts.shape)} and "
                             f"{tuple(question.shape)}")
        if fact_mask is None:
            fact_mask = (facts != self.cfg.pad_id).any(-1)
        b, f = facts.shape[:2]
        x = torch.cat([self.facts(question, "question")[:, None], self.facts(facts, "fact")], 1)
        mask = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=facts.device), fact_mask], 1)
        pos = self.positions(position_ids(f + 1, b, None, facts.device))
        return x, pos, mask


class TransformerFactQA(_FactQABase):
    """Fact encoder -> :class:`TransformerEncoder` (N layers) -> answer head (see module docstring)."""

    def __init__(self, cfg: TransformerFactQAConfig):
        super().__init__(cfg)
        self.encoder = encoder_stack(cfg)

    def forward(self, facts: Tensor, question: Tensor, fact_mask: Tensor | None = None, *,
                need_weights: bool = False) -> ModelOutput:
        x, pos, mask = self.items(facts, question, fact_mask)
        enc = self.encoder(x + pos.to(x.dtype), mask, need_weights)
        return model_output(self.head(enc.output, mask), {"encoder": enc})


class UniversalFactQA(_FactQABase):
    """Fact encoder -> :class:`UniversalEncoder` (fixed T or ACT) -> answer head (see module docstring)."""

    def __init__(self, cfg: UniversalFactQAConfig):
        super().__init__(cfg)
        self.encoder = UniversalEncoder(cfg, readout="per_example")

    def forward(self, facts: Tensor, question: Tensor, fact_mask: Tensor | None = None, *,
                need_weights: bool = False) -> ModelOutput:
        x, pos, mask = self.items(facts, question, fact_mask)
        enc = self.encoder(x, pos, mask, need_weights)
        return model_output(self.head(enc.output, mask), {"encoder": enc}, self.cfg.act_loss_weight,
                            lambda h: self.head(h, mask))
