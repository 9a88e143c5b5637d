"""A client's session - download, compute, upload and their charging - and the per-device state
that outlives it: the one piece the synchronous engine and the asynchronous one both play their
clients with (docs/design.md, section 5).

``Sessions`` holds the clock and the network, and per device the round it last synced at, its
battery share, its radio's last tail and its heat. ``place`` turns a round's learned jobs into
sessions: in closed form where that is exact (``simulator.solo``), else a ``ClientRound`` whose
``client_process`` downloads over the network (``simulator.network``), computes for as long as
its heat stretches its work and uploads; an off time or an empty battery share cuts it short
(``dropped``), charged what it got through. ``settle`` charges every device its wait, battery,
radio and heat, whichever path played it. Processes are plain generators, as in SimPy's own
examples.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

import numpy as np
import simpy

from edgefed.algorithms.message import Message
from edgefed.algorithms.work import Work
from edgefed.devices.availability import Availability, AvailabilitySpec, slowdown
from edgefed.simulator import radio, solo, thermal
from edgefed.simulator.closing import Cut, Quota, cut_off
from edgefed.simulator.costs import compute_seconds
from edgefed.simulator.energy import baseline_j, compute_j, radio_w, transfer_j
from edgefed.simulator.fleet import Client, Fleet
from edgefed.simulator.inputs import EngineConfig
from edgefed.simulator.network import Network, Transfer
from edgefed.simulator.records import ClientRecord, RoundRecord


class Sessions:
    """The device side of every client's session, and the per-device state that outlives a round."""

    closed_form = True  # clients alone on their links skip the events (simulator/solo.py); tests compare both paths

    def __init__(self, fleet: Fleet, config: EngineConfig, availability: Availability | None = None,
                 start_s: float = 0):
        self.fleet, self.cfg = fleet, config
        self.avail = availability or Availability(AvailabilitySpec(), len(fleet), config.seed)
        self.group_table = solo.GroupTable(fleet)
        self.restart(start_s)
        # per device: the round whose global model it last pulled (-1: never), and its battery share
        # left in joules (inf: none to run out); arrays, so a round's bookkeeping touches only its clients
        self.last_sync = np.full(len(fleet), -1, dtype=np.int32)
        share_j = [g.device.battery_wh * 3600.0 * config.battery_fraction
                   if config.battery_fraction is not None and g.device.battery_wh is not None else math.inf
                   for g in fleet.groups]
        self.charge_j = np.array(share_j, dtype=float)[fleet.group]
        # its radio's last tail (from, until; NaN: never woke), its heat (burst seconds spent, at) and
        # when its last transfer with the server ended (NaN: never), which its connection outlives by keepalive_s
        self.radio_thermal = np.zeros((len(fleet), 5))
        self.radio_thermal[:, [0, 1, 4]] = np.nan
        # until when it is busy with a session the server cut off (its refused contact; docs/design.md, Closing)
        self.busy_until = np.zeros(len(fleet))
        self.took_part = np.zeros(len(fleet), dtype=bool)  # whose rows above left their start values

    def restart(self, start_s: float) -> None:
        """A fresh clock at ``start_s`` and the network on it (a checkpoint's resume)."""
        self.env = simpy.Environment(initial_time=start_s)
        self.net = Network(self.env, self.fleet.access, self.cfg.routes())

    def _able(self) -> np.ndarray:
        """Whether each device could take part but for a busy spell: eligible, with battery left if it has a share."""
        return self.fleet.eligible & (self.charge_j > 0)

    def usable(self) -> np.ndarray:
        """Ids of the devices that may take part: able (``_able``) and not busy with a cut session."""
        return np.flatnonzero(self._able() & (self.busy_until <= self.env.now))

    def freed(self) -> np.ndarray:
        """When the devices busy with a cut session's refused contact, and otherwise usable, are free."""
        return self.busy_until[self._able() & (self.busy_until > self.env.now)]

    def last_synced(self, cid: int) -> int | None:
        return None if self.last_sync[cid] < 0 else int(self.last_sync[cid])

    # -- placing a round's clients --------------------------------------------------------
    def place(self, rnd: Round) -> None:
        """How each selected client plays the round: in closed form where that is exact, else as a
        ``ClientRound`` on the event path, with its straggler slowdown and off time."""
        cfg, now = self.cfg, self.env.now
        slow = [slowdown(cfg.stragglers, cfg.seed, cid, rnd.key(cid)) for cid in rnd.selected]
        off = [self.avail.off_at(cid, now, rnd.key(cid)) for cid in rnd.selected]
        rnd.state = self.radio_thermal[rnd.selected]
        work_s = self.work_seconds(rnd, slow)
        in_closed_form = set()
        if self.closed_form and cfg.selection != "overselect" and not cfg.hierarchical:
            in_closed_form = solo.closed_form(rnd, self.group_table, self.charge_j, work_s, slow, off, now,
                                              cfg.deadline_s)
        for i, cid in enumerate(rnd.selected):
            if i not in in_closed_form:
                client, job = self.fleet[cid], rnd.jobs[cid]
                rec = rnd.records[cid] = ClientRecord(rnd.number, cid, client.device_name,
                                                      peak_memory_bytes=job.work.peak_memory_bytes)
                rnd.clients[cid] = ClientRound(client, job, rec, i, work_s[i], slow[i], off[i],
                                               *rnd.state[i].tolist())

    def work_seconds(self, rnd: Round, slow: list[float]) -> list[float]:
        """Each selected client's compute seconds at its device's burst rate, times its slowdown."""
        fleet, jobs, seconds, out = self.fleet, rnd.jobs, {}, []
        groups = fleet.group[np.array(rnd.selected, dtype=np.int64)].tolist()
        for cid, g, factor in zip(rnd.selected, groups, slow):
            work = jobs[cid].work
            key = (id(work), g)  # per (work, group): a replay's clients share Work objects
            burst = seconds.get(key)
            if burst is None:
                burst = seconds[key] = compute_seconds(work, fleet.groups[g].device, self.cfg.dtype)
            out.append(burst * factor)
        return out

    def start(self, rnd: Round, quota: Quota | None = None, edges: dict | None = None) -> dict[int, simpy.Process]:
        """Start the event path's clients and their availability watches; each reports its arrival
        to ``quota``, or behind an edge server (``edges``: client -> its ``EdgeServer``) to its edge's."""
        procs = {}
        for cid, c in rnd.clients.items():
            edge = edges[cid] if edges is not None else None
            procs[cid] = self.env.process(self.client_process(c, edge.quota if edge is not None else quota, edge))
            if c.off < math.inf:
                self.env.process(self.watch(procs[cid], c.off - self.env.now))
        return procs

    # -- one client on the event path ------------------------------------------------------
    def client_process(self, c: ClientRound, quota: Quota, edge=None):
        """Download, compute, upload, then report to ``quota``; behind an ``edge`` server (an
        ``EdgeServer``) the transfers cross the access link and the links up to the edge's node only,
        and the download waits (device idle, counted in ``download_s``) until the edge holds it (a
        later edge round's: it does already)."""
        env, cid = self.env, c.client.id
        hops = self.net.path(cid, edge.node if edge is not None else None)
        c.phase_start = env.now
        try:
            if edge is not None and cid in edge.ready:
                c.phase = "edge"
                yield from self._powered(edge.ready[cid], c, c.client.device.power_idle_w + c.client.link.idle_w)
                c.rec.energy_radio_j += float(radio.idle_j(c.client.link, c.tail_from, c.tail_until, c.phase_start,
                                                           env.now))
            yield from self._transfer(c, hops, "down")
            yield from self._compute(c)
            c.phase_start = env.now
            yield from self._transfer(c, hops, "up")
            c.rec.finished_at = env.now
            quota.arrived(c.rec)
        except (simpy.Interrupt, BatteryEmpty) as stop:
            if isinstance(stop, simpy.Interrupt) and isinstance(stop.cause, Cut):
                c.rec.status = stop.cause.status
                cut_off(self, c, hops)
                return
            c.rec.status = "dropped" if isinstance(stop, BatteryEmpty) else str(stop.cause)
            c.rec.note = "battery empty" if isinstance(stop, BatteryEmpty) else c.rec.note
            self.charge_partial(c)

    def _transfer(self, c: ClientRound, hops: list[tuple], direction: str):
        """Generator: the radio wakes (a tail still running is cut and refunded), the message
        crosses ``hops``, the transfer and its tail are charged."""
        link = c.client.link
        c.phase = "download" if direction == "down" else "upload"
        promote, refund = radio.wake(link, c.tail_until, self.env.now)
        c.promote = bool(promote)
        c.rec.energy_radio_j -= float(refund)
        nbytes = c.job.download.nbytes if direction == "down" else c.job.upload.nbytes
        c.transfer = self.net.send(hops, nbytes, direction, link.promotion_s * c.promote,
                                   int(radio.handshakes(link, c.contact, self.env.now)))
        power_w = c.client.device.power_idle_w + max(link.promotion_w, radio_w(link, direction))  # an upper bound
        yield from self._powered(c.transfer.done, c, power_w)
        self._end_transfer(c)

    def _end_transfer(self, c: ClientRound) -> None:
        """The transfer ended or was cut off now: its time, the bytes it got across, its radio
        energy and the tail it leaves."""
        now, transfer = self.env.now, c.transfer
        if c.phase == "download":
            c.rec.download_s, c.rec.bytes_down = now - c.phase_start, int(transfer.sent / 8)
        else:
            c.rec.upload_s, c.rec.bytes_up = now - c.phase_start, int(transfer.sent / 8)
        radio_j = self._phase_j(c)[1]
        c.tail_from, c.tail_until, tail_j = radio.tail(c.client.link, now)
        c.contact = now
        c.rec.energy_radio_j += float(radio_j + tail_j)

    def _compute(self, c: ClientRound):
        """Generator: the device computes for as long as its heat stretches its work."""
        env, device = self.env, c.client.device
        c.phase, c.phase_start = "compute", env.now
        c.heat_s, c.at = thermal.cooled(c.thermal_profile, c.heat_s, c.at, env.now), env.now
        compute_s = float(thermal.duration(c.thermal_profile, c.heat_s, c.work_s))
        yield from self._powered(env.timeout(compute_s), c, device.power_active_w + c.client.link.idle_w)
        self.computed(c, compute_s)

    def computed(self, c: ClientRound, compute_s: float) -> None:
        """Its computation ended, ``compute_s`` after its start: the row's compute, its heat and the
        radio's idle power meanwhile."""
        c.rec.compute_s, c.rec.flops = compute_s, c.job.work.flops
        c.rec.energy_compute_j = float(compute_j(c.client.device, c.thermal_profile, c.heat_s, compute_s, c.slowdown))
        c.heat_s, c.at = thermal.heated(c.thermal_profile, c.heat_s, compute_s), c.at + compute_s
        c.rec.energy_radio_j += float(radio.idle_j(c.client.link, c.tail_from, c.tail_until, c.phase_start, c.at))

    def charge_partial(self, c: ClientRound, now: float | None = None) -> None:
        """A client cut off mid-phase, now (or, computing, at ``now``): charge what it got through
        of that phase."""
        now, rec = self.env.now if now is None else now, c.rec
        elapsed = now - c.phase_start
        if c.phase in ("edge", "compute"):  # "edge": its edge server did not hold the download yet, it waited
            compute_j_, radio_j = self._phase_j(c, now)
            rec.energy_radio_j += float(radio_j)
        if c.phase == "edge":
            rec.download_s = elapsed
        elif c.phase == "compute":
            done_s = float(thermal.work_in(c.thermal_profile, c.heat_s, elapsed))
            rec.compute_s, rec.flops = elapsed, c.job.work.flops * (done_s / c.work_s if c.work_s else 0.0)
            rec.energy_compute_j = float(compute_j_)
            c.heat_s, c.at = thermal.heated(c.thermal_profile, c.heat_s, elapsed), c.at + elapsed
        else:
            self.net.cancel(c.transfer)
            self._end_transfer(c)
        rec.finished_at = now

    def _phase_j(self, c: ClientRound, now: float | None = None) -> tuple[float, float]:
        """The compute and radio energy of the phase under way, from its start to now (or ``now``):
        what a cut charges of it, or what a session in flight has spent of it (a transfer's tail apart)."""
        now, link = self.env.now if now is None else now, c.client.link
        start = now - (now - c.phase_start)  # not c.phase_start: the bits a cut has always charged
        if c.phase in ("edge", "compute"):  # the radio idles, between tails
            idle = radio.idle_j(link, c.tail_from, c.tail_until, start, now)
            if c.phase == "edge":
                return 0.0, idle
            return compute_j(c.client.device, c.thermal_profile, c.heat_s, now - c.phase_start, c.slowdown), idle
        transfer = c.transfer
        direction = "down" if c.phase == "download" else "up"
        return 0.0, transfer_j(link, direction, now - transfer.started, c.promote, transfer.sent_by(now))

    def spent_j(self, c: ClientRound, running: bool) -> float:
        """What a session (``running``: its process has not ended) has spent by now, phase by
        phase, as its row charges it: the phases it finished (a transfer with its whole tail, which
        the device model charges as the tail starts), the phase under way up to now (a transfer
        without a tail yet), and the device's baseline over its transfers so far."""
        rec = c.rec
        spent, down_s, up_s = rec.energy_compute_j + rec.energy_radio_j, rec.download_s, rec.upload_s
        if running:
            spent += sum(self._phase_j(c))
            if c.phase in ("edge", "download"):
                down_s = self.env.now - c.phase_start
            elif c.phase == "upload":
                up_s = self.env.now - c.phase_start
        return float(spent + baseline_j(c.client.device, down_s, up_s, 0.0))

    def _powered(self, event: simpy.Event, c: ClientRound, power_w: float):
        """Wait for ``event`` unless the battery share runs out first (at ``power_w``, an upper bound)."""
        left_s = self.battery_left_s(c, power_w)
        if left_s == math.inf:  # nothing drains the share
            yield event
            return
        result = yield event | self.env.timeout(left_s)
        if event not in result:
            raise BatteryEmpty

    def battery_left_s(self, c: ClientRound, power_w: float) -> float:
        """Seconds the battery share lasts at ``power_w`` after what the row spent so far (inf: no share)."""
        charge_j = float(self.charge_j[c.client.id])
        if charge_j == math.inf or power_w <= 0.0:  # nothing drains the share
            return math.inf
        spent = c.rec.energy_j + baseline_j(c.client.device, c.rec.download_s, c.rec.upload_s, 0.0)
        return max(0.0, charge_j - spent) / power_w

    def watch(self, proc: simpy.Process, after_s: float, why: str = "dropped"):
        """Interrupt a client that goes off (availability window ends or it fails) mid-round, or
        (``why`` late) a session at its deadline."""
        yield self.env.timeout(after_s)
        if proc.is_alive:
            proc.interrupt(why)

    # -- settling ----------------------------------------------------------------------------
    def settle(self, rnd: Round, cids: list[int] | None = None, end: float | None = None) -> None:
        """Every selected device (or ``cids``, to ``end``: an edge round's arrivals that go on to the
        next), whichever path played it: an arrival waits idle to the round's end (the others do
        not wait; ``idle_s``), which adds baseline and idle-radio energy under ``energy_attribution:
        round`` only (under ``session`` it disconnected on arriving: its radio's tail, charged with its
        upload, is the last it spends); its battery share drains by its row's energy; its radio/heat
        row is written back."""
        every = cids is None
        cids, end = rnd.selected if every else cids, rnd.end if end is None else end
        found = rnd.solo if every else None
        ids = np.array(cids, dtype=np.int64)
        # the rows there are: a closed-form client's is written below, with its wait
        at = np.arange(len(cids)) if found is None else np.delete(np.arange(len(cids)), found[0])
        rows = [rnd.records[cids[i]] for i in at.tolist()]
        for c in rnd.clients.values() if every else [rnd.clients[cid] for cid in cids]:
            rnd.state[c.index] = (c.tail_from, c.tail_until, c.heat_s, c.at, c.contact)
        state = rnd.state if every else rnd.state[[rnd.clients[cid].index for cid in cids]]
        down, up, finished, energy_radio, energy_compute, arrived, empty = settled(len(cids), found, at, rows)
        devices = self.group_table.devices(ids)
        idle = np.where(arrived, np.maximum(0.0, end - finished), 0.0)
        charged = idle if self.cfg.charge_wait else np.zeros(len(cids))  # session: it disconnected on arriving
        energy_idle = baseline_j(devices, down, up, charged)
        energy_radio = energy_radio + radio.idle_j(devices.link, state[:, 0], state[:, 1], finished, finished + charged)
        left = np.where(empty, 0.0, self.charge_j[ids] - (energy_compute + energy_radio + energy_idle))
        self.charge_j[ids] = np.maximum(0.0, left)
        for rec, idle_s, idle_j, radio_j in zip(rows, idle[at].tolist(), energy_idle[at].tolist(),
                                                energy_radio[at].tolist()):
            rec.idle_s, rec.energy_idle_j, rec.energy_radio_j = idle_s, idle_j, radio_j
        if found is not None:
            solo.write_rows(rnd, self.fleet, found[1], idle, energy_idle, energy_radio)
        self.radio_thermal[ids] = state

    # -- checkpoints ---------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        """The per-device state of the devices that took part so far (``devices``: their ids): the
        round each last synced at, its battery charge, its radio's tail, heat and last contact, and
        until when a cut session keeps it busy. The others still hold what a fresh engine gives
        them, so a checkpoint grows with the devices that took part, not with the fleet."""
        ids = np.flatnonzero(self.took_part)
        return {"devices": ids, "last_sync": self.last_sync[ids], "charge_j": self.charge_j[ids],
                "radio_thermal": self.radio_thermal[ids], "busy_until": self.busy_until[ids]}

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        ids = arrays["devices"]
        self.took_part[ids] = True
        self.last_sync[ids] = arrays["last_sync"]
        self.charge_j[ids] = arrays["charge_j"]
        self.radio_thermal[ids] = arrays["radio_thermal"]
        self.busy_until[ids] = arrays["busy_until"]


@dataclass
class Job:
    """What the host's real learning produced for one client this round."""

    download: Message
    work: Work
    upload: Message
    rejected: str | None = None  # why the server will not absorb the upload


class BatteryEmpty(Exception):
    """A device's battery share ran out mid-phase."""


@dataclass(eq=False)
class ClientRound:
    """One client's round on the event path: its job and row, its device's radio tail and heat as
    they go (the closed form holds the same as arrays), and where it got to - what a cut-off charges."""

    client: Client
    job: Job
    rec: ClientRecord
    index: int  # its place among the round's selected clients (its row of ``Round.state``)
    work_s: float  # compute seconds at the burst rate, straggler slowdown included
    slowdown: float  # that straggler slowdown (devices.availability.slowdown), which its compute energy shares
    off: float  # when it goes off (inf: not this round)
    tail_from: float  # the radio's last tail (NaN: it never woke)
    tail_until: float
    heat_s: float  # burst seconds spent, as of ``at``
    at: float
    contact: float  # when its last transfer with the server ended (NaN: never; radio.handshakes)
    phase: str = "download"
    phase_start: float = 0.0
    transfer: Transfer | None = None
    promote: bool = False

    @property
    def thermal_profile(self):
        return self.client.device.thermal or thermal.STEADY


@dataclass(eq=False)
class Round:
    """One round from selection to its record: the state the engine's phases hand on, and what
    observers receive (the engine keeps only what outlives a round)."""

    number: int
    selected: list[int] = field(default_factory=list)
    plan: object = None  # what the algorithm planned (configure_round)
    updates: dict[int, tuple[Message, Work]] = field(default_factory=dict)  # the host's learning, for traces
    jobs: dict[int, Job] = field(default_factory=dict)
    records: dict[int, ClientRecord] = field(default_factory=dict)
    clients: dict[int, ClientRound] = field(default_factory=dict)  # the event path's, in selection order
    state: np.ndarray = field(default_factory=lambda: np.empty((0, 5)))  # the selected devices' radio_thermal rows
    clock: list[float] | None = None  # the steps to the last closed-form client's finish (None: none)
    solo: tuple | None = None  # the closed-form clients' places in selected, and their solo.Timelines
    end: float = 0.0  # when the server closed the round
    messages: list[Message] = field(default_factory=list)  # what the server aggregates
    edges: list | None = None  # hierarchical aggregation's edge servers (simulator.edge.EdgeServer)
    earlier: list[ClientRecord] = field(default_factory=list)  # K > 1 edge rounds: clients' rows before their last
    aggregated: int = 0
    host_s: float = 0.0  # host seconds of learning, aggregation and evaluation
    record: RoundRecord | None = None
    rows: list[ClientRecord] = field(default_factory=list)
    keys: dict[int, int] | None = None  # each client's draw key (None: ``number`` for all; ``key``)

    def key(self, cid: int) -> int:
        """What client ``cid``'s draws are keyed by in this round: its batches, directions,
        straggler slowdown and failure (the round number; an asynchronous session's own number)."""
        return self.number if self.keys is None else self.keys[cid]

    def kept(self, cids: list[int]) -> list[Message]:
        """The uploads of ``cids`` that arrived in time and that the server accepts (a client
        without a row yet is a closed-form one: it arrived)."""
        records, jobs = self.records, self.jobs
        return [jobs[cid].upload for cid in cids
                if (cid not in records or records[cid].status == "ok") and jobs[cid].rejected is None]


SETTLED = ("download_s", "upload_s", "finished_at", "energy_radio_j", "energy_compute_j")


def settled(n: int, found: tuple | None, at: np.ndarray, rows: list[ClientRecord]) -> tuple[np.ndarray, ...]:
    """What settling reads of ``n`` clients, as arrays: download, upload, finish, radio and compute
    energy, whether each arrived and whether its battery ran empty (it then stays off). The
    closed-form clients' (``found``: their places and timelines) come from their timelines (they
    all arrived, on an unlimited battery), the others' from their ``rows``, at places ``at``."""
    figures = np.empty((n, len(SETTLED)))
    arrived, empty = np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
    if found is not None:
        places, timelines = found
        for j, name in enumerate(SETTLED):
            figures[places, j] = getattr(timelines, name)
    read = operator.attrgetter(*SETTLED)
    figures[at] = np.array([read(rec) for rec in rows], dtype=float).reshape(len(rows), len(SETTLED))
    arrived[at] = [rec.status == "ok" for rec in rows]
    empty[at] = [rec.note == "battery empty" for rec in rows]
    return (*figures.T, arrived, empty)
