"""The CUDA paths, behind the ``gpu`` marker: skipped without a CUDA device (``pytest -m gpu`` on a GPU machine).

They reuse the sections of :mod:`benchmarks.gpu_check` at small sizes, so the GPU check and these tests exercise the
same code: the accelerator and precision ``auto`` resolve to the GPU and bf16, SDPA's flash kernel equals the
manual path with weights, attention dropout on CUDA is unbiased and active, DDP on one device gives the plain
model's gradients, and one T-DMCA training step is finite.
"""

from __future__ import annotations

import pytest
import torch

from benchmarks import gpu_check
from benchmarks.peers import Seq2SeqDims

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

SMALL = Seq2SeqDims(d_model=64, n_heads=4, d_ff=128, n_encoder_layers=1, n_decoder_layers=1, vocab_size=100,
                    batch_size=4, src_len=32, tgt_len=16)


def test_precision_and_accelerator_auto_pick_the_gpu_and_native_bf16():
    from ut.precision import resolve_precision

    expected = "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    assert resolve_precision("auto", "auto") == expected
    assert resolve_precision("auto", "gpu") == expected


def test_sdpa_flash_kernel_equals_the_manual_path_in_bf16():
    if gpu_check.autocast_dtype_for("cuda") is None:
        pytest.skip("the flash kernel needs bf16 (compute capability >= 8.0)")
    out = gpu_check.sdpa_flash_vs_manual_section("cuda", batch=2, length=256, d_model=128, n_heads=4, repeats=1)
    assert out["equal"], out


def test_attention_dropout_on_cuda_is_unbiased_and_active():
    out = gpu_check.attention_dropout_section("cuda", d_model=32, n_heads=2, draws=300, short_len=16, long_len=1024)
    assert out["unbiased"] and out["active"], out


def test_ddp_on_one_device_gives_the_plain_gradients():
    out = gpu_check.ddp_section("cuda", SMALL, repeats=1)
    assert out["backend"] == "nccl" and out["grads_equal"], out


def test_tdmca_step_is_finite_on_cuda():
    out = gpu_check.tdmca_section("cuda", length=1024, vocab=100, d_model=64, n_heads=4, block=128)
    assert out["finite"], out
