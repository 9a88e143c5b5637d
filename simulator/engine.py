"""The SimPy engine: a server process running synchronous rounds over client processes.

Per round (docs/design.md, section 5): the server selects clients; the *learning* of every selected client
runs for real on the host first, in a fixed order and in zero simulated time; then SimPy plays the
systems side - each client process downloads over the network (``simulator.network``: links
shared by processor sharing), computes for the time its counted work takes on its device (times a
straggler slowdown), and uploads. The server waits for all uploads, the deadline, or (with
over-selection) the first ``clients_per_round`` arrivals; whatever arrived in time is aggregated,
the rest is charged but not aggregated (``late``). With hierarchical aggregation each cell's edge
server (``simulator.edge``) does this for its own clients and forwards one partial aggregate; the
server aggregates those. A device that goes off or runs its battery
empty mid-round is ``dropped``: the work it got through is charged. Processes are plain generators,
as in SimPy's own examples.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields

import numpy as np
import simpy

from edgefed.streams import Stream, rng
from edgefed.algorithms.base import Algorithm
from edgefed.algorithms.message import Message
from edgefed.algorithms.work import Work
from edgefed.devices.availability import Availability, AvailabilitySpec, StragglerSpec, slowdown
from edgefed.simulator.costs import compute_seconds
from edgefed.simulator.edge import EdgeServer, cell_quota, distinct_downloads
from edgefed.simulator.energy import needs_promotion, radio_energy, transfer_cost
from edgefed.simulator.fleet import Client, Fleet
from edgefed.simulator.network import Network, Transfer
from edgefed.simulator.radio import Radio
from edgefed.simulator.solo import GroupTable, Timelines, idle_j, timelines
from edgefed.simulator.records import ClientRecord, RoundObserver, RoundRecord
from edgefed.simulator.thermal import Thermal


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


class Engine:
    closed_form = True  # clients alone on their links skip the events (simulator/solo.py); tests compare both paths

    def __init__(self, algorithm: Algorithm, clients: Fleet | list[Client], rounds_cfg, seed: int, dtype: str = "fp32",
                 fleet_cfg=None, availability: Availability | None = None):
        self.algo = algorithm
        self.clients = clients if isinstance(clients, Fleet) else Fleet.from_clients(clients)
        self.group_table = GroupTable(self.clients)
        self.cfg = rounds_cfg
        self.seed = seed
        self.dtype = dtype
        self.env = simpy.Environment()
        # per device: the round whose global model it last pulled (-1: never), and its battery share
        # left in joules (inf: none to run out); arrays, so a round's bookkeeping touches only its clients
        self.last_sync = np.full(len(self.clients), -1, dtype=np.int32)
        self.round = 0
        cells = fleet_cfg.network.cells if fleet_cfg is not None else {}
        self.net = Network(self.env, self.clients.access, cells)
        # hierarchical aggregation: each cell's id on the wire (None: flat, clients talk to the server)
        self.edges = ({name: i for i, name in enumerate(sorted(cells))}
                      if rounds_cfg.aggregation.kind == "hierarchical" else None)
        self.edge_host_s = 0.0  # host seconds the edge servers spent aggregating this round
        self.avail = availability or Availability(AvailabilitySpec(), len(self.clients), seed)
        self.stragglers = fleet_cfg.stragglers if fleet_cfg is not None else StragglerSpec()
        fraction = fleet_cfg.battery_fraction if fleet_cfg is not None else None
        share_j = [g.device.battery_wh * 3600.0 * fraction if fraction is not None and g.device.battery_wh is not None
                   else math.inf for g in self.clients.groups]
        self.charge_j = np.array(share_j, dtype=float)[self.clients.group]
        self.reference: Estimate | None = None  # a recent job's size, for resource-aware selection
        # per device, carried across rounds: its radio's last tail (from, until; NaN: never woke) and
        # its heat (burst seconds spent, at); Radio/Thermal objects exist only for a round's clients
        self.radio_thermal = np.zeros((len(self.clients), 4))
        self.radio_thermal[:, :2] = np.nan
        self.took_part = np.zeros(len(self.clients), dtype=bool)  # whose rows above left their start values
        self.radios: dict[int, Radio] = {}
        self.thermals: dict[int, Thermal] = {}
        self._arrivals: list[ClientRecord] = []
        self._enough: simpy.Event | None = None
        self._need = 0
        self.pool = None  # a ClientPool runs client updates on workers (edgefed/parallel.py)
        self.plan = None  # what the algorithm planned for the current round (configure_round)
        self.updates: dict[int, tuple[Message, Work]] = {}  # the last round's, for trace recording
        self.observers: list[RoundObserver] = []

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
        """Download + compute + upload of the reference job on a dedicated link (no contention),
        per device; computed group by group over the devices' own link rates."""
        ref, fleet = self.reference, self.clients
        out = np.empty(len(ids))
        groups = fleet.group[ids]
        for g, group in enumerate(fleet.groups):
            mask = groups == g
            if mask.any():
                link, members = group.link, ids[mask]
                down = transfer_cost(link, ref.bytes_down, "down", needs_promotion(link, None),
                                     fleet.down_mbps[members]).seconds
                compute = compute_seconds(ref.work, group.device, self.dtype)
                up = transfer_cost(link, ref.bytes_up, "up", needs_promotion(link, compute), fleet.up_mbps[members]).seconds
                out[mask] = down + compute + up
        return out

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
            yield self.env.timeout(float(upcoming.min()) - self.env.now or self.avail.spec.retry_s)
            attempt += 1

    # -- one client's systems timeline -----------------------------------------------------
    def client_process(self, client: Client, job: Job, rec: ClientRecord, slow: float = 1.0,
                       edge: EdgeServer | None = None):
        """Download, compute, upload; behind an ``edge`` server, the transfers cross the access link
        only, and the download waits (device idle, counted in ``download_s``) until the edge holds it."""
        env, link = self.env, client.link
        radio, thermal = self.radios[client.id], self.thermals[client.id]
        work_s = compute_seconds(job.work, client.device, self.dtype) * slow  # at the burst rate
        phase, phase_start, transfer, promote = "download", env.now, None, False
        hops = self.net.path(client.id)[:1] if edge is not None else self.net.path(client.id)
        try:
            if edge is not None:
                phase = "edge"
                yield from self._powered(edge.ready[client.id], client, rec, client.device.power_idle_w + link.idle_w)
                rec.energy_radio_j += radio.idle_j(phase_start, env.now)
                phase = "download"
            promote, refund = radio.begin(env.now)  # a tail left by the last round may still run
            rec.energy_radio_j -= refund
            transfer = self.net.send(hops, job.download.nbytes, "down", link.promotion_s * promote)
            yield from self._powered(transfer.done, client, rec, self._transfer_power(client, "down"))
            rec.download_s, rec.bytes_down = env.now - phase_start, job.download.nbytes
            rec.energy_radio_j += self._radio_j(client, transfer, "down", promote) + radio.end(env.now)

            phase, phase_start = "compute", env.now
            thermal.cool(env.now)
            compute_s = thermal.duration(work_s)
            yield from self._powered(env.timeout(compute_s), client, rec, client.device.power_active_w + link.idle_w)
            thermal.load(compute_s)
            rec.compute_s, rec.flops = compute_s, job.work.flops
            rec.energy_compute_j = compute_s * client.device.power_active_w
            rec.energy_radio_j += radio.idle_j(phase_start, env.now)

            phase, phase_start = "upload", env.now
            promote, refund = radio.begin(env.now)
            rec.energy_radio_j -= refund
            transfer = self.net.send(hops, job.upload.nbytes, "up", link.promotion_s * promote)
            yield from self._powered(transfer.done, client, rec, self._transfer_power(client, "up"))
            rec.upload_s, rec.bytes_up = env.now - phase_start, job.upload.nbytes
            rec.energy_radio_j += self._radio_j(client, transfer, "up", promote) + radio.end(env.now)
            rec.finished_at = env.now
            edge.arrived(rec) if edge is not None else self._arrived(rec)
        except (simpy.Interrupt, BatteryEmpty) as stop:
            rec.status = "dropped" if isinstance(stop, BatteryEmpty) else str(stop.cause)
            rec.note = "battery empty" if isinstance(stop, BatteryEmpty) else rec.note
            self._charge_partial(client, job, rec, phase, env.now - phase_start, work_s, transfer, promote)

    def _charge_partial(self, client, job, rec, phase, elapsed, work_s, transfer: Transfer, promote: bool):
        """A client cut off mid-phase: charge what it got through of that phase."""
        radio, thermal = self.radios[client.id], self.thermals[client.id]
        if phase == "edge":  # its edge server did not hold the download yet: it only waited
            rec.download_s = elapsed
            rec.energy_radio_j += radio.idle_j(self.env.now - elapsed, self.env.now)
        elif phase == "compute":
            done_s = thermal.work_in(elapsed)
            thermal.load(elapsed)
            rec.compute_s, rec.flops = elapsed, job.work.flops * (done_s / work_s if work_s else 0.0)
            rec.energy_compute_j = elapsed * client.device.power_active_w
            rec.energy_radio_j += radio.idle_j(self.env.now - elapsed, self.env.now)
        else:
            self.net.cancel(transfer)
            radio_j = self._radio_j(client, transfer, "down" if phase == "download" else "up", promote)
            if phase == "download":
                rec.download_s, rec.bytes_down = elapsed, int(transfer.sent / 8)
            else:
                rec.upload_s, rec.bytes_up = elapsed, int(transfer.sent / 8)
            rec.energy_radio_j += radio_j + radio.end(self.env.now)
        rec.finished_at = self.env.now

    def _radio_j(self, client: Client, transfer: Transfer, direction: str, promote: bool) -> float:
        """Radio energy of a transfer so far: promotion (or the part of it elapsed), then the
        Huang et al. power integrated over the bytes actually sent."""
        link = client.link
        elapsed = self.env.now - transfer.started
        promo_s = link.promotion_s if promote else 0.0
        active_s = max(0.0, elapsed - promo_s)
        return min(elapsed, promo_s) * link.promotion_w + radio_energy(link, direction, False, active_s,
                                                                        transfer.sent / 8)

    def _transfer_power(self, client: Client, direction: str) -> float:
        """An upper bound on device + radio power during a transfer (at the link's full rate)."""
        link = client.link
        rate, alpha = ((link.up_mbps, link.power_up_w_per_mbps) if direction == "up"
                       else (link.down_mbps, link.power_down_w_per_mbps))
        return client.device.power_idle_w + max(link.promotion_w, link.power_base_w + alpha * rate)

    def _powered(self, event: simpy.Event, client: Client, rec: ClientRecord, power_w: float):
        """Wait for ``event`` unless the battery share runs out first (at ``power_w``, an upper bound)."""
        charge_j = float(self.charge_j[client.id])
        if charge_j == math.inf or power_w <= 0.0:  # nothing drains the share
            yield event
            return
        spent = rec.energy_j + client.device.power_idle_w * (rec.download_s + rec.upload_s)
        left_s = max(0.0, charge_j - spent) / power_w
        result = yield event | self.env.timeout(left_s)
        if event not in result:
            raise BatteryEmpty

    def _clock(self, steps: list[float]):
        """The clock steps of the closed-form client that finishes last: the same additions the
        event path makes, so the round ends at the same bits (``now + (t - now)`` can miss ``t``)."""
        for step in steps:
            yield self.env.timeout(step)

    def _arrived(self, rec: ClientRecord) -> None:
        self._arrivals.append(rec)
        if self._enough is not None and len(self._arrivals) == self._need:
            self._enough.succeed()

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

    # -- the server ----------------------------------------------------------------------
    def run_round(self, round: int, evaluate_now: bool):
        """Generator: one synchronous round; returns (RoundRecord, [ClientRecord])."""
        env, algo = self.env, self.algo
        available = yield from self._available_now(round)
        if available is None:
            return None  # no device will ever be on again
        host_start = time.perf_counter()
        selected = self.select(round, available)
        plan = self.plan = algo.configure_round(round, selected)
        for observer in self.observers:
            observer.round_configured(self, round)
        downs = {cid: algo.catch_up(cid, self.last_synced(cid), round, plan) for cid in selected}
        self.updates = self.client_updates(round, selected, plan)  # the real learning, zero simulated time
        merged: dict[tuple[int, int], Work] = {}  # a replay serves clients shared Work objects: merge each pair once
        jobs = {}
        for cid in selected:
            (down, down_work), (up, up_work) = downs[cid], self.updates[cid]
            key = (id(down_work), id(up_work))
            if key not in merged:
                merged[key] = Work().merge(down_work).merge(up_work)
            jobs[cid] = Job(down, merged[key], up, algo.rejects(up))
        host_learning = time.perf_counter() - host_start
        median = jobs[selected[len(selected) // 2]]
        self.reference = Estimate(median.download.nbytes, median.upload.nbytes, median.work)

        slow = {cid: slowdown(self.stragglers, self.seed, cid, round) for cid in selected}
        off = {cid: self.avail.off_at(cid, env.now, round) for cid in selected}
        solo, timelines = self._solo_timelines(selected, jobs, slow, off)
        events = [cid for cid in selected if cid not in solo]
        members = {cid: self.clients[cid] for cid in events}
        self.radios = {cid: Radio(members[cid].link) for cid in events}
        self.thermals = {cid: Thermal(members[cid].device.thermal) for cid in events}
        for cid in events:
            self.radios[cid].load_state(self.radio_thermal[cid, :2].tolist())
            self.thermals[cid].load_state(self.radio_thermal[cid, 2:].tolist())
        records = {cid: ClientRecord(round, cid, members[cid].device_name,
                                     peak_memory_bytes=jobs[cid].work.peak_memory_bytes) for cid in events}
        if self.edges is None:
            end, messages, edges = yield from self._flat_tier(round, selected, members, jobs, records, slow, off,
                                                              solo, timelines)
        else:
            end, messages, edges = yield from self._edge_tier(round, selected, members, jobs, records, slow, off)

        arrived = [cid for cid in selected if records[cid].status == "ok" and jobs[cid].rejected is None]
        host_start = time.perf_counter()
        algo.apply(algo.aggregate(messages), round, plan)
        for cid in selected:
            if records[cid].download_s > 0 and records[cid].bytes_down == jobs[cid].download.nbytes:
                self.last_sync[cid] = round - 1  # it pulled the model as of the previous round
        for cid in events:
            rec = records[cid]
            idle = max(0.0, end - rec.finished_at) if rec.status == "ok" else 0.0
            rec.idle_s = idle
            device = members[rec.client].device
            rec.energy_idle_j = device.power_idle_w * (rec.download_s + rec.upload_s + idle)
            rec.energy_radio_j += self.radios[rec.client].idle_j(rec.finished_at, rec.finished_at + idle)
            if self.charge_j[rec.client] < math.inf:  # a device that ran empty stays off
                left = 0.0 if rec.note == "battery empty" else float(self.charge_j[rec.client]) - rec.energy_j
                self.charge_j[rec.client] = max(0.0, left)
        for cid in selected:
            rec = records[cid]
            if rec.status == "ok" and jobs[cid].rejected:  # it arrived; the server drops it
                rec.status, rec.note = "rejected", jobs[cid].rejected
        for cid in events:
            self.radio_thermal[cid] = [*self.radios[cid].state(), *self.thermals[cid].state()]
        self.took_part[selected] = True
        accuracy = loss = None
        if evaluate_now:
            accuracy, loss = algo.evaluate()
        host_seconds = host_learning + self.edge_host_s + time.perf_counter() - host_start
        rows = [records[cid] for cid in selected]
        self.round = round
        backhaul = {} if edges is None else {"backhaul_bytes_up": sum(e.bytes_up for e in edges),
                                             "backhaul_bytes_down": sum(e.bytes_down for e in edges)}
        return RoundRecord(
            round=round, sim_time_s=end, accuracy=accuracy, loss=loss, selected=len(selected),
            aggregated=len(arrived), dropped=len(selected) - len(arrived),
            bytes_up=sum(r.bytes_up for r in rows), bytes_down=sum(r.bytes_down for r in rows),
            energy_j=sum(r.energy_j for r in rows), client_flops=sum(r.flops for r in rows),
            host_seconds=host_seconds, **backhaul), rows

    def _start_clients(self, cids, members, jobs, records, slow, off, edges=None) -> dict[int, simpy.Process]:
        """Start the processes of clients ``cids`` (and their availability watches); ``slow``/``off``:
        each one's straggler slowdown and off time; ``edges``: client -> its edge server, under
        hierarchical aggregation."""
        env, procs = self.env, {}
        for cid in cids:
            edge = edges[cid] if edges is not None else None
            procs[cid] = env.process(self.client_process(members[cid], jobs[cid], records[cid], slow[cid], edge))
            if off[cid] < math.inf:
                env.process(self._watch(procs[cid], off[cid] - env.now))
        return procs

    def _flat_tier(self, round, selected, members, jobs, records, slow, off, solo, timelines):
        """Generator: clients talk to the server itself, which waits for every upload, the deadline
        or the first ``clients_per_round`` arrivals; the ``solo`` clients' ``timelines`` are known
        already. Returns (round end, the uploads to aggregate, None)."""
        env = self.env
        self._arrivals, self._need = [], min(self.cfg.clients_per_round, len(selected))
        self._enough = env.event() if self.cfg.selection == "overselect" else None
        procs = self._start_clients(list(members), members, jobs, records, slow, off)  # the event path's clients
        waits = list(procs.values())
        if solo:  # the last closed-form upload ends the round unless an event-path client ends later
            waits.append(env.process(self._clock(timelines.steps[timelines.finished_at.argmax()].tolist())))
        wait = env.all_of(waits)
        if self._enough is not None:
            wait = wait | self._enough
        if self.cfg.deadline_s is not None:
            wait = wait | env.timeout(self.cfg.deadline_s)
        yield wait
        end = env.now
        self._cut_off(procs.values())
        yield env.timeout(0)  # let the interrupted processes record what they got through
        for rec in self._arrivals[self._need:] if self._enough is not None else []:
            rec.status = "late"  # arrived together with the K-th but beyond K
        if solo:
            records.update(self._solo_records(round, solo, timelines, jobs, end))
        return end, [jobs[cid].upload for cid in selected
                     if records[cid].status == "ok" and jobs[cid].rejected is None], None

    @staticmethod
    def _cut_off(procs) -> None:
        for proc in procs:
            if proc.is_alive:
                proc.interrupt("late")

    def _edge_tier(self, round, selected, members, jobs, records, slow, off):
        """Generator: each cell's edge server receives its clients' distinct downloads once over the
        backhaul, applies the deadline and over-selection to its own clients, and forwards one
        partial aggregate; returns (the last cell message's arrival, those messages, the edges)."""
        env = self.env
        need = min(self.cfg.clients_per_round, len(selected))
        overselect = self.cfg.selection == "overselect"
        in_cell: dict[str, list[int]] = {}
        for cid in selected:
            in_cell.setdefault(members[cid].cell, []).append(cid)
        edges = []
        for cell in sorted(in_cell):
            cids = in_cell[cell]
            keep = cell_quota(len(cids), need, len(selected)) if overselect else len(cids)
            edge = EdgeServer(cell, self.edges[cell], cids, keep, env.event() if overselect else None)
            for group in distinct_downloads([jobs[cid].download for cid in cids]):
                transfer = self.net.send(self.net.backhaul(cell), jobs[cids[group[0]]].download.nbytes, "down")
                edge.downloads.append(transfer)
                edge.ready.update({cids[i]: transfer.done for i in group})
            edges.append(edge)
        procs = self._start_clients(selected, members, jobs, records, slow, off,
                                    {cid: edge for edge in edges for cid in edge.clients})
        self.edge_host_s = 0.0
        yield env.all_of([env.process(self._edge_process(round, edge, procs, jobs, records)) for edge in edges])
        return env.now, [edge.message for edge in edges if edge.message is not None], edges

    def _edge_process(self, round, edge: EdgeServer, procs, jobs, records):
        """One edge server's round after the downloads: wait for its clients (all, the deadline or
        its over-selection quota), aggregate what arrived, send it up the backhaul."""
        env = self.env
        wait = env.all_of([procs[cid] for cid in edge.clients])
        if edge.enough is not None:
            wait = wait | edge.enough
        if self.cfg.deadline_s is not None:
            wait = wait | env.timeout(self.cfg.deadline_s)
        yield wait
        self._cut_off(procs[cid] for cid in edge.clients)
        yield env.timeout(0)  # let the interrupted processes record what they got through
        for rec in edge.arrivals[edge.keep:] if edge.enough is not None else []:
            rec.status = "late"
        for transfer in edge.downloads:  # one that no client waits for any more stops with the round
            if transfer.finished_at is None:
                self.net.cancel(transfer)
        edge.bytes_down = sum(int(transfer.sent / 8) for transfer in edge.downloads)
        host_start = time.perf_counter()
        edge.message = self.algo.partial([jobs[cid].upload for cid in edge.clients
                                          if records[cid].status == "ok" and jobs[cid].rejected is None],
                                         round, edge.index)
        self.edge_host_s += time.perf_counter() - host_start
        if edge.message is not None:
            edge.bytes_up = edge.message.nbytes
            yield self.net.send(self.net.backhaul(edge.cell), edge.bytes_up, "up").done

    def _solo_timelines(self, selected: list[int], jobs: dict[int, Job], slow: dict, off: dict):
        """The clients whose timelines are computed in closed form (``simulator.solo``): alone on
        their access link, an unlimited battery share, no off time this round, done before the
        deadline, no over-selection (whose arrival order needs the events) and no edge servers
        (which pace their clients' downloads). Returns their ids (a dict, in round order) and their
        ``Timelines``."""
        if not self.closed_form or self.cfg.selection == "overselect" or self.edges is not None:
            return {}, None
        fleet, table = self.clients, self.group_table
        ids = np.array(selected, dtype=np.int64)
        candidate = table.solo[fleet.group[ids]] & (self.charge_j[ids] == math.inf) & \
            np.array([off[cid] == math.inf for cid in selected], dtype=bool)
        ids = ids[candidate]
        if not ids.size:
            return {}, None
        chosen = [jobs[cid] for cid in ids.tolist()]
        group = fleet.group[ids]
        seconds: dict[tuple[int, int], float] = {}  # per (work, group): clients share a replay's Work objects
        for job, g in zip(chosen, group.tolist()):
            if (id(job.work), g) not in seconds:
                seconds[id(job.work), g] = compute_seconds(job.work, fleet.groups[g].device, self.dtype)
        work_s = np.array([seconds[id(job.work), g] * slow[cid] for job, g, cid in zip(chosen, group.tolist(), ids.tolist())])
        found = timelines(self.env.now, table, group, fleet.up_mbps[ids], fleet.down_mbps[ids], self.radio_thermal[ids],
                          np.array([job.download.nbytes for job in chosen], dtype=float),
                          np.array([job.upload.nbytes for job in chosen], dtype=float), work_s)
        if self.cfg.deadline_s is not None:  # a client the deadline cuts off is charged by the events
            keep = found.finished_at < self.env.now + self.cfg.deadline_s
            ids, found = ids[keep], Timelines(*(getattr(found, f.name)[keep] for f in fields(Timelines)))
        return dict.fromkeys(ids.tolist()), found

    def _solo_records(self, round: int, solo: dict, found: Timelines, jobs: dict[int, Job], end: float) -> dict:
        """Rows of the closed-form clients once the round ended at ``end`` (the idle wait, its radio
        energy), and their radio/heat rows written back."""
        ids = np.fromiter(solo, dtype=np.int64, count=len(solo))
        group = self.clients.group[ids]
        link = {name: values[group] for name, values in self.group_table.link.items()}
        idle = np.maximum(0.0, end - found.finished_at)
        energy_idle = self.group_table.power_idle_w[group] * (found.download_s + found.upload_s + idle)
        energy_radio = found.energy_radio_j + idle_j(link, found.state[:, 0], found.state[:, 1], found.finished_at,
                                                     found.finished_at + idle)
        self.radio_thermal[ids] = found.state
        names = [g.device_name for g in self.clients.groups]
        columns = zip(ids.tolist(), group.tolist(), found.download_s.tolist(), found.compute_s.tolist(),
                      found.upload_s.tolist(), idle.tolist(), found.energy_compute_j.tolist(), energy_radio.tolist(),
                      energy_idle.tolist(), found.finished_at.tolist())
        flops: dict[int, float] = {}  # per Work object, shared by a replay's clients
        for job in map(jobs.__getitem__, solo):
            if id(job.work) not in flops:
                flops[id(job.work)] = job.work.flops
        records = {}
        for cid, g, down_s, compute_s, up_s, idle_s, compute_j, radio_j, idle_j_, finished in columns:
            job = jobs[cid]
            records[cid] = ClientRecord(round, cid, names[g], "ok", down_s, compute_s, up_s, idle_s, compute_j, radio_j,
                                        idle_j_, job.upload.nbytes, job.download.nbytes, flops[id(job.work)],
                                        job.work.peak_memory_bytes, "", finished)
        return records

    def excluded_records(self) -> list[ClientRecord]:
        excluded = (self.clients[cid] for cid in np.flatnonzero(~self.clients.eligible))
        return [ClientRecord(0, c.id, c.device_name, status="excluded", note=c.note,
                             peak_memory_bytes=self.algo.peak_memory_bytes()) for c in excluded]

    def divergence(self, record: RoundRecord, rows: list[ClientRecord]) -> str | None:
        """Why learning cannot go on after this round (None if it can): a non-finite eval loss or
        global weight, or no client that arrived could take a finite step from the global model."""
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
        return {"round": self.round, "sim_time_s": self.env.now,
                "reference": None if ref is None else {
                    "bytes_down": ref.bytes_down, "bytes_up": ref.bytes_up,
                    "ops": {k: [op.flops, op.bytes] for k, op in ref.work.ops.items()}}}

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

    def initial_round(self) -> tuple[RoundRecord, list[ClientRecord]]:
        """Round 0: the global model's accuracy before training, and the excluded devices."""
        start = time.perf_counter()
        accuracy, loss = self.algo.evaluate()
        backhaul = {} if self.edges is None else {"backhaul_bytes_up": 0, "backhaul_bytes_down": 0}
        return RoundRecord(0, float(self.env.now), accuracy, loss, host_seconds=time.perf_counter() - start,
                           **backhaul), self.excluded_records()

    def run(self, start_round: int = 1, initial: bool = True) -> None:
        """Drive rounds ``start_round..max`` (with ``initial``: round 0 first), telling every
        observer. Raises ``Diverged`` after reporting the round where learning broke down."""
        def server():
            if initial:
                self._report(*self.initial_round())
            for r in range(start_round, self.cfg.max + 1):
                evaluate_now = r % self.cfg.eval_every == 0 or r == self.cfg.max
                result = yield from self.run_round(r, evaluate_now)
                if result is None:
                    return
                self._report(*result)
                problem = self.divergence(*result)
                if problem:
                    raise Diverged(f"learning diverged at round {r}: {problem}")
        self.env.process(server())
        self.env.run()

    def _report(self, record: RoundRecord, rows: list[ClientRecord]) -> None:
        for observer in self.observers:
            observer.round_done(self, record, rows)
