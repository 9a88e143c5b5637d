"""The SimPy engine: a server process running synchronous rounds over client processes.

A round (docs/design.md, section 5) is a short sequence of phases over one ``Round`` object, which
holds all of the round's state and is what observers receive; the engine keeps only what outlives
a round (per-device arrays, the clock, the network). The server selects clients and the algorithm
plans the round; the *learning* of every selected client runs for real on the host, in a fixed
order and in zero simulated time; each client is then placed: in closed form when it is alone on
its link and nothing can cut it short (``simulator.solo``), else as a client process that downloads
over the network (``simulator.network``: links shared by processor sharing), computes for the time
its counted work takes on its device (times a straggler slowdown, stretched by its heat) and
uploads. Both paths charge time and energy with the same device model (``simulator.energy``,
``radio``, ``thermal``). The server - or, under hierarchical aggregation, each cell's edge server
(``simulator.edge``) for its own clients, under the round's one quota and deadline - closes by one
rule (``simulator.closing``): every upload, the deadline, or the over-selection quota; what
arrived in time is aggregated, the rest is charged but not aggregated (``late``). A device that
goes off or runs its battery empty mid-round is ``dropped``: the work it got through is charged.
Settling charges every device its wait to the round's end, its battery and its radio and heat,
whichever path played it. Processes are plain generators, as in SimPy's own examples.
"""
from __future__ import annotations

import math
import operator
import time
from dataclasses import dataclass, field, fields

import numpy as np
import simpy

from edgefed.streams import Stream, rng
from edgefed.algorithms.message import Message
from edgefed.algorithms.work import Work
from edgefed.devices.availability import Availability, AvailabilitySpec, slowdown
from edgefed.simulator import radio, thermal
from edgefed.simulator.closing import Quota, close
from edgefed.simulator.costs import compute_seconds
from edgefed.simulator.edge import EdgeServer, cutoff_s, distinct_downloads
from edgefed.simulator.energy import baseline_j, compute_j, radio_w, transfer_j, transfer_s
from edgefed.simulator.fleet import Client, Fleet
from edgefed.simulator.inputs import EngineConfig, Learner
from edgefed.simulator.network import Network, Transfer
from edgefed.simulator.solo import GroupTable, Timelines, timelines
from edgefed.simulator.records import ClientRecord, RoundObserver, RoundRecord
from edgefed.simulator.schedule import EveryRounds, Schedule


class Diverged(RuntimeError):
    """The global model's learning diverged (non-finite loss or weights); the run stops."""


@dataclass
class Job:
    """What the host's real learning produced for one client this round."""

    download: Message
    work: Work
    upload: Message
    rejected: str | None = None  # why the server will not absorb the upload


@dataclass
class Estimate:
    """The size of a typical client's round: what resource-aware selection prices per device."""

    bytes_down: int
    bytes_up: int
    work: Work


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
    off: float  # when it goes off (inf: not this round)
    tail_from: float  # the radio's last tail (NaN: it never woke)
    tail_until: float
    heat_s: float  # burst seconds spent, as of ``at``
    at: float
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
    state: np.ndarray = field(default_factory=lambda: np.empty((0, 4)))  # the selected devices' radio_thermal rows
    clock: list[float] | None = None  # the steps to the last closed-form client's finish (None: none)
    solo: tuple[np.ndarray, Timelines] | None = None  # the closed-form clients' places in selected, and timelines
    end: float = 0.0  # when the server closed the round
    messages: list[Message] = field(default_factory=list)  # what the server aggregates
    edges: list[EdgeServer] | None = None  # hierarchical aggregation's edge servers
    earlier: list[ClientRecord] = field(default_factory=list)  # K > 1 edge rounds: clients' rows before their last
    aggregated: int = 0
    host_s: float = 0.0  # host seconds of learning, aggregation and evaluation
    record: RoundRecord | None = None
    rows: list[ClientRecord] = field(default_factory=list)



SETTLED = ("download_s", "upload_s", "finished_at", "energy_radio_j", "energy_compute_j")


def settled(n: int, solo: tuple[np.ndarray, Timelines] | None, at: np.ndarray,
            rows: list[ClientRecord]) -> tuple[np.ndarray, ...]:
    """What settling reads of ``n`` clients, as arrays: download, upload, finish, radio and compute
    energy, whether each arrived and whether its battery ran empty (it then stays off). The
    closed-form clients' (``solo``) come from their timelines (they all arrived, on an unlimited
    battery), the others' from their ``rows``, at places ``at``."""
    figures = np.empty((n, len(SETTLED)))
    arrived, empty = np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
    if solo is not None:
        places, found = solo
        for j, name in enumerate(SETTLED):
            figures[places, j] = getattr(found, name)
    read = operator.attrgetter(*SETTLED)
    figures[at] = np.array([read(rec) for rec in rows], dtype=float).reshape(len(rows), len(SETTLED))
    arrived[at] = [rec.status == "ok" for rec in rows]
    empty[at] = [rec.note == "battery empty" for rec in rows]
    return (*figures.T, arrived, empty)

class Engine:
    closed_form = True  # clients alone on their links skip the events (simulator/solo.py); tests compare both paths

    def __init__(self, algorithm: Learner, clients: Fleet | list[Client], config: EngineConfig,
                 availability: Availability | None = None):
        self.algo = algorithm
        self.clients = clients if isinstance(clients, Fleet) else Fleet.from_clients(clients)
        self.group_table = GroupTable(self.clients)
        self.cfg = config
        self.seed = config.seed
        self.dtype = config.dtype
        self.env = simpy.Environment()
        # per device: the round whose global model it last pulled (-1: never), and its battery share
        # left in joules (inf: none to run out); arrays, so a round's bookkeeping touches only its clients
        self.last_sync = np.full(len(self.clients), -1, dtype=np.int32)
        self.round = 0
        self.net = Network(self.env, self.clients.access, config.cells)
        # hierarchical aggregation: each cell's id on the wire (None: flat, clients talk to the server)
        self.edges = {name: i for i, name in enumerate(sorted(config.cells))} if config.hierarchical else None
        # HierFAVG's edge rounds per cloud round (1: one aggregation per round, flat or hierarchical)
        self.edge_rounds = config.edge_rounds if self.edges is not None else 1
        self.avail = availability or Availability(AvailabilitySpec(), len(self.clients), config.seed)
        self.stragglers = config.stragglers
        # whether an arrival pays for its wait to the round's end (fleet.energy_attribution: round)
        self.charge_wait = config.charge_wait
        fraction = config.battery_fraction
        share_j = [g.device.battery_wh * 3600.0 * fraction if fraction is not None and g.device.battery_wh is not None
                   else math.inf for g in self.clients.groups]
        self.charge_j = np.array(share_j, dtype=float)[self.clients.group]
        self.reference: Estimate | None = None  # a recent job's size, for the next rounds' resource-aware selection
        # per device, carried across rounds: its radio's last tail (from, until; NaN: never woke) and
        # its heat (burst seconds spent, at)
        self.radio_thermal = np.zeros((len(self.clients), 4))
        self.radio_thermal[:, :2] = np.nan
        self.took_part = np.zeros(len(self.clients), dtype=bool)  # whose rows above left their start values
        self.pool = None  # a ClientPool runs client updates on workers (edgefed/parallel.py)
        self.observers: list[RoundObserver] = []
        # when to evaluate and stop (the runner may give a cost budget instead)
        self.schedule: Schedule = EveryRounds(config.eval_every, config.max_rounds)

    # -- selection -----------------------------------------------------------------------
    def usable(self) -> np.ndarray:
        """Ids of the devices that may take part: eligible, with battery left if they have a share."""
        return np.flatnonzero(self.clients.eligible & (self.charge_j > 0))

    def last_synced(self, cid: int) -> int | None:
        return None if self.last_sync[cid] < 0 else int(self.last_sync[cid])

    def select(self, round: int, available: np.ndarray | None = None) -> list[int]:
        """Client ids for ``round`` among ``available`` (default: every usable device)."""
        if available is None:
            available = self.usable()
        draw = rng(self.seed, Stream.SELECTION, round)
        k = min(self.cfg.clients_per_round, len(available))
        if self.cfg.selection == "overselect":
            k = min(math.ceil(self.cfg.clients_per_round * self.cfg.overselect), len(available))
        if self.cfg.selection == "resource_aware" and self.reference is not None:
            return self._select_in_time(available, k, draw)
        return sorted(draw.choice(available, size=k, replace=False).tolist())

    def _select_in_time(self, available: np.ndarray, k: int, draw) -> list[int]:
        """Uniform among devices expected to finish by the deadline; fill up with the fastest.
        Without a deadline: the k fastest (ties broken at random)."""
        order = draw.permutation(available)
        expected = self.expected_seconds(order)
        deadline = self.cfg.deadline_s if self.cfg.deadline_s is not None else -math.inf
        late = expected > deadline
        rest = order[late][np.argsort(expected[late], kind="stable")]
        return sorted(np.concatenate([order[~late][:k], rest])[:k].tolist())

    def expected_seconds(self, ids: np.ndarray) -> np.ndarray:
        """Download + compute + upload of the reference job per device, alone on its link with its
        radio idle at first: the device model over the devices' own link rates."""
        ref, link = self.reference, self.group_table.devices(ids).link
        compute = np.array([compute_seconds(ref.work, g.device, self.dtype) for g in self.clients.groups])
        compute = compute[self.clients.group[ids]]
        promote_down, _ = radio.wake(link, math.nan, 0.0)
        promote_up, _ = radio.wake(link, link.tail_s, compute)  # the download's tail began ``compute`` s earlier
        down_delay, down_serialise = transfer_s(link, "down", 8.0 * ref.bytes_down, promote_down)
        up_delay, up_serialise = transfer_s(link, "up", 8.0 * ref.bytes_up, promote_up)
        return down_delay + down_serialise + compute + (up_delay + up_serialise)

    def _available_now(self, round: int):
        """Generator: wait until some usable device is on; returns their ids (None: never again)."""
        attempt = 0
        while True:
            usable = self.usable()
            on = usable[self.avail.on(usable, self.env.now, (round, attempt))]
            if on.size:
                return on
            upcoming = self.avail.next_on(usable, self.env.now)
            upcoming = upcoming[~np.isnan(upcoming)]
            if not upcoming.size:
                return None
            wait_s = float(upcoming.min()) - self.env.now  # may round below 0 where on() said off: retry then
            yield self.env.timeout(wait_s if wait_s > 0 else self.avail.spec.retry_s)
            attempt += 1

    # -- the round ---------------------------------------------------------------------------
    def run_round(self, number: int):
        """Generator: one synchronous round; returns its recorded ``Round`` (None: no device will
        ever be on again)."""
        available = yield from self._available_now(number)
        if available is None:
            return None
        host_start = time.perf_counter()
        rnd = self._configure(number, available)
        self._learn(rnd)
        rnd.host_s = time.perf_counter() - host_start
        self._place(rnd)
        yield from self._flat_tier(rnd) if self.edges is None else self._edge_tier(rnd)
        self._settle(rnd)
        self._record(rnd)
        return rnd

    def _configure(self, number: int, available: np.ndarray) -> Round:
        """Select the round's clients and let the algorithm plan it; observers see the plan."""
        selected = self.select(number, available)
        rnd = Round(number, selected, self.algo.configure_round(number, selected))
        for observer in self.observers:
            observer.round_configured(self, rnd)
        return rnd

    def _learn(self, rnd: Round) -> None:
        """The selected clients' real learning on the host, in zero simulated time: catch-up
        downloads, local updates and each one's job; the median job prices the next selection."""
        algo, number = self.algo, self.learning_round(rnd.number)
        downs = {cid: algo.catch_up(cid, self.last_synced(cid), number, rnd.plan) for cid in rnd.selected}
        rnd.updates = self.client_updates(number, rnd.selected, rnd.plan)
        merged: dict[tuple[int, int], Work] = {}  # a replay serves clients shared Work objects: merge each pair once
        for cid in rnd.selected:
            (down, down_work), (up, up_work) = downs[cid], rnd.updates[cid]
            key = (id(down_work), id(up_work))
            if key not in merged:
                merged[key] = Work().merge(down_work).merge(up_work)
            rnd.jobs[cid] = Job(down, merged[key], up, algo.rejects(up))
        median = rnd.jobs[rnd.selected[len(rnd.selected) // 2]]
        self.reference = Estimate(median.download.nbytes, median.upload.nbytes, median.work)

    def _place(self, rnd: Round) -> None:
        """How each selected client plays the round: in closed form where that is exact, else as a
        ``ClientRound`` on the event path, with its straggler slowdown and off time."""
        slow = [slowdown(self.stragglers, self.seed, cid, rnd.number) for cid in rnd.selected]
        off = [self.avail.off_at(cid, self.env.now, rnd.number) for cid in rnd.selected]
        rnd.state = self.radio_thermal[rnd.selected]
        work_s = self._work_seconds(rnd, slow)
        solo = self._closed_form(rnd, work_s, off)
        for i, cid in enumerate(rnd.selected):
            if i not in solo:
                client, job = self.clients[cid], rnd.jobs[cid]
                rec = rnd.records[cid] = ClientRecord(rnd.number, cid, client.device_name,
                                                      peak_memory_bytes=job.work.peak_memory_bytes)
                rnd.clients[cid] = ClientRound(client, job, rec, i, work_s[i], off[i], *rnd.state[i].tolist())

    def _work_seconds(self, rnd: Round, slow: list[float]) -> list[float]:
        """Each selected client's compute seconds at its device's burst rate, times its slowdown."""
        fleet, jobs, seconds, out = self.clients, rnd.jobs, {}, []
        groups = fleet.group[np.array(rnd.selected, dtype=np.int64)].tolist()
        for cid, g, factor in zip(rnd.selected, groups, slow):
            work = jobs[cid].work
            key = (id(work), g)  # per (work, group): a replay's clients share Work objects
            burst = seconds.get(key)
            if burst is None:
                burst = seconds[key] = compute_seconds(work, fleet.groups[g].device, self.dtype)
            out.append(burst * factor)
        return out

    def _closed_form(self, rnd: Round, work_s: list[float], off: list[float]) -> set[int]:
        """Timelines in closed form (``simulator.solo``) for the selected clients alone on their
        access links with an unlimited battery share that finish before the deadline and before
        they go off - outside over-selection (whose arrival order needs the events) and edge
        servers (which pace their clients' downloads). Returns their places in ``rnd.selected``."""
        if not self.closed_form or self.cfg.selection == "overselect" or self.edges is not None:
            return set()
        now, ids = self.env.now, np.array(rnd.selected, dtype=np.int64)
        places = np.flatnonzero(self.group_table.solo[self.clients.group[ids]] & (self.charge_j[ids] == math.inf))
        if not places.size:
            return set()
        jobs = rnd.jobs
        nbytes = np.array([(jobs[cid].download.nbytes, jobs[cid].upload.nbytes) for cid in ids[places].tolist()],
                          dtype=float).reshape(-1, 2)
        found = timelines(now, self.group_table.devices(ids[places]), rnd.state[places], 8.0 * nbytes[:, 0],
                          8.0 * nbytes[:, 1], np.array(work_s)[places])
        watch = now + (np.array(off, dtype=float)[places] - now)  # when _watch would stop it
        keep = watch > found.finished_at
        if self.cfg.deadline_s is not None:  # a client the deadline cuts off is charged by the events
            keep &= found.finished_at < now + self.cfg.deadline_s
        if not keep.any():
            return set()
        places, found = places[keep], Timelines(*(getattr(found, f.name)[keep] for f in fields(Timelines)))
        rnd.state[places] = found.state
        rnd.clock = found.steps[found.finished_at.argmax()].tolist()
        rnd.solo = places, found  # their rows are written once the round's end is known (settling)
        return set(places.tolist())

    def _solo_records(self, rnd: Round, found: Timelines, idle: np.ndarray, energy_idle: np.ndarray,
                      energy_radio: np.ndarray) -> None:
        """The closed-form clients' rows, written once with their wait to the round's end."""
        places = rnd.solo[0]
        ids = np.array(rnd.selected, dtype=np.int64)[places]
        names = [g.device_name for g in self.clients.groups]
        flops: dict[int, float] = {}  # per Work object, shared by a replay's clients
        columns = zip(ids.tolist(), self.clients.group[ids].tolist(), found.download_s.tolist(),
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

    def _flat_tier(self, rnd: Round):
        """Generator: the clients talk to the server itself, which closes on them (``simulator.closing``)
        with a quota of ``clients_per_round`` under over-selection; the closed-form clients' clock
        stands for their uploads."""
        env = self.env
        quota = Quota(min(self.cfg.clients_per_round, len(rnd.selected)),
                      env.event() if self.cfg.selection == "overselect" else None)
        procs = self._start_clients(rnd, quota)
        clock = env.process(self._clock(rnd.clock)) if rnd.clock is not None else None
        yield from close(env, list(procs.values()), quota, self._deadline(), clock)
        rnd.end, rnd.messages = env.now, self._kept(rnd, rnd.selected)

    def learning_round(self, number: int, edge_round: int = 1) -> int:
        """The round the method's hooks are told for an edge round of round ``number``: with K > 1
        edge rounds per cloud round each edge round learns as a round (its batches, its
        directions), so one cell's K edge rounds learn as K flat rounds do."""
        return (number - 1) * self.edge_rounds + edge_round

    def _edge_tier(self, rnd: Round):
        """Generator: each cell's edge server receives its clients' distinct downloads once over the
        backhaul and closes on its clients (``simulator.closing``) under the round's one quota -
        over-selection keeps the first ``clients_per_round`` arrivals across cells - and its own
        cut-off; with K > 1 it plays its further edge rounds. Each forwards one message; the server
        closes when the last has arrived or at the deadline, when one still on its way is late, and
        so are the updates it carries."""
        env, selected = self.env, rnd.selected
        quota = Quota(min(self.cfg.clients_per_round, len(selected)),
                      env.event() if self.cfg.selection == "overselect" else None)
        held = self.algo.hold() if self.edge_rounds > 1 else None  # the global model, to come back to
        in_cell: dict[str, list[int]] = {}
        for cid in selected:
            in_cell.setdefault(rnd.clients[cid].client.cell, []).append(cid)
        rnd.edges = []
        for cell in sorted(in_cell):
            cids = in_cell[cell]
            edge = EdgeServer(cell, self.edges[cell], cids, quota)
            self._cutoff(rnd, edge, held)
            for group in distinct_downloads([rnd.jobs[cid].download for cid in cids]):
                transfer = self.net.send(self.net.backhaul(cell), rnd.jobs[cids[group[0]]].download.nbytes, "down")
                edge.downloads.append(transfer)
                edge.ready.update({cids[i]: transfer.done for i in group})
            rnd.edges.append(edge)
        deadline, closed = self._deadline(), env.event()
        procs = self._start_clients(rnd, edges={cid: edge for edge in rnd.edges for cid in edge.clients})
        edges = env.all_of([env.process(self._edge_process(rnd, edge, procs, held, closed)) for edge in rnd.edges])
        yield edges | deadline if deadline is not None else edges
        closed.succeed()
        rnd.end = env.now
        for edge in rnd.edges:
            if edge.upload is not None and edge.upload.finished_at is None:  # it cannot reach the server in time
                self.net.cancel(edge.upload)
                edge.message, edge.bytes_up = None, int(edge.upload.sent / 8)
                for rec in edge.earlier + [rnd.records[cid] for cid in edge.clients]:
                    if rec.status == "ok":
                        rec.status, rec.note = "late", "its edge's message missed the deadline"
        rnd.earlier = [rec for edge in rnd.edges for rec in edge.earlier]
        messages = [edge.message for edge in rnd.edges if edge.message is not None]
        if held is None:
            rnd.messages = messages
        else:  # HierFAVG's cloud step, the edges' models' weighted mean: nothing is left to aggregate
            host_start = time.perf_counter()
            self.algo.adopt(messages)
            rnd.host_s += time.perf_counter() - host_start

    def _cutoff(self, rnd: Round, edge: EdgeServer, held) -> None:
        """When ``edge`` stops waiting for its clients (none without a deadline): early enough that
        its message, alone on its backhaul up, reaches the server by the deadline. The message is
        priced at the largest it can be: the partial of all its clients' uploads (a method's
        partial grows with the uploads it holds), or with K > 1 its model."""
        if self.cfg.deadline_s is None:
            return
        uploads = [rnd.jobs[cid].upload for cid in edge.clients if rnd.jobs[cid].rejected is None]
        host_start = time.perf_counter()
        message = (self.algo.partial(uploads, rnd.number, edge.index) if held is None
                   else self.algo.model_message(held, uploads, rnd.number, edge.index))
        rnd.host_s += time.perf_counter() - host_start
        after_s = cutoff_s(self.cfg.deadline_s, self.net.cells[edge.cell], message.nbytes if message is not None else 0)
        edge.cutoff, edge.cutoff_at = self.env.timeout(after_s), self.env.now + after_s

    def _edge_process(self, rnd: Round, edge: EdgeServer, procs: dict[int, simpy.Process], held,
                      closed: simpy.Event):
        """One edge server's round after the downloads: close on its clients; aggregate what it
        kept (with K > 1: play its further edge rounds on a model of its own); send that up the
        backhaul, until it arrives or the server closes."""
        yield from close(self.env, [procs[cid] for cid in edge.clients], edge.quota, edge.cutoff)
        for transfer in edge.downloads:  # one that no client waits for any more stops with the round
            if transfer.finished_at is None:
                self.net.cancel(transfer)
        edge.bytes_down = sum(int(transfer.sent / 8) for transfer in edge.downloads)
        if held is None:
            host_start = time.perf_counter()
            edge.message = self.algo.partial(self._kept(rnd, edge.clients), rnd.number, edge.index)
            rnd.host_s += time.perf_counter() - host_start
        else:
            yield from self._edge_rounds(rnd, edge, held)
        if edge.message is not None:
            edge.bytes_up = edge.message.nbytes
            edge.upload = self.net.send(self.net.backhaul(edge.cell), edge.bytes_up, "up")
            yield edge.upload.done | closed

    def _edge_rounds(self, rnd: Round, edge: EdgeServer, held):
        """Generator (K > 1 edge rounds, HierFAVG): after each edge round the edge applies the
        method's aggregate of what it kept to a model of its own, as a flat round's server does to
        the global one; its clients that arrived learn from that model and play the next edge
        round. After K, or at its cut-off, it forwards its model, weighted by the clients whose
        updates it aggregated. ``held``: the global model, which the host holds between times."""
        algo, env = self.algo, self.env
        model, aggregated, cids = held, {}, edge.clients
        for k in range(1, self.edge_rounds + 1):
            if k > 1:
                yield from self._edge_round(rnd, edge, cids, model, held, k)
            kept = self._kept(rnd, cids)
            if kept:
                host_start = time.perf_counter()
                algo.load(model)
                algo.apply(algo.aggregate(kept), self.learning_round(rnd.number, k), rnd.plan)
                model = algo.hold()
                algo.load(held)
                rnd.host_s += time.perf_counter() - host_start
                aggregated.update({m.client: m for m in kept})
            # those that arrived and are still on go on to the next (one that went off while it
            # waited for the edge is not there; its row is its last, as in a flat round)
            cids = [cid for cid in cids if rnd.records[cid].status == "ok" and rnd.clients[cid].off > env.now]
            if k == self.edge_rounds or not cids or (edge.cutoff_at is not None and env.now >= edge.cutoff_at):
                break  # these rows are the clients' last: settled with the round
            self._settle_devices(rnd, cids, env.now)  # they waited idle for the edge until now
            for cid in cids:
                rec = rnd.records[cid]
                if rnd.jobs[cid].rejected:  # it arrived; the edge dropped it
                    rec.status, rec.note = "rejected", rnd.jobs[cid].rejected
                edge.earlier.append(rec)
        if aggregated:
            edge.message = algo.model_message(model, list(aggregated.values()), rnd.number, edge.index)

    def _edge_round(self, rnd: Round, edge: EdgeServer, cids: list[int], model, held, k: int):
        """Generator: edge round ``k`` (> 1) of ``cids``: their learning from the edge's ``model``
        (on the host, in zero simulated time), then download, compute and upload over their access
        links, closed by the rule of ``simulator.closing`` - every one of them, or the edge's
        cut-off. Their rows, radio and heat go on from their previous edge round's."""
        algo, env, number = self.algo, self.env, self.learning_round(rnd.number, k)
        host_start = time.perf_counter()
        algo.load(model)
        downs = {cid: algo.catch_up(cid, self.last_synced(cid), number, rnd.plan) for cid in cids}
        ups = self.client_updates(number, cids, rnd.plan)
        algo.load(held)
        rnd.host_s += time.perf_counter() - host_start
        edge.ready.clear()  # the edge holds what they download
        edge.quota = Quota(len(cids), None)
        procs = []
        for cid in cids:
            (down, down_work), (up, up_work) = downs[cid], ups[cid]
            job = rnd.jobs[cid] = Job(down, Work().merge(down_work).merge(up_work), up, algo.rejects(up))
            before, client = rnd.clients[cid], rnd.clients[cid].client
            rec = rnd.records[cid] = ClientRecord(rnd.number, cid, client.device_name, edge_round=k,
                                                  peak_memory_bytes=job.work.peak_memory_bytes)
            work_s = (compute_seconds(job.work, client.device, self.dtype)
                      * slowdown(self.stragglers, self.seed, cid, rnd.number))
            c = rnd.clients[cid] = ClientRound(client, job, rec, before.index, work_s, before.off,
                                               *self.radio_thermal[cid].tolist())
            procs.append(env.process(self.client_process(c, edge.quota, edge)))
            if c.off < math.inf:
                env.process(self._watch(procs[-1], c.off - env.now))
        yield from close(env, procs, edge.quota, edge.cutoff)

    def _start_clients(self, rnd: Round, quota: Quota | None = None,
                       edges: dict[int, EdgeServer] | None = None) -> dict[int, simpy.Process]:
        """Start the event path's clients and their availability watches; each reports its arrival
        to ``quota``, or behind an edge server (``edges``: client -> its edge) to its edge's."""
        procs = {}
        for cid, c in rnd.clients.items():
            edge = edges[cid] if edges is not None else None
            procs[cid] = self.env.process(self.client_process(c, edge.quota if edge is not None else quota, edge))
            if c.off < math.inf:
                self.env.process(self._watch(procs[cid], c.off - self.env.now))
        return procs

    def _deadline(self) -> simpy.Event | None:
        """The round's deadline, counted from now (the round's start)."""
        return self.env.timeout(self.cfg.deadline_s) if self.cfg.deadline_s is not None else None

    @staticmethod
    def _kept(rnd: Round, cids: list[int]) -> list[Message]:
        """The uploads of ``cids`` that arrived in time and that the server accepts (a client
        without a row yet is a closed-form one: it arrived)."""
        records, jobs = rnd.records, rnd.jobs
        return [jobs[cid].upload for cid in cids
                if (cid not in records or records[cid].status == "ok") and jobs[cid].rejected is None]

    def _settle(self, rnd: Round) -> None:
        """The server aggregates what it kept; the clients that pulled the whole download synced;
        every device is charged to the round's end; uploads the method rejects are marked."""
        algo, records, jobs, last_sync = self.algo, rnd.records, rnd.jobs, self.last_sync
        host_start = time.perf_counter()
        self._settle_devices(rnd)
        algo.apply(algo.aggregate(rnd.messages), rnd.number, rnd.plan)
        kept = sum(rec.status == "ok" for rec in rnd.earlier)
        for cid in rnd.selected:
            rec, job = records[cid], jobs[cid]
            if rec.download_s > 0 and rec.bytes_down == job.download.nbytes:
                last_sync[cid] = rnd.number - 1  # it pulled the model as of the previous round
            if rec.status == "ok" and job.rejected is None:
                kept += 1
            elif rec.status == "ok" and job.rejected:  # it arrived; the server drops it
                rec.status, rec.note = "rejected", job.rejected
        rnd.aggregated = kept
        self.took_part[rnd.selected] = True
        rnd.host_s += time.perf_counter() - host_start

    def _settle_devices(self, rnd: Round, cids: list[int] | None = None, end: float | None = None) -> None:
        """Every selected device (or ``cids``, to ``end``: an edge round's arrivals that go on to the
        next), whichever path played it: an arrival waits idle to the round's end (the others do
        not wait; ``idle_s``), which adds baseline and idle-radio energy under ``energy_attribution:
        round`` only (under ``session`` it disconnected on arriving: its radio's tail, charged with its
        upload, is the last it spends); its battery share drains by its row's energy; its radio/heat
        row is written back."""
        every = cids is None
        cids, end = rnd.selected if every else cids, rnd.end if end is None else end
        solo = rnd.solo if every else None
        ids = np.array(cids, dtype=np.int64)
        # the rows there are: a closed-form client's is written below, with its wait
        at = np.arange(len(cids)) if solo is None else np.delete(np.arange(len(cids)), solo[0])
        rows = [rnd.records[cids[i]] for i in at.tolist()]
        for c in rnd.clients.values() if every else [rnd.clients[cid] for cid in cids]:
            rnd.state[c.index] = (c.tail_from, c.tail_until, c.heat_s, c.at)
        state = rnd.state if every else rnd.state[[rnd.clients[cid].index for cid in cids]]
        down, up, finished, energy_radio, energy_compute, arrived, empty = settled(len(cids), solo, at, rows)
        devices = self.group_table.devices(ids)
        idle = np.where(arrived, np.maximum(0.0, end - finished), 0.0)
        charged = idle if self.charge_wait else np.zeros(len(cids))  # session: it disconnected on arriving
        energy_idle = baseline_j(devices, down, up, charged)
        energy_radio = energy_radio + radio.idle_j(devices.link, state[:, 0], state[:, 1], finished, finished + charged)
        left = np.where(empty, 0.0, self.charge_j[ids] - (energy_compute + energy_radio + energy_idle))
        self.charge_j[ids] = np.maximum(0.0, left)
        for rec, idle_s, idle_j, radio_j in zip(rows, idle[at].tolist(), energy_idle[at].tolist(),
                                                energy_radio[at].tolist()):
            rec.idle_s, rec.energy_idle_j, rec.energy_radio_j = idle_s, idle_j, radio_j
        if solo is not None:
            self._solo_records(rnd, solo[1], idle, energy_idle, energy_radio)
        self.radio_thermal[ids] = state

    def _record(self, rnd: Round) -> None:
        """The round's row, with the global model's evaluation when the schedule says one is due,
        and its clients' rows."""
        rows = rnd.rows = [rnd.records[cid] for cid in rnd.selected]
        if rnd.earlier:  # K > 1 edge rounds: every edge round's rows, by edge round, each in selection order
            place = {cid: i for i, cid in enumerate(rnd.selected)}
            rows = rnd.rows = sorted(rnd.earlier + rows, key=lambda rec: (rec.edge_round, place[rec.client]))
        backhaul = {} if rnd.edges is None else {"backhaul_bytes_up": sum(e.bytes_up for e in rnd.edges),
                                                 "backhaul_bytes_down": sum(e.bytes_down for e in rnd.edges)}
        rnd.record = RoundRecord(
            round=rnd.number, sim_time_s=rnd.end, accuracy=None, loss=None, selected=len(rows),
            aggregated=rnd.aggregated, dropped=len(rows) - rnd.aggregated,
            bytes_up=sum(r.bytes_up for r in rows), bytes_down=sum(r.bytes_down for r in rows),
            energy_j=sum(r.energy_j for r in rows), client_flops=sum(r.flops for r in rows), **backhaul)
        host_start = time.perf_counter()
        if self.schedule.evaluate(rnd.record):
            self.evaluate_into(rnd.record)
        rnd.record.host_seconds = rnd.host_s = rnd.host_s + time.perf_counter() - host_start
        self.round = rnd.number

    def evaluate_into(self, record: RoundRecord) -> None:
        """The global model's held-out figures into ``record`` (the tuning split's too, when held)."""
        record.accuracy, record.loss = self.algo.evaluate()
        record.tuning_accuracy = self.algo.evaluate_tuning()

    # -- one client on the event path ------------------------------------------------------------
    def client_process(self, c: ClientRound, quota: Quota, edge: EdgeServer | None = None):
        """Download, compute, upload, then report to ``quota``; behind an ``edge`` server the
        transfers cross the access link only, and the download waits (device idle, counted in
        ``download_s``) until the edge holds it (a later edge round's: it does already)."""
        env, cid = self.env, c.client.id
        hops = self.net.path(cid)[:1] if edge is not None else self.net.path(cid)
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
            c.rec.status = "dropped" if isinstance(stop, BatteryEmpty) else str(stop.cause)
            c.rec.note = "battery empty" if isinstance(stop, BatteryEmpty) else c.rec.note
            self._charge_partial(c)

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
                                   link.handshake_rtts * c.promote)
        power_w = c.client.device.power_idle_w + max(link.promotion_w, radio_w(link, direction))  # an upper bound
        yield from self._powered(c.transfer.done, c, power_w)
        self._end_transfer(c)

    def _end_transfer(self, c: ClientRound) -> None:
        """The transfer ended or was cut off now: its time, the bytes it got across, its radio
        energy and the tail it leaves."""
        now, link, transfer = self.env.now, c.client.link, c.transfer
        direction = "down" if c.phase == "download" else "up"
        if direction == "down":
            c.rec.download_s, c.rec.bytes_down = now - c.phase_start, int(transfer.sent / 8)
        else:
            c.rec.upload_s, c.rec.bytes_up = now - c.phase_start, int(transfer.sent / 8)
        radio_j = transfer_j(link, direction, now - transfer.started, c.promote, transfer.sent)
        c.tail_from, c.tail_until, tail_j = radio.tail(link, now)
        c.rec.energy_radio_j += float(radio_j + tail_j)

    def _compute(self, c: ClientRound):
        """Generator: the device computes for as long as its heat stretches its work."""
        env, device = self.env, c.client.device
        c.phase, c.phase_start = "compute", env.now
        c.heat_s, c.at = thermal.cooled(c.thermal_profile, c.heat_s, c.at, env.now), env.now
        compute_s = float(thermal.duration(c.thermal_profile, c.heat_s, c.work_s))
        yield from self._powered(env.timeout(compute_s), c, device.power_active_w + c.client.link.idle_w)
        c.rec.compute_s, c.rec.flops = compute_s, c.job.work.flops
        c.rec.energy_compute_j = float(compute_j(device, c.thermal_profile, c.heat_s, compute_s))
        c.heat_s, c.at = thermal.heated(c.thermal_profile, c.heat_s, compute_s), c.at + compute_s
        c.rec.energy_radio_j += float(radio.idle_j(c.client.link, c.tail_from, c.tail_until, c.phase_start, env.now))

    def _charge_partial(self, c: ClientRound) -> None:
        """A client cut off mid-phase: charge what it got through of that phase."""
        now, rec = self.env.now, c.rec
        elapsed = now - c.phase_start
        if c.phase == "edge":  # its edge server did not hold the download yet: it only waited
            rec.download_s = elapsed
            rec.energy_radio_j += float(radio.idle_j(c.client.link, c.tail_from, c.tail_until, now - elapsed, now))
        elif c.phase == "compute":
            done_s = float(thermal.work_in(c.thermal_profile, c.heat_s, elapsed))
            rec.compute_s, rec.flops = elapsed, c.job.work.flops * (done_s / c.work_s if c.work_s else 0.0)
            rec.energy_compute_j = float(compute_j(c.client.device, c.thermal_profile, c.heat_s, elapsed))
            c.heat_s, c.at = thermal.heated(c.thermal_profile, c.heat_s, elapsed), c.at + elapsed
            rec.energy_radio_j += float(radio.idle_j(c.client.link, c.tail_from, c.tail_until, now - elapsed, now))
        else:
            self.net.cancel(c.transfer)
            self._end_transfer(c)
        rec.finished_at = now

    def _powered(self, event: simpy.Event, c: ClientRound, power_w: float):
        """Wait for ``event`` unless the battery share runs out first (at ``power_w``, an upper bound)."""
        charge_j = float(self.charge_j[c.client.id])
        if charge_j == math.inf or power_w <= 0.0:  # nothing drains the share
            yield event
            return
        spent = c.rec.energy_j + baseline_j(c.client.device, c.rec.download_s, c.rec.upload_s, 0.0)
        left_s = max(0.0, charge_j - spent) / power_w
        result = yield event | self.env.timeout(left_s)
        if event not in result:
            raise BatteryEmpty

    def _clock(self, steps: list[float]):
        """The clock steps of the closed-form client that finishes last: the same additions the
        event path makes, so the round ends at the same bits (``now + (t - now)`` can miss ``t``)."""
        for step in steps:
            yield self.env.timeout(step)

    def _watch(self, proc: simpy.Process, after_s: float):
        """Interrupt a client that goes off (availability window ends or it fails) mid-round."""
        yield self.env.timeout(after_s)
        if proc.is_alive:
            proc.interrupt("dropped")

    # -- the host's learning ---------------------------------------------------------------
    def client_updates(self, round: int, selected: list[int], plan) -> dict[int, tuple[Message, Work]]:
        """The selected clients' real local steps: in order on the host model, or on ``pool``'s
        workers (same results; catch-up is pure bookkeeping and stays here)."""
        if self.pool is not None:
            return self.pool.client_updates(self.algo, round, selected, plan)
        return {cid: self.algo.client_update(cid, round, plan) for cid in selected}

    # -- around the rounds ---------------------------------------------------------------
    def excluded_records(self) -> list[ClientRecord]:
        excluded = (self.clients[cid] for cid in np.flatnonzero(~self.clients.eligible))
        return [ClientRecord(0, c.id, c.device_name, status="excluded", note=c.note,
                             peak_memory_bytes=self.algo.peak_memory_bytes()) for c in excluded]

    def divergence(self, rnd: Round) -> str | None:
        """Why learning cannot go on after this round (None if it can): a non-finite eval loss or
        global weight, or no client that arrived could take a finite step from the global model."""
        record, rows = rnd.record, rnd.rows
        if record.loss is not None and not math.isfinite(record.loss):
            return f"eval loss is {record.loss}"
        if not self.algo.trainable.all_finite():
            return "the global weights hold NaN/inf"
        arrived = [r for r in rows if r.status in ("ok", "rejected")]
        if arrived and all(r.status == "rejected" for r in arrived):
            return f"every update that arrived was rejected ({arrived[0].note})"
        return None

    def state(self) -> dict:
        """Engine state at a round boundary (JSON) besides ``arrays()``. Rounds are synchronous, so
        no SimPy process is pending then: the clock, who synced when, batteries, radios and heat are
        all there is."""
        ref = self.reference
        schedule = self.schedule.state()
        return {"round": self.round, "sim_time_s": self.env.now,
                "reference": None if ref is None else {
                    "bytes_down": ref.bytes_down, "bytes_up": ref.bytes_up,
                    "ops": {k: [op.flops, op.bytes] for k, op in ref.work.ops.items()}},
                **({"schedule": schedule} if schedule else {})}

    def arrays(self) -> dict[str, np.ndarray]:
        """The per-device state of the devices that took part so far (``devices``: their ids): the
        round each last synced at, its battery charge, its radio's tail and its heat. The others
        still hold what a fresh engine gives them, so a checkpoint grows with the devices that
        took part, not with the fleet."""
        ids = np.flatnonzero(self.took_part)
        return {"devices": ids, "last_sync": self.last_sync[ids], "charge_j": self.charge_j[ids],
                "radio_thermal": self.radio_thermal[ids]}

    def load_state(self, state: dict, arrays: dict[str, np.ndarray]) -> None:
        self.round = state["round"]
        self.schedule.load_state(state.get("schedule", {}))
        self.env = simpy.Environment(initial_time=state["sim_time_s"])
        self.net = Network(self.env, self.clients.access, self.net.cells)  # the network lives on the new clock
        ids = arrays["devices"]
        self.took_part[ids] = True
        self.last_sync[ids] = arrays["last_sync"]
        self.charge_j[ids] = arrays["charge_j"]
        self.radio_thermal[ids] = arrays["radio_thermal"]
        ref = state["reference"]
        if ref is not None:
            work = Work()
            for kind, (flops, nbytes) in ref["ops"].items():
                work.add(kind, flops, nbytes)
            self.reference = Estimate(ref["bytes_down"], ref["bytes_up"], work)

    def initial_round(self) -> Round:
        """Round 0: the global model's accuracy before training, and the excluded devices."""
        start = time.perf_counter()
        backhaul = {} if self.edges is None else {"backhaul_bytes_up": 0, "backhaul_bytes_down": 0}
        record = RoundRecord(0, float(self.env.now), None, None, **backhaul)
        self.evaluate_into(record)
        record.host_seconds = time.perf_counter() - start
        return Round(0, record=record, rows=self.excluded_records())

    def run(self, start_round: int = 1, initial: bool = True) -> None:
        """Drive rounds ``start_round..max`` (with ``initial``: round 0 first), telling every
        observer. Raises ``Diverged`` after reporting the round where learning broke down."""
        def server():
            if initial:
                self._report(self.initial_round())
            number = start_round
            while number <= self.cfg.max_rounds:
                rnd = yield from self.run_round(number)
                if rnd is None:
                    return
                self._report(rnd)
                problem = self.divergence(rnd)
                if problem:
                    raise Diverged(f"learning diverged at round {number}: {problem}")
                if self.schedule.stop(rnd.record):
                    return
                number += 1
        self.env.process(server())
        self.env.run()

    def _report(self, rnd: Round) -> None:
        for observer in self.observers:
            observer.round_done(self, rnd)
