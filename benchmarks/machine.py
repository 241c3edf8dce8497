"""What machine a result came from: CPU model, vector ISA, native bf16, a short machine-kind name, GPU if any.

Speed ratios differ between CPU kinds (an AVX-512/AMX Intel Xeon runs bf16 matmuls ~4.5x faster than fp32; an
AVX2-only AMD EPYC emulates bf16 ~40x SLOWER than fp32), so every results file records the kind it was measured on
and :func:`machine_kind` names a folder per kind (``benchmarks/results/<kind>/``): a run on one kind never
overwrites another kind's figures.

Native bf16 is decided by :mod:`ut.precision` (the repository's one resolver: a native-bf16 CPU flag confirmed by a
~1 ms matmul probe); this module only reports it.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path

import torch

from ut.precision import CPU_BF16_FLAGS, bf16_matmul_probe, cpu_flags

# the ISA features that decide which kernels run: x86 flag names as /proc/cpuinfo spells them
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
             "amx_bf16", "amx_int8")


def cpu_vendor_and_model(cpuinfo: str | Path = "/proc/cpuinfo") -> tuple[str, str]:
    """(vendor id, model name) from ``cpuinfo`` (x86 ``vendor_id`` / ``model name``; Arm ``CPU implementer``),
    falling back to :func:`platform.processor`; "unknown" where nothing says."""
    vendor, model = "unknown", platform.processor() or "unknown"
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return vendor, model
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key == "vendor_id" and vendor == "unknown":
            vendor = value
        elif key == "cpu implementer" and vendor == "unknown":
            vendor = f"arm-implementer-{value}"
        elif key == "model name" and value:
            model = value
            if vendor != "unknown":
                break
    return vendor, model


def isa_summary(flags: set[str]) -> dict[str, bool]:
    """Which of :data:`ISA_FLAGS` (and the native-bf16 flags of :mod:`ut.precision`) the CPU lists."""
    names = dict.fromkeys(ISA_FLAGS + CPU_BF16_FLAGS)
    return {name: name in flags for name in names}


def isa_tier(flags: set[str]) -> str:
    """The best vector tier the flags show, as a short name: amx, avx512bf16, avx512, avx2, arm-bf16, baseline."""
    if "amx_bf16" in flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512bf16"
    if "avx512f" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    if "bf16" in flags:  # Arm "Features"
        return "arm-bf16"
    return "baseline"


def _vendor_slug(vendor: str) -> str:
    known = {"GenuineIntel": "intel", "AuthenticAMD": "amd", "HygonGenuine": "hygon"}
    if vendor in known:
        return known[vendor]
    return re.sub(r"[^a-z0-9]+", "-", vendor.lower()).strip("-") or "unknown"


def machine_kind(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """A folder-safe name of the CPU kind, vendor and vector tier: ``intel-amx``, ``amd-avx2``, ..."""
    vendor, _ = cpu_vendor_and_model(cpuinfo)
    return f"{_vendor_slug(vendor)}-{isa_tier(cpu_flags(cpuinfo))}"


def cuda_kind(index: int = 0) -> str:
    """A folder-safe name of a CUDA device (``cuda-nvidia-h100-80gb-hbm3``); needs a CUDA device."""
    return "cuda-" + re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(index).lower()).strip("-")


def cpu_bf16_native(cpuinfo: str | Path = "/proc/cpuinfo") -> tuple[bool, str]:
    """(native, reason) for bf16 on this CPU: a native flag AND the :func:`ut.precision.bf16_matmul_probe`.

    The same rule as ``precision: auto`` (:func:`ut.precision.resolve_precision`), so the suite measures bf16
    exactly where the training CLI would pick it."""
    flags = sorted(cpu_flags(cpuinfo) & set(CPU_BF16_FLAGS))
    if not flags:
        return False, f"no native bf16 flag ({'/'.join(CPU_BF16_FLAGS)}) in {cpuinfo}: bf16 is emulated here"
    native, fp32_s, bf16_s = bf16_matmul_probe()
    timing = f"256x256 matmul fp32 {fp32_s * 1e3:.3f} ms, bf16 {bf16_s * 1e3:.3f} ms"
    if native:
        return True, f"{', '.join(flags)} listed and confirmed by the probe ({timing})"
    return False, f"{', '.join(flags)} listed but bf16 is slower in the probe ({timing})"


def machine_description(cpuinfo: str | Path = "/proc/cpuinfo") -> dict[str, object]:
    """CPU model and kind, ISA flags, native bf16 and why, cores, load, torch and its threads, GPU if any."""
    vendor, cpu_model = cpu_vendor_and_model(cpuinfo)
    if cpu_model == "unknown":
        try:
            lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
            cpu_model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                              if line.startswith("Model name:")), cpu_model)
        except (OSError, subprocess.SubprocessError):
            pass
    flags = cpu_flags(cpuinfo)
    native, reason = cpu_bf16_native(cpuinfo)
    info: dict[str, object] = {
        "machine_kind": machine_kind(cpuinfo),
        "cpu_vendor": vendor,
        "cpu_model": cpu_model,
        "isa": isa_summary(flags),
        "isa_tier": isa_tier(flags),
        "bf16_native": native,
        "bf16_reason": reason,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_kind"] = cuda_kind(0)
    return info
