"""The edge tier of hierarchical aggregation (``rounds.aggregation.kind: hierarchical``).

Each cell's edge server, per round: receives every distinct download its clients need once over
the backhaul and forwards it over their access links (store and forward; it keeps nothing
across rounds, so a stale client's history crosses the backhaul again in a later round), closes
on its own clients by the rule of ``simulator.closing`` - under the round's one over-selection
quota across cells and its own cut-off, the server's deadline less the time its message needs up
its backhaul - and sends one message up the backhaul: the method's partial aggregate of what it
kept, or with K > 1 edge rounds (HierFAVG) its own model after them. A message that cannot reach
the server by the deadline is late, with its clients' updates. Edge servers are mains-powered
and their compute is negligible: they add time and bytes, no device energy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import simpy

from edgefed.algorithms.message import Message
from edgefed.algorithms.work import Work
from edgefed.devices.availability import slowdown
from edgefed.simulator.closing import Quota, close
from edgefed.simulator.costs import compute_seconds
from edgefed.simulator.energy import capacity
from edgefed.simulator.host import client_updates, host_time
from edgefed.simulator.network import CellSpec, Transfer
from edgefed.simulator.records import ClientRecord
from edgefed.simulator.session import ClientRound, Job, Round

# an edge stops this much earlier than its message's time on the backhaul strictly allows, so that
# the rounding of ``start + (deadline - upload) + upload`` cannot make a message sent in time late
SLACK_S = 1e-6


@dataclass(eq=False)
class EdgeServer:
    """One cell's edge server in one round."""

    cell: str
    index: int  # its id on the wire: the cell's place among the scenario's cells, by name
    clients: list[int]  # its selected clients, in selection order
    quota: Quota  # where its clients report arrivals: the round's one quota (a later K > 1 edge round: its own)
    cutoff: simpy.Event | None = None  # when it stops waiting for its clients (None: no deadline)
    cutoff_at: float | None = None  # that time
    downloads: list[Transfer] = field(default_factory=list)  # server -> edge, one per distinct download
    ready: dict[int, simpy.Event] = field(default_factory=dict)  # client -> its download is at the edge
    message: Message | None = None  # what it forwarded (None: nothing, or it was late)
    upload: Transfer | None = None  # the message on its way up the backhaul
    earlier: list[ClientRecord] = field(default_factory=list)  # K > 1: its clients' rows before their last
    bytes_down: int = 0  # backhaul, server -> edge (set when it closes: a cut-off download counts what it sent)
    bytes_up: int = 0  # backhaul, edge -> server (a late message: what it sent by the deadline)


def upload_seconds(cell: CellSpec, nbytes: int) -> float:
    """A message of ``nbytes`` alone on the cell's backhaul up: latency, then serialisation at its
    capacity (what ``Network`` gives such a flow)."""
    return cell.latency_s + 8.0 * nbytes / capacity(cell, "up")


def cutoff_s(deadline_s: float, cell: CellSpec, nbytes: int) -> float:
    """How long after the round's start an edge stops waiting for its clients, so that its message
    of ``nbytes`` reaches the server by the deadline (0: at once, when it never could)."""
    return max(0.0, deadline_s - upload_seconds(cell, nbytes) - SLACK_S)


def same_content(a: Message, b: Message) -> bool:
    """Whether two downloads carry the same arrays (their headers name different clients)."""
    return a.kind == b.kind and a.arrays.keys() == b.arrays.keys() and all(
        x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y)
        for x, y in zip(a.arrays.values(), b.arrays.values()))


def distinct_downloads(messages: list[Message]) -> list[list[int]]:
    """Positions of ``messages`` grouped by content, in order of first appearance: what an edge
    server receives once each (weights: one per cell; seed histories: one per staleness)."""
    groups: list[list[int]] = []
    for i, message in enumerate(messages):
        for group in groups:
            if same_content(messages[group[0]], message):
                group.append(i)
                break
        else:
            groups.append([i])
    return groups


class EdgeTier:
    """Hierarchical aggregation's round, between the engine's placing and settling of its clients:
    the cells' edge servers and their clients' sessions, under the round's one quota and deadline."""

    def __init__(self, engine):
        self.engine = engine  # the synchronous engine (simulator.engine.Engine) whose rounds it plays
        self.algo, self.sessions = engine.algo, engine.sessions
        self.ids = {name: i for i, name in enumerate(sorted(engine.cfg.cells))}  # each cell's id on the wire
        self.rounds = engine.cfg.edge_rounds  # HierFAVG's edge rounds per cloud round

    def play(self, rnd: Round):
        """Generator: each cell's edge server receives its clients' distinct downloads once over the
        backhaul and closes on its clients (``simulator.closing``) under the round's one quota -
        over-selection keeps the first ``clients_per_round`` arrivals across cells - and its own
        cut-off; with K > 1 it plays its further edge rounds. Each forwards one message; the server
        closes when the last has arrived or at the deadline, when one still on its way is late, and
        so are the updates it carries."""
        env, selected, engine = self.sessions.env, rnd.selected, self.engine
        cfg = engine.cfg
        quota = Quota(min(cfg.clients_per_round, len(selected)), env.event() if cfg.selection == "overselect" else None)
        held = self.algo.hold() if self.rounds > 1 else None  # the global model, to come back to
        in_cell: dict[str, list[int]] = {}
        for cid in selected:
            in_cell.setdefault(rnd.clients[cid].client.cell, []).append(cid)
        rnd.edges = []
        for cell in sorted(in_cell):
            cids = in_cell[cell]
            edge = EdgeServer(cell, self.ids[cell], cids, quota)
            self._cutoff(rnd, edge, held)
            for group in distinct_downloads([rnd.jobs[cid].download for cid in cids]):
                transfer = self.sessions.net.send(self.sessions.net.backhaul(cell), rnd.jobs[cids[group[0]]].download.nbytes,
                                                  "down")
                edge.downloads.append(transfer)
                edge.ready.update({cids[i]: transfer.done for i in group})
            rnd.edges.append(edge)
        deadline, closed = engine.deadline(), env.event()
        procs = self.sessions.start(rnd, edges={cid: edge for edge in rnd.edges for cid in edge.clients})
        edges = env.all_of([env.process(self._edge_process(rnd, edge, procs, held, closed)) for edge in rnd.edges])
        yield edges | deadline if deadline is not None else edges
        closed.succeed()
        rnd.end = env.now
        for edge in rnd.edges:
            if edge.upload is not None and edge.upload.finished_at is None:  # it cannot reach the server in time
                self.sessions.net.cancel(edge.upload)
                edge.message, edge.bytes_up = None, int(edge.upload.sent / 8)
                for rec in edge.earlier + [rnd.records[cid] for cid in edge.clients]:
                    if rec.status == "ok":
                        rec.status, rec.note = "late", "its edge's message missed the deadline"
        rnd.earlier = [rec for edge in rnd.edges for rec in edge.earlier]
        messages = [edge.message for edge in rnd.edges if edge.message is not None]
        if held is None:
            rnd.messages = messages
        else:  # HierFAVG's cloud step, the edges' models' weighted mean: nothing is left to aggregate
            with host_time(rnd):
                self.algo.adopt(messages)

    def _cutoff(self, rnd: Round, edge: EdgeServer, held) -> None:
        """When ``edge`` stops waiting for its clients (none without a deadline): early enough that
        its message, alone on its backhaul up, reaches the server by the deadline. The message is
        priced at the largest it can be: the partial of all its clients' uploads (a method's
        partial grows with the uploads it holds), or with K > 1 its model."""
        deadline_s, env = self.engine.cfg.deadline_s, self.sessions.env
        if deadline_s is None:
            return
        uploads = [rnd.jobs[cid].upload for cid in edge.clients if rnd.jobs[cid].rejected is None]
        with host_time(rnd):
            message = (self.algo.partial(uploads, rnd.number, edge.index) if held is None
                       else self.algo.model_message(held, uploads, rnd.number, edge.index))
        after_s = cutoff_s(deadline_s, self.sessions.net.cells[edge.cell], message.nbytes if message is not None else 0)
        edge.cutoff, edge.cutoff_at = env.timeout(after_s), env.now + after_s

    def _edge_process(self, rnd: Round, edge: EdgeServer, procs: dict[int, simpy.Process], held,
                      closed: simpy.Event):
        """One edge server's round after the downloads: close on its clients; aggregate what it
        kept (with K > 1: play its further edge rounds on a model of its own); send that up the
        backhaul, until it arrives or the server closes."""
        net = self.sessions.net
        yield from close(self.sessions.env, [procs[cid] for cid in edge.clients], edge.quota, edge.cutoff)
        for transfer in edge.downloads:  # one that no client waits for any more stops with the round
            if transfer.finished_at is None:
                net.cancel(transfer)
        edge.bytes_down = sum(int(transfer.sent / 8) for transfer in edge.downloads)
        if held is None:
            with host_time(rnd):
                edge.message = self.algo.partial(rnd.kept(edge.clients), rnd.number, edge.index)
        else:
            yield from self._edge_rounds(rnd, edge, held)
        if edge.message is not None:
            edge.bytes_up = edge.message.nbytes
            edge.upload = net.send(net.backhaul(edge.cell), edge.bytes_up, "up")
            yield edge.upload.done | closed

    def _edge_rounds(self, rnd: Round, edge: EdgeServer, held):
        """Generator (K > 1 edge rounds, HierFAVG): after each edge round the edge applies the
        method's aggregate of what it kept to a model of its own, as a flat round's server does to
        the global one; its clients that arrived learn from that model and play the next edge
        round. After K, or at its cut-off, it forwards its model, weighted by the clients whose
        updates it aggregated. ``held``: the global model, which the host holds between times."""
        algo, env = self.algo, self.sessions.env
        model, aggregated, cids = held, {}, edge.clients
        for k in range(1, self.rounds + 1):
            if k > 1:
                yield from self._edge_round(rnd, edge, cids, model, held, k)
            kept = rnd.kept(cids)
            if kept:
                with host_time(rnd):
                    algo.load(model)
                    algo.apply(algo.aggregate(kept), self.engine.learning_round(rnd.number, k), rnd.plan)
                    model = algo.hold()
                    algo.load(held)
                aggregated.update({m.client: m for m in kept})
            # those that arrived and are still on go on to the next (one that went off while it
            # waited for the edge is not there; its row is its last, as in a flat round)
            cids = [cid for cid in cids if rnd.records[cid].status == "ok" and rnd.clients[cid].off > env.now]
            if k == self.rounds or not cids or (edge.cutoff_at is not None and env.now >= edge.cutoff_at):
                break  # these rows are the clients' last: settled with the round
            self.sessions.settle(rnd, cids, env.now)  # they waited idle for the edge until now
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
        algo, sessions, cfg = self.algo, self.sessions, self.engine.cfg
        env, number = sessions.env, self.engine.learning_round(rnd.number, k)
        with host_time(rnd):
            algo.load(model)
            downs = {cid: algo.catch_up(cid, sessions.last_synced(cid), number, rnd.plan) for cid in cids}
            ups = client_updates(algo, self.engine.pool, number, cids, rnd.plan)
            algo.load(held)
        edge.ready.clear()  # the edge holds what they download
        edge.quota = Quota(len(cids), None)
        procs = []
        for cid in cids:
            (down, down_work), (up, up_work) = downs[cid], ups[cid]
            job = rnd.jobs[cid] = Job(down, Work().merge(down_work).merge(up_work), up, algo.rejects(up))
            before, client = rnd.clients[cid], rnd.clients[cid].client
            rec = rnd.records[cid] = ClientRecord(rnd.number, cid, client.device_name, edge_round=k,
                                                  peak_memory_bytes=job.work.peak_memory_bytes)
            slow = slowdown(cfg.stragglers, cfg.seed, cid, rnd.number)
            work_s = compute_seconds(job.work, client.device, cfg.dtype) * slow
            c = rnd.clients[cid] = ClientRound(client, job, rec, before.index, work_s, slow, before.off,
                                               *sessions.radio_thermal[cid].tolist())
            procs.append(env.process(sessions.client_process(c, edge.quota, edge)))
            if c.off < math.inf:
                env.process(sessions.watch(procs[-1], c.off - env.now))
        yield from close(env, procs, edge.quota, edge.cutoff)
