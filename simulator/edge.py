"""The edge tier of hierarchical aggregation (``rounds.aggregation.kind: hierarchical``).

Aggregators sit at infrastructure nodes: each cell (``fleet.network.cells``), or with a topology
every node of the kinds in ``rounds.aggregation.at`` on a selected client's path. They form a
tree: a client reports to the first aggregator on its path (its lowest), an aggregator to the
next one above it, the top ones to the server. Per round, each aggregator: receives every
distinct download the clients below it need once from the one above and forwards it down (store
and forward; it keeps nothing across rounds, so a stale client's history crosses the backhaul
again in a later round); the lowest closes on its own clients by the rule of
``simulator.closing`` - under the round's one over-selection quota and its own cut-off, the
cut-off of the one above (the server's deadline at the top) less the time its message needs up to
it - and one above waits for those below it until its cut-off; each sends one message up: the
method's partial aggregate of what it kept and received, or at the lowest tier with K > 1 edge
rounds (HierFAVG) its own model after them. A message that cannot reach the one above by its
cut-off is late, with every update under it. Edge servers are mains-powered and their compute is
negligible: they add time and bytes, no device energy.
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
from edgefed.simulator.network import Transfer
from edgefed.simulator.records import ClientRecord
from edgefed.simulator.session import ClientRound, Job, Round
from edgefed.simulator.topology import CLOUD

# an edge stops this much earlier than its message's time on the backhaul strictly allows, so that
# the rounding of ``start + (deadline - upload) + upload`` cannot make a message sent in time late
SLACK_S = 1e-6
NOTE_LATE = "its edge's message missed the deadline"


@dataclass(eq=False)
class EdgeServer:
    """One node's edge server (aggregator) in one round."""

    node: str
    index: int  # its id on the wire: the node's place among the infrastructure's nodes, by name
    clients: list[int]  # the selected clients it is the lowest aggregator of, in selection order
    quota: Quota  # where its clients report arrivals: the round's one quota (a later K > 1 edge round: its own)
    level: int = 0  # 0: it reports to the server; 1: to a level-0 aggregator, ...
    parent: EdgeServer | None = None  # the aggregator it reports to (None: the server)
    children: list[EdgeServer] = field(default_factory=list)  # the aggregators that report to it, by node
    below: list[int] = field(default_factory=list)  # every selected client under it, in selection order
    cutoff: simpy.Event | None = None  # when it stops waiting (None: no deadline)
    cutoff_at: float | None = None  # that time
    downloads: list[Transfer] = field(default_factory=list)  # from the one above, one per distinct download
    ready: dict[int, simpy.Event] = field(default_factory=dict)  # client -> its download is at this node
    message: Message | None = None  # what it forwarded (None: nothing, or it was late)
    upload: Transfer | None = None  # the message on its way up
    stopped: simpy.Event | None = None  # with children: when it stops waiting for them
    shut: bool = False  # it stopped taking downloads
    process: simpy.Process | None = None
    earlier: list[ClientRecord] = field(default_factory=list)  # K > 1: its clients' rows before their last
    bytes_down: int = 0  # received from the one above (set when it closes: a cut-off download counts what it sent)
    bytes_up: int = 0  # sent up (a late message: what it sent by its cut-off)

    def subtree(self):
        """It and every aggregator below it."""
        yield self
        for child in self.children:
            yield from child.subtree()


def upload_seconds(hops: list[tuple], nbytes: int) -> float:
    """A message of ``nbytes`` alone on ``hops`` up: their latency, then serialisation at the
    smallest capacity (what ``Network`` gives such a flow)."""
    return sum(link.latency_s for _, link in hops) + 8.0 * nbytes / min(capacity(link, "up") for _, link in hops)


def cutoff_s(by_s: float, hops: list[tuple], nbytes: int) -> float:
    """How long after the round's start an edge stops waiting, so that its message of ``nbytes``
    crosses ``hops`` by ``by_s`` (0: at once, when it never could)."""
    return max(0.0, by_s - upload_seconds(hops, nbytes) - SLACK_S)


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
    the aggregators and their clients' sessions, under the round's one quota and deadline."""

    def __init__(self, engine):
        self.engine = engine  # the synchronous engine (simulator.engine.Engine) whose rounds it plays
        self.algo, self.sessions = engine.algo, engine.sessions
        topology, at = engine.cfg.topology, engine.cfg.aggregate_at
        nodes = engine.cfg.cells if topology is None else [n for n in topology.spec.nodes if topology.kind(n) != CLOUD]
        self.ids = {name: i for i, name in enumerate(sorted(nodes))}  # each node's id on the wire
        # attach node -> the aggregators on its path, lowest first (a cell: itself)
        self.chains = {name: [name] if topology is None else topology.aggregators(name, at) for name in nodes}
        self.rounds = engine.cfg.edge_rounds  # HierFAVG's edge rounds per cloud round

    def servers(self, rnd: Round, quota: Quota) -> list[EdgeServer]:
        """The round's aggregators, by node: those on its selected clients' paths."""
        servers: dict[str, EdgeServer] = {}
        for cid in rnd.selected:
            chain, lower = self.chains[rnd.clients[cid].client.cell], None
            for i, node in enumerate(chain):
                server = servers.get(node)
                if server is None:
                    server = servers[node] = EdgeServer(node, self.ids[node], [], quota, len(chain) - 1 - i)
                server.below.append(cid)
                if lower is None:
                    server.clients.append(cid)
                elif lower.parent is None:
                    lower.parent = server
                    server.children.append(lower)
                lower = server
        for server in servers.values():
            server.children.sort(key=lambda child: child.node)
        return [servers[node] for node in sorted(servers)]

    def play(self, rnd: Round):
        """Generator: the aggregators receive their clients' distinct downloads once each, the lowest
        close on their clients (``simulator.closing``) under the round's one quota - over-selection
        keeps the first ``clients_per_round`` arrivals across them - and their own cut-offs (with
        K > 1 they play their further edge rounds), those above wait for those below; each forwards
        one message. The server closes when the top ones' have arrived or at the deadline, when one
        still on its way is late, and so are the updates it carries."""
        env, engine = self.sessions.env, self.engine
        cfg, net = engine.cfg, self.sessions.net
        quota = Quota(min(cfg.clients_per_round, len(rnd.selected)),
                      env.event() if cfg.selection == "overselect" else None)
        held = self.algo.hold() if self.rounds > 1 else None  # the global model, to come back to
        rnd.edges = self.servers(rnd, quota)
        after = self._cutoffs(rnd, held)
        for edge in rnd.edges:
            if after is not None:
                edge.cutoff, edge.cutoff_at = env.timeout(after[edge]), env.now + after[edge]
            if edge.children:
                edge.stopped = env.event()
            for group in distinct_downloads([rnd.jobs[cid].download for cid in edge.below]):
                cids = [edge.below[i] for i in group]
                nbytes = rnd.jobs[cids[0]].download.nbytes
                if edge.parent is None:  # from the server, at once
                    transfer = net.send(net.route(edge.node), nbytes, "down")
                    edge.downloads.append(transfer)
                    ready = transfer.done
                else:  # relayed as soon as the one above holds it
                    ready = env.event()
                    env.process(self._relay(edge, cids[0], nbytes, ready))
                edge.ready.update({cid: ready for cid in cids})
        deadline, closed = engine.deadline(), env.event()
        procs = self.sessions.start(rnd, edges={cid: edge for edge in rnd.edges for cid in edge.clients})
        for edge in rnd.edges:
            edge.process = env.process(self._edge_process(rnd, edge, procs, held, closed))
        tops = env.all_of([edge.process for edge in rnd.edges if edge.parent is None])
        yield tops | deadline if deadline is not None else tops
        closed.succeed()
        rnd.end = env.now
        top = [edge for edge in rnd.edges if edge.parent is None]
        for edge in top:
            self._late(rnd, edge)
        rnd.earlier = [rec for edge in rnd.edges for rec in edge.earlier]
        messages = [edge.message for edge in top if edge.message is not None]
        if held is None:
            rnd.messages = messages
        else:  # HierFAVG's cloud step, the edges' models' weighted mean: nothing is left to aggregate
            with host_time(rnd):
                self.algo.adopt(messages)

    def _relay(self, edge: EdgeServer, cid: int, nbytes: int, ready: simpy.Event):
        """Generator: a download reaches ``edge`` from the one above once that one holds it."""
        yield edge.parent.ready[cid]
        if edge.shut:
            return
        transfer = self.sessions.net.send(self.sessions.net.route(edge.node, edge.parent.node), nbytes, "down")
        edge.downloads.append(transfer)
        yield transfer.done
        ready.succeed()

    def _late(self, rnd: Round, edge: EdgeServer) -> None:
        """If ``edge``'s message is still on its way up (its receiver stopped waiting), it is
        cancelled (counted as far as it got) and every update under it is late."""
        if edge.upload is None or edge.upload.finished_at is not None:
            return
        self.sessions.net.cancel(edge.upload)
        edge.message, edge.bytes_up = None, int(edge.upload.sent / 8)
        for server in edge.subtree():
            for rec in server.earlier + [rnd.records[cid] for cid in server.clients]:
                if rec.status == "ok":
                    rec.status, rec.note = "late", NOTE_LATE

    def _cutoffs(self, rnd: Round, held) -> dict[EdgeServer, float] | None:
        """When each aggregator stops waiting, in seconds after the round's start (None without a
        deadline): early enough that its message, alone on its hops up, reaches the one above by
        that one's cut-off (the server: by the deadline). A message is priced at the largest it can
        be: the partial of all its clients' uploads and of the priced messages below it (a method's
        partial grows with the uploads it holds), or with K > 1 at the lowest tier its model."""
        deadline_s, net = self.engine.cfg.deadline_s, self.sessions.net
        if deadline_s is None:
            return None
        priced: dict[EdgeServer, Message | None] = {}
        for edge in sorted(rnd.edges, key=lambda e: -e.level):  # those below first
            uploads = [rnd.jobs[cid].upload for cid in edge.clients if rnd.jobs[cid].rejected is None]
            with host_time(rnd):
                priced[edge] = self._forward(edge, uploads, [priced[child] for child in edge.children], held,
                                             rnd.number)
        after: dict[EdgeServer, float] = {}
        for edge in sorted(rnd.edges, key=lambda e: e.level):  # those above first
            by_s = deadline_s if edge.parent is None else after[edge.parent]
            message = priced[edge]
            after[edge] = cutoff_s(by_s, net.route(edge.node, edge.parent.node if edge.parent else None),
                                   message.nbytes if message is not None else 0)
        return after

    def _forward(self, edge: EdgeServer, kept: list[Message], below: list[Message | None], model, number: int):
        """The one message ``edge`` sends up: the method's partial of its kept uploads and the
        messages from below; with K > 1 edge rounds (``model``: the model its own clients' rounds
        left) that model, weighted by the clients it aggregated, and the partial of it with the
        messages from below where there are any."""
        if model is None:
            return self.algo.partial(kept + [m for m in below if m is not None], number, edge.index)
        own = self.algo.model_message(model, kept, number, edge.index) if edge.clients else None
        return self._with_below(edge, own, below, number)

    def _with_below(self, edge: EdgeServer, own: Message | None, below: list[Message | None], number: int):
        """An aggregator's own model message, or with messages from below the partial of them all."""
        messages = [m for m in [own, *below] if m is not None]
        return own if len(messages) == (own is not None) else self.algo.partial(messages, number, edge.index)

    def _stop_downloads(self, edge: EdgeServer) -> None:
        """A download no one under ``edge`` waits for any more stops (counted as far as it got)."""
        edge.shut = True
        for transfer in edge.downloads:
            if transfer.finished_at is None:
                self.sessions.net.cancel(transfer)
        edge.bytes_down = sum(int(transfer.sent / 8) for transfer in edge.downloads)

    def _edge_process(self, rnd: Round, edge: EdgeServer, procs: dict[int, simpy.Process], held,
                      closed: simpy.Event):
        """One aggregator's round after the downloads: close on its own clients (with K > 1: play
        their further edge rounds on a model of its own), wait for those below it until its
        cut-off, aggregate, and send that up until it arrives or the one above stops waiting."""
        env, net = self.sessions.env, self.sessions.net
        if edge.clients:
            yield from close(env, [procs[cid] for cid in edge.clients], edge.quota, edge.cutoff)
            if not edge.children:
                self._stop_downloads(edge)
            if held is not None:
                yield from self._edge_rounds(rnd, edge, held)
        if edge.children:
            below = env.all_of([child.process for child in edge.children])
            yield below | edge.cutoff if edge.cutoff is not None else below
            edge.stopped.succeed()
            for child in edge.children:
                self._late(rnd, child)
            self._stop_downloads(edge)
        with host_time(rnd):
            below = [child.message for child in edge.children]
            edge.message = (self._forward(edge, rnd.kept(edge.clients), below, None, rnd.number) if held is None
                            else self._with_below(edge, edge.message, below, rnd.number))
        if edge.message is not None:
            edge.bytes_up = edge.message.nbytes
            edge.upload = net.send(net.route(edge.node, edge.parent.node if edge.parent else None), edge.bytes_up, "up")
            yield edge.upload.done | (edge.parent.stopped if edge.parent is not None else closed)

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
