"""The edge tier of hierarchical aggregation (``rounds.aggregation.kind: hierarchical``).

Each cell's edge server, per round: receives every distinct download its clients need once over
the backhaul and forwards it over their access links (store and forward; it keeps nothing
across rounds, so a stale client's history crosses the backhaul again in a later round), closes
on its own clients by the rule of ``simulator.closing`` - all of them, the round's deadline, or
with over-selection its share of the first arrivals - and sends the method's partial aggregate of
what it kept as one message up the backhaul. Edge servers are mains-powered and their compute is
negligible: they add time and bytes, no device energy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import simpy

from edgefed.algorithms.message import Message
from edgefed.simulator.closing import Quota
from edgefed.simulator.network import Transfer


@dataclass(eq=False)
class EdgeServer:
    """One cell's edge server in one round."""

    cell: str
    index: int  # its id on the wire: the cell's place among the scenario's cells, by name
    clients: list[int]  # its selected clients, in selection order
    quota: Quota  # the arrivals it aggregates (``simulator.closing``)
    downloads: list[Transfer] = field(default_factory=list)  # server -> edge, one per distinct download
    ready: dict[int, simpy.Event] = field(default_factory=dict)  # client -> its download is at the edge
    message: Message | None = None  # the partial aggregate it forwarded
    bytes_down: int = 0  # backhaul, server -> edge (set when it closes: a cut-off download counts what it sent)
    bytes_up: int = 0  # backhaul, edge -> server


def cell_quota(in_cell: int, need: int, selected: int) -> int:
    """Over-selection per cell: a cell with ``in_cell`` of the round's ``selected`` clients keeps
    its first ``ceil(in_cell * need / selected)`` arrivals (``need``: the arrivals the flat server
    keeps), so every cell keeps its share, rounded up."""
    return math.ceil(in_cell * need / selected)


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
