"""``precision: auto`` (ut/precision.py): bf16-mixed only where the hardware runs bf16 natively, else 32-true."""

from __future__ import annotations

import logging

import pytest

from ut import precision as P

INTEL_AMX = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
AMD_AVX2 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse avx avx2 fma\n"
ARM_BF16 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.fixture
def cpuinfo(tmp_path):
    def write(text):
        path = tmp_path / "cpuinfo"
        path.write_text(text)
        return path
    return write


@pytest.fixture(autouse=True)
def _no_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def _probe(native):
    return lambda: (native, 1e-4, 1e-4 if native else 4e-3)


def test_cpu_flags_parsed_from_x86_and_arm(cpuinfo, tmp_path):
    assert {"avx512_bf16", "amx_bf16", "avx2"} <= P.cpu_flags(cpuinfo(INTEL_AMX))
    assert "bf16" in P.cpu_flags(cpuinfo(ARM_BF16))
    assert P.cpu_flags(tmp_path / "absent") == set()


@pytest.mark.parametrize("requested", ["auto", None])
def test_cpu_with_native_bf16_and_a_confirming_probe_gets_bf16(monkeypatch, cpuinfo, requested, caplog):
    monkeypatch.setattr(P, "bf16_matmul_probe", _probe(True))
    with caplog.at_level(logging.INFO, logger="ut.precision"):
        assert P.resolve_precision(requested, "cpu", cpuinfo(INTEL_AMX)) == "bf16-mixed"
    assert "amx_bf16" in caplog.text and "bf16-mixed" in caplog.text
    assert P.LAST_CHOICE.precision == "bf16-mixed" and "probe confirms" in P.LAST_CHOICE.reason


def test_avx2_only_cpu_gets_fp32_without_probing(monkeypatch, cpuinfo):
    def probe():
        raise AssertionError("the probe must not run without a bf16 flag")
    monkeypatch.setattr(P, "bf16_matmul_probe", probe)
    assert P.resolve_precision("auto", "auto", cpuinfo(AMD_AVX2)) == "32-true"
    assert "no native bf16 flag" in P.LAST_CHOICE.reason


def test_flag_without_fast_kernels_gets_fp32(monkeypatch, cpuinfo):
    monkeypatch.setattr(P, "bf16_matmul_probe", _probe(False))
    assert P.resolve_precision("auto", "cpu", cpuinfo(ARM_BF16)) == "32-true"
    assert "slower in the probe" in P.LAST_CHOICE.reason


def test_explicit_precision_is_kept(monkeypatch, cpuinfo):
    monkeypatch.setattr(P, "bf16_matmul_probe", _probe(True))
    assert P.resolve_precision("32-true", "cpu", cpuinfo(INTEL_AMX)) == "32-true"
    assert P.resolve_precision("bf16-mixed", "cpu", cpuinfo(AMD_AVX2)) == "bf16-mixed"


@pytest.mark.parametrize("native", [True, False])
def test_cuda_follows_native_bf16_support(monkeypatch, native):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "FakeGPU")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 0) if native else (7, 5))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: native)
    assert P.resolve_precision("auto", "auto") == ("bf16-mixed" if native else "32-true")
    assert P.resolve_precision("auto", "gpu") == ("bf16-mixed" if native else "32-true")


def test_gpu_requested_without_cuda_is_fp32():
    assert P.resolve_precision("auto", "gpu") == "32-true"


def test_probe_runs_and_reports_timings():
    P.bf16_matmul_probe.cache_clear()
    native, fp32_s, bf16_s = P.bf16_matmul_probe(n=64, repeats=1)
    assert isinstance(native, bool) and fp32_s > 0 and bf16_s > 0
    assert native == (bf16_s <= P.PROBE_MAX_SLOWDOWN * fp32_s)


@pytest.mark.parametrize("flags,expected", [(AMD_AVX2, "32-true"), (INTEL_AMX, "bf16-mixed")],
                         ids=["amd_avx2", "intel_amx"])
def test_ut_train_resolves_auto_and_unset(monkeypatch, cpuinfo, flags, expected, tmp_path):
    """The CLI's Trainer accepts ``precision: auto`` (its default) and hands Lightning the resolved value."""
    from pathlib import Path

    from ut.cli import cli_main

    path = cpuinfo(flags)
    real = P.resolve_precision
    monkeypatch.setattr("ut.cli.resolve_precision", lambda p, a: real(p, a, path))
    monkeypatch.setattr(P, "bf16_matmul_probe", _probe(True))
    cfg = Path(__file__).resolve().parents[2] / "experiments/ut_paper/configs/algorithmic_ut.yaml"
    base = ["--config", str(cfg), "--run.logger", "none", "--run.save_dir", str(tmp_path),
            "--trainer.accelerator", "cpu"]
    for extra in (["--trainer.precision", "auto"], ["--trainer.precision", "null"]):
        cli = cli_main([*base, *extra], run=False)
        assert cli.trainer.precision == expected
