"""The synchronous engine: a server process running rounds over its clients' sessions.

A round (docs/design.md, section 5) is a short sequence of phases over one ``Round`` object, which
holds all of the round's state and is what observers receive; what outlives a round (per-device
arrays, the clock, the network) is the engine's ``Sessions`` (``simulator.session``). The server
selects clients and the algorithm plans the round; the *learning* of every selected client runs
for real on the host (``simulator.host``), in a fixed order and in zero simulated time; each
client is then placed - in closed form when it is alone on its link and nothing can cut it short
(``simulator.solo``), else as a client process on the event path - and plays its session against
the server, or under hierarchical aggregation against its cell's edge server
(``simulator.edge.EdgeTier``), which closes by one rule (``simulator.closing``): every upload,
the deadline, or the over-selection quota. What arrived in time is aggregated, the rest is
charged but not aggregated (``late``). Settling charges every device its wait to the round's end,
its battery and its radio and heat, whichever path played it.
"""
from __future__ import annotations

import math

import numpy as np
import simpy

from edgefed.algorithms.work import Work
from edgefed.devices.availability import Availability
from edgefed.simulator import radio
from edgefed.simulator.closing import Quota, close
from edgefed.simulator.costs import compute_seconds
from edgefed.simulator.edge import EdgeTier
from edgefed.simulator.energy import transfer_s
from edgefed.simulator.fleet import Client, Fleet
from edgefed.simulator.host import Estimate, divergence, evaluate_into, host_time, initial_round, learn, report
from edgefed.simulator.inputs import EngineConfig, Learner
from edgefed.simulator.records import RoundObserver, RoundRecord
from edgefed.simulator.schedule import EveryRounds, Schedule
from edgefed.simulator.session import Round, Sessions
from edgefed.simulator.topology import round_links
from edgefed.streams import Stream, rng


class Engine:
    """Synchronous rounds: select, learn on the host, play the clients' sessions, settle, record."""

    def __init__(self, algorithm: Learner, clients: Fleet | list[Client], config: EngineConfig,
                 availability: Availability | None = None):
        self.algo, self.cfg = algorithm, config
        self.clients = clients if isinstance(clients, Fleet) else Fleet.from_clients(clients)
        self.sessions = Sessions(self.clients, config, availability)
        self.edge_tier = EdgeTier(self) if config.hierarchical else None
        # HierFAVG's edge rounds per cloud round (1: one aggregation per round, flat or hierarchical)
        self.edge_rounds = config.edge_rounds if config.hierarchical else 1
        self.round = 0
        self.reference: Estimate | None = None  # a recent job's size, for the next rounds' resource-aware selection
        self.pool = None  # a ClientPool runs client updates on workers (edgefed/parallel.py)
        self.observers: list[RoundObserver] = []
        # when to evaluate and stop (the runner may give a cost budget instead)
        self.schedule: Schedule = EveryRounds(config.eval_every, config.max_rounds)

    @property
    def env(self) -> simpy.Environment:
        return self.sessions.env

    def run(self, start_round: int = 1, initial: bool = True) -> None:
        """Drive rounds ``start_round..max`` (with ``initial``: round 0 first), telling every
        observer. Raises ``Diverged`` after reporting the round where learning broke down."""
        def server():
            if initial:
                report(self.observers, self, initial_round(self.algo, self.clients, self.env.now,
                                                           self.edge_tier is not None))
            number = start_round
            while number <= self.cfg.max_rounds:
                rnd = yield from self.run_round(number)
                if rnd is None:
                    return
                report(self.observers, self, rnd)
                problem = divergence(self.algo, rnd)
                if problem:
                    raise Diverged(f"learning diverged at round {number}: {problem}")
                if self.schedule.stop(rnd.record):
                    return
                number += 1
        self.env.process(server())
        self.env.run()

    def run_round(self, number: int):
        """Generator: one synchronous round; returns its recorded ``Round`` (None: no device will
        ever be on again)."""
        available = yield from self._available_now(number)
        if available is None:
            return None
        rnd = Round(number)
        with host_time(rnd):
            self._configure(rnd, available)
            self.reference = learn(self.algo, self.pool, rnd, self.learning_round(number), self.sessions.last_synced)
        self.sessions.place(rnd)
        yield from self._flat_tier(rnd) if self.edge_tier is None else self.edge_tier.play(rnd)
        self._settle(rnd)
        self._record(rnd)
        return rnd

    # -- the round's phases ----------------------------------------------------------------------
    def _configure(self, rnd: Round, available: np.ndarray) -> None:
        """Select the round's clients and let the algorithm plan it; observers see the plan."""
        rnd.selected = self.select(rnd.number, available)
        rnd.plan = self.algo.configure_round(rnd.number, rnd.selected)
        for observer in self.observers:
            observer.round_configured(self, rnd)

    def _flat_tier(self, rnd: Round):
        """Generator: the clients talk to the server itself, which closes on them (``simulator.closing``)
        with a quota of ``clients_per_round`` under over-selection; the closed-form clients' clock
        stands for their uploads."""
        env = self.env
        quota = Quota(min(self.cfg.clients_per_round, len(rnd.selected)),
                      env.event() if self.cfg.selection == "overselect" else None)
        procs = self.sessions.start(rnd, quota)
        clock = env.process(self._clock(rnd.clock)) if rnd.clock is not None else None
        yield from close(env, list(procs.values()), quota, self.deadline(), clock)
        rnd.end, rnd.messages = env.now, rnd.kept(rnd.selected)

    def _settle(self, rnd: Round) -> None:
        """The server aggregates what it kept; the clients that pulled the whole download synced;
        every device is charged to the round's end; uploads the method rejects are marked."""
        algo, records, jobs, last_sync = self.algo, rnd.records, rnd.jobs, self.sessions.last_sync
        with host_time(rnd):
            self.sessions.settle(rnd)
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
            self.sessions.took_part[rnd.selected] = True

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
            energy_j=sum(r.energy_j for r in rows), client_flops=sum(r.flops for r in rows), **backhaul,
            links=None if self.cfg.topology is None else round_links(self.cfg.topology, self.clients.attached, rows,
                                                                      rnd.edges))
        with host_time(rnd):
            if self.schedule.evaluate(rnd.record):
                evaluate_into(self.algo, rnd.record)
        rnd.record.host_seconds = rnd.host_s
        self.round = rnd.number

    def learning_round(self, number: int, edge_round: int = 1) -> int:
        """The round the method's hooks are told for an edge round of round ``number``: with K > 1
        edge rounds per cloud round each edge round learns as a round (its batches, its
        directions), so one cell's K edge rounds learn as K flat rounds do."""
        return (number - 1) * self.edge_rounds + edge_round

    def deadline(self) -> simpy.Event | None:
        """The round's deadline, counted from now (the round's start)."""
        return self.env.timeout(self.cfg.deadline_s) if self.cfg.deadline_s is not None else None

    def _clock(self, steps: list[float]):
        """The clock steps of the closed-form client that finishes last: the same additions the
        event path makes, so the round ends at the same bits (``now + (t - now)`` can miss ``t``)."""
        for step in steps:
            yield self.env.timeout(step)

    # -- selection -----------------------------------------------------------------------------
    def _available_now(self, round: int):
        """Generator: wait until some usable device is on, or a busy one is freed; returns their ids
        (None: never again)."""
        attempt, avail = 0, self.sessions.avail
        while True:
            usable = self.sessions.usable()
            on = usable[avail.on(usable, self.env.now, (round, attempt))]
            if on.size:
                return on
            upcoming = avail.next_on(usable, self.env.now)
            upcoming = np.concatenate([upcoming[~np.isnan(upcoming)], self.sessions.freed()])
            if not upcoming.size:
                return None
            wait_s = float(upcoming.min()) - self.env.now  # may round below 0 where on() said off: retry then
            yield self.env.timeout(wait_s if wait_s > 0 else avail.spec.retry_s)
            attempt += 1

    def select(self, round: int, available: np.ndarray | None = None) -> list[int]:
        """Client ids for ``round`` among ``available`` (default: every usable device)."""
        if available is None:
            available = self.sessions.usable()
        draw = rng(self.cfg.seed, Stream.SELECTION, round)
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
        radio idle and no connection open at first: the device model over the devices' own link rates."""
        ref, link = self.reference, self.sessions.group_table.devices(ids).link
        compute = np.array([compute_seconds(ref.work, g.device, self.cfg.dtype) for g in self.clients.groups])
        compute = compute[self.clients.group[ids]]
        promote_down, _ = radio.wake(link, math.nan, 0.0)
        promote_up, _ = radio.wake(link, link.tail_s, compute)  # the download's tail began ``compute`` s earlier
        down_delay, down_serialise = transfer_s(link, "down", 8.0 * ref.bytes_down, promote_down,
                                                radio.handshakes(link, math.nan, 0.0))
        up_delay, up_serialise = transfer_s(link, "up", 8.0 * ref.bytes_up, promote_up,
                                            radio.handshakes(link, 0.0, compute))
        return down_delay + down_serialise + compute + (up_delay + up_serialise)

    # -- checkpoints -----------------------------------------------------------------------------
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
        return self.sessions.arrays()

    def load_state(self, state: dict, arrays: dict[str, np.ndarray]) -> None:
        self.round = state["round"]
        self.schedule.load_state(state.get("schedule", {}))
        self.sessions.restart(state["sim_time_s"])
        self.sessions.load_arrays(arrays)
        ref = state["reference"]
        if ref is not None:
            work = Work()
            for kind, (flops, nbytes) in ref["ops"].items():
                work.add(kind, flops, nbytes)
            self.reference = Estimate(ref["bytes_down"], ref["bytes_up"], work)


class Diverged(RuntimeError):
    """The global model's learning diverged (non-finite loss or weights); the run stops."""
