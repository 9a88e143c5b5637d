"""What the engines run on the host, in zero simulated time: the real learning of a round's (or a
version's) clients, the global model's evaluation, whether learning broke down, and the host
seconds all of it takes - the one figure of a run that depends on the host.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass

import numpy as np

from edgefed.algorithms.message import Message
from edgefed.algorithms.work import Work
from edgefed.simulator.fleet import Fleet
from edgefed.simulator.inputs import Learner
from edgefed.simulator.records import ClientRecord, RoundRecord
from edgefed.simulator.session import Job, Round


@contextlib.contextmanager
def host_time(holder):
    """Add the host seconds the block takes to ``holder.host_s`` (a ``Round``, or the asynchronous
    engine between versions)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        holder.host_s += time.perf_counter() - start


@dataclass
class Estimate:
    """The size of a typical client's round: what resource-aware selection prices per device."""

    bytes_down: int
    bytes_up: int
    work: Work


def client_updates(algo: Learner, pool, round: int | dict[int, int], selected: list[int],
                   plan) -> dict[int, tuple[Message, Work]]:
    """The selected clients' real local steps: in order on the host model, or on ``pool``'s
    workers (``edgefed.parallel``; same results; catch-up is pure bookkeeping and stays here).
    ``round`` is what the clients' draws are keyed by: the round, or per client (an asynchronous
    run's sessions, ``Round.keys``) its own key."""
    if pool is not None:
        return pool.client_updates(algo, round, selected, plan)
    return {cid: algo.client_update(cid, draw_key(round, cid), plan) for cid in selected}


def draw_key(round: int | dict[int, int], cid: int) -> int:
    """Client ``cid``'s draw key: ``round``, or its entry when ``round`` holds one per client."""
    return round[cid] if isinstance(round, dict) else round


def learn(algo: Learner, pool, rnd: Round, number: int, last_synced) -> Estimate:
    """The selected clients' catch-up downloads and local updates as learning round ``number``,
    and each one's job; returns the median job's size, which prices the next selection."""
    downs = {cid: algo.catch_up(cid, last_synced(cid), number, rnd.plan) for cid in rnd.selected}
    rnd.updates = client_updates(algo, pool, number if rnd.keys is None else rnd.keys, rnd.selected, rnd.plan)
    merged: dict[tuple[int, int], Work] = {}  # a replay serves clients shared Work objects: merge each pair once
    for cid in rnd.selected:
        (down, down_work), (up, up_work) = downs[cid], rnd.updates[cid]
        key = (id(down_work), id(up_work))
        if key not in merged:
            merged[key] = Work().merge(down_work).merge(up_work)
        rnd.jobs[cid] = Job(down, merged[key], up, algo.rejects(up))
    median = rnd.jobs[rnd.selected[len(rnd.selected) // 2]]
    return Estimate(median.download.nbytes, median.upload.nbytes, median.work)


def evaluate_into(algo: Learner, record: RoundRecord) -> None:
    """The global model's held-out figures into ``record`` (the tuning split's too, when held)."""
    record.accuracy, record.loss = algo.evaluate()
    record.tuning_accuracy = algo.evaluate_tuning()


def initial_round(algo: Learner, fleet: Fleet, now: float, hierarchical: bool) -> Round:
    """Round 0: the global model's accuracy before training, and the devices excluded for memory."""
    rnd = Round(0)
    with host_time(rnd):
        backhaul = {"backhaul_bytes_up": 0, "backhaul_bytes_down": 0} if hierarchical else {}
        rnd.record = RoundRecord(0, float(now), None, None, **backhaul)
        evaluate_into(algo, rnd.record)
    rnd.record.host_seconds = rnd.host_s
    excluded = (fleet[cid] for cid in np.flatnonzero(~fleet.eligible))
    rnd.rows = [ClientRecord(0, c.id, c.device_name, status="excluded", note=c.note,
                             peak_memory_bytes=algo.peak_memory_bytes()) for c in excluded]
    return rnd


def divergence(algo: Learner, rnd: Round) -> str | None:
    """Why learning cannot go on after this round (None if it can): a non-finite eval loss or
    global weight, or no client that arrived could take a finite step from the global model."""
    record, rows = rnd.record, rnd.rows
    if record.loss is not None and not math.isfinite(record.loss):
        return f"eval loss is {record.loss}"
    if not algo.trainable.all_finite():
        return "the global weights hold NaN/inf"
    arrived = [r for r in rows if r.status in ("ok", "rejected")]
    if arrived and all(r.status == "rejected" for r in arrived):
        return f"every update that arrived was rejected ({arrived[0].note})"
    return None


def report(observers: list, engine, rnd: Round) -> None:
    """Tell every observer (``records.RoundObserver``) that ``rnd`` is done."""
    for observer in observers:
        observer.round_done(engine, rnd)
