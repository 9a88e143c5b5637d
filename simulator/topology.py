"""The network's infrastructure as a graph (``fleet.network.topology``): access points and cells,
edge sites, regions and one cloud, joined by full-duplex links.

A fleet group attaches to a node; a device's path to the server is its own access link followed
by the node's path to the cloud, computed once per node - so a million devices add no graph
node. Paths are shortest by latency, summed exactly (as fractions, so equal sums tie exactly);
ties go to the path whose sequence of node names, from the node to the cloud, comes first.
Every link's latency is positive, so each step of a shortest path gets strictly nearer the cloud:
a link is crossed in one orientation by every path, its ``up`` direction is toward the cloud,
and the paths form a tree (a node's path continues as its next node's).

The structure is checked with networkx (``check``, imported only for a scenario with a topology).
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, model_validator

TIERS = ("ap", "cell", "edge", "region")  # the kinds that can aggregate, lowest first
CLOUD = "cloud"


class NodeSpec(BaseModel):
    """An infrastructure node; the one ``cloud`` node holds the server."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    kind: Literal["ap", "cell", "edge", "region", "cloud"]


class LinkSpec(BaseModel):
    """A full-duplex link between two nodes; ``up`` is the direction toward the cloud."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    a: str = Field(description="a node it joins")
    b: str = Field(description="the other node it joins")
    up_mbps: PositiveFloat = Field(description="capacity toward the cloud, shared max-min fairly by the flows on it")
    down_mbps: PositiveFloat = Field(description="capacity away from the cloud")
    latency_s: PositiveFloat = Field(description="one way; positive, so that 'toward the cloud' is defined")
    loss: float = Field(0.0, ge=0.0, lt=1.0, description="share of the capacity lost to retransmissions")


class TopologySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    nodes: dict[str, NodeSpec] = Field(min_length=1, description="name -> {kind: ap | cell | edge | region | cloud}")
    links: list[LinkSpec] = Field(min_length=1, description="{a, b, up_mbps, down_mbps, latency_s, loss}; up is "
                                  "toward the cloud")

    @model_validator(mode="after")
    def _checked(self) -> "TopologySpec":
        check(self)
        return self


def check(spec: TopologySpec) -> None:
    """Raise ValueError (one line naming the node or link) unless the graph is one the paths are
    defined on: links between known, distinct nodes, at most one per pair, exactly one cloud,
    every node connected to it."""
    import networkx as nx  # only a scenario with a topology pays for it

    clouds = sorted(name for name, node in spec.nodes.items() if node.kind == CLOUD)
    if len(clouds) != 1:
        raise ValueError(f"nodes: exactly one node of kind cloud holds the server, found {len(clouds)}"
                         + (f" ({', '.join(clouds)})" if clouds else ""))
    graph = nx.Graph()
    graph.add_nodes_from(spec.nodes)
    for i, link in enumerate(spec.links):
        for end in (link.a, link.b):
            if end not in spec.nodes:
                raise ValueError(f"links.{i}: unknown node {end!r} (known: {', '.join(sorted(spec.nodes))})")
        if link.a == link.b:
            raise ValueError(f"links.{i}: a link from {link.a!r} to itself")
        if graph.has_edge(link.a, link.b):
            raise ValueError(f"links.{i}: a second link between {link.a!r} and {link.b!r}")
        graph.add_edge(link.a, link.b)
    reached = nx.node_connected_component(graph, clouds[0])
    for name in sorted(spec.nodes):
        if name not in reached:
            raise ValueError(f"nodes.{name}: cannot reach the cloud {clouds[0]!r} (the graph is not connected)")


@dataclass
class Topology:
    """The checked graph with every node's path to the cloud, as the network and the edge tier
    read it. A hop is ``(resource key, LinkSpec)``, as ``simulator.network`` takes them."""

    spec: TopologySpec
    cloud: str = ""
    paths: dict[str, tuple[str, ...]] = field(default_factory=dict)  # node -> node names to the cloud
    routes: dict[str, list[tuple]] = field(default_factory=dict)  # node -> its hops to the cloud
    link_names: list[str] = field(default_factory=list)  # "a-b" per link, in the spec's order

    def __post_init__(self):
        spec = self.spec
        self.cloud = next(name for name, node in spec.nodes.items() if node.kind == CLOUD)
        index = {frozenset((link.a, link.b)): i for i, link in enumerate(spec.links)}
        neighbours: dict[str, list[tuple[str, Fraction]]] = {name: [] for name in spec.nodes}
        for link in spec.links:
            neighbours[link.a].append((link.b, Fraction(link.latency_s)))
            neighbours[link.b].append((link.a, Fraction(link.latency_s)))
        self.link_names = [f"{link.a}-{link.b}" for link in spec.links]
        for name in spec.nodes:
            path = self.paths[name] = shortest(name, self.cloud, neighbours)
            self.routes[name] = [(("link", index[frozenset(pair)]), spec.links[index[frozenset(pair)]])
                                 for pair in zip(path, path[1:])]

    def kind(self, node: str) -> str:
        return self.spec.nodes[node].kind

    def tier_of_link(self, i: int) -> str:
        """A link's tier: the kind of its end farther from the cloud (an edge site's uplink is tier edge)."""
        a, b = self.spec.links[i].a, self.spec.links[i].b
        lower = a if self.paths[a][1:2] == (b,) or (self.paths[b][1:2] != (a,) and
                                                   len(self.paths[a]) >= len(self.paths[b])) else b
        return self.kind(lower)

    def tier_columns(self) -> list[str]:
        """rounds.csv's bytes per tier: up and down over the links above each kind of node."""
        kinds = {self.tier_of_link(i) for i in range(len(self.spec.links))}
        return [f"{kind}_bytes_{d}" for kind in TIERS if kind in kinds for d in ("up", "down")]

    def tier_bytes(self, links: dict[int, list[int]]) -> dict[str, int]:
        """A round's ``links`` (link -> [up, down]) summed into ``tier_columns``."""
        out = dict.fromkeys(self.tier_columns(), 0)
        for i, (up, down) in links.items():
            kind = self.tier_of_link(i)
            out[f"{kind}_bytes_up"] += up
            out[f"{kind}_bytes_down"] += down
        return out

    def aggregators(self, node: str, at: tuple[str, ...]) -> list[str]:
        """The nodes on ``node``'s path (itself first) whose kind aggregates, lowest first."""
        return [n for n in self.paths[node] if self.kind(n) in at]


def shortest(source: str, target: str, neighbours: dict[str, list[tuple[str, Fraction]]]) -> tuple[str, ...]:
    """Dijkstra from ``source`` keyed by (exact latency, the path's names): the shortest path, and
    among equal ones the lexicographically first. Extending two paths to one node by one link keeps
    their order, so the first key popped at ``target`` is the rule's path."""
    heap, done = [(Fraction(0), (source,))], set()
    while heap:
        latency, path = heapq.heappop(heap)
        node = path[-1]
        if node in done:
            continue
        done.add(node)
        if node == target:
            return path
        for nxt, link_s in neighbours[node]:
            if nxt not in done:
                heapq.heappush(heap, (latency + link_s, path + (nxt,)))
    raise ValueError(f"nodes.{source}: cannot reach the cloud {target!r}")


def round_links(topology: Topology, attach, rows, edges=None) -> dict[int, list[int]]:
    """Bytes each link carried in a round: every client row's transfers over its attach node's hops
    up to its lowest aggregator (``attach(client)``: its node; ``edges``: the round's
    ``simulator.edge.EdgeServer``s, None for flat rounds), and each aggregator's over its hops up
    to the one above."""
    lowest = {cid: edge.node for edge in edges or () for cid in edge.clients}
    legs = [(node, lowest.get(rec.client), rec.bytes_up, rec.bytes_down)
            for rec in rows if (node := attach(rec.client)) is not None]
    legs += [(edge.node, edge.parent.node if edge.parent is not None else None, edge.bytes_up, edge.bytes_down)
             for edge in edges or ()]
    return carried(topology.routes, legs)


def carried(routes: dict[str, list[tuple]], legs) -> dict[int, list[int]]:
    """Bytes each infrastructure link carried, up and down: ``legs`` are (from node, to node or None
    for the server, bytes up, bytes down), each crossing the hops of the from node's path that lie
    below the to node's (a flow's bytes are the same on every link of its path)."""
    out: dict[int, list[int]] = {}
    for start, end, up, down in legs:
        route = routes[start]
        for key, _ in route[:len(route) - (len(routes[end]) if end is not None else 0)]:
            sums = out.setdefault(key[1], [0, 0])
            sums[0] += up
            sums[1] += down
    return out
