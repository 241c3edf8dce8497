"""Correctness of the benchmark helpers (no timing assertions: only structure and equal outputs)."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks.decoding_speed import UncachedDecoding
from benchmarks.peers import BUILDERS, Seq2SeqDims, make_batch, missing_package, training_step_fn
from benchmarks.pipeline_speed import synthetic_pairs
from benchmarks.report import evaluate_targets, write_markdown
from benchmarks.timing import Timing, time_interleaved
from ut.decoding import beam_search, greedy_decode

TINY = Seq2SeqDims(d_model=16, n_heads=2, d_ff=32, n_encoder_layers=1, n_decoder_layers=1, vocab_size=40,
                   batch_size=2, src_len=6, tgt_len=4)


def test_time_interleaved_runs_each_contender_warmup_plus_repeats_times():
    calls = {"a": 0, "b": 0}

    def bump(name):
        calls[name] += 1

    timings = time_interleaved({"a": lambda: bump("a"), "b": lambda: bump("b")}, repeats=3, warmup=2, inner=2,
                               collect_garbage=False)
    assert calls == {"a": 2 + 3 * 2, "b": 2 + 3 * 2}
    assert all(len(t.seconds) == 3 and t.median >= 0 for t in timings.values())
    assert Timing("x", [1.0, 2.0, 4.0]).median == 2.0


def test_make_batch_is_the_project_seq2seq_format():
    batch = make_batch(TINY)
    assert batch["src"].shape == (2, 6) and batch["tgt_in"].shape == batch["tgt_out"].shape == (2, 4)
    assert torch.equal(batch["tgt_in"][:, 1:], batch["tgt_out"][:, :-1]) and (batch["tgt_in"][:, 0] == 1).all()
    assert batch["src_mask"].dtype == torch.bool and batch["src_mask"].all()
    assert TINY.tokens_per_batch == 2 * (6 + 4)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_every_peer_trains_on_the_same_batch(name):
    if why := missing_package(name):
        pytest.skip(why)
    torch.manual_seed(0)
    contender = BUILDERS[name](TINY)
    params = sum(p.numel() for p in contender.model.parameters())
    assert params > 0
    step = training_step_fn(contender, make_batch(TINY), lr=1e-2)
    first = [step().item() for _ in range(5)]
    assert first[-1] < first[0]  # it learns the batch: the loss and the optimizer are wired up


def test_contender_loss_trains_the_model_it_holds_now():
    """Replacing ``contender.model`` (a compiled model, a copy) changes what the loss runs (no stale closure)."""
    a, b = BUILDERS["ours"](TINY), BUILDERS["ours"](TINY)
    b.model.eval()  # no dropout: the two calls must agree
    batch = make_batch(TINY)
    loss_b = b.loss(batch)
    a.model = b.model
    torch.testing.assert_close(a.loss(batch), loss_b)


@pytest.mark.parametrize("model_name", ["transformer", "universal"])
def test_uncached_decoding_gives_the_cached_sequences(model_name):
    from ut.models import build_model

    torch.manual_seed(0)
    common = dict(src_vocab_size=30, tgt_vocab_size=30, d_model=16, n_heads=2, d_ff=32, dropout=0.0)
    extra = {"n_encoder_layers": 1, "n_decoder_layers": 2} if model_name == "transformer" else {"n_steps": 2}
    model = build_model(model_name, {**common, **extra}).eval()
    batch = {"src": torch.randint(5, 30, (2, 7))}
    cached, uncached = greedy_decode(model, batch, 9, eos_id=-1), greedy_decode(UncachedDecoding(model), batch, 9,
                                                                                 eos_id=-1)
    assert torch.equal(cached.sequences, uncached.sequences)
    torch.testing.assert_close(cached.scores, uncached.scores, atol=1e-4, rtol=1e-4)
    beams = beam_search(model, batch, 3, max_len=6, eos_id=-1), beam_search(UncachedDecoding(model), batch, 3,
                                                                           max_len=6, eos_id=-1)
    assert torch.equal(beams[0].sequences, beams[1].sequences)


def test_synthetic_rouge_pairs_are_deterministic_300_word_texts():
    preds, refs = synthetic_pairs(3)
    assert (preds, refs) == synthetic_pairs(3)
    assert all(len(p.split()) == 300 for p in preds + refs)


def _fake_results() -> dict:
    def training(dropout, d, ours, nnt, bart):
        return {"config": f"d{d} 3+3 B1 S1 T1 drop{dropout:g}", "dims": {"dropout": dropout, "d_model": d},
                "contenders": {"ours": {"tokens_per_s": ours, "mfu_fp32": 0.75},
                               "torch.nn.Transformer": {"tokens_per_s": nnt, "mfu_fp32": 0.5},
                               "HF BART": {"tokens_per_s": bart, "mfu_fp32": 0.6}},
                "ratios": {"ours / torch.nn.Transformer": ours / nnt, "ours / HF BART": ours / bart}}

    return {
        "quick": True, "command": "python -m benchmarks.run_all --quick", "started": "now", "total_seconds": 60,
        "machine": {"cpu_model": "cpu", "cpu_count": 2, "torch": "2", "torch_threads": 2, "python": "3",
                    "load_average_at_start": (1, 1, 1), "load_average_at_end": (1, 1, 1)},
        "matmul_peak": {"float32": {"gflops": 200.0, "by_size": {1024: 200.0}}},
        "training": [training(0.1, 256, 120, 90, 100), training(0.0, 512, 100, 70, 105)],
        "act_skip": [{"halted_share": 0.5, "speedup": 1.6, "seconds": {"computed": 1.6, "skipped": 1.0}}],
        "decoding": [{"model": "T", "out_tokens": 256, "greedy_cached_over_uncached": 6.0,
                      "beam_cached_over_uncached": 4.0, "batch": 1, "beam": 2,
                      "tokens_per_s": {"greedy cached": 6, "greedy uncached": 1, "beam cached": 4,
                                       "beam uncached": 1}}],
        "attention_dropout_memory": [{"mode": "sdpa_p0", "length": 100, "peak_mb": 10.0, "seconds": 1},
                                     {"mode": "ours_dropout", "length": 100, "peak_mb": 25.0, "seconds": 1}],
    }


def test_targets_are_judged_with_their_margins():
    targets = {t["target"]: t for t in evaluate_targets(_fake_results())}
    assert targets["ours >= 1.15x HF BART tokens/s, dropout 0.1"]["met"] is True  # 1.20x
    assert targets["ours >= 1.0x HF BART tokens/s, dropout 0"]["met"] is False  # 0.95x
    assert targets["ours >= 1.3x torch.nn.Transformer tokens/s, dropout 0.1"]["met"] is True  # 1.33x
    assert targets["ours >= 1.3x torch.nn.Transformer tokens/s, dropout 0"]["met"] is True  # 1.43x
    assert targets["MFU >= 70% of the measured fp32 peak at d=512, dropout 0"]["met"] is True
    assert targets["attention dropout memory within 2x of dropout 0 at L=100"]["met"] is False  # 2.5x
    assert targets["ACT skipping >= 1.5x per layer application when half have halted"]["met"] is True
    assert "-5%" in targets["ours >= 1.0x HF BART tokens/s, dropout 0"]["margin"]


def test_markdown_report_lists_every_target(tmp_path):
    results = _fake_results()
    results["targets"] = evaluate_targets(results)
    write_markdown(results, tmp_path / "r.md", "r.png")
    text = (tmp_path / "r.md").read_text()
    assert "machine was shared" in text and "python -m benchmarks.run_all --quick" in text
    for t in results["targets"]:
        assert t["target"] in text
    json.dumps(results)  # the results dict is what run_all stores as JSON
