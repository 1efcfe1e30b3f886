"""What this CPU does fast: bf16 matrix products need bf16 units (AVX512-BF16 or AMX-BF16); without them PyTorch
emulates bf16 and a forward pass is one to two orders of magnitude slower than in fp32 (1.2 against 164 GFLOP/s
measured on an AMD EPYC host without them)."""
from __future__ import annotations

from pathlib import Path

import torch

BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags (Linux), empty where they cannot be read."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return set()
    line = next((row for row in text.splitlines() if row.startswith(("flags", "Features"))), "")
    return set(line.split(":", 1)[1].split()) if ":" in line else set()


def has_bf16_units(flags: set[str] | None = None) -> bool:
    return bool(set(BF16_FLAGS) & (cpu_flags() if flags is None else flags))


def slow_dtype_warning(device: torch.device, dtype: torch.dtype, flags: set[str] | None = None) -> str | None:
    """The warning for bf16 on a CPU without bf16 units (fp32 is the fast dtype there), None otherwise. On a
    machine whose flags cannot be read (not Linux) nothing is said."""
    flags = cpu_flags() if flags is None else flags
    if device.type != "cpu" or dtype != torch.bfloat16 or not flags or has_bf16_units(flags):
        return None
    return ("--dtype bfloat16 on this CPU, which has no bf16 matrix units (AVX512-BF16 or AMX-BF16), is about a "
            "hundred times slower than float32; --dtype float32 is the fast dtype here (and gives the numbers in "
            "full precision)")
