"""When devices can take part, when they fail mid-round, and how much slower than their profile
they run (stragglers).

Availability kinds (``AvailabilitySpec.kind``):
- ``always``: every device is on.
- ``bernoulli``: each device is on for a round with probability ``p``, drawn per (round, attempt)
  (one generator per draw for the whole fleet, so the coins cost one vector operation).
- ``diurnal``: each device is on for ``on_hours`` a day (e.g. charging overnight, the FLASH traces
  FedScale uses: available while charging), starting at a per-device hour drawn uniformly.
- ``trace``: a CSV ``client,start_s,end_s`` of on intervals in simulated seconds; a device with no
  row is always on.
- ``charging_wifi``: the production policy (Bonawitz et al., MLSys 2019): a device trains only
  while charging, on unmetered WiFi and idle. A diurnal CSV ``user,start_h,end_h`` (default
  ``devices/traces/charging_wifi.csv``) lists each kind of user's daily windows; every
  battery-powered device draws a user and a shift of up to ``jitter_h`` hours, so the fleet's
  participation follows the time of day (``start_hour`` at simulated time 0). Mains-powered
  devices (no battery) are always eligible.
On top of any kind, ``failures_per_hour`` makes devices fail while working (a Poisson process), so
dropouts land in the middle of a transfer or a computation. Every draw derives from the scenario
seed, so a run is deterministic. Questions about the fleet take arrays of device ids and answer
with arrays, so a round costs vector operations, not a Python loop over every device.
"""
from __future__ import annotations

import bisect
import csv
import math
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat

from edgefed.streams import Stream, rng

DAY_S = 86400.0
DEFAULT_DAILY_TRACE = Path(__file__).with_name("traces") / "charging_wifi.csv"


class AvailabilitySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    kind: str = Field("always", pattern="^(always|bernoulli|diurnal|trace|charging_wifi)$")
    p: float = Field(0.8, gt=0.0, le=1.0, description="bernoulli: probability a device is on for a round")
    on_hours: float = Field(8.0, gt=0.0, le=24.0, description="diurnal: hours on per day")
    file: str | None = Field(None, description="trace: CSV client,start_s,end_s of on intervals; "
                             "charging_wifi: CSV user,start_h,end_h of daily windows (default: the shipped one)")
    start_hour: float = Field(0.0, ge=0.0, lt=24.0, description="charging_wifi: local hour at simulated time 0")
    jitter_h: float = Field(1.0, ge=0.0, le=12.0, description="charging_wifi: per-device shift of its "
                            "user's windows, uniform in +-jitter_h hours")
    failures_per_hour: NonNegativeFloat = Field(0.0, description="rate of failures while working")
    retry_s: PositiveFloat = Field(60.0, description="wait before selecting again when no device is on")


class StragglerSpec(BaseModel):
    """Compute time = profile time x slowdown; slowdown ~ lognormal(0, ``sigma``) per (round, client),
    times ``factor`` with probability ``probability`` (a device busy with something else). A slowdown
    above 1 is other work on the device: FL is charged its share of the busy device's power
    (docs/devices.md)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    sigma: NonNegativeFloat = 0.0
    probability: float = Field(0.0, ge=0.0, le=1.0)
    factor: float = Field(4.0, ge=1.0)


def read_trace(path: Path) -> dict[int, list[tuple[float, float]]]:
    """On intervals per client, sorted; raises ValueError naming the file and line."""
    out: dict[int, list[tuple[float, float]]] = {}
    with path.open(newline="") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            try:
                start, end = float(row["start_s"]), float(row["end_s"])
                if not 0 <= start < end:
                    raise ValueError
                out.setdefault(int(row["client"]), []).append((start, end))
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"{path}: line {line}: expected client,start_s,end_s with 0 <= start_s < end_s") from None
    return {c: sorted(v) for c, v in out.items()}


def read_daily_trace(path: Path) -> dict[str, list[tuple[float, float]]]:
    """Daily windows (hours) per user, sorted; raises ValueError naming the file, line and field
    for a negative, out-of-day or overlapping interval. Lines starting with # are comments."""
    out: dict[str, list[tuple[float, float, int]]] = {}
    with path.open(newline="") as fh:
        rows = csv.DictReader(line for line in fh if not line.lstrip().startswith("#"))
        for line, row in enumerate(rows, start=2):
            try:
                user, start, end = row["user"].strip(), float(row["start_h"]), float(row["end_h"])
            except (KeyError, TypeError, ValueError, AttributeError):
                raise ValueError(f"{path}: row {line}: expected user,start_h,end_h") from None
            if not 0 <= start < end <= 24:
                raise ValueError(f"{path}: row {line}: start_h..end_h: {start:g}..{end:g} is negative or outside "
                                 "0..24 (split a window that crosses midnight in two)")
            out.setdefault(user, []).append((start, end, line))
    for user, windows in out.items():
        windows.sort()
        for (s0, e0, _), (s1, e1, line) in zip(windows, windows[1:]):
            if s1 < e0:
                raise ValueError(f"{path}: row {line}: start_h..end_h: {s1:g}..{e1:g} overlaps {s0:g}..{e0:g} "
                                 f"of user {user!r}")
    if not out:
        raise ValueError(f"{path}: no windows")
    return {user: [(s, e) for s, e, _ in windows] for user, windows in out.items()}


def daily_windows(users: dict[str, list[tuple[float, float]]], on_battery: list[bool], spec: AvailabilitySpec,
                  seed: int) -> dict[int, list[tuple[float, float]]]:
    """Each battery-powered device's windows in simulated seconds modulo a day, over two days
    with touching windows merged (so one crossing midnight is one window)."""
    draw = rng(seed, Stream.DAILY_USERS)
    names = sorted(users)
    out = {}
    for client, battery in enumerate(on_battery):
        user, shift_h = names[draw.integers(len(names))], draw.uniform(-spec.jitter_h, spec.jitter_h)
        if not battery:
            continue
        pieces = []
        for start_h, end_h in users[user]:
            s = ((start_h + shift_h - spec.start_hour) * 3600.0) % DAY_S
            e = s + (end_h - start_h) * 3600.0
            pieces += [(s, e), (s + DAY_S, e + DAY_S), (s - DAY_S, e - DAY_S)]
        merged: list[list[float]] = []
        for s, e in sorted(pieces):
            if merged and s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        out[client] = [(s, e) for s, e in merged if e > 0 and s < 2 * DAY_S]
    return out


class Availability:
    """Answers, for devices at a simulated time, whether they are on and until when."""

    def __init__(self, spec: AvailabilitySpec, num_clients: int, seed: int,
                 trace: dict[int, list[tuple[float, float]]] | None = None,
                 daily: dict[int, list[tuple[float, float]]] | None = None):
        self.spec, self.seed, self.num_clients = spec, seed, num_clients
        self.trace = trace or {}
        self.traced = np.array(sorted(self.trace), dtype=np.int64)
        self.daily = daily or {}  # charging_wifi: daily_windows()
        self.windowed = np.array(sorted(self.daily), dtype=np.int64)
        self.phase_s = rng(seed, Stream.DIURNAL_PHASE).uniform(0.0, DAY_S, num_clients)

    def on(self, clients: np.ndarray, t: float, draw: tuple[int, int]) -> np.ndarray:
        """Whether each of ``clients`` is on at ``t``; ``draw`` = (round, attempt) seeds the
        Bernoulli coins."""
        kind = self.spec.kind
        if kind == "bernoulli":
            return rng(self.seed, Stream.BERNOULLI_ON, *draw).random(self.num_clients)[clients] < self.spec.p
        if kind == "diurnal":
            return (t - self.phase_s[clients]) % DAY_S < self.spec.on_hours * 3600.0
        on = np.ones(len(clients), dtype=bool)
        if kind == "trace":
            for i in self._named(clients, self.traced):
                on[i] = any(s <= t < e for s, e in self.trace[int(clients[i])])
        elif kind == "charging_wifi":
            for i in self._named(clients, self.windowed):
                on[i] = self._daily_window(int(clients[i]), t) is not None
        return on

    @staticmethod
    def _named(clients: np.ndarray, named: np.ndarray) -> np.ndarray:
        """Positions in ``clients`` of the devices a trace or a daily schedule names (others are
        always on)."""
        if not named.size:
            return np.empty(0, dtype=np.int64)
        return np.flatnonzero(np.isin(clients, named))

    def _daily_window(self, client: int, t: float) -> tuple[float, float] | None:
        """The window holding ``t``, in absolute simulated seconds (None: off)."""
        day = t - t % DAY_S
        return next(((day + s, day + e) for s, e in self.daily[client] if s <= t % DAY_S < e), None)

    def off_at(self, client: int, t: float, round: int) -> float:
        """When a device that is on at ``t`` goes off: its window ends or it fails."""
        end = math.inf
        if self.spec.kind == "diurnal":
            end = t + self.spec.on_hours * 3600.0 - (t - self.phase_s[client]) % DAY_S
        elif self.spec.kind == "trace" and client in self.trace:
            end = next((e for s, e in self.trace[client] if s <= t < e), t)
        elif self.spec.kind == "charging_wifi" and client in self.daily:
            end = (self._daily_window(client, t) or (t, t))[1]
        if self.spec.failures_per_hour > 0:
            mean_up_s = 3600.0 / self.spec.failures_per_hour
            end = min(end, t + rng(self.seed, Stream.FAILURES, client, round).exponential(mean_up_s))
        return end

    def next_on(self, clients: np.ndarray, t: float) -> np.ndarray:
        """The earliest time >= ``t`` each of ``clients`` may be on (NaN: never again)."""
        if self.spec.kind == "diurnal":
            into = (t - self.phase_s[clients]) % DAY_S
            return np.where(into < self.spec.on_hours * 3600.0, t, t + DAY_S - into)
        out = np.full(len(clients), t)
        if self.spec.kind == "trace":
            for i in self._named(clients, self.traced):
                intervals = self.trace[int(clients[i])]
                j = bisect.bisect_right([s for s, _ in intervals], t)
                if not (j and intervals[j - 1][1] > t):
                    out[i] = intervals[j][0] if j < len(intervals) else np.nan
        elif self.spec.kind == "charging_wifi":
            into = t % DAY_S
            for i in self._named(clients, self.windowed):
                client = int(clients[i])
                if self._daily_window(client, t) is None:
                    out[i] = t + min(s for s, _ in self.daily[client] if s > into) - into
        return out


def slowdown(spec: StragglerSpec, seed: int, client: int, round: int) -> float:
    if spec.sigma == 0 and spec.probability == 0:
        return 1.0
    draw = rng(seed, Stream.STRAGGLERS, client, round)
    factor = draw.lognormal(0.0, spec.sigma)
    return factor * (spec.factor if draw.random() < spec.probability else 1.0)
