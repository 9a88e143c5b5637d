"""Counted work -> seconds on a device: a roofline per op class (docs/design.md, section 5).

``time = sum over op classes of max(flops / sustained FLOP/s, bytes / memory bandwidth)``; random
numbers run at the device's own measured ``rng_flops`` where it has one (a CPU's RNG is far slower
than its GEMM rate suggests).
"""
from __future__ import annotations

from edgefed.algorithms.work import Work
from edgefed.devices.profile import DeviceProfile


def compute_seconds(work: Work, device: DeviceProfile, dtype: str = "fp32") -> float:
    peak = device.peak_flops(dtype)
    rates = {"rng": device.rng_flops or peak}
    return sum(max(op.flops / rates.get(kind, peak), op.bytes / device.mem_bandwidth)
               for kind, op in work.ops.items())


def fits_in_memory(peak_bytes: int, device: DeviceProfile) -> bool:
    return peak_bytes <= device.memory_bytes
