"""What the CPU can do fast, as the libraries that run the model will actually use it.

The instruction sets in ``/proc/cpuinfo`` are what the chip has; torch's ATen kernels use at most
``torch.backends.cpu.get_cpu_capability()`` (capped by ``ATEN_CPU_CAPABILITY``) and oneDNN, which runs
its bf16 and int8 matrix products, at most ``ONEDNN_MAX_CPU_ISA`` (or ``DNNL_MAX_CPU_ISA``). A fast path
counts only when the chip has it and neither cap is below it: bf16 needs AVX512-BF16 or AMX-BF16
(elsewhere torch emulates it, ~5x slower than fp32), int8 products through ``torch._int_mm`` need
AVX512-VNNI, AVX-VNNI or AMX-INT8 (elsewhere they run far slower than fp32).
:func:`probe` answers once per process; :func:`caps_from` is the same decision on given inputs.
"""

from __future__ import annotations

import functools
import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path

import torch

FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)
"""The ``/proc/cpuinfo`` flags that decide a dtype or runtime here (reported by ``guardrail doctor``)."""

ATEN_LEVELS = {"DEFAULT": 0, "AVX2": 1, "AVX512": 2}
"""x86 ATen capabilities, lowest first (other architectures report theirs: ``NEON``, ``SVE256``...)."""

ONEDNN_LEVELS = {
    "SSE41": 0,
    "AVX": 1,
    "AVX2": 2,
    "AVX2_VNNI": 3,
    "AVX2_VNNI_2": 4,
    "AVX512_CORE": 5,
    "AVX512_CORE_VNNI": 6,
    "AVX512_CORE_BF16": 7,
    "AVX512_CORE_FP16": 8,
    "AVX10_1_512": 8,
    "AVX512_CORE_AMX": 9,
    "AVX10_1_512_AMX": 9,
    "AVX512_CORE_AMX_FP16": 10,
    "AVX10_1_512_AMX_FP16": 10,
    "AVX10_2_512": 11,
    "AVX10_2_512_AMX_2": 12,
}
"""oneDNN's ``ONEDNN_MAX_CPU_ISA`` values, lowest first (``ALL``/``DEFAULT``/unknown: no cap)."""

# fast path -> (flag it needs, least ATen capability, least oneDNN cap), best first
_INT8 = (
    ("amx_int8", "AVX512", "AVX512_CORE_AMX"),
    ("avx512_vnni", "AVX512", "AVX512_CORE_VNNI"),
    ("avx_vnni", "AVX2", "AVX2_VNNI"),
)
_BF16 = (
    ("amx_bf16", "AVX512", "AVX512_CORE_AMX"),
    ("avx512_bf16", "AVX512", "AVX512_CORE_BF16"),
)


@dataclass(frozen=True, slots=True)
class CpuCaps:
    """The CPU as the model's libraries see it."""

    arch: str
    """``platform.machine()``: ``x86_64``, ``aarch64``..."""
    model: str
    """The CPU's model name, or ``""`` when unknown."""
    capability: str
    """torch's ATen capability (``AVX512``, ``AVX2``, ``DEFAULT``...), after ``ATEN_CPU_CAPABILITY``."""
    onednn_max_isa: str | None
    """``ONEDNN_MAX_CPU_ISA`` (or ``DNNL_MAX_CPU_ISA``) as set, upper case; None: not set."""
    flags: tuple[str, ...] | None
    """Which of :data:`FLAGS` the CPU has; None where the flags cannot be read (not Linux)."""
    int8: str | None
    """The fast int8 dot product torch will use (``amx_int8``, ``avx512_vnni``, ``avx_vnni``), or None."""
    bf16: str | None
    """The fast bf16 product torch will use (``amx_bf16``, ``avx512_bf16``), or None."""
    int8_why: str
    bf16_why: str

    @property
    def fast_int8(self) -> bool:
        return self.int8 is not None

    @property
    def fast_bf16(self) -> bool:
        return self.bf16 is not None


def _onednn_cap(value: str | None) -> int | None:
    if value is None:
        return None
    return ONEDNN_LEVELS.get(value.upper())  # ALL, DEFAULT or an unknown name: oneDNN runs uncapped


def _best(
    table: tuple[tuple[str, str, str], ...],
    flags: tuple[str, ...] | None,
    capability: str,
    onednn: str | None,
) -> tuple[str | None, str]:
    """The best entry of ``table`` the CPU has and no cap forbids, with a reason either way."""
    if flags is None:
        return None, "CPU flags unknown (no /proc/cpuinfo)"
    had = [t for t in table if t[0] in flags]
    if not had:
        return None, f"no {' or '.join(t[0] for t in reversed(table))}"
    aten = ATEN_LEVELS.get(capability.upper(), -1)
    cap = _onednn_cap(onednn)
    for flag, least_aten, least_onednn in had:
        if aten >= ATEN_LEVELS[least_aten] and (cap is None or cap >= ONEDNN_LEVELS[least_onednn]):
            return flag, flag
    flag, least_aten, least_onednn = had[0]
    below = [f"torch capability {capability}"] if aten < ATEN_LEVELS[least_aten] else []
    if cap is not None and cap < ONEDNN_LEVELS[least_onednn]:
        below.append(f"ONEDNN_MAX_CPU_ISA={onednn}")
    return None, f"{flag} capped off by {' and '.join(below)}"


def caps_from(
    flags: tuple[str, ...] | frozenset[str] | set[str] | None,
    capability: str,
    onednn_max_isa: str | None = None,
    *,
    arch: str = "x86_64",
    model: str = "",
) -> CpuCaps:
    """:class:`CpuCaps` of a CPU with ``flags`` (any superset of the ones in :data:`FLAGS`; None: unknown),
    torch capability ``capability`` and oneDNN cap ``onednn_max_isa``."""
    have = None if flags is None else tuple(f for f in FLAGS if f in set(flags))
    onednn = onednn_max_isa.upper() if onednn_max_isa else None
    int8, int8_why = _best(_INT8, have, capability, onednn)
    bf16, bf16_why = _best(_BF16, have, capability, onednn)
    return CpuCaps(arch, model, capability, onednn, have, int8, bf16, int8_why, bf16_why)


def _cpuinfo() -> tuple[set[str] | None, str]:
    """The first processor's flags and model name from ``/proc/cpuinfo`` (None, "" where unreadable)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None, ""
    flags = re.search(r"^(?:flags|Features)\s*:\s*(.*)$", text, re.MULTILINE)
    model = re.search(r"^model name\s*:\s*(.*)$", text, re.MULTILINE)
    return (
        set(flags.group(1).split()) if flags else None,
        model.group(1).strip() if model else "",
    )


@functools.cache
def probe() -> CpuCaps:
    """This process's CPU (read once; ``probe.cache_clear()`` reads it again)."""
    flags, model = _cpuinfo()
    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return caps_from(
        flags,
        torch.backends.cpu.get_cpu_capability(),
        onednn,
        arch=platform.machine(),
        model=model or platform.processor(),
    )
