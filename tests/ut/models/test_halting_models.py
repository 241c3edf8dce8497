"""PonderNet and stick-breaking halting in the UT models: causality, padding, cached decoding == full forward,
PonderNet's per-step predictions (== the fixed-depth model's at that depth) and readouts, the test-time threshold
sweep, gradients into the halting units, bf16, learning a copy batch, the config."""

import pytest
import torch

import ut.models.universal as universal
from tests.ut.helpers import copy_batch, padded
from ut.decoding import greedy_decode, left_align
from ut.lit.losses import expected_smoothed_cross_entropy, smoothed_cross_entropy
from ut.models import build_model
from ut.models.halting import set_halting_threshold
from ut.models.universal import UniversalTransformerConfig
from ut.models.universal_decoder_only import UniversalDecoderOnlyLM
from ut.nn.pondernet import PonderNetOutput

MECHANISMS = ["pondernet", "stick_breaking"]
SMALL = dict(d_model=16, n_heads=2, d_ff=16, dropout=0.0)
SRC = [[5, 6, 7, 8, 9], [9, 10], [11, 12, 5]]
TGT = torch.tensor([[1, 7, 8, 9, 10, 5], [1, 5, 5, 6, 6, 7], [1, 12, 11, 10, 9, 8]])


def varied(model, seed=6):
    """Large random halting units, so that positions halt after different numbers of steps, later positions
    often after more steps than earlier ones (which exercises the frozen-state cache filling)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "halting") and isinstance(m.halting, torch.nn.Linear):
                m.halting.weight.normal_(0.0, 2.0)
                m.halting.bias.zero_()
    return model


@pytest.fixture
def fills(monkeypatch):
    """How many earlier positions each frozen-state fill of a step cache brought up to date (both decoders)."""
    counts = []
    enc_dec, dec_only = universal.UniversalDecoder._fill_from_frozen, UniversalDecoderOnlyLM._fill_from_frozen

    def spy_enc_dec(self, cache, frozen, n_prev, t, *args):
        counts.append(n_prev - len(cache.get((("dec", t), "self"))))
        return enc_dec(self, cache, frozen, n_prev, t, *args)

    def spy_dec_only(self, cache, frozen, progress, n_prev, t, self_mask):
        counts.append(n_prev - progress.filled.get(t, 0))
        return dec_only(self, cache, frozen, progress, n_prev, t, self_mask)

    monkeypatch.setattr(universal.UniversalDecoder, "_fill_from_frozen", spy_enc_dec)
    monkeypatch.setattr(UniversalDecoderOnlyLM, "_fill_from_frozen", spy_dec_only)
    return counts


def seq2seq(recurrence, **kw):
    torch.manual_seed(0)
    cfg = {**SMALL, "src_vocab_size": 13, "tgt_vocab_size": 13, "n_steps": 2, "act_max_steps": 5,
           "recurrence": recurrence, "stick_breaking_threshold": 0.9, **kw}
    return varied(build_model("universal", cfg)).double()


def lm(recurrence, **kw):
    torch.manual_seed(0)
    cfg = {**SMALL, "vocab_size": 16, "n_steps": 2, "act_max_steps": 5, "layer_pattern": "locm/redm",
           "block_size": 4, "compression": 2, "max_len": 32, "recurrence": recurrence,
           "stick_breaking_threshold": 0.9, **kw}
    return varied(build_model("universal_decoder_only", cfg)).double()


# ---------------------------------------------------------------------------------------------------- causality
@pytest.mark.parametrize("recurrence", MECHANISMS)
@pytest.mark.parametrize("training", [False, True])
def test_the_decoders_are_causal(recurrence, training):
    src, src_mask = padded(SRC)
    g = torch.Generator().manual_seed(1)
    for m, run in ((seq2seq(recurrence), lambda m, tgt: m(src, src_mask, tgt)), (lm(recurrence), lambda m, t: m(t))):
        m.train(training)
        tgt = TGT.clone()
        ref = run(m, tgt)
        for t in range(tgt.shape[1] - 1):
            other = tgt.clone()
            other[:, t + 1:] = torch.randint(5, 13, other[:, t + 1:].shape, generator=g)
            out = run(m, other)
            torch.testing.assert_close(out.logits[:, :t + 1], ref.logits[:, :t + 1])
            if out.step_logits is not None:  # PonderNet in training: every step's prediction, and its p
                torch.testing.assert_close(out.step_logits[:, :, :t + 1], ref.step_logits[:, :, :t + 1])
                torch.testing.assert_close(out.step_weights[:, :, :t + 1], ref.step_weights[:, :, :t + 1])
        assert (ref.step_logits is not None) == (training and recurrence == "pondernet")


# ---------------------------------------------------------------------------------------------------- padding
@pytest.mark.parametrize("recurrence", MECHANISMS)
def test_padding_cannot_change_real_outputs_or_the_loss(recurrence):
    m = seq2seq(recurrence).eval()
    src, src_mask = padded(SRC)
    tgt_mask = torch.ones_like(TGT, dtype=torch.bool)
    ref = m(src, src_mask, TGT, tgt_mask)
    src2 = torch.cat([src, torch.full((3, 3), 11)], 1)
    mask2 = torch.cat([src_mask, torch.zeros(3, 3, dtype=torch.bool)], 1)
    tgt3 = torch.cat([TGT, torch.full((3, 2), 9)], 1)
    tmask3 = torch.cat([tgt_mask, torch.zeros(3, 2, dtype=torch.bool)], 1)
    out = m(src2, mask2, tgt3, tmask3)
    torch.testing.assert_close(out.logits[:, :6], ref.logits)
    torch.testing.assert_close(out.ponder_loss, ref.ponder_loss)
    assert (out.n_updates["encoder"][~mask2] == 0).all() and (out.n_updates["decoder"][:, 6:] == 0).all()
    assert len(set(ref.n_updates["decoder"].flatten().tolist())) > 1, "test setup: varied halting"


# ---------------------------------------------------------------------------------------------------- decoding
@pytest.mark.parametrize("recurrence", MECHANISMS)
def test_encoder_decoder_cached_decoding_equals_full_forward(recurrence, fills):
    m = seq2seq(recurrence).eval()
    src, src_mask = padded(SRC)
    full = m(src, src_mask, TGT)
    assert len(set(full.n_updates["decoder"].flatten().tolist())) > 1, "test setup: varied halting"
    state, first = m.start_decoding({"src": src, "src_mask": src_mask})
    assert torch.equal(first, TGT[:, 0])
    for t in range(TGT.shape[1]):
        torch.testing.assert_close(m.decode_step(TGT[:, t], state), full.logits[:, t], rtol=1e-9, atol=1e-9)
    assert sum(fills) > 0, "the frozen-state cache filling was not exercised"


@pytest.mark.parametrize("recurrence", MECHANISMS)
def test_decoder_only_cached_decoding_equals_full_forward(recurrence, fills):
    m = lm(recurrence).eval()
    ids, mask = padded([[5, 6, 7, 8, 9, 3], [9, 3], [10, 11, 12, 3]])
    cont = torch.tensor([[12, 13, 14, 5, 6], [6, 7, 8, 9, 10], [4, 5, 6, 7, 8]])
    state, tokens = m.start_decoding({"input_ids": ids, "attention_mask": mask})
    left_ids, left_mask = left_align(ids, mask, 0)
    for t in range(cont.shape[1]):
        step_logits = m.decode_step(tokens, state)
        full = m(torch.cat([left_ids, cont[:, :t]], 1), torch.cat([left_mask, torch.ones(3, t, dtype=torch.bool)], 1))
        torch.testing.assert_close(step_logits, full.logits[:, -1], rtol=1e-9, atol=1e-9)
        tokens = cont[:, t]
    real = torch.cat([left_mask, torch.ones(3, cont.shape[1] - 1, dtype=torch.bool)], 1)
    assert len(set(full.n_updates["decoder"][real].tolist())) > 1, "test setup: varied halting"
    assert sum(fills) > 0, "the frozen-state cache filling was not exercised"


# ---------------------------------------------------------------------------------------------------- PonderNet
def fixed_twin(model, name, cfg, n_steps):
    """The fixed-depth model with ``n_steps`` steps and the same weights (without the halting unit)."""
    twin = build_model(name, {**cfg, "recurrence": "fixed", "n_steps": n_steps}).double().train()
    missing, unexpected = twin.load_state_dict(model.state_dict(), strict=False)
    assert not missing and all("pondernet" in k for k in unexpected)
    return twin


def test_pondernet_step_predictions_are_the_fixed_depth_models_at_every_depth():
    """In training every position runs all N steps: y_n is exactly the n-step fixed UT's prediction."""
    cfg = {**SMALL, "vocab_size": 16, "n_steps": 2, "act_max_steps": 4, "layer_pattern": "locm", "block_size": 4,
           "max_len": 32, "recurrence": "pondernet"}
    m = build_model("universal_decoder_only", cfg).double().train()
    ids, mask = padded([[5, 6, 7, 8, 9, 3], [9, 3, 4]])
    out = m(ids, mask)
    assert out.step_logits.shape == (4, 2, 6, 16)
    for n in range(4):  # at the real positions (padding never runs a halting loop; the fixed UT computes it)
        twin = fixed_twin(m, "universal_decoder_only", cfg, n + 1)(ids, mask).logits
        torch.testing.assert_close(out.step_logits[n][mask], twin[mask])
    torch.testing.assert_close(out.logits, out.step_logits[-1])
    torch.testing.assert_close(out.step_weights.sum(0), mask.double())
    ccfg = {**SMALL, "vocab_size": 13, "n_classes": 4, "n_steps": 2, "act_max_steps": 3, "recurrence": "pondernet"}
    c = build_model("universal_classifier", ccfg).double().train()
    src, src_mask = padded(SRC)
    out = c(src, src_mask)
    assert out.step_logits.shape == (3, 3, 4) and out.step_weights.shape == (3, 3)
    for n in range(3):
        torch.testing.assert_close(out.step_logits[n], fixed_twin(c, "universal_classifier", ccfg, n + 1)(
            src, src_mask).logits)
    torch.testing.assert_close(out.step_weights.sum(0), torch.ones(3, dtype=torch.float64))


def test_pondernet_encoder_decoder_reads_the_decoder_per_token_and_the_encoders_expected_state():
    m = seq2seq("pondernet").train()
    src, src_mask = padded(SRC)
    out = m(src, src_mask, TGT)
    assert out.step_logits.shape == (5, 3, 6, 13) and out.step_weights.shape == (5, 3, 6)
    enc = m.encode(src, src_mask)
    assert enc.step_states is None
    h = enc.halting
    assert h.readout == "expected_state" and set(out.halting_regularizers) == {"encoder_kl", "decoder_kl"}
    torch.testing.assert_close(out.ponder_loss, 0.01 * (out.halting_regularizers["encoder_kl"]
                                                        + out.halting_regularizers["decoder_kl"]))


@pytest.mark.parametrize("fresh", [True, False])
def test_pondernet_encoder_memory_in_evaluation_is_the_training_memory(fresh):
    """The decoder is trained on the encoder's p-weighted memory over all N steps; evaluation halts the encoder only
    at 1 - eps (pondernet_encoder_threshold 0.999), so the memory it hands the decoder stays that one. At the
    decoder's median threshold (0.5) it would not. ``fresh``: a model at initialisation (every position runs all N
    steps at 0.999); else large halting units that halt positions early."""
    def build(**kw):
        if not fresh:
            return seq2seq("pondernet", **kw)
        torch.manual_seed(0)
        return build_model("universal", {**SMALL, "src_vocab_size": 13, "tgt_vocab_size": 13, "n_steps": 2,
                                         "act_max_steps": 5, "recurrence": "pondernet", **kw}).double()

    m = build()
    assert m.encoder.halting.threshold == 0.999 and m.decoder.halting.threshold == 0.5
    src, src_mask = padded(SRC)
    with torch.no_grad():
        train = m.train().encode(src, src_mask).output
        evaluation = m.eval().encode(src, src_mask)
        at_median = build(pondernet_encoder_threshold=0.5).eval().encode(src, src_mask).output

    def relative(memory):
        return ((memory - train)[src_mask].norm() / train[src_mask].norm()).item()

    if not fresh:
        assert (evaluation.halting.n_updates[src_mask] < 5).any(), "test setup: early halting at 0.999"
    assert relative(evaluation.output) < 1e-2
    assert relative(at_median) > 5e-2


# ---------------------------------------------------------------------------------------------------- test-time depth
@pytest.mark.parametrize("recurrence,thresholds", [("stick_breaking", (1.0, 0.99, 0.9, 0.6, 0.3)),
                                                   ("pondernet", (1.0, 0.9, 0.6, 0.3, 0.1))])
def test_changing_the_threshold_at_test_time_changes_the_executed_depth_monotonically(recurrence, thresholds):
    m = lm(recurrence).eval()
    ids = torch.randint(5, 16, (3, 8), generator=torch.Generator().manual_seed(2))
    first, means = [], []
    for thr in thresholds:
        assert set_halting_threshold(m, thr) == 1
        n = m(ids).n_updates["decoder"]
        first.append(n[:, 0])  # the first position depends on itself alone (causal)
        means.append(n.mean().item())
    for a, b in zip(first, first[1:]):
        assert (b <= a).all()
    assert means == sorted(means, reverse=True) and means[-1] < means[0]


def expected_task_loss_gradients(m):
    """PonderNet's expected task loss ALONE (sum_n p_n CE_n over the decoder's step predictions, the KL left out)
    of a float64 encoder-decoder: the autograd gradient of each stack's halting unit (None where none arrives) and
    the float64 central difference of the same loss, per stack name."""
    src, src_mask = padded(SRC)
    target = torch.roll(TGT, -1, 1)

    def loss():
        out = m(src, src_mask, TGT)
        return expected_smoothed_cross_entropy(out.step_logits, out.step_weights, target, None, 0.1).loss

    m.train().zero_grad()
    loss().backward()
    result = {}
    for name in ("encoder", "decoder"):
        unit = getattr(m, name).halting.halting
        params = (unit.weight, unit.bias)
        grads = [None if p.grad is None else p.grad.clone() for p in params]
        fds, h = [], 1e-6
        with torch.no_grad():
            for p in params:
                fd = torch.zeros_like(p)
                for i in range(p.numel()):
                    value = p.view(-1)[i].item()
                    p.view(-1)[i] = value + h
                    up = loss().item()
                    p.view(-1)[i] = value - h
                    down = loss().item()
                    p.view(-1)[i] = value
                    fd.view(-1)[i] = (up - down) / (2 * h)
                fds.append(fd)
        result[name] = (grads, fds)
    return result


def test_the_expected_task_loss_alone_reaches_both_halting_units_as_its_finite_difference():
    """The decoder's unit through p_n of the expectation (``step_weights``), the encoder's through its p-weighted
    memory; no KL in the loss, so nothing else carries a gradient there."""
    for name, (grads, fds) in expected_task_loss_gradients(seq2seq("pondernet")).items():
        for grad, fd in zip(grads, fds):
            assert fd.abs().max() > 1e-4, f"test setup: the loss should depend on the {name}'s halting unit"
            assert grad is not None, name
            torch.testing.assert_close(grad, fd, rtol=1e-5, atol=1e-9)


def test_a_detached_halting_distribution_fails_the_finite_difference_check(monkeypatch):
    """The check above is sensitive: with ``step_weights`` detached the decoder's unit gets no gradient from the
    expectation, while the finite difference still sees the loss move."""
    attached = PonderNetOutput.step_weights
    monkeypatch.setattr(PonderNetOutput, "step_weights", property(lambda self: attached.fget(self).detach()))
    grads, fds = expected_task_loss_gradients(seq2seq("pondernet"))["decoder"]
    for grad, fd in zip(grads, fds):
        assert fd.abs().max() > 1e-4
        assert grad is None or not torch.allclose(grad, fd, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("recurrence", MECHANISMS)
def test_gradients_reach_the_halting_units(recurrence):
    m = seq2seq(recurrence).train()
    src, src_mask = padded(SRC)
    out = m(src, src_mask, TGT)
    logits = out.logits if out.step_logits is None else out.step_logits
    (logits.logsumexp(-1).mean() + out.aux_loss).backward()
    for stack in (m.encoder, m.decoder):
        assert stack.halting.halting.weight.grad.abs().sum() > 0


def test_config_and_state_dict_names():
    with pytest.raises(ValueError, match="pondernet_threshold"):
        UniversalTransformerConfig(recurrence="pondernet", pondernet_threshold=0.0)
    with pytest.raises(ValueError, match="pondernet_eval_halting"):
        UniversalTransformerConfig(pondernet_eval_halting="mode")
    with pytest.raises(ValueError, match="stick_breaking_threshold"):
        UniversalTransformerConfig(stick_breaking_threshold=1.5)
    assert UniversalTransformerConfig(recurrence="stick_breaking", n_steps=3).max_steps == 6
    keys = {r: {k for k in seq2seq(r).state_dict() if "halting" in k} for r in ("act", *MECHANISMS)}
    assert keys["act"] == {f"{s}.act.halting.{p}" for s in ("encoder", "decoder") for p in ("weight", "bias")}
    assert keys["pondernet"] == {k.replace(".act.", ".pondernet.") for k in keys["act"]}
    assert keys["stick_breaking"] == {k.replace(".act.", ".stick_breaking.") for k in keys["act"]}
    assert set_halting_threshold(seq2seq("act"), 0.5) == 0
    with pytest.raises(ValueError, match="pondernet_encoder_threshold"):
        UniversalTransformerConfig(recurrence="pondernet", pondernet_encoder_threshold=1.5)
    ponder = seq2seq("pondernet")
    assert set_halting_threshold(ponder, 0.3) == 1  # the decoder's; the encoder's p-weighted memory keeps 1 - eps
    assert ponder.decoder.halting.threshold == 0.3 and ponder.encoder.halting.threshold == 0.999


@pytest.mark.parametrize("recurrence", MECHANISMS)
def test_bf16_autocast_forward_and_backward(recurrence):
    m = seq2seq(recurrence).float().train()
    src, src_mask = padded(SRC)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(src, src_mask, TGT)
        logits = out.logits if out.step_logits is None else out.step_logits
        loss = logits.float().logsumexp(-1).mean() + out.aux_loss
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
    if out.step_weights is not None:
        assert out.step_weights.dtype == torch.float32
        torch.testing.assert_close(out.step_weights.sum(0), torch.ones(3, 6))


@pytest.mark.parametrize("recurrence", MECHANISMS)
def test_tiny_ut_learns_a_copy_batch_with_its_halting_loss_and_greedy_decodes_it(recurrence):
    torch.manual_seed(0)
    m = build_model("universal", dict(src_vocab_size=13, tgt_vocab_size=13, d_model=32, n_heads=4, d_ff=64,
                                      n_steps=2, dropout=0.0, recurrence=recurrence))
    b = copy_batch(batch=8, length=5, vocab=13)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    m.train()
    for _ in range(250):
        out = m(b["src"], b["src_mask"], b["tgt_in"])
        if out.step_logits is not None:  # PonderNet: the expected loss over the halting step
            task = expected_smoothed_cross_entropy(out.step_logits, out.step_weights, b["tgt_out"], None, 0.0)
        else:
            task = smoothed_cross_entropy(out.logits, b["tgt_out"], None, 0.0)
        opt.zero_grad()
        (task.loss + out.aux_loss).backward()
        opt.step()
    m.eval()
    assert torch.equal(greedy_decode(m, b, max_len=6, eos_id=2).sequences, b["tgt_out"])
