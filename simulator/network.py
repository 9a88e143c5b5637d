"""The network: a networkx topology whose links are shared by processor sharing.

Nodes are the server, optional cells (access points or base stations, each with a backhaul link to
the server) and the clients. Every edge is a full-duplex link with an up and a down capacity, a
latency and a loss rate. A transfer follows the client's path to the server; the transfers active
on a link direction share it max-min fairly (progressive filling), recomputed whenever a transfer
starts or ends: the fluid model of processor sharing that APPFL's fair-share bandwidth pool and
SimGrid's flow model use. A link with loss rate ``p`` delivers ``(1 - p)`` of its capacity (the
rest is retransmissions). The default star gives each client its own access link, so nothing is
shared and a transfer takes exactly ``latency + 8 bytes / rate``.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import numpy as np
import simpy
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat

from edgefed import streams
from edgefed.streams import Stream

SERVER = "server"
DONE_BITS = 1e-6  # a flow with less left than this has finished (floating-point slack)


class CellSpec(BaseModel):
    """An access point or cell: the clients of the groups that name it share its backhaul."""

    model_config = ConfigDict(extra="forbid")

    up_mbps: PositiveFloat
    down_mbps: PositiveFloat
    latency_s: NonNegativeFloat = 0.0
    loss: float = Field(0.0, ge=0.0, lt=1.0)


class VariabilitySpec(BaseModel):
    """Per-device access-link bandwidth: the catalog value is the median of a lognormal
    (``sigma`` of the log), or a CSV trace ``client,up_mbps,down_mbps`` overrides it."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field("none", pattern="^(none|lognormal|trace)$")
    sigma: NonNegativeFloat = 0.5
    file: str | None = None


class NetworkSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cells: dict[str, CellSpec] = Field(default_factory=dict,
                                       description="name -> backhaul; fleet groups join one with `cell:`")
    variability: VariabilitySpec = VariabilitySpec()


def link_factors(num_clients: int, spec: VariabilitySpec, seed: int) -> np.ndarray:
    """Multipliers (clients x [up, down]) of the catalog bandwidth; median 1 for lognormal."""
    if spec.kind == "lognormal":
        rng = streams.rng(seed, Stream.LINK_VARIABILITY)
        return rng.lognormal(0.0, spec.sigma, size=(num_clients, 2))
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


def build_topology(clients, cells: dict[str, CellSpec]) -> nx.Graph:
    """Star by default; a client whose ``cell`` is set hangs off that cell's node instead."""
    g = nx.Graph()
    g.add_node(SERVER)
    for name, cell in cells.items():
        g.add_edge(("cell", name), SERVER, up=cell.up_mbps, down=cell.down_mbps, latency=cell.latency_s,
                   loss=cell.loss)
    for c in clients:
        link = c.link
        g.add_edge(("client", c.id), ("cell", c.cell) if c.cell else SERVER, up=link.up_mbps,
                   down=link.down_mbps, latency=link.latency_s, loss=link.loss)
    return g


@dataclass(eq=False)
class Transfer:
    """One message on its way; ``done`` fires when its last bit arrives."""

    bits: float
    links: list[tuple]  # (edge, direction) resources it crosses
    start_delay: float  # promotion + path latency before the first bit flows
    done: simpy.Event
    started: float
    sent: float = 0.0
    rate: float = 0.0  # bits/s, its current max-min share
    flowing: bool = False
    cancelled: bool = False
    finished_at: float | None = None


@dataclass
class Network:
    """Active transfers and their max-min fair rates on a topology."""

    env: simpy.Environment
    graph: nx.Graph
    flows: list[Transfer] = field(default_factory=list)
    _last: float = 0.0
    _generation: int = 0

    def path(self, client: int) -> list[tuple]:
        nodes = nx.shortest_path(self.graph, ("client", client), SERVER)
        return [frozenset(e) for e in zip(nodes, nodes[1:])]

    def capacity_bps(self, resource: tuple) -> float:
        edge, direction = resource
        data = self.graph.edges[tuple(edge)]
        return data[direction] * 1e6 * (1.0 - data["loss"])

    def start(self, client: int, nbytes: int, direction: str, promotion_s: float = 0.0) -> Transfer:
        edges = self.path(client)
        latency = sum(self.graph.edges[tuple(e)]["latency"] for e in edges)
        tr = Transfer(8.0 * nbytes, [(e, direction) for e in edges], promotion_s + latency, self.env.event(),
                      self.env.now)
        self.env.process(self._join_after_delay(tr))
        return tr

    def cancel(self, tr: Transfer) -> None:
        """A client that drops: its transfer leaves the link (the bits so far stay counted)."""
        tr.cancelled = True
        if tr.flowing and tr.finished_at is None:
            self._advance()
            self.flows.remove(tr)
            tr.flowing = False
            self._reallocate()

    def _join_after_delay(self, tr: Transfer):
        yield self.env.timeout(tr.start_delay)
        if tr.cancelled:
            return
        self._advance()
        tr.flowing = True
        self.flows.append(tr)
        self._reallocate()

    def _advance(self) -> None:
        dt = self.env.now - self._last
        for f in self.flows:
            f.sent = min(f.bits, f.sent + f.rate * dt)
        self._last = self.env.now

    def _reallocate(self) -> None:
        """Finish what is done, give the rest max-min fair rates, and wake at the next finish."""
        for f in [f for f in self.flows if f.bits - f.sent <= DONE_BITS]:
            self.flows.remove(f)
            f.sent, f.flowing, f.finished_at = f.bits, False, self.env.now
            f.done.succeed()
        self._generation += 1
        if not self.flows:
            return
        for f, rate in zip(self.flows, max_min_rates([f.links for f in self.flows], self.capacity_bps)):
            f.rate = rate
        next_s = min((f.bits - f.sent) / f.rate for f in self.flows)
        generation = self._generation
        self.env.timeout(next_s).callbacks.append(lambda _ev: self._wake(generation))

    def _wake(self, generation: int) -> None:
        if generation == self._generation:  # no start or end since this timer was set
            self._advance()
            self._reallocate()


def max_min_rates(paths: list[list[tuple]], capacity) -> list[float]:
    """Progressive filling: raise all rates together; a link that fills freezes its flows."""
    rates = [0.0] * len(paths)
    left = {r: capacity(r) for p in paths for r in p}
    active = set(range(len(paths)))
    while active:
        users: dict[tuple, list[int]] = {}
        for i in active:
            for r in paths[i]:
                users.setdefault(r, []).append(i)
        bottleneck = min(users, key=lambda r: left[r] / len(users[r]))
        share = left[bottleneck] / len(users[bottleneck])
        for i in users[bottleneck]:
            rates[i] = share
            for r in paths[i]:
                left[r] -= share
            active.discard(i)
    return rates
