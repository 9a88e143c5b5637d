"""The timelines of a round's clients that are alone on their links, in closed form over arrays.

A client without a cell crosses only its own access link, one transfer at a time, so no other flow
ever shares it: its download gets the link's whole capacity after promotion + latency, its
computation takes what its heat allows, its upload likewise, and its radio and heat follow from
those instants. With an unlimited battery share and no off time before it is done nothing can cut
it short, so the engine computes a thousand such clients with a few vector operations instead of
SimPy events. The arithmetic is the device model's own functions (``simulator.energy``, ``radio``,
``thermal``), called on arrays in the order the event path calls them on floats, so both paths
give the same bits; tests compare them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from types import SimpleNamespace

import numpy as np

from edgefed.devices.profile import DeviceProfile, LinkProfile, ThermalProfile
from edgefed.simulator import radio, thermal
from edgefed.simulator.energy import compute_j, transfer_j, transfer_s
from edgefed.simulator.fleet import Fleet
from edgefed.simulator.records import ClientRecord

# the profiles' numeric fields, so a field added to a profile reaches the device model's arrays (a
# link's rates are each device's own, in the Fleet; power_throttled_w is the device's derived power)
LINK_FIELDS = tuple(f for f, info in LinkProfile.model_fields.items()
                    if info.annotation in (float, int) and f not in ("up_mbps", "down_mbps"))
THERMAL_FIELDS = tuple(ThermalProfile.model_fields)
DEVICE_FIELDS = (*(f for f, info in DeviceProfile.model_fields.items() if info.annotation is float),
                 "power_throttled_w")


class GroupTable:
    """Per fleet group, the link and device figures the device model reads, as arrays indexed by group."""

    def __init__(self, fleet: Fleet):
        groups = fleet.groups
        self.fleet = fleet
        self.solo = np.array([g.cell is None for g in groups])
        self.link = {name: np.array([getattr(g.link, name) for g in groups], dtype=float) for name in LINK_FIELDS}
        self.fit_range = {name: tuple(np.array([(getattr(g.link, name) or (0.0, np.inf))[i] for g in groups])
                                      for i in (0, 1)) for name in ("power_fit_up_mbps", "power_fit_down_mbps")}
        self.thermal = {name: np.array([getattr(g.device.thermal or thermal.STEADY, name) for g in groups], dtype=float)
                        for name in THERMAL_FIELDS}
        self.device = {name: np.array([getattr(g.device, name) for g in groups], dtype=float)
                       for name in DEVICE_FIELDS}

    def devices(self, ids: np.ndarray) -> SimpleNamespace:
        """Devices ``ids`` as the device model reads a ``Client``: its figures, ``link`` (with each
        one's own rates) and ``thermal``, as arrays over ``ids``."""
        fleet, group = self.fleet, self.fleet.group[ids]
        link = SimpleNamespace(up_mbps=fleet.up_mbps[ids], down_mbps=fleet.down_mbps[ids],
                               **{name: values[group] for name, values in self.link.items()},
                               **{name: (low[group], high[group]) for name, (low, high) in self.fit_range.items()})
        return SimpleNamespace(link=link, thermal=SimpleNamespace(**{k: v[group] for k, v in self.thermal.items()}),
                               **{name: values[group] for name, values in self.device.items()})


@dataclass
class Timelines:
    """The clients' phases up to their upload's end, and their radio/heat state after it."""

    download_s: np.ndarray
    compute_s: np.ndarray
    upload_s: np.ndarray
    finished_at: np.ndarray
    energy_compute_j: np.ndarray
    energy_radio_j: np.ndarray
    state: np.ndarray  # (n, 5): tail_from, tail_until, heat_s, at, contact (the engine's radio_thermal rows)
    steps: np.ndarray  # (n, 5): the delays the event path's clock adds up to reach finished_at


def timelines(now: float, devices: SimpleNamespace, state: np.ndarray, bits_down: np.ndarray, bits_up: np.ndarray,
              work_s: np.ndarray, slowdown: np.ndarray) -> Timelines:
    """Download, compute and upload from ``now`` for ``devices`` (``GroupTable.devices``) whose
    radio/heat rows are ``state``; ``work_s``: compute seconds at the burst rate (straggler
    ``slowdown`` included)."""
    link = devices.link
    tail_from, tail_until, heat, at, contact = state.T
    energy = np.zeros(len(work_s))

    def transfer(start, direction, bits):
        """What the event path's transfer does: wake the radio, open a connection where it must, send,
        charge it and its tail."""
        nonlocal energy, tail_from, tail_until, contact
        promote, refund = radio.wake(link, tail_until, start)
        energy = energy - refund
        delay, serialise = transfer_s(link, direction, bits, promote, radio.handshakes(link, contact, start))
        done = start + delay + serialise
        tail_from, tail_until, tail_j = radio.tail(link, done)
        contact = done
        energy = energy + (transfer_j(link, direction, done - start, promote, bits) + tail_j)
        return done, delay, serialise

    downloaded, *down_steps = transfer(now, "down", bits_down)
    heat = thermal.cooled(devices.thermal, heat, at, downloaded)
    compute_s = thermal.duration(devices.thermal, heat, work_s)
    computed = downloaded + compute_s
    energy_compute = compute_j(devices, devices.thermal, heat, compute_s, slowdown)
    heat, at = thermal.heated(devices.thermal, heat, compute_s), computed
    energy = energy + radio.idle_j(link, tail_from, tail_until, downloaded, computed)
    uploaded, *up_steps = transfer(computed, "up", bits_up)
    return Timelines(downloaded - now, compute_s, uploaded - computed, uploaded, energy_compute, energy,
                     np.stack([tail_from, tail_until, heat, at, contact], axis=1),
                     np.stack([*down_steps, compute_s, *up_steps], axis=1))


def closed_form(rnd, table: GroupTable, charge_j: np.ndarray, work_s: list[float], slowdown: list[float],
                off: list[float], now: float, deadline_s: float | None) -> set[int]:
    """Timelines in closed form for the selected clients of ``rnd`` (a ``session.Round``) alone on
    their access links with an unlimited battery share that finish before the deadline and before
    they go off. Sets the round's ``solo``, ``clock`` and their radio/heat rows; returns their
    places in ``rnd.selected``."""
    ids = np.array(rnd.selected, dtype=np.int64)
    places = np.flatnonzero(table.solo[table.fleet.group[ids]] & (charge_j[ids] == math.inf))
    if not places.size:
        return set()
    jobs = rnd.jobs
    nbytes = np.array([(jobs[cid].download.nbytes, jobs[cid].upload.nbytes) for cid in ids[places].tolist()],
                      dtype=float).reshape(-1, 2)
    found = timelines(now, table.devices(ids[places]), rnd.state[places], 8.0 * nbytes[:, 0], 8.0 * nbytes[:, 1],
                      np.array(work_s)[places], np.array(slowdown)[places])
    watch = now + (np.array(off, dtype=float)[places] - now)  # when the event path's watch would stop it
    keep = watch > found.finished_at
    if deadline_s is not None:  # a client the deadline cuts off is charged by the events
        keep &= found.finished_at < now + deadline_s
    if not keep.any():
        return set()
    places, found = places[keep], Timelines(*(getattr(found, f.name)[keep] for f in fields(Timelines)))
    rnd.state[places] = found.state
    rnd.clock = found.steps[found.finished_at.argmax()].tolist()
    rnd.solo = places, found  # their rows are written once the round's end is known (settling)
    return set(places.tolist())


def write_rows(rnd, fleet: Fleet, found: Timelines, idle: np.ndarray, energy_idle: np.ndarray,
               energy_radio: np.ndarray) -> None:
    """The closed-form clients' rows, written once with their wait to the round's end."""
    places = rnd.solo[0]
    ids = np.array(rnd.selected, dtype=np.int64)[places]
    names = [g.device_name for g in fleet.groups]
    flops: dict[int, float] = {}  # per Work object, shared by a replay's clients
    columns = zip(ids.tolist(), fleet.group[ids].tolist(), found.download_s.tolist(),
                  found.compute_s.tolist(), found.upload_s.tolist(), idle[places].tolist(),
                  found.energy_compute_j.tolist(), energy_radio[places].tolist(), energy_idle[places].tolist(),
                  found.finished_at.tolist())
    for cid, g, down_s, compute_s, up_s, idle_s, compute_j_, radio_j, idle_j_, finished in columns:
        job = rnd.jobs[cid]
        if id(job.work) not in flops:
            flops[id(job.work)] = job.work.flops
        rnd.records[cid] = ClientRecord(rnd.number, cid, names[g], "ok", down_s, compute_s, up_s, idle_s,
                                        compute_j_, radio_j, idle_j_, job.upload.nbytes, job.download.nbytes,
                                        flops[id(job.work)], job.work.peak_memory_bytes, "", finished)
