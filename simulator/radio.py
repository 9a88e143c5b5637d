"""One device's radio as a state machine over the whole timeline (Huang et al., MobiSys 2012):
idle -> promotion -> connected -> tail -> idle.

Rounds do not reset it: a transfer that starts inside the tail left by an earlier one (the
previous phase or the previous round) pays no promotion, and the part of that tail it cuts short
is refunded, so tails never overlap in the energy. A tail is charged in full when it starts
(nothing may follow it: the device may never be picked again) and a later transfer refunds what
it did not run. Outside transfers and tails the radio draws the link's ``idle_w``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from edgefed.devices.profile import LinkProfile


@dataclass
class Radio:
    link: LinkProfile
    tail_from: float | None = None  # when the last transfer ended (None: the radio never woke)
    tail_until: float | None = None  # when its tail ends, or the time a later transfer cut it

    def begin(self, now: float) -> tuple[bool, float]:
        """A transfer starts at ``now``: whether it pays a promotion, and the energy of the
        already-charged tail it cuts short (to be subtracted)."""
        if self.tail_until is not None and now <= self.tail_until:
            refund = (self.tail_until - now) * self.link.tail_w
            self.tail_until = now
            return False, refund
        return self.link.promotion_s > 0, 0.0

    def end(self, now: float) -> float:
        """A transfer ended (or was cut off) at ``now``: its full tail's energy."""
        self.tail_from, self.tail_until = now, now + self.link.tail_s
        return self.link.tail_s * self.link.tail_w

    def idle_j(self, start: float, stop: float) -> float:
        """Idle power over ``[start, stop]``, a span with no transfer in it, less its overlap
        with the last tail."""
        tail = 0.0
        if self.tail_from is not None:
            tail = max(0.0, min(stop, self.tail_until) - max(start, self.tail_from))
        return self.link.idle_w * max(0.0, stop - start - tail)

    def state(self) -> list[float]:
        """[tail_from, tail_until]; NaN while the radio never woke."""
        return [math.nan if v is None else v for v in (self.tail_from, self.tail_until)]

    def load_state(self, state: list[float]) -> None:
        self.tail_from, self.tail_until = (None if math.isnan(v) else v for v in state)
