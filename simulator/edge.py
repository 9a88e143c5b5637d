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

from dataclasses import dataclass, field

import numpy as np
import simpy

from edgefed.algorithms.message import Message
from edgefed.simulator.closing import Quota
from edgefed.simulator.energy import capacity
from edgefed.simulator.network import CellSpec, Transfer
from edgefed.simulator.records import ClientRecord

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
