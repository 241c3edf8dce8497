"""The GPU check on CPU: its skip path, and every section's body at tiny sizes with device="cpu"."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import gpu_check
from benchmarks.peers import Seq2SeqDims
from benchmarks.xtransformers_peers import DecoderOnlyDims

TINY = Seq2SeqDims(d_model=16, n_heads=2, d_ff=32, n_encoder_layers=1, n_decoder_layers=1, vocab_size=40,
                   batch_size=2, src_len=6, tgt_len=4)


def test_without_cuda_it_writes_a_skipped_results_file_and_exits_0(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "gpu" / "check.json"
    assert gpu_check.main(["--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert "no CUDA device" in result["skipped"] and "sections" not in result
    assert result["machine"]["machine_kind"] and "isa" in result["machine"]
    md = out.with_suffix(".md").read_text()
    assert "Skipped" in md and "no CUDA device" in md


def test_training_section_times_every_installed_peer():
    lm = DecoderOnlyDims(d_model=16, n_heads=2, d_ff=32, n_layers=1, vocab_size=40, batch_size=2, seq_len=8)
    out = gpu_check.training_section("cpu", TINY, lm, repeats=1, warmup=0)
    assert out["autocast"] == "fp32"  # CPU: the GPU check never autocasts
    enc, dec = out["rows"]
    for row in (enc, dec):
        assert set(row["tokens_per_s"]) | set(row["skipped"]) >= {"ours", "x-transformers"}
        assert all(v > 0 for v in row["tokens_per_s"].values())
    assert "torch.nn.Transformer" in enc["tokens_per_s"]


def test_flash_and_manual_attention_agree_on_cpu():
    out = gpu_check.sdpa_flash_vs_manual_section("cpu", batch=2, length=32, d_model=32, n_heads=4, repeats=1,
                                                 dtype=torch.float32)
    assert out["equal"], out
    assert out["max_rel_error_out"] < 1e-4 and out["max_rel_error_grad"] < 1e-4


def test_mean_deviation_z_detects_a_biased_dropout():
    torch.manual_seed(0)
    reference = torch.randn(200)
    draws = reference * (torch.rand(400, 200) > 0.1) / 0.9  # inverted dropout: expectation = reference
    assert gpu_check.mean_deviation_z(draws, reference) < 2.0
    unscaled = draws * 0.9  # no 1/(1-p) rescale: expectation 0.9 x reference
    assert gpu_check.mean_deviation_z(unscaled, reference) > 5.0


def test_attention_dropout_section_is_unbiased_and_active_on_cpu():
    out = gpu_check.attention_dropout_section("cpu", d_model=16, n_heads=2, draws=300, short_len=8, long_len=64)
    assert out["unbiased"] and out["active"], out
    assert out["memory_ratio"] is None  # CPU: no allocator statistics
    assert set(out["long"]) == {"dropout 0", "dropout 0.1"}


def test_tdmca_section_runs_one_finite_step():
    out = gpu_check.tdmca_section("cpu", length=96, vocab=50, d_model=16, n_heads=2, block=16)
    assert list(out["modes"]) == ["fp32"]  # CPU: no autocast in the GPU check
    fp32 = out["modes"]["fp32"]
    assert out["finite"] and fp32["seconds"] > 0 and fp32["peak_mb"] is None


def test_decoding_section_compares_cached_uncached_and_peer():
    out = gpu_check.decoding_section("cpu", TINY, out_tokens=5, repeats=1)
    assert {"ours cached", "ours uncached"} <= set(out["tokens_per_s"])
    assert out["cached_over_uncached"] > 0


def test_ddp_on_one_process_gives_the_plain_gradients():
    out = gpu_check.ddp_section("cpu", TINY, repeats=1)
    assert out["backend"] == "gloo" and out["world_size"] == 1
    assert out["grads_equal"], out


def test_a_failing_section_is_recorded_and_the_others_run(monkeypatch):
    def broken(device, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setitem(gpu_check.SECTIONS, "training", broken)
    out = gpu_check.run_sections("cpu", {"training": {}, "tdmca": dict(length=32, vocab=30, d_model=16, n_heads=2,
                                                                        block=16)})
    assert "RuntimeError: boom" in out["training"]["error"]
    assert out["tdmca"]["finite"]


def test_sections_past_the_budget_are_skipped():
    out = gpu_check.run_sections("cpu", {"tdmca": dict(length=32, vocab=30, d_model=16, n_heads=2, block=16)},
                                 budget_s=-1)
    assert "time budget" in out["tdmca"]["skipped"]


@pytest.mark.parametrize("name", list(gpu_check.SECTIONS))
def test_the_cuda_plan_names_only_known_sections_and_their_arguments(name):
    import inspect

    kwargs = gpu_check.plan("cuda:0")[name]
    params = inspect.signature(gpu_check.SECTIONS[name]).parameters
    assert set(kwargs) <= set(params) and "device" in params
