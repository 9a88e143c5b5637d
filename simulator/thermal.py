"""Thermal throttling of a fanless device: its burst rate for the first ``burst_s`` seconds of
load from cold, then ``sustained_fraction`` of it; idling drains the heat linearly, from hot to
cold in ``cool_s`` seconds. The heat is the seconds of burst already spent, so a phone picked in
back-to-back rounds starts the next computation hot. Devices without a ``thermal`` profile run
at their catalog rate whatever the load.
"""
from __future__ import annotations

from dataclasses import dataclass

from edgefed.devices.profile import ThermalProfile


@dataclass
class Thermal:
    profile: ThermalProfile | None
    heat_s: float = 0.0  # burst seconds spent: 0 cold .. burst_s hot
    at: float = 0.0  # simulated time heat_s refers to

    def cool(self, now: float) -> None:
        """Idle from ``at`` to ``now``: drain the heat."""
        if self.profile is not None:
            rate = self.profile.burst_s / self.profile.cool_s
            self.heat_s = max(0.0, self.heat_s - (now - self.at) * rate)
        self.at = now

    def duration(self, work_s: float) -> float:
        """Seconds that ``work_s`` seconds of burst-rate work take from the current heat."""
        if self.profile is None:
            return work_s
        left = self.profile.burst_s - self.heat_s
        return work_s if work_s <= left else left + (work_s - left) / self.profile.sustained_fraction

    def work_in(self, seconds: float) -> float:
        """Burst-rate work done in ``seconds`` of load from the current heat (inverse of duration)."""
        if self.profile is None:
            return seconds
        left = self.profile.burst_s - self.heat_s
        return seconds if seconds <= left else left + (seconds - left) * self.profile.sustained_fraction

    def load(self, seconds: float) -> None:
        """Computed for ``seconds`` from ``at``."""
        if self.profile is not None:
            self.heat_s = min(self.profile.burst_s, self.heat_s + seconds)
        self.at += seconds

    def state(self) -> list:
        return [self.heat_s, self.at]

    def load_state(self, state: list) -> None:
        self.heat_s, self.at = state
