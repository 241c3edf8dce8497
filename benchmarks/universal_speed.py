"""Rows: Universal Transformer time per step vs a Transformer of equal depth; ACT time as ponder time falls.

- ``ut_vs_transformer_row``: one training step (forward + backward + Adam) of the UT encoder-decoder with T fixed
  steps against a Transformer with T + T layers, same dims, interleaved; the ratio is UT time / Transformer time
  (1.0 = a step of the shared layer costs what a layer costs).
- ``act_skip_rows``: one application of the UT's shared encoder layer when a share ``h`` of the positions has
  halted, with ACT compute skipping (:func:`ut.nn.act.pack_active`, then the layer on the running positions only:
  ``EncoderLayer(x, queries=index)``, the path ``UniversalEncoder`` takes with ``act_skip_halted``)
  against the same layer over every position (t2t: halted positions are still computed). Forward + backward.
  The outputs at the running positions are checked equal before timing.
"""

from __future__ import annotations

import torch

from benchmarks.peers import Seq2SeqDims, build_ours, make_batch, training_step_fn
from benchmarks.timing import time_interleaved


def build_universal(dims: Seq2SeqDims, recurrence: str = "fixed"):
    """A UT encoder-decoder contender with the dims of ``dims`` (T = ``n_encoder_layers`` steps)."""
    from benchmarks.peers import Seq2SeqContender, ours_loss
    from ut.models.universal import UniversalTransformerConfig, UniversalTransformerEncoderDecoder

    cfg = UniversalTransformerConfig(
        src_vocab_size=dims.vocab_size, tgt_vocab_size=dims.vocab_size, d_model=dims.d_model, n_heads=dims.n_heads,
        d_ff=dims.d_ff, n_steps=dims.n_encoder_layers, recurrence=recurrence, dropout=dims.dropout,
        attention_dropout=dims.attention_dropout, max_len=max(dims.src_len, dims.tgt_len) + 8,
        share_embeddings=True, tie_output=True,
    )
    model = UniversalTransformerEncoderDecoder(cfg)

    def loss(model, batch):
        return ours_loss(model, batch["tgt_out"], batch["src"], batch["src_mask"], batch["tgt_in"], batch["tgt_mask"])

    return Seq2SeqContender(f"UT ({recurrence})", model, loss)


def ut_vs_transformer_row(dims: Seq2SeqDims, repeats: int, warmup: int = 2) -> dict:
    torch.manual_seed(0)
    batch = make_batch(dims)
    timings = time_interleaved({"transformer": training_step_fn(build_ours(dims), batch),
                                "universal": training_step_fn(build_universal(dims), batch)},
                               repeats=repeats, warmup=warmup)
    steps = dims.n_encoder_layers
    return {
        "config": dims.label() + f" (UT: {steps} steps, Transformer: {steps}+{dims.n_decoder_layers} layers)",
        "seconds": {k: t.median for k, t in timings.items()},
        "ut_over_transformer_time": timings["universal"].median / timings["transformer"].median,
    }


def act_skip_rows(d_model: int, n_heads: int, d_ff: int, batch_size: int, length: int,
                  halted_shares: tuple[float, ...], repeats: int, warmup: int = 1) -> list[dict]:
    """Time of one shared-layer application (fwd + bwd) with the halted share skipped vs computed."""
    from ut.nn.act import pack_active
    from ut.nn.layers import EncoderLayer

    torch.manual_seed(0)
    layer = EncoderLayer(d_model, n_heads, d_ff, dropout=0.0).train()
    x = torch.randn(batch_size, length, d_model, requires_grad=True)
    rows = []
    for share in halted_shares:
        n_halted = int(round(share * length))
        running = torch.ones(batch_size, length, dtype=torch.bool)
        for b in range(batch_size):  # a different random set of halted positions in every row
            running[b, torch.randperm(length)[:n_halted]] = False

        def computed(running=running):
            out = layer(x).x
            return torch.where(running[..., None], out, x)

        def skipped(running=running):
            index, _ = pack_active(running)
            return layer(x, queries=index).x

        with torch.no_grad():
            torch.testing.assert_close(skipped(), computed(), atol=1e-5, rtol=1e-5)
        timings = time_interleaved({"computed": lambda f=computed: f().sum().backward(),
                                    "skipped": lambda f=skipped: f().sum().backward()},
                                   repeats=repeats, warmup=warmup)
        rows.append({"halted_share": share, "seconds": {k: t.median for k, t in timings.items()},
                     "speedup": timings["computed"].median / timings["skipped"].median})
    return rows
