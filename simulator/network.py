"""The network: links shared by processor sharing along each client's path to the server.

Each client has its own access link, to the server or to a node: a cell (an access point or base
station with a backhaul link to the server), or a node of a topology (``simulator.topology``),
whose path to the cloud crosses its links. Every link is full-duplex with an up and a down
capacity, a latency and a loss rate. A transfer crosses its client's access link and the links of
its node's path (its ``routes``); the transfers active on a link direction share it max-min fairly: the fluid model of
processor sharing that APPFL's fair-share bandwidth pool and SimGrid's flow model use. A link with
loss rate ``p`` delivers ``(1 - p)`` of its capacity (the rest is retransmissions).

Rates are recomputed only where they can change: when a transfer starts or ends, for the flows
connected to it through shared links (its component of the flow-link graph), by water-filling in
O(F log F). A flow alone on its links (the default star) gets their capacity at once and finishes
at ``start + latency + 8 bytes / rate`` with no event in between (``energy.transfer_s``). A path
is the access link plus its node's precomputed route, so a fleet of a million devices costs no graph.
"""
from __future__ import annotations

import csv
import heapq
from dataclasses import dataclass, field
from typing import Callable
from pathlib import Path

import numpy as np
import simpy
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, model_serializer

from edgefed.simulator.energy import capacity, first_bit_s
from edgefed.simulator.topology import TopologySpec
from edgefed.streams import Stream, rng

DONE_BITS = 1e-6  # a flow with less left than this has finished (floating-point slack)


class CellSpec(BaseModel):
    """An access point or cell: the clients of the groups that name it share its backhaul."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    up_mbps: PositiveFloat
    down_mbps: PositiveFloat
    latency_s: NonNegativeFloat = 0.0
    loss: float = Field(0.0, ge=0.0, lt=1.0)


class VariabilitySpec(BaseModel):
    """Per-device access-link bandwidth: the catalog value is the median of a lognormal
    (``sigma`` of the log), or a CSV trace ``client,up_mbps,down_mbps`` overrides it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    kind: str = Field("none", pattern="^(none|lognormal|trace)$")
    sigma: NonNegativeFloat = 0.5
    file: str | None = None


class NetworkSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    cells: dict[str, CellSpec] = Field(default_factory=dict,
                                       description="name -> backhaul; fleet groups join one with `cell:`")
    topology: TopologySpec | None = Field(None, description="instead of cells: the infrastructure as a graph "
                                          "(docs/design.md, Topology); fleet groups join a node with `attach:`")
    variability: VariabilitySpec = VariabilitySpec()

    @model_serializer(mode="wrap")
    def _leave_out_no_topology(self, handler):
        """No topology is left out of a dump, so run directories written before it compare equal."""
        data = handler(self)
        if data.get("topology", "") is None:
            del data["topology"]
        return data


def cell_routes(cells: dict[str, CellSpec]) -> dict[str, list[tuple]]:
    """Each cell's hops to the server: its backhaul (the one-tier case of a topology's routes)."""
    return {name: [(("cell", name), cell)] for name, cell in cells.items()}


def link_factors(num_clients: int, spec: VariabilitySpec, seed: int) -> np.ndarray:
    """Multipliers (clients x [up, down]) of the catalog bandwidth; median 1 for lognormal."""
    if spec.kind == "lognormal":
        return rng(seed, Stream.LINK_VARIABILITY).lognormal(0.0, spec.sigma, size=(num_clients, 2))
    return np.ones((num_clients, 2))


def read_link_trace(path: Path) -> dict[int, tuple[float, float]]:
    """``client,up_mbps,down_mbps`` rows; raises ValueError naming the file and line."""
    out = {}
    with path.open(newline="") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            try:
                up, down = float(row["up_mbps"]), float(row["down_mbps"])
                if up <= 0 or down <= 0:
                    raise ValueError
                out[int(row["client"])] = (up, down)
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"{path}: line {line}: expected client,up_mbps,down_mbps with positive rates") from None
    return out



@dataclass(eq=False)
class Transfer:
    """One message on its way; ``done`` fires when its last bit arrives. ``sent`` is brought up to
    date whenever the flow's rate changes, it finishes or it is cancelled."""

    bits: float
    links: list[tuple]  # (link, direction) resources it crosses
    capacities: list[float]  # bits/s of each
    start_delay: float  # promotion + path latency before the first bit flows
    done: simpy.Event
    started: float
    sent: float = 0.0
    rate: float = 0.0  # bits/s, its current max-min share
    since: float = 0.0  # when ``sent`` was last brought up to date
    flowing: bool = False
    cancelled: bool = False
    finished_at: float | None = None
    share: list | None = field(default=None, repr=False)  # the component it was last rated with

    def settle(self, now: float) -> None:
        self.sent = self.sent_by(now)
        self.since = now

    def sent_by(self, now: float) -> float:
        """The bits across by ``now``, without bringing ``sent`` up to date."""
        return min(self.bits, self.sent + self.rate * (now - self.since))


@dataclass
class Network:
    """Active transfers, the links they occupy, and their max-min fair rates.

    ``access(client)`` gives a client's access link (anything with ``up_mbps``, ``down_mbps``,
    ``latency_s`` and ``loss``) and the node it attaches to (None: straight to the server);
    ``routes`` each node's hops to the server (``cell_routes``, or a ``Topology``'s)."""

    env: simpy.Environment
    access: Callable[[int], tuple]
    routes: dict[str, list[tuple]] = field(default_factory=dict)
    users: dict[tuple, dict[Transfer, None]] = field(default_factory=dict)  # resource -> its flows, in order

    def path(self, client: int, upto: str | None = None) -> list[tuple]:
        """(resource key, link) from the client to node ``upto`` on its path (None: the server)."""
        link, node = self.access(client)
        hops = [(("client", client), link)]
        if node is not None:
            hops += self.route(node, upto)
        return hops

    def route(self, node: str, upto: str | None = None) -> list[tuple]:
        """(resource key, link) from ``node`` to ``upto`` on its path (None: the server): what an
        edge server sends and receives (hierarchical aggregation)."""
        hops = self.routes[node]
        return hops[:len(hops) - len(self.routes[upto])] if upto is not None else hops

    def start(self, client: int, nbytes: int, direction: str, promotion_s: float = 0.0) -> Transfer:
        """A transfer between ``client`` and the server, over its whole path."""
        return self.send(self.path(client), nbytes, direction, promotion_s)

    def send(self, hops: list[tuple], nbytes: int, direction: str, promotion_s: float = 0.0,
             handshakes: int = 0) -> Transfer:
        """A transfer of ``nbytes`` over ``hops`` ((resource key, link) pairs), flowing after
        ``promotion_s`` and one round trip of the hops' summed latency, plus ``handshakes`` more
        to open a connection (``energy.first_bit_s``)."""
        tr = Transfer(8.0 * nbytes, [(key, direction) for key, _ in hops],
                      [capacity(link, direction) for _, link in hops],
                      first_bit_s(promotion_s, sum(link.latency_s for _, link in hops), handshakes),
                      self.env.event(), self.env.now)
        self.env.timeout(tr.start_delay).callbacks.append(lambda _ev: self._join(tr))
        return tr

    def cancel(self, tr: Transfer) -> None:
        """A client that drops: its transfer leaves the link (the bits so far stay counted)."""
        tr.cancelled = True
        if tr.flowing and tr.finished_at is None:
            tr.settle(self.env.now)
            self._rerate_components(self._leave(tr))

    def _join(self, tr: Transfer) -> None:
        if tr.cancelled:
            return
        tr.flowing, tr.since = True, self.env.now
        for r in tr.links:
            self.users.setdefault(r, {})[tr] = None
        self._rerate(self._component(tr))

    def _leave(self, tr: Transfer) -> list[Transfer]:
        """Take a flow off its links; returns the flows that shared one with it."""
        tr.flowing, tr.share = False, None
        neighbours = {}
        for r in tr.links:
            flows = self.users[r]
            del flows[tr]
            if flows:
                neighbours.update(flows)
            else:
                del self.users[r]
        return list(neighbours)

    def _component(self, seed: Transfer) -> list[Transfer]:
        """The flows connected to ``seed`` through shared links (breadth-first, deterministic order)."""
        found, frontier, seen = {seed: None}, [seed], set()
        while frontier:
            for r in frontier.pop().links:
                if r not in seen:
                    seen.add(r)
                    for f in self.users[r]:
                        if f not in found:
                            found[f] = None
                            frontier.append(f)
        return list(found)

    def _rerate_components(self, flows: list[Transfer]) -> None:
        rated: set[Transfer] = set()
        for f in flows:
            if f not in rated:
                component = self._component(f)
                rated.update(component)
                self._rerate(component)

    def _rerate(self, component: list[Transfer]) -> None:
        """New fair rates for a component, and a timer for its first finish."""
        now = self.env.now
        for f in component:
            f.settle(now)
        if len(component) == 1:  # alone on its links: their capacity, and one timer to its finish
            first = component[0]
            first.rate, first.share = min(first.capacities), component
        else:
            link_capacity = {r: c for f in component for r, c in zip(f.links, f.capacities)}
            for f, rate in zip(component, water_filling([f.links for f in component], link_capacity.__getitem__)):
                f.rate, f.share = rate, component
            first = min(component, key=lambda f: (f.bits - f.sent) / f.rate)
        timer = self.env.timeout((first.bits - first.sent) / first.rate)
        timer.callbacks.append(lambda _ev: self._finish(component, first))

    def _finish(self, component: list[Transfer], first: Transfer) -> None:
        """A component's timer: unless re-rated since, ``first`` and whatever else is done finish."""
        if any(f.share is not component for f in component):
            return
        now, left = self.env.now, []
        for f in component:
            f.settle(now)
            if f is first or f.bits - f.sent <= DONE_BITS:
                self._leave(f)
                f.sent, f.finished_at = f.bits, now
                f.done.succeed()
            else:
                left.append(f)
        self._rerate_components(left)


def water_filling(paths: list[list[tuple]], capacity) -> list[float]:
    """Max-min fair rates: the link with the smallest fair share (capacity left / flows left)
    freezes its flows at that share, which only raises the other links' shares - so a heap of
    shares, with outdated entries skipped, finds each next bottleneck in O(log L)."""
    left: dict[tuple, float] = {}
    users: dict[tuple, list[int]] = {}
    for i, p in enumerate(paths):
        for r in p:
            if r not in users:
                left[r], users[r] = capacity(r), []
            users[r].append(i)
    count = {r: len(u) for r, u in users.items()}
    order = {r: n for n, r in enumerate(users)}  # heap tie-break; resources need not be comparable
    heap = [(left[r] / count[r], order[r], r) for r in users]
    heapq.heapify(heap)
    rates: list[float | None] = [None] * len(paths)
    while heap:
        share, _, r = heapq.heappop(heap)
        if count[r] == 0 or share != left[r] / count[r]:
            continue  # outdated: this link's share rose since, or its flows are all frozen
        touched = set()
        for i in users[r]:
            if rates[i] is None:
                rates[i] = share
                for q in paths[i]:
                    left[q] -= share
                    count[q] -= 1
                    touched.add(q)
        for q in touched:
            if count[q] > 0:
                heapq.heappush(heap, (left[q] / count[q], order[q], q))
    return rates
