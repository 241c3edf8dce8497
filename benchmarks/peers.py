"""The contenders of the training-step rows, built at equal dimensions: ours, torch.nn.Transformer, HF BART,
x-transformers (built in :mod:`benchmarks.xtransformers_peers`).

Each builder returns a :class:`Seq2SeqContender`: a module plus a ``loss(batch)`` function, so that the timing
loop (forward + backward + optimizer step) is the same code for every peer. All share source/target/output
embeddings (BART's default; ours with ``share_embeddings`` + ``tie_output``), use ReLU feed-forwards and the
same dropout placement where the peer allows it:

- ours: dropout ``p`` on embeddings, on every sub-layer output (residual dropout) and inside the feed-forward;
  attention-weight dropout ``attention_dropout`` (0 by default, as in the paper and in BART's defaults);
- BART: ``dropout=p``, ``activation_dropout=p`` (the feed-forward inner dropout, to match ours),
  ``attention_dropout`` as ours; SDPA attention;
- torch.nn.Transformer: one ``dropout`` for everything, attention weights included (it has no separate knob);
- x-transformers: the same places as ours (``emb_dropout``, ``*_sublayer_dropout``, ``ff_dropout``).

Losses: each contender trains with its own standard path. The peers project to logits and call
``F.cross_entropy``; ours trains as :mod:`ut.lit`'s modules do (:func:`ours_loss`): at vocabularies of 1024 and
more the output projection and the cross-entropy are fused (:mod:`ut.lit.linear_cross_entropy`), never holding the
logits; the same loss value and gradients.

``transformers`` and ``x_transformers`` are imported lazily, only when their peer is built: benchmark-only extras;
:func:`missing_package` says when one is absent, and the rows skip that peer with the reason.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ut.lit.linear_cross_entropy import linear_cross_entropy, output_loss_fusable
from ut.models.transformer import TransformerConfig, TransformerEncoderDecoder
from ut.nn.positions import PositionSignal


@dataclass(frozen=True)
class Seq2SeqDims:
    """Dimensions shared by every contender of a row."""

    d_model: int = 256
    n_heads: int = 4
    d_ff: int = 1024
    n_encoder_layers: int = 3
    n_decoder_layers: int = 3
    vocab_size: int = 8192
    dropout: float = 0.1
    attention_dropout: float = 0.0
    batch_size: int = 16
    src_len: int = 256
    tgt_len: int = 64

    @property
    def tokens_per_batch(self) -> int:
        """Source + target tokens of one batch (the tokens/s numerator)."""
        return self.batch_size * (self.src_len + self.tgt_len)

    def label(self) -> str:
        return (f"d{self.d_model} {self.n_encoder_layers}+{self.n_decoder_layers} B{self.batch_size} "
                f"S{self.src_len} T{self.tgt_len} drop{self.dropout:g}")


@dataclass
class Seq2SeqContender:
    """A model and its loss ``loss_fn(model, batch)``; :meth:`loss` reads ``self.model`` at call time, so that
    replacing the model (``torch.compile``, a copy) is what gets trained and timed."""

    name: str
    model: nn.Module
    loss_fn: Callable[[nn.Module, dict[str, Tensor]], Tensor]

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        return self.loss_fn(self.model, batch)


def make_batch(dims: Seq2SeqDims, seed: int = 0, device="cpu") -> dict[str, Tensor]:
    """A random seq2seq batch in the project's format (no padding: every contender sees the same work)."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(5, dims.vocab_size, (dims.batch_size, dims.src_len), generator=g)
    y = torch.randint(5, dims.vocab_size, (dims.batch_size, dims.tgt_len), generator=g)
    tgt_in = torch.cat([torch.ones_like(y[:, :1]), y[:, :-1]], dim=1)
    batch = {"src": src, "src_mask": torch.ones_like(src, dtype=torch.bool), "tgt_in": tgt_in, "tgt_out": y,
             "tgt_mask": torch.ones_like(y, dtype=torch.bool)}
    return {k: v.to(device) for k, v in batch.items()}


def ours_config(dims: Seq2SeqDims) -> TransformerConfig:
    return TransformerConfig(
        src_vocab_size=dims.vocab_size, tgt_vocab_size=dims.vocab_size, d_model=dims.d_model, n_heads=dims.n_heads,
        d_ff=dims.d_ff, n_encoder_layers=dims.n_encoder_layers, n_decoder_layers=dims.n_decoder_layers,
        dropout=dims.dropout, attention_dropout=dims.attention_dropout, max_len=max(dims.src_len, dims.tgt_len) + 8,
        share_embeddings=True, tie_output=True,
    )


def ours_loss(model: nn.Module, target: Tensor, *inputs: Tensor, next_token: bool = False) -> Tensor:
    """Ours' training loss as :mod:`ut.lit`'s modules compute it (no smoothing, every position counts):
    ``model(*inputs)``'s final states through the fused output loss where the modules fuse it
    (:func:`ut.lit.linear_cross_entropy.output_loss_fusable`), else the cross-entropy of its logits; plus its
    ``aux_loss`` (ACT). ``next_token``: position i predicts ``target[:, i + 1]`` (decoder-only LMs)."""
    fused = output_loss_fusable(model)
    out = model(*inputs, project_output=not fused)
    x = out.final_states if fused else out.logits
    if next_token:
        x, target = x[:, :-1], target[:, 1:]
    if fused:
        ce = linear_cross_entropy(x, model.output.weight, target, None, 0.0)[0].loss
    else:
        ce = F.cross_entropy(x.flatten(0, 1), target.flatten())
    return ce if out.aux_loss is None else ce + out.aux_loss


def build_ours(dims: Seq2SeqDims) -> Seq2SeqContender:
    model = TransformerEncoderDecoder(ours_config(dims))

    def loss(model, batch):
        return ours_loss(model, batch["tgt_out"], batch["src"], batch["src_mask"], batch["tgt_in"], batch["tgt_mask"])

    return Seq2SeqContender("ours", model, loss)


class TorchTransformerSeq2Seq(nn.Module):
    """``torch.nn.Transformer`` with shared, scaled embeddings, sinusoidal positions and a tied output layer."""

    def __init__(self, dims: Seq2SeqDims):
        super().__init__()
        self.d_model = dims.d_model
        self.embed = nn.Embedding(dims.vocab_size, dims.d_model, padding_idx=0)
        self.positions = PositionSignal("sinusoidal", dims.d_model, max(dims.src_len, dims.tgt_len) + 8)
        with warnings.catch_warnings():  # "enable_nested_tensor is True, but ... norm_first": irrelevant here
            warnings.simplefilter("ignore", UserWarning)
            self.transformer = nn.Transformer(
                dims.d_model, dims.n_heads, dims.n_encoder_layers, dims.n_decoder_layers, dims.d_ff, dims.dropout,
                batch_first=True, norm_first=True,
            )
        self.drop = nn.Dropout(dims.dropout)

    def embed_tokens(self, tokens: Tensor) -> Tensor:
        pos = torch.arange(tokens.shape[1], device=tokens.device).expand_as(tokens)
        return self.drop(self.embed(tokens) * math.sqrt(self.d_model) + self.positions(pos))

    def forward(self, src: Tensor, src_mask: Tensor, tgt_in: Tensor) -> Tensor:
        causal = nn.Transformer.generate_square_subsequent_mask(tgt_in.shape[1], device=tgt_in.device)
        h = self.transformer(
            self.embed_tokens(src), self.embed_tokens(tgt_in), tgt_mask=causal, tgt_is_causal=True,
            src_key_padding_mask=~src_mask, memory_key_padding_mask=~src_mask,
        )
        return F.linear(h, self.embed.weight)


def build_torch_transformer(dims: Seq2SeqDims) -> Seq2SeqContender:
    model = TorchTransformerSeq2Seq(dims)

    def loss(model, batch):
        logits = model(batch["src"], batch["src_mask"], batch["tgt_in"])
        return F.cross_entropy(logits.flatten(0, 1), batch["tgt_out"].flatten())

    return Seq2SeqContender("torch.nn.Transformer", model, loss)


def bart_config(dims: Seq2SeqDims):
    from transformers import BartConfig  # benchmark-only dependency

    config = BartConfig(
        vocab_size=dims.vocab_size, d_model=dims.d_model, encoder_layers=dims.n_encoder_layers,
        decoder_layers=dims.n_decoder_layers, encoder_attention_heads=dims.n_heads,
        decoder_attention_heads=dims.n_heads, encoder_ffn_dim=dims.d_ff, decoder_ffn_dim=dims.d_ff,
        dropout=dims.dropout, activation_dropout=dims.dropout, attention_dropout=dims.attention_dropout,
        activation_function="relu", max_position_embeddings=max(dims.src_len, dims.tgt_len) + 8,
        scale_embedding=True, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
        forced_eos_token_id=None, use_cache=False,
    )
    config._attn_implementation = "sdpa"
    return config


def build_bart(dims: Seq2SeqDims) -> Seq2SeqContender:
    from transformers import BartForConditionalGeneration  # benchmark-only dependency

    model = BartForConditionalGeneration(bart_config(dims))

    def loss(model, batch):
        out = model(input_ids=batch["src"], attention_mask=batch["src_mask"].long(),
                    decoder_input_ids=batch["tgt_in"], use_cache=False)
        return F.cross_entropy(out.logits.flatten(0, 1), batch["tgt_out"].flatten())

    return Seq2SeqContender("HF BART", model, loss)


def build_xtransformer(dims: Seq2SeqDims) -> Seq2SeqContender:
    """x-transformers' ``XTransformer`` at ``dims`` (:mod:`benchmarks.xtransformers_peers`)."""
    from benchmarks.xtransformers_peers import build_xtransformer_seq2seq

    return build_xtransformer_seq2seq(dims)


BUILDERS: dict[str, Callable[[Seq2SeqDims], Seq2SeqContender]] = {
    "ours": build_ours,
    "torch.nn.Transformer": build_torch_transformer,
    "HF BART": build_bart,
    "x-transformers": build_xtransformer,
}
# the package each optional peer needs (benchmark-only extras): a row skips the peer, with this reason, without it
OPTIONAL_PACKAGES = {"HF BART": "transformers", "x-transformers": "x_transformers"}


def missing_package(name: str) -> str | None:
    """Why peer ``name`` cannot be built here (its package is not installed), or None when it can."""
    import importlib.util

    package = OPTIONAL_PACKAGES.get(name)
    if package and importlib.util.find_spec(package) is None:
        return f"{package} is not installed (pip install -e '.[bench]')"
    return None


def training_step_fn(contender: Seq2SeqContender, batch: dict[str, Tensor], autocast_dtype=None, lr: float = 1e-4):
    """A zero-argument closure running one forward + backward + Adam step of ``contender`` on ``batch``."""
    contender.model.train()
    opt = torch.optim.Adam(contender.model.parameters(), lr=lr)
    device_type = next(iter(batch.values())).device.type

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        if autocast_dtype is None:
            loss = contender.loss(batch)
        else:
            with torch.autocast(device_type, dtype=autocast_dtype):
                loss = contender.loss(batch)
        loss.backward()
        opt.step()
        return loss.detach()

    return step
