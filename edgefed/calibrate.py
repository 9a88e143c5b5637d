"""Measure this host and describe it as a device profile, so the cost model can be checked against
real time: ``bench/calibration.py`` predicts MiniLM ZO steps on the ``host`` profile and times them.

What is measured (torch, at the thread count torch is using; see ``host_clock``): dense GEMM
FLOP/s at the shapes of a MiniLM-sized transformer layer (tokens x 384 x 1536); the sustained
FLOP/s of a whole transformers ``BertLayer`` at those shapes (FLOPs counted by
``FlopCounterMode`` as ``algorithms`` counts them, so softmax, layer norm and GELU time is in the
rate - the same meaning as the catalog's "sustained FLOP/s for dense transformer work", and the
profile's ``flops``); streaming memory bandwidth (a large tensor copy: read + write); and the
Gaussian random-number rate (``rng_flops``: numbers/s in the
FLOP-equivalents ``algorithms.work`` counts). Power cannot be measured from user space portably:
the profile carries stated placeholders to replace with the host's own figures.
"""
from __future__ import annotations

import os
import platform
import statistics
import time

import torch

from edgefed.algorithms.work import RNG_FLOPS_PER_NUMBER
from edgefed.devices.profile import DeviceProfile

HIDDEN, FFN = 384, 1536  # all-MiniLM-L6-v2


def host_clock():
    """The clock compute time is read from: with one torch thread, the process's CPU time, so a
    host shared with other jobs still measures its own compute; with several, wall-clock time."""
    return time.process_time if torch.get_num_threads() == 1 else time.perf_counter


def _sustained_seconds(fn, samples: int = 5, min_seconds: float = 0.4) -> float:
    """Seconds per call, the median of ``samples`` windows of at least ``min_seconds`` each (after
    one warm-up). A whole window, not the fastest single call: a virtual machine's burst clock
    made a best-of-5 of 30 ms calls read 1.4x the rate that the minutes-long client updates get."""
    clock = host_clock()
    fn()
    rates = []
    for _ in range(samples):
        calls, start = 0, clock()
        while (elapsed := clock() - start) < min_seconds or calls == 0:
            fn()
            calls += 1
        rates.append(elapsed / calls)
    return statistics.median(rates)


def gemm_flops(tokens: int = 768) -> float:
    """FLOP/s over the three GEMM shapes of one encoder layer (QKV/out, FFN up, FFN down)."""
    shapes = [(tokens, HIDDEN, HIDDEN), (tokens, HIDDEN, FFN), (tokens, FFN, HIDDEN)]
    mats = [(torch.randn(m, k), torch.randn(k, n)) for m, k, n in shapes]
    flops = sum(2.0 * m * k * n for m, k, n in shapes)

    def run():
        for a, b in mats:
            torch.mm(a, b)

    return flops / _sustained_seconds(run)


def transformer_flops(batch: int = 16, tokens: int = 48) -> float:
    """FLOP/s of one MiniLM-sized BERT encoder layer forward, FLOPs counted as the model's are."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertLayer

    layer = BertLayer(BertConfig(hidden_size=HIDDEN, num_attention_heads=12, intermediate_size=FFN,
                                 attn_implementation="sdpa")).eval()
    x = torch.randn(batch, tokens, HIDDEN)
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            layer(x)
        return counter.get_total_flops() / _sustained_seconds(lambda: layer(x))


def memory_bandwidth(mbytes: int = 256) -> float:
    """Bytes/s of a large copy, counting the read and the write."""
    src = torch.ones(mbytes * 2**20 // 4)
    dst = torch.empty_like(src)
    return 2.0 * src.numel() * 4 / _sustained_seconds(lambda: dst.copy_(src))


def rng_rate(numel: int = 2**24) -> float:
    """Gaussian numbers/s drawn the way ``algorithms.zo`` draws them (``normal_`` with a Generator)."""
    out = torch.empty(numel)
    gen = torch.Generator().manual_seed(0)
    return numel / _sustained_seconds(lambda: out.normal_(generator=gen))


def usable_memory_bytes() -> float:
    try:
        return 0.8 * os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8e9


def host_profile(power_active_w: float = 65.0, power_idle_w: float = 10.0) -> DeviceProfile:
    threads = torch.get_num_threads()
    gemm, flops, bandwidth, rng = gemm_flops(), transformer_flops(), memory_bandwidth(), rng_rate()
    where = f"measured by `edgefed calibrate` on {platform.node()} ({platform.processor() or platform.machine()}, " \
            f"torch {torch.__version__}, {threads} threads)"
    return DeviceProfile(
        name="host", device_class="server", description=f"this host, {threads} torch threads",
        flops={"fp32": flops}, mem_bandwidth=bandwidth, memory_bytes=usable_memory_bytes(),
        power_active_w=power_active_w, power_idle_w=power_idle_w, default_link="ethernet",
        rng_flops=rng * RNG_FLOPS_PER_NUMBER["gaussian"],
        sources={"flops": f"{where}: BERT layer forward ({HIDDEN}/{FFN}, 16 x 48 tokens), median of 5 windows of 0.4 s; "
                          f"bare GEMMs at these shapes: {gemm / 1e9:.1f} GFLOP/s",
                 "mem_bandwidth": f"{where}: 256 MiB copy, read + write",
                 "rng_flops": f"{where}: {rng / 1e6:.0f} M Gaussian numbers/s x {RNG_FLOPS_PER_NUMBER['gaussian']:g}",
                 "memory_bytes": "80% of physical memory (os.sysconf)",
                 "power_active_w": "PLACEHOLDER, not measured: replace with the host's power under load",
                 "power_idle_w": "PLACEHOLDER, not measured: replace with the host's idle power"})
