"""Thermal throttling of a fanless device: its burst rate for the first ``burst_s`` seconds of
load from cold, then ``sustained_fraction`` of it; idling drains the heat linearly, from hot to
cold in ``cool_s`` seconds. The heat is the seconds of burst already spent, so a phone picked in
back-to-back rounds starts the next computation hot. Devices without a ``thermal`` profile run
at their catalog rate whatever the load: ``STEADY``, no burst to spend and all of it sustained.

The state is the heat and the time it refers to (``at``); the functions take a profile and the
state as floats or arrays alike (``simulator.energy`` says why).
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

STEADY = SimpleNamespace(burst_s=0.0, sustained_fraction=1.0, cool_s=1.0, power_exponent=1.0)


def cooled(profile, heat_s, at, now):
    """The heat at ``now`` after idling since ``at``."""
    return np.maximum(0.0, heat_s - (now - at) * (profile.burst_s / profile.cool_s))


def duration(profile, heat_s, work_s):
    """Seconds that ``work_s`` seconds of burst-rate work take from heat ``heat_s``."""
    left = profile.burst_s - heat_s
    return np.where(work_s > left, left + (work_s - left) / profile.sustained_fraction, work_s)


def work_in(profile, heat_s, seconds):
    """Burst-rate work done in ``seconds`` of load from heat ``heat_s`` (inverse of ``duration``)."""
    left = profile.burst_s - heat_s
    return np.where(seconds > left, left + (seconds - left) * profile.sustained_fraction, seconds)


def throttled_s(profile, heat_s, seconds):
    """The part of ``seconds`` of load from heat ``heat_s`` spent throttled (past the burst left)."""
    return np.maximum(0.0, seconds - np.maximum(0.0, profile.burst_s - heat_s))


def heated(profile, heat_s, seconds):
    """The heat after computing for ``seconds`` from heat ``heat_s``."""
    return np.minimum(profile.burst_s, heat_s + seconds)
