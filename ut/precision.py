"""``precision: auto``: bf16 mixed precision only where the hardware runs bf16 natively, fp32 everywhere else.

bf16-mixed pays off only with native bf16 matrix units: on a CUDA device with bf16 support (compute capability
>= 8.0) or on a CPU with AVX512-BF16 / AMX-BF16 (x86) or the BF16 extension (Arm). Without them PyTorch emulates
bf16 matmuls and is far SLOWER than fp32 (measured on an AVX2-only AMD EPYC: fp32 ~52 GFLOP/s a core, bf16
~1.3 GFLOP/s, 41x slower). :func:`resolve_precision` therefore maps ``"auto"`` (and an unset precision) to

- ``"bf16-mixed"`` on CUDA when ``torch.cuda.is_bf16_supported(including_emulation=False)``;
- ``"bf16-mixed"`` on CPU when ``/proc/cpuinfo`` lists a native bf16 flag AND a ~1 ms matmul probe confirms that
  a bf16 matmul is no slower than 1.5x the fp32 one (a flag alone does not prove that the kernels use it);
- ``"32-true"`` otherwise (MPS included: its bf16 autocast support varies across macOS versions).

fp16 is never chosen: it needs loss scaling, and on CPU it is emulated. Any explicit value (``"32-true"``,
``"bf16-mixed"``, ``"16-mixed"``, ...) is returned unchanged. The choice and its reason are logged (logger
``ut.precision``) by :func:`resolve_precision` and kept in :data:`LAST_CHOICE` for results files.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

AUTO = "auto"
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # x86 flags; "bf16" is the Arm "Features" entry
PROBE_MAX_SLOWDOWN = 1.5  # a bf16 matmul may take at most this times the fp32 one to count as native


@dataclass(frozen=True)
class PrecisionChoice:
    """What :func:`resolve_precision` picked and why."""

    requested: str | int | None
    precision: str | int
    reason: str


LAST_CHOICE: PrecisionChoice | None = None


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags of the first processor entry (``flags`` on x86, ``Features`` on Arm); empty when the
    file is absent (macOS, Windows)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return set(value.split())
    return set()


@functools.lru_cache(maxsize=1)
def bf16_matmul_probe(n: int = 256, repeats: int = 3) -> tuple[bool, float, float]:
    """Time an ``n x n`` fp32 and bf16 matmul on CPU (best of ``repeats``); ``(native, fp32_s, bf16_s)`` where
    native means bf16 is at most :data:`PROBE_MAX_SLOWDOWN` times slower. Cached: it runs once a process."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    timings = []
    for x, y in ((a, b), (a.bfloat16(), b.bfloat16())):
        x @ y  # warm-up (kernel selection)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            x @ y
            best = min(best, time.perf_counter() - start)
        timings.append(best)
    fp32_s, bf16_s = timings
    return bf16_s <= PROBE_MAX_SLOWDOWN * fp32_s, fp32_s, bf16_s


def _cuda_choice() -> tuple[str, str]:
    import torch

    name = torch.cuda.get_device_name()
    cap = ".".join(map(str, torch.cuda.get_device_capability()))
    if torch.cuda.is_bf16_supported(including_emulation=False):
        return "bf16-mixed", f"CUDA device {name} (compute capability {cap}) runs bf16 natively"
    return "32-true", f"CUDA device {name} (compute capability {cap}) has no native bf16"


def _cpu_choice(cpuinfo: str | Path) -> tuple[str, str]:
    flags = sorted(cpu_flags(cpuinfo) & set(CPU_BF16_FLAGS))
    if not flags:
        return "32-true", f"the CPU lists no native bf16 flag ({'/'.join(CPU_BF16_FLAGS)}) in {cpuinfo}"
    native, fp32_s, bf16_s = bf16_matmul_probe()
    timing = f"256x256 matmul fp32 {fp32_s * 1e3:.3f} ms, bf16 {bf16_s * 1e3:.3f} ms"
    if native:
        return "bf16-mixed", f"the CPU has {', '.join(flags)} and the probe confirms it ({timing})"
    return "32-true", f"the CPU lists {', '.join(flags)} but bf16 is slower in the probe ({timing})"


def resolve_precision(precision: str | int | None = AUTO, accelerator: object = "auto",
                      cpuinfo: str | Path = "/proc/cpuinfo") -> str | int:
    """The Lightning ``precision`` to use: ``precision`` itself unless it is ``"auto"`` or None, else the
    hardware's choice (see the module docstring) for ``accelerator`` (``"auto"``, ``"cpu"``, ``"gpu"``,
    ``"cuda"``, ``"mps"`` or an Accelerator instance)."""
    global LAST_CHOICE
    if precision not in (None, AUTO):
        LAST_CHOICE = PrecisionChoice(precision, precision, "set in the config")
        return precision
    import torch

    acc = accelerator if isinstance(accelerator, str) else type(accelerator).__name__.lower()
    acc = acc.lower()
    cuda = torch.cuda.is_available()
    if acc.startswith(("gpu", "cuda")) or (acc == "auto" and cuda):
        value, reason = _cuda_choice() if cuda else ("32-true", f"accelerator {acc!r} but no CUDA device")
    elif acc.startswith("mps") or (acc == "auto" and torch.backends.mps.is_available()):
        value, reason = "32-true", "MPS device: bf16 autocast support varies, fp32 is the safe choice"
    elif acc.startswith("cpu") or acc == "auto":
        value, reason = _cpu_choice(cpuinfo)
    else:
        value, reason = "32-true", f"accelerator {acc!r}: no bf16 rule for it"
    LAST_CHOICE = PrecisionChoice(precision, value, reason)
    log.info("precision %s -> %s: %s", precision, value, reason)
    return value
