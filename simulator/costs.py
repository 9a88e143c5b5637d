"""Counted work -> seconds on a device: a roofline per op class (DESIGN section 6).

``time = sum over op classes of max(flops / sustained FLOP/s, bytes / memory bandwidth)``.
"""
from __future__ import annotations

from algorithms.work import Work
from devices.profile import DeviceProfile


def compute_seconds(work: Work, device: DeviceProfile, dtype: str = "fp32") -> float:
    peak = device.peak_flops(dtype)
    return sum(max(op.flops / peak, op.bytes / device.mem_bandwidth) for op in work.ops.values())


def fits_in_memory(peak_bytes: int, device: DeviceProfile) -> bool:
    return peak_bytes <= device.memory_bytes
