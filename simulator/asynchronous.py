"""Asynchronous rounds (``rounds.mode: async``): buffered asynchronous aggregation (FedBuff, Nguyen
et al., AISTATS 2022, Algorithm 1) as a second way to drive the device model and client sessions
that the synchronous engine composes (``simulator.session``; docs/design.md, section 5,
"Asynchronous rounds").

``concurrency`` slots each hold one *session*: a device's download, computation and upload, from
its download's start to its upload's end, played by ``Sessions.client_process`` and charged by
the same device model (``simulator.energy``, ``radio``, ``thermal``) and the same settling as a
synchronous round's client. A session starts from the model version current at its start: its
learning runs for real on the host at once, in zero simulated time, through the same phases as a
round's clients (``host.learn``, ``Sessions.place``), with the methods' hooks told
round ``version + 1`` (its plan, catch-up and fold are the server's per version), except
``client_update``, told the session's own number (1 + its index in the start order), which keys
its batches, directions, straggler slowdown and failure. Every ``buffer`` (K) arrivals the server
folds them into a new version, ``x <- x + server_lr * sum_i w(s_i) * u_i / sum_j u_j * delta_i``
(``Algorithm.fold``; ``u``: the method's upload weights, 1 for FedBuff's plain 1/K), where ``s_i``
is how many versions old an update is; one more than ``max_staleness`` versions old is discarded
(``stale``).

The server acts at the end of each simulated instant at which something happened (a session
ended, a device came on): it takes the sessions that ended then in device-id order - settling
each device, buffering or discarding its update and folding whenever the buffer holds K - and
then refills the free slots in one draw, without replacement, uniformly from the idle, available,
memory-eligible devices not in a session (a device runs one session at a time, and may start
another as soon as its last one ends, whatever the version: keyed by the session, two sessions of
a device at one version draw differently). The draws of version ``v`` continue one generator of
the selection stream, keyed like synchronous round ``v + 1``'s, and availability's coins are
keyed (``v + 1``, attempt) like that round's: with one slot and a buffer of one (session ``v + 1``
is version ``v``'s only one) async plays the synchronous rounds bit for bit; with every session of
a version ending at one instant it selects, times and charges as they do, its sessions drawing
their own (tests/test_asynchronous.py). ``rounds.max`` counts versions; at the last one the
sessions still running are cut (``cancelled``, charged what they got through). ``deadline_s`` runs
from a session's start (``late``). A run in which no device can start a session any more ends early,
with a last row for the sessions that ended after the last version (nothing folded). A version's
row also holds what the sessions still running at its time had spent by then, phase by phase
(``energy_in_flight_j``, ``Sessions.spent_j``), which energy to a target adds.

Checkpoints are taken as a version is made. They hold, besides what a synchronous one holds, the
log of every session started (its device, start version, message sizes, counted work and whether
the server rejects its upload) and the uploads of the sessions not yet taken in. ``--resume``
plays the run's timeline again from time 0 with the logged sizes instead of the learning - the
same code, so the same bits - up to the checkpoint's version, checks that every device's battery,
radio and heat come out as the checkpoint holds them, then puts the logged uploads in and goes on
learning. A resume costs the events of the run so far (no learning) and the log grows with the
sessions: a few dozen bytes each.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import simpy

from edgefed.algorithms.message import Message
from edgefed.algorithms.work import OP_KINDS, OpCount, Work
from edgefed.devices.availability import Availability
from edgefed.simulator.engine import Diverged
from edgefed.simulator.fleet import Client, Fleet
from edgefed.simulator.host import divergence, evaluate_into, host_time, initial_round, learn, report
from edgefed.simulator.inputs import EngineConfig, Learner
from edgefed.simulator.records import ClientRecord, RoundObserver, RoundRecord
from edgefed.simulator.schedule import EveryRounds, Schedule
from edgefed.simulator.session import ClientRound, Job, Round, Sessions
from edgefed.simulator.topology import round_links
from edgefed.streams import Stream, rng

# one row of the session log: device, start version, download and upload bytes, rejected (0/1),
# peak memory, then FLOPs and bytes per op class (OP_KINDS order)
LOG_WIDTH = 6 + 2 * len(OP_KINDS)


class AsyncEngine:
    """Sessions driven by model versions instead of rounds; ``round`` is the model version."""

    def __init__(self, algorithm: Learner, clients: Fleet | list[Client], config: EngineConfig,
                 availability: Availability | None = None):
        self.algo, self.cfg = algorithm, config
        self.clients = clients if isinstance(clients, Fleet) else Fleet.from_clients(clients)
        self.sessions = Sessions(self.clients, config, availability)
        self.sessions.closed_form = False  # every session is a client process: its end is an event the server waits for
        self.round = 0
        self.pool = None  # a ClientPool runs client updates on workers (edgefed/parallel.py)
        self.observers: list[RoundObserver] = []
        self.schedule: Schedule = EveryRounds(config.eval_every, config.max_rounds)
        self.slots: list[Session | None] = [None] * self.cfg.slots
        self.log: list[list[float]] = []  # every session started, in start order (LOG_WIDTH numbers)
        self.buffer: list[Session] = []  # arrivals waiting for the next version
        self.ended: list[ClientRecord] = []  # rows of sessions taken in since the last version
        self.host_s = 0.0  # host seconds since the last version (learning, folding, evaluation)
        self.resuming: _Resume | None = None
        self._version_began(0)

    @property
    def env(self) -> simpy.Environment:
        return self.sessions.env

    def run(self, start_round: int = 1, initial: bool = True) -> None:
        """Drive versions ``start_round..max`` (with ``initial``: version 0 first); a resumed run
        first replays its timeline to the checkpoint's version."""
        if initial:
            report(self.observers, self, initial_round(self.algo, self.clients, self.env.now, False))
        if self.resuming is not None:
            self.round = 0
        self.env.process(self._server())
        self.env.run()

    def _server(self):
        if self.resuming is not None and self.resuming.version == 0:
            self._resumed()
        while True:
            wake = self._refill()
            running = [s for s in self.slots if s is not None]
            if not running and wake is None:  # no device can start a session any more
                self._close_short()
                return
            yield self.env.any_of([s.proc for s in running] + ([wake] if wake is not None else []))
            while self.env.peek() == self.env.now:  # let everything else of this instant happen first
                yield self.env.timeout(0)
            ended = sorted((s for s in running if not s.proc.is_alive), key=lambda s: s.c.client.id)
            for s in ended:
                self._take(s)
                if len(self.buffer) < self.cfg.per_version:
                    continue
                self._fold()
                if self.round == self.cfg.max_rounds:
                    yield from self._cancel([t for t in self.slots if t is not None])
                    self._version_done()
                    return
                self._version_done()

    def _version_began(self, version: int) -> None:
        """A new model version: its selection generator and availability attempts."""
        self.draw = rng(self.cfg.seed, Stream.SELECTION, version + 1)
        self.attempt = 0

    def _refill(self) -> simpy.Event | None:
        """Fill the free slots from the idle, available devices; returns the event to wake on when
        a free slot must wait for a device to come on (None: for a session to end, or never)."""
        free = [i for i, s in enumerate(self.slots) if s is None]
        if not free:
            return None
        usable, avail = self.sessions.usable(), self.sessions.avail
        busy = [s.c.client.id for s in self.slots if s is not None]  # one session at a time, any number per version
        idle = usable[~np.isin(usable, busy)] if busy else usable
        if not idle.size:
            return None
        on = idle[avail.on(idle, self.env.now, (self.round + 1, self.attempt))]
        self.attempt += 1
        if on.size:
            chosen = sorted(self.draw.choice(on, size=min(len(free), on.size), replace=False).tolist())
            self._start(chosen, free)
            if len(chosen) == len(free):
                return None
            idle = idle[~np.isin(idle, chosen)]
        upcoming = avail.next_on(idle, self.env.now)
        upcoming = upcoming[~np.isnan(upcoming)]
        if not upcoming.size:
            return None
        wait_s = float(upcoming.min()) - self.env.now  # as a round waits (engine.Engine._available_now)
        return self.env.timeout(wait_s if wait_s > 0 else avail.spec.retry_s)

    def _start(self, chosen: list[int], free: list[int]) -> None:
        """Sessions for ``chosen`` in the first free slots: their learning (or, replaying a
        resumed run's timeline, their logged sizes), their place on the event path, their
        processes, availability watches and deadlines."""
        number, sessions = self.round + 1, self.sessions
        with host_time(self):
            # each session's draws (batches, directions, slowdown, failure) are keyed by its own
            # number, 1 + its index in the log, not by the version: two sessions of one device differ
            keys = {cid: len(self.log) + 1 + i for i, cid in enumerate(chosen)}
            rnd = Round(number, chosen, self.algo.configure_round(number, chosen), keys=keys)
            if self.resuming is None:
                learn(self.algo, self.pool, rnd, number, sessions.last_synced)
            else:
                rnd.jobs = {cid: self._logged(len(self.log) + i, cid) for i, cid in enumerate(chosen)}
            sessions.place(rnd)
        for cid, slot in zip(chosen, free):
            c = rnd.clients[cid]
            c.rec.start_version, c.rec.start_s = self.round, self.env.now
            s = self.slots[slot] = Session(len(self.log), slot, self.round, rnd.plan, c)
            job = c.job
            self.log.append([cid, self.round, job.download.nbytes, job.upload.nbytes, job.rejected is not None,
                             job.work.peak_memory_bytes,
                             *(x for kind in OP_KINDS for x in (job.work.ops[kind].flops, job.work.ops[kind].bytes))])
            s.proc = self.env.process(sessions.client_process(c, _Arrivals))
            if c.off < math.inf:
                self.env.process(sessions.watch(s.proc, c.off - self.env.now))
            if self.cfg.deadline_s is not None:  # a session's deadline runs from its download's start
                self.env.process(sessions.watch(s.proc, self.cfg.deadline_s, "late"))

    def _take(self, s: Session) -> None:
        """A session that ended: free its slot, settle its device as a round settles its clients,
        and buffer its update, or discard it (rejected, stale)."""
        self.slots[s.slot] = None
        c, rec = s.c, s.c.rec
        cid = c.client.id
        rec.end_version = self.round
        self.sessions.settle(Round(self.round, [cid], records={cid: rec}, end=self.env.now,
                                   state=np.array([[c.tail_from, c.tail_until, c.heat_s, c.at, c.contact]])))
        if rec.download_s > 0 and rec.bytes_down == c.job.download.nbytes:
            self.sessions.last_sync[cid] = s.start_version  # it pulled the model as of its start
        self.sessions.took_part[cid] = True
        staleness = self.round - s.start_version
        if rec.status == "ok" and c.job.rejected:
            rec.status, rec.note = "rejected", c.job.rejected
        elif rec.status == "ok" and self.cfg.max_staleness is not None and staleness > self.cfg.max_staleness:
            rec.status, rec.note = "stale", f"{staleness} versions old (max_staleness {self.cfg.max_staleness})"
        elif rec.status == "ok":
            self.buffer.append(s)
        self.ended.append(rec)

    def _fold(self) -> None:
        """The buffer's K updates become the next version (its row is made by ``_version_done``)."""
        with host_time(self):
            self.folded = [self.round - s.start_version for s in self.buffer]
            if self.resuming is None:
                scales = [self.cfg.server_lr * self.cfg.staleness_weight(st) for st in self.folded]
                self.algo.fold([s.c.job.upload for s in self.buffer], [s.plan for s in self.buffer], scales,
                               self.round + 1)
            self.buffer = []
            self._version_began(self.round + 1)
            self.round += 1

    def _cancel(self, sessions: list[Session]):
        """Generator: the run is over - cut the sessions still running (``cancelled``, charged
        what they got through; one whose upload arrived in this last instant is cancelled too:
        no version takes it) and take them in."""
        for s in sessions:
            if s.proc.is_alive:
                s.proc.interrupt("cancelled")
        yield self.env.timeout(0)  # let the interrupted processes record what they got through
        for s in sorted(sessions, key=lambda s: s.c.client.id):
            if s.c.rec.status == "ok":
                s.c.rec.status, s.c.rec.note = "cancelled", "arrived as the run ended"
            self._take(s)

    def _version_done(self) -> None:
        """The version's row (evaluated when due) and its sessions' rows, to the observers; a
        checkpoint's version ends a resume's replay instead."""
        rows, self.ended = self.ended, []
        if self.resuming is not None:
            if self.round == self.resuming.version:
                self._resumed()
            return
        number = self.round
        for rec in rows:
            rec.round = number
        folded = self.folded
        record = RoundRecord(
            round=number, sim_time_s=self.env.now, accuracy=None, loss=None, selected=len(rows),
            aggregated=len(folded), dropped=len(rows) - len(folded), bytes_up=sum(r.bytes_up for r in rows),
            bytes_down=sum(r.bytes_down for r in rows), energy_j=sum(r.energy_j for r in rows),
            client_flops=sum(r.flops for r in rows),
            links=None if self.cfg.topology is None else round_links(self.cfg.topology, self.clients.attached, rows),
            staleness_mean=sum(folded) / len(folded) if folded else None, staleness_max=max(folded, default=None),
            energy_in_flight_j=sum((self.sessions.spent_j(s.c, s.proc.is_alive) for s in self.slots if s is not None),
                                   0.0))
        with host_time(self):
            if self.schedule.evaluate(record):
                evaluate_into(self.algo, record)
        record.host_seconds, self.host_s = self.host_s, 0.0
        rnd = Round(number, record=record, rows=rows)
        report(self.observers, self, rnd)
        problem = divergence(self.algo, rnd)
        if problem:
            raise Diverged(f"learning diverged at version {number}: {problem}")

    def _close_short(self) -> None:
        """No device can start a session any more: the sessions taken in since the last version
        get a last row (no version is made; an arrival in the buffer is cancelled)."""
        if not self.ended or self.resuming is not None:
            return
        for s in self.buffer:
            s.c.rec.status, s.c.rec.note = "cancelled", "no version took it: no device can start a session"
        self.buffer, self.folded = [], []
        self.round += 1
        self._version_done()

    # -- checkpoints ---------------------------------------------------------------------
    def state(self) -> dict:
        """The version, the clock and the sessions not taken in yet: each one's log index, its
        upload's header and arrays (their bytes are in ``arrays()``) and its rejection."""
        waiting = []
        for s in self.slots:
            if s is not None:
                up = s.c.job.upload
                waiting.append({"index": s.index, "kind": up.kind, "round": up.round, "client": up.client,
                                "arrays": [[name, a.dtype.str, list(a.shape)] for name, a in up.arrays.items()],
                                "rejected": s.c.job.rejected})
        return {"round": self.round, "sim_time_s": self.env.now, "sessions": waiting}

    def arrays(self) -> dict[str, np.ndarray]:
        out = {**self.sessions.arrays(), "session_log": np.array(self.log, dtype=np.float64).reshape(-1, LOG_WIDTH)}
        for s in self.slots:
            if s is not None:
                for name, a in s.c.job.upload.arrays.items():
                    out[f"upload/{s.index}/{name}"] = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
        return out

    def load_state(self, state: dict, arrays: dict[str, np.ndarray]) -> None:
        """Keep the checkpoint aside: ``run`` replays the timeline from time 0 up to its version."""
        uploads = {}
        for w in state["sessions"]:
            data = {name: arrays[f"upload/{w['index']}/{name}"].view(np.dtype(dtype)).reshape(shape).copy()
                    for name, dtype, shape in w["arrays"]}
            uploads[w["index"]] = Message(w["kind"], w["round"], w["client"], data), w["rejected"]
        self.resuming = _Resume(state["round"], state["sim_time_s"], arrays["session_log"], uploads,
                                {k: arrays[k] for k in ("devices", "last_sync", "charge_j", "radio_thermal",
                                                          "busy_until")})
        self.round = state["round"]

    def _logged(self, index: int, cid: int) -> Job:
        """Logged session ``index``'s job (device ``cid``), as sizes and counted work."""
        row = self.resuming.log[index]
        if int(row[0]) != cid or int(row[1]) != self.round:
            raise RuntimeError(f"resume: session {index} replays as device {cid} at version {self.round}, "
                               f"logged as device {int(row[0])} at version {int(row[1])}")
        work = Work({kind: OpCount(float(row[6 + 2 * i]), float(row[7 + 2 * i])) for i, kind in enumerate(OP_KINDS)},
                    peak_memory_bytes=int(row[5]))
        return Job(Sized(int(row[2])), work, Sized(int(row[3])), "rejected" if row[4] else None)

    def _resumed(self) -> None:
        """The replay reached the checkpoint: check the devices, put the waiting uploads in, learn on."""
        resume, self.resuming = self.resuming, None
        mine = self.sessions.arrays()
        same = self.env.now == resume.sim_time_s and all(
            np.array_equal(mine[k], resume.arrays[k], equal_nan=k == "radio_thermal") for k in mine)
        if not same or len(self.log) != len(resume.log):
            raise RuntimeError("resume: the replayed timeline does not reach the checkpoint's state")
        for s in self.slots:
            if s is not None:
                s.c.job.upload, s.c.job.rejected = resume.uploads[s.index]


@dataclass(frozen=True)
class Sized:
    """A message of which a resume's replay of the timeline knows only the size."""

    nbytes: int


@dataclass(eq=False)
class Session:
    """One device's session in one slot: its place in the run's log, its start version, its plan
    and its ``ClientRound`` (job, row, radio tail, heat) on the event path."""

    index: int
    slot: int
    start_version: int
    plan: object
    c: ClientRound
    proc: simpy.Process | None = None


class _Arrivals:
    """What a session's client process reports its arrival to: nothing to count (the server takes
    each session as its process ends)."""

    @staticmethod
    def arrived(rec: ClientRecord) -> None:
        pass


@dataclass
class _Resume:
    """A checkpoint being resumed: its version, session log, waiting uploads and device arrays."""

    version: int
    sim_time_s: float
    log: np.ndarray
    uploads: dict[int, tuple[Message, str | None]]
    arrays: dict[str, np.ndarray]
