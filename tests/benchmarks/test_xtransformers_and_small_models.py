"""x-transformers peers at equal dims, their greedy decoding, and the small-model regime's measurement pieces."""

from __future__ import annotations

import pytest
import torch

from benchmarks.peers import Seq2SeqDims, build_ours, make_batch, training_step_fn
from benchmarks.universal_speed import build_universal
from benchmarks.xtransformers_peers import DecoderOnlyDims, make_lm_batch, n_parameters, parameter_report

xt = pytest.importorskip("x_transformers")

from benchmarks.xtransformers_peers import (  # noqa: E402 - after the importorskip of the optional peer
    build_ours_decoder_only,
    build_ours_universal_decoder_only,
    build_xtransformer_decoder_only,
    build_xtransformer_seq2seq,
    xtransformer_lm_greedy,
    xtransformer_seq2seq_greedy,
)

S2S = Seq2SeqDims(d_model=128, n_heads=4, d_ff=512, n_encoder_layers=2, n_decoder_layers=2, vocab_size=300,
                  batch_size=2, src_len=10, tgt_len=6)
LM = DecoderOnlyDims(d_model=128, n_heads=4, d_ff=512, n_layers=3, vocab_size=300, batch_size=2, seq_len=12)


def test_parameter_counts_match_ours_within_one_percent():
    s2s = {"ours": build_ours(S2S), "xt": build_xtransformer_seq2seq(S2S), "ut": build_universal(S2S),
           "xt tied": build_xtransformer_seq2seq(S2S, tied_layers=True)}
    report = parameter_report(s2s, "ours")
    assert abs(report["xt"]["relative_to_ours"]) < 0.01
    assert abs(n_parameters(s2s["xt tied"].model) / n_parameters(s2s["ut"].model) - 1) < 0.01
    lm = {"ours": build_ours_decoder_only(LM), "xt": build_xtransformer_decoder_only(LM),
          "ut": build_ours_universal_decoder_only(LM), "xt tied": build_xtransformer_decoder_only(LM, True)}
    report = parameter_report(lm, "ours")
    assert abs(report["xt"]["relative_to_ours"]) < 0.01
    assert abs(n_parameters(lm["xt tied"].model) / n_parameters(lm["ut"].model) - 1) < 0.01


def test_tied_layers_share_one_layer_and_the_output_is_tied():
    dense, tied = build_xtransformer_decoder_only(LM).model, build_xtransformer_decoder_only(LM, True).model
    per_layer = (n_parameters(dense) - n_parameters(tied)) / (LM.n_layers - 1)
    # one layer: q, k, v, o (no biases) + FFN with biases + 2 LayerNorms (gain only, no bias)
    d, f = LM.d_model, LM.d_ff
    assert per_layer == 4 * d * d + 2 * d * f + f + d + 2 * d
    assert dense.token_emb.emb.weight.shape == (LM.vocab_size, LM.d_model)
    assert not any(p.shape == (LM.vocab_size, LM.d_model) for n, p in dense.named_parameters() if "token_emb" not in n)


def test_ff_width_must_be_a_multiple_of_d_model():
    with pytest.raises(ValueError, match="d_ff=100 must be a multiple of d_model=128"):
        build_xtransformer_decoder_only(DecoderOnlyDims(d_model=128, n_heads=4, d_ff=100))


@pytest.mark.parametrize("tied", [False, True])
def test_every_xtransformers_contender_trains(tied):
    torch.manual_seed(0)
    for contender, batch in ((build_xtransformer_seq2seq(S2S, tied), make_batch(S2S)),
                             (build_xtransformer_decoder_only(LM, tied), make_lm_batch(LM))):
        step = training_step_fn(contender, batch, lr=3e-3)
        losses = [step().item() for _ in range(6)]
        assert losses[-1] < losses[0]


def _argmax_seq2seq(model, src, src_mask, n, bos_id=1):
    """Reference greedy decoding without a cache: the whole prefix through the decoder at every step."""
    enc = model.encoder(src, mask=src_mask, return_embeddings=True)
    tokens = torch.full((src.shape[0], 1), bos_id, dtype=torch.long)
    for _ in range(n):
        logits = model.decoder.net(tokens, context=enc, context_mask=src_mask)
        tokens = torch.cat([tokens, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return tokens[:, 1:]


def test_xtransformers_cached_generation_is_greedy_decoding():
    torch.manual_seed(0)
    model = build_xtransformer_seq2seq(S2S).model.eval()
    batch = make_batch(S2S)
    with torch.no_grad():
        cached = xtransformer_seq2seq_greedy(model, batch["src"], batch["src_mask"], 7)
        reference = _argmax_seq2seq(model, batch["src"], batch["src_mask"], 7)
    assert torch.equal(cached, reference)

    lm = build_xtransformer_decoder_only(LM).model.eval()
    prompt = make_lm_batch(LM)["input_ids"][:, :5]
    with torch.no_grad():
        out = xtransformer_lm_greedy(lm, prompt, 6)
        tokens = prompt
        for _ in range(6):
            tokens = torch.cat([tokens, lm(tokens)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, tokens[:, 5:])


def test_xtransformers_decoding_rows_generate_the_requested_tokens():
    from benchmarks.xtransformers_rows import decoding_rows

    rows = decoding_rows(Seq2SeqDims(d_model=16, n_heads=2, d_ff=32, n_encoder_layers=1, n_decoder_layers=1,
                                     vocab_size=40, batch_size=2, src_len=6),
                         DecoderOnlyDims(d_model=16, n_heads=2, d_ff=32, n_layers=1, vocab_size=40, batch_size=2),
                         prompt_len=4, out_tokens=(3,), repeats=1)
    assert [r["kind"] for r in rows] == ["enc-dec", "dec-only"]
    assert all(r["ours / x-transformers"] > 0 for r in rows)


# ------------------------------------------------------------------ small-model regime


def _tiny_config(name: str) -> dict:
    from benchmarks.small_models import load_config

    cfg = load_config(name)
    m = cfg["model"]["init_args"]["model_config"]
    m.update(d_model=16, n_heads=2, d_ff=32, dropout=0.0)
    for key in ("n_encoder_layers", "n_decoder_layers", "n_steps"):
        if key in m:
            m[key] = 1
    cfg["data"]["init_args"].update(train_size=64, batch_size=4, train_max_len=8)
    return cfg


def test_config_dims_are_the_committed_config_sizes():
    from benchmarks.small_models import build_module_and_data, config_dims, load_config

    cfg = load_config("algorithmic_transformer")
    cfg["data"]["init_args"]["train_size"] = 64
    module, data = build_module_and_data(cfg)
    dims = config_dims(cfg, module.model, next(iter(data.train_dataloader())))
    assert (dims.d_model, dims.n_heads, dims.d_ff, dims.n_encoder_layers, dims.n_decoder_layers) == (64, 4, 256, 4, 4)
    assert dims.batch_size == 32 and dims.vocab_size == module.model.cfg.src_vocab_size


def test_unknown_config_names_the_known_ones():
    from benchmarks.small_models import load_config

    with pytest.raises(FileNotFoundError, match="algorithmic_transformer"):
        load_config("no_such_config")


def test_bare_loop_trains_exactly_like_lightning(monkeypatch):
    """The bare loop is the same training as Lightning's (same loss, clipping, Adam, schedule): from the same
    weights, on the same batches, both end at the same parameters."""
    from benchmarks import small_models

    cfg = _tiny_config("algorithmic_transformer")
    torch.manual_seed(0)
    lit_module, data = small_models.build_module_and_data(cfg)
    torch.manual_seed(0)
    bare_module, _ = small_models.build_module_and_data(cfg)
    bare_module.model.load_state_dict(lit_module.model.state_dict())
    batches = [b for b, _ in zip(data.train_dataloader(), range(3))]

    class Fixed:
        def train_dataloader(self):
            return torch.utils.data.DataLoader(batches, batch_size=None)

    small_models.lightning_chunk(lit_module, Fixed(), cfg, 3, logger="none")
    step = small_models.bare_step_fn(bare_module, cfg["trainer"]["gradient_clip_val"])
    for b in batches:
        step(b)
    for (name, a), (_, b) in zip(lit_module.model.named_parameters(), bare_module.model.named_parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)


def test_lightning_overhead_row_and_profile_on_a_tiny_config(monkeypatch):
    from benchmarks import small_models

    cfg = _tiny_config("algorithmic_ut")
    monkeypatch.setattr(small_models, "load_config", lambda name: cfg)
    module, data = small_models.build_module_and_data(cfg)
    row = small_models.lightning_overhead_row("tiny", steps=5, repeats=1, logger="none", module=module,
                                              datamodule=data)
    assert row["samples"] == {"lightning": 2, "bare": 2, "fixed batch": 2}
    assert all(v > 0 for v in row["seconds_per_step"].values())
    assert row["lightning_over_bare"] == pytest.approx(row["seconds_per_step"]["lightning"]
                                                       / row["seconds_per_step"]["bare"])
    prof = small_models.profile_lightning("tiny", steps=3, top=5, logger="none", module=module, datamodule=data)
    assert len(prof["top"]) == 5 and abs(sum(prof["share_by_area"].values()) - 1) < 1e-6
    peers = small_models.peer_step_row("tiny", repeats=1, warmup=0, module=module, datamodule=data)
    assert set(peers["seconds"]) == {"ours", "x-transformers (tied layers)", small_models.SHARED,
                                     small_models.OURS_SHARED}
    assert set(peers["ratios"]) == {"ours / x-transformers (tied layers)"}  # the shared part is not a peer


def test_the_ratio_without_the_shared_output_layer(monkeypatch):
    """(peer - peers' output part) / (ours - ours' output part) from the row's own timings; neither is a peer."""
    from benchmarks import small_models
    from benchmarks.timing import Timing

    cfg = _tiny_config("algorithmic_transformer")
    monkeypatch.setattr(small_models, "load_config", lambda name: cfg)
    module, data = small_models.build_module_and_data(cfg)
    fake = {"ours": 0.30, small_models.XT: 0.40, "torch.nn.Transformer": 0.50, small_models.SHARED: 0.20,
            small_models.OURS_SHARED: 0.25}
    monkeypatch.setattr(small_models, "time_interleaved",
                        lambda fns, **kw: {k: Timing(k, [fake[k]]) for k in fns})
    row = small_models.peer_step_row("tiny", repeats=1, warmup=0, module=module, datamodule=data)
    assert row["ratios"] == pytest.approx({"ours / x-transformers": 0.4 / 0.3,
                                           "ours / torch.nn.Transformer": 0.5 / 0.3})
    assert row["ratios_without_shared"] == pytest.approx({"ours / x-transformers": 0.2 / 0.05,
                                                          "ours / torch.nn.Transformer": 0.3 / 0.05})
    assert row["shared_share"] == pytest.approx(0.25 / 0.3)
    assert "output_loss_speedup" not in row  # a vocabulary below the fusing threshold: both run the same code


def test_the_shared_output_layer_is_the_tied_projection_and_its_cross_entropy():
    import torch.nn.functional as F

    from benchmarks.small_models import build_shared_output_layer

    dims = DecoderOnlyDims(d_model=8, n_heads=2, d_ff=16, n_layers=1, vocab_size=30, batch_size=2, seq_len=5)
    shared = build_shared_output_layer(dims)
    ids = torch.randint(0, 30, (2, 5))
    w = shared.model.embed.weight
    want = F.cross_entropy((8 ** 0.5 * w[ids] @ w.T)[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
    torch.testing.assert_close(shared.loss({"input_ids": ids}), want)
    assert 0.2 < (8 ** 0.5 * w[ids] @ w.T).std() < 5  # a real model's logit scale, not N(0, 1) embeddings' sqrt(d)
    assert sum(p.numel() for p in shared.model.parameters()) == 30 * 8  # the embedding matrix alone


@pytest.mark.parametrize("lm", [True, False])
def test_ours_output_part_is_the_same_loss_fused(lm):
    """Ours' output part at a vocabulary that fuses: the peers' loss value and gradient, without the logits."""
    from benchmarks.small_models import build_shared_output_layer

    vocab = 1100
    if lm:
        dims = DecoderOnlyDims(d_model=8, n_heads=2, d_ff=16, n_layers=1, vocab_size=vocab, batch_size=2, seq_len=5)
        batch = {"input_ids": torch.randint(0, vocab, (2, 5))}
    else:
        dims = Seq2SeqDims(d_model=8, n_heads=2, d_ff=16, n_encoder_layers=1, n_decoder_layers=1, vocab_size=vocab,
                           batch_size=2, src_len=4, tgt_len=3)
        batch = {"tgt_in": torch.randint(0, vocab, (2, 3)), "tgt_out": torch.randint(0, vocab, (2, 3))}
    peers, ours = build_shared_output_layer(dims), build_shared_output_layer(dims, ours=True)
    ours.model.load_state_dict(peers.model.state_dict())
    want, got = peers.loss(batch), ours.loss(batch)
    torch.testing.assert_close(got, want)
    w_peer, w_ours = peers.model.embed.weight, ours.model.embed.weight
    torch.testing.assert_close(torch.autograd.grad(got, w_ours)[0], torch.autograd.grad(want, w_peer)[0])


def test_ours_loss_fused_equals_the_cross_entropy_of_the_logits(monkeypatch):
    import torch.nn.functional as F

    from benchmarks import peers
    from benchmarks.xtransformers_peers import build_ours_decoder_only

    calls = []
    fused = peers.linear_cross_entropy
    monkeypatch.setattr(peers, "linear_cross_entropy", lambda *a, **k: calls.append(1) or fused(*a, **k))
    dims = DecoderOnlyDims(d_model=16, n_heads=2, d_ff=32, n_layers=1, vocab_size=1100, dropout=0.0, batch_size=2,
                           seq_len=6)
    model = build_ours_decoder_only(dims).model.double()
    ids = torch.randint(5, 1100, (2, 6))
    params = [p for p in model.parameters()]
    want = F.cross_entropy(model(ids).logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
    want_grads = torch.autograd.grad(want, params)
    got = peers.ours_loss(model, ids, ids, next_token=True)
    assert calls == [1]  # at V = 1100 ours trains through the fused loss
    torch.testing.assert_close(got, want)
    for g, r in zip(torch.autograd.grad(got, params), want_grads):
        torch.testing.assert_close(g, r)
