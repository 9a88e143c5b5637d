"""Counted work: what a client did in a round, independent of how long it took.

The simulator turns a ``Work`` into time and energy with a device profile (roofline per op class);
algorithms only count. Op classes:

- ``forward`` / ``backward``: model passes; FLOPs measured with ``FlopCounterMode`` per shape,
  bytes = weights read + activation traffic.
- ``elementwise``: parameter passes (perturb, restore, update, copy): bytes moved, 2 FLOP/element.
- ``rng``: random numbers drawn for perturbation directions (``RNG_FLOPS_PER_NUMBER`` each).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

OP_KINDS = ("forward", "backward", "elementwise", "rng")

# Cost of one Gaussian sample, in FLOP-equivalents: a counter-based generator (Philox, ~10 integer
# ops per 32-bit draw) plus Box-Muller (log, sqrt, sin/cos ~ 20 ops). Uniform draws (Rademacher)
# cost a fraction of a bit each. Stated assumption; `edgefed calibrate` measures it on a host.
RNG_FLOPS_PER_NUMBER = {"gaussian": 30.0, "rademacher": 1.0}


@dataclass
class OpCount:
    flops: float = 0.0
    bytes: float = 0.0

    def __iadd__(self, other: "OpCount") -> "OpCount":
        self.flops += other.flops
        self.bytes += other.bytes
        return self


@dataclass
class Work:
    """FLOPs and bytes per op class, forward passes per block, and the method's peak memory."""

    ops: dict[str, OpCount] = field(default_factory=lambda: {k: OpCount() for k in OP_KINDS})
    passes: Counter = field(default_factory=Counter)
    peak_memory_bytes: int = 0

    def add(self, kind: str, flops: float = 0.0, bytes: float = 0.0) -> None:
        self.ops[kind] += OpCount(flops, bytes)

    def add_forward(self, block: str, flops: float, bytes: float, count: int = 1) -> None:
        self.passes[block] += count
        self.add("forward", flops * count, bytes * count)

    def add_elementwise(self, numel: int, elem_bytes: int, tensors_touched: int = 2) -> None:
        """One pass over ``numel`` parameters reading/writing ``tensors_touched`` tensors."""
        self.add("elementwise", 2.0 * numel, float(numel * elem_bytes * tensors_touched))

    def add_rng(self, numel: int, distribution: str, elem_bytes: int = 4) -> None:
        self.add("rng", RNG_FLOPS_PER_NUMBER[distribution] * numel, float(numel * elem_bytes))

    def merge(self, other: "Work") -> "Work":
        for kind, count in other.ops.items():
            self.ops[kind] += count
        self.passes.update(other.passes)
        self.peak_memory_bytes = max(self.peak_memory_bytes, other.peak_memory_bytes)
        return self

    @property
    def flops(self) -> float:
        return sum(op.flops for op in self.ops.values())
