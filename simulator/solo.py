"""The timelines of a round's clients that are alone on their links, in closed form over arrays.

A client without a cell crosses only its own access link, one transfer at a time, so no other flow
ever shares it: its download gets the link's whole capacity after promotion + latency, its
computation takes what its heat allows, its upload likewise, and its radio and heat follow from
those instants. With an unlimited battery share and no off time in the round nothing can cut it
short, so the engine computes a thousand such clients with a few vector operations instead of
SimPy events. Every expression below is the event path's (``Engine.client_process``,
``Network``, ``Radio``, ``Thermal``, ``energy.radio_energy``) in the same order of floating-point
operations, so both paths give the same bits; tests compare them on small fleets.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgefed.simulator.fleet import Fleet

LINK_FIELDS = ("latency_s", "loss", "promotion_s", "promotion_w", "tail_s", "tail_w", "idle_w", "power_base_w",
               "power_up_w_per_mbps", "power_down_w_per_mbps")


class GroupTable:
    """Per fleet group, the link and device figures a timeline needs, as arrays indexed by group."""

    def __init__(self, fleet: Fleet):
        groups = fleet.groups
        self.solo = np.array([g.cell is None for g in groups])
        self.link = {name: np.array([getattr(g.link, name) for g in groups], dtype=float) for name in LINK_FIELDS}
        self.power_active_w = np.array([g.device.power_active_w for g in groups], dtype=float)
        self.power_idle_w = np.array([g.device.power_idle_w for g in groups], dtype=float)
        thermal = [g.device.thermal for g in groups]
        self.throttles = np.array([t is not None for t in thermal])
        self.burst_s = np.array([t.burst_s if t else 1.0 for t in thermal], dtype=float)
        self.cool_rate = np.array([t.burst_s / t.cool_s if t else 0.0 for t in thermal], dtype=float)
        self.sustained = np.array([t.sustained_fraction if t else 1.0 for t in thermal], dtype=float)


@dataclass
class Timelines:
    """The clients' phases up to their upload's end, and their radio/heat state after it."""

    download_s: np.ndarray
    compute_s: np.ndarray
    upload_s: np.ndarray
    finished_at: np.ndarray
    energy_compute_j: np.ndarray
    energy_radio_j: np.ndarray
    state: np.ndarray  # (n, 4): tail_from, tail_until, heat_s, at (the engine's radio_thermal rows)
    steps: np.ndarray  # (n, 5): the delays the event path's clock adds up to reach finished_at


def timelines(now: float, table: GroupTable, group: np.ndarray, up_mbps: np.ndarray, down_mbps: np.ndarray,
              state: np.ndarray, bytes_down: np.ndarray, bytes_up: np.ndarray, work_s: np.ndarray) -> Timelines:
    """Download, compute and upload from ``now`` for clients of groups ``group`` whose radio/heat
    rows are ``state``; ``work_s``: compute seconds at the burst rate (straggler slowdown included)."""
    link = {name: values[group] for name, values in table.link.items()}
    tail_from, tail_until, heat, at = (state[:, i].copy() for i in range(4))
    energy = np.zeros(len(group))

    def transfer(start, nbytes, mbps, alpha):
        """Radio.begin, Network.start/_join/_finish, _radio_j and Radio.end of one transfer."""
        nonlocal energy, tail_from, tail_until
        in_tail = start <= tail_until  # False where the radio never woke (NaN)
        refund = np.where(in_tail, (tail_until - start) * link["tail_w"], 0.0)
        promote = ~in_tail & (link["promotion_s"] > 0)
        energy = energy - refund
        bits = 8.0 * nbytes
        rate = mbps * 1e6 * (1.0 - link["loss"])
        delay, serialise = link["promotion_s"] * promote + link["latency_s"], bits / rate
        done = start + delay + serialise
        elapsed = done - start
        promo_s = np.where(promote, link["promotion_s"], 0.0)
        active_s = np.maximum(0.0, elapsed - promo_s)
        radio_j = np.minimum(elapsed, promo_s) * link["promotion_w"] + (
            0.0 + active_s * link["power_base_w"] + alpha * 8.0 * (bits / 8) / 1e6 / (1.0 - link["loss"]))
        tail_from, tail_until = done, done + link["tail_s"]
        energy = energy + (radio_j + link["tail_s"] * link["tail_w"])
        return done, delay, serialise

    downloaded, *down_steps = transfer(now, bytes_down, down_mbps, link["power_down_w_per_mbps"])
    throttles, burst = table.throttles[group], table.burst_s[group]
    heat = np.where(throttles, np.maximum(0.0, heat - (downloaded - at) * table.cool_rate[group]), heat)
    left = burst - heat
    compute_s = np.where(throttles & (work_s > left), left + (work_s - left) / table.sustained[group], work_s)
    computed = downloaded + compute_s
    heat = np.where(throttles, np.minimum(burst, heat + compute_s), heat)
    at = downloaded + compute_s
    energy = energy + idle_j(link, tail_from, tail_until, downloaded, computed)
    uploaded, *up_steps = transfer(computed, bytes_up, up_mbps, link["power_up_w_per_mbps"])
    return Timelines(downloaded - now, compute_s, uploaded - computed, uploaded,
                     compute_s * table.power_active_w[group], energy,
                     np.stack([tail_from, tail_until, heat, at], axis=1),
                     np.stack([*down_steps, compute_s, *up_steps], axis=1))


def idle_j(link: dict, tail_from: np.ndarray, tail_until: np.ndarray, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """Radio.idle_j over arrays: idle power over [start, stop] less its overlap with the last tail."""
    tail = np.maximum(0.0, np.minimum(stop, tail_until) - np.maximum(start, tail_from))
    return link["idle_w"] * np.maximum(0.0, stop - start - tail)
