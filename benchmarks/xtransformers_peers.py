"""x-transformers (lucidrains, PyPI ``x-transformers``) as a benchmark peer, built at the dims of ours.

Contenders, each a :class:`benchmarks.peers.Seq2SeqContender` (a module + its loss, so that the training-step loop
is the same code for every peer):

- ``x-transformers``: ``XTransformer`` (encoder-decoder) against ours (:func:`benchmarks.peers.build_ours`);
- ``x-transformers (tied layers)``: the same with ``weight_tie_layers=True`` in encoder and decoder (one layer's
  weights applied ``depth`` times), the nearest thing it has to a shared-weight Universal Transformer (Dehghani et
  al. 2019) -- against our UT with fixed T = depth steps (:func:`benchmarks.universal_speed.build_universal`);
- decoder-only: ``TransformerWrapper(Decoder)`` (and its tied-layer form) against ours
  (:class:`ut.models.decoder_only.DecoderOnlyLM`; :class:`ut.models.universal_decoder_only.UniversalDecoderOnlyLM`
  for the tied one).

Equal dims: width, heads (``attn_dim_head = d / heads``), feed-forward width (``ff_mult = d_ff / d``, ReLU as ours),
layers, vocabulary, one shared token embedding tied to the output layer, sinusoidal positions
(``scaled_sinu_pos_emb``: sinusoids times one learned scalar), pre-norm LayerNorm with a final norm, SDPA attention
(``attn_flash=True``). Dropout ``p`` at the places ours has it: embeddings (``emb_dropout``), each sub-layer output
(``attn_sublayer_dropout``, ``ff_sublayer_dropout``) and the feed-forward inner activation (``ff_dropout``);
attention-weight dropout ``attn_dropout`` = ours' ``attention_dropout``.

Deviations that cannot be removed, and what they cost in parameters (:func:`parameter_report` measures them; the
rows record both counts and the relative difference):

- its attention projections have no bias (ours: q, k, v and output biases, 4d per attention) and its LayerNorms
  no bias (d per norm); its output-tied
  logits are scaled by d^-0.5 (its ``tie_embedding`` design) -- no parameters;
- the encoder-decoder's output layer is untied in ``XTransformer``; it is tied here after construction
  (:func:`_tie_output`) the way ``TransformerWrapper(tie_embedding=True)`` ties it;
- our UT adds a sinusoidal timestep signal per step (no parameters); x-transformers' tied layers add none.

Losses: x-transformers' standard path (logits, then ``F.cross_entropy``); ours its own training path, the fused
output loss at these vocabularies (:func:`benchmarks.peers.ours_loss`).

``x_transformers`` is imported lazily, only when a contender is built: it is a benchmark-only extra
(``pip install -e ".[bench]"``); :func:`benchmarks.peers.missing_package` tells a row whether it can run.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks.peers import Seq2SeqContender, Seq2SeqDims, ours_loss

XT = "x-transformers"
XT_TIED = "x-transformers (tied layers)"


def _layer_kwargs(d_model: int, n_heads: int, d_ff: int, dropout: float, attention_dropout: float) -> dict:
    """AttentionLayers keyword arguments matching ours (see the module docstring)."""
    if d_ff % d_model:
        raise ValueError(f"d_ff={d_ff} must be a multiple of d_model={d_model} for x-transformers' ff_mult")
    return dict(heads=n_heads, attn_dim_head=d_model // n_heads, attn_flash=True, attn_dropout=attention_dropout,
                attn_sublayer_dropout=dropout, ff_mult=d_ff // d_model, ff_custom_activation=nn.ReLU(),
                ff_dropout=dropout, ff_sublayer_dropout=dropout)


def _tie_output(wrapper: nn.Module) -> None:
    """Tie a ``TransformerWrapper``'s output layer to its token embedding, as its ``tie_embedding=True`` does."""
    del wrapper.to_logits
    scale = wrapper.token_emb.emb.weight.shape[1] ** -0.5
    wrapper.to_logits = lambda t: (t @ wrapper.token_emb.emb.weight.t()) * scale


def build_xtransformer_seq2seq(dims: Seq2SeqDims, tied_layers: bool = False) -> Seq2SeqContender:
    """``XTransformer`` at ``dims``: shared token embedding, tied output, optionally ``weight_tie_layers``."""
    from x_transformers import XTransformer  # benchmark-only dependency

    layer = _layer_kwargs(dims.d_model, dims.n_heads, dims.d_ff, dims.dropout, dims.attention_dropout)
    max_len = max(dims.src_len, dims.tgt_len) + 8
    kwargs = {"tie_token_emb": True}
    for side, depth in (("enc", dims.n_encoder_layers), ("dec", dims.n_decoder_layers)):
        kwargs.update({f"{side}_{k}": v for k, v in layer.items()})
        kwargs.update({f"{side}_num_tokens": dims.vocab_size, f"{side}_depth": depth, f"{side}_max_seq_len": max_len,
                       f"{side}_emb_dropout": dims.dropout, f"{side}_scaled_sinu_pos_emb": True,
                       f"{side}_weight_tie_layers": tied_layers})
    model = XTransformer(dim=dims.d_model, **kwargs)
    _tie_output(model.decoder.net)

    def loss(model, batch):
        enc = model.encoder(batch["src"], mask=batch["src_mask"], return_embeddings=True)
        logits = model.decoder.net(batch["tgt_in"], context=enc, context_mask=batch["src_mask"])
        return F.cross_entropy(logits.flatten(0, 1), batch["tgt_out"].flatten())

    return Seq2SeqContender(XT_TIED if tied_layers else XT, model, loss)


@dataclass(frozen=True)
class DecoderOnlyDims:
    """Dimensions shared by every decoder-only contender of a row."""

    d_model: int = 128
    n_heads: int = 4
    d_ff: int = 512
    n_layers: int = 4
    vocab_size: int = 10000
    dropout: float = 0.1
    attention_dropout: float = 0.0
    batch_size: int = 16
    seq_len: int = 256

    @property
    def tokens_per_batch(self) -> int:
        return self.batch_size * self.seq_len

    def label(self) -> str:
        return (f"dec-only d{self.d_model} L{self.n_layers} B{self.batch_size} S{self.seq_len} "
                f"drop{self.dropout:g}")


def make_lm_batch(dims: DecoderOnlyDims, seed: int = 0, device="cpu") -> dict[str, Tensor]:
    """Random token ids (no padding), ``input_ids`` Long[B, S]."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, dims.vocab_size, (dims.batch_size, dims.seq_len), generator=g)
    return {"input_ids": ids.to(device)}


def lm_loss(logits: Tensor, ids: Tensor) -> Tensor:
    """Next-token cross-entropy of the logits, the loss the decoder-only peers (and the shared output layer) train
    with; ours computes the same loss fused (:func:`benchmarks.peers.ours_loss`)."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())


def build_ours_decoder_only(dims: DecoderOnlyDims) -> Seq2SeqContender:
    from ut.models.decoder_only import DecoderOnlyConfig, DecoderOnlyLM

    cfg = DecoderOnlyConfig(vocab_size=dims.vocab_size, d_model=dims.d_model, n_heads=dims.n_heads, d_ff=dims.d_ff,
                            n_layers=dims.n_layers, dropout=dims.dropout, attention_dropout=dims.attention_dropout,
                            max_len=dims.seq_len + 512)
    return Seq2SeqContender("ours", DecoderOnlyLM(cfg),
                            lambda model, batch: ours_loss(model, batch["input_ids"], batch["input_ids"],
                                                           next_token=True))


def build_ours_universal_decoder_only(dims: DecoderOnlyDims) -> Seq2SeqContender:
    """Our decoder-only UT: one full-attention layer applied ``n_layers`` times (fixed recurrence)."""
    from ut.models.universal_decoder_only import UniversalDecoderOnlyConfig, UniversalDecoderOnlyLM

    cfg = UniversalDecoderOnlyConfig(vocab_size=dims.vocab_size, d_model=dims.d_model, n_heads=dims.n_heads,
                                     d_ff=dims.d_ff, n_steps=dims.n_layers, layer_pattern="full",
                                     dropout=dims.dropout, attention_dropout=dims.attention_dropout,
                                     max_len=dims.seq_len + 512)
    return Seq2SeqContender("ours UT", UniversalDecoderOnlyLM(cfg),
                            lambda model, batch: ours_loss(model, batch["input_ids"], batch["input_ids"],
                                                           next_token=True))


def build_xtransformer_decoder_only(dims: DecoderOnlyDims, tied_layers: bool = False) -> Seq2SeqContender:
    """``TransformerWrapper(Decoder)`` at ``dims`` (tied output; optionally ``weight_tie_layers``)."""
    from x_transformers import Decoder, TransformerWrapper  # benchmark-only dependency

    layer = _layer_kwargs(dims.d_model, dims.n_heads, dims.d_ff, dims.dropout, dims.attention_dropout)
    model = TransformerWrapper(
        num_tokens=dims.vocab_size, max_seq_len=dims.seq_len + 512, emb_dropout=dims.dropout,
        scaled_sinu_pos_emb=True, tie_embedding=True,
        attn_layers=Decoder(dim=dims.d_model, depth=dims.n_layers, weight_tie_layers=tied_layers, **layer))
    return Seq2SeqContender(XT_TIED if tied_layers else XT, model,
                            lambda model, batch: lm_loss(model(batch["input_ids"]), batch["input_ids"]))


def n_parameters(module: nn.Module) -> int:
    """Distinct trainable parameters (a tied weight counts once: ``parameters()`` deduplicates)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def parameter_report(contenders: dict[str, Seq2SeqContender], reference: str) -> dict[str, dict]:
    """Per contender: its parameter count and its relative difference to ``reference``'s."""
    ref = n_parameters(contenders[reference].model)
    return {name: {"parameters": (n := n_parameters(c.model)), "relative_to_" + reference: n / ref - 1}
            for name, c in contenders.items()}


# ------------------------------------------------------------------ cached decoding


def xtransformer_seq2seq_greedy(model: nn.Module, src: Tensor, src_mask: Tensor, n_tokens: int,
                                bos_id: int = 1) -> Tensor:
    """Greedy cached generation of ``n_tokens`` tokens per row with ``XTransformer.generate`` (KV cache on,
    temperature 0 = argmax; no EOS, so every row runs ``n_tokens`` steps). Returns Long[B, n_tokens]."""
    start = torch.full((src.shape[0], 1), bos_id, dtype=torch.long, device=src.device)
    return model.generate(src, start, n_tokens, mask=src_mask, temperature=0.0, cache_kv=True)


def xtransformer_lm_greedy(model: nn.Module, prompt: Tensor, n_tokens: int) -> Tensor:
    """Greedy cached continuation of ``prompt`` by ``n_tokens`` with x-transformers' ``AutoregressiveWrapper``."""
    from x_transformers import AutoregressiveWrapper  # benchmark-only dependency

    # the wrapper takes the model's mode: its generate() restores the WRAPPER's mode onto the model afterwards
    wrapper = AutoregressiveWrapper(model).train(model.training)
    return wrapper.generate(prompt, n_tokens, temperature=0.0, cache_kv=True)
