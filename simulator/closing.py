"""When a round closes for a set of clients: the one rule the server of a flat round and each edge
server of a hierarchical one apply to the clients that report to them.

Wait for every client, the deadline or the over-selection quota, whichever comes first; cut off
the clients still running (``late``; they are charged what they got through); an arrival beyond
the quota - one that came together with the quota's last - is ``late`` too. The quota and the
deadline are objects the caller hands in: under hierarchical aggregation every edge of a round
reports to the round's one quota, so its last arrival closes them all at once, and each edge's
deadline is the server's less the time its message needs up its backhaul (``simulator.edge``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import simpy

from edgefed.simulator.records import ClientRecord


@dataclass(eq=False)
class Quota:
    """Arrivals toward an over-selection quota: ``enough`` fires at the ``keep``-th, later ones are
    late. Without one (``enough`` None) every arrival counts."""

    keep: int
    enough: simpy.Event | None
    arrivals: list[ClientRecord] = field(default_factory=list)

    def arrived(self, rec: ClientRecord) -> None:
        self.arrivals.append(rec)
        if self.enough is not None and len(self.arrivals) == self.keep:
            self.enough.succeed()


def close(env: simpy.Environment, procs: list[simpy.Process], quota: Quota, deadline: simpy.Event | None,
          clock: simpy.Process | None = None):
    """Generator: wait for every client process ``procs`` (and the closed-form clients' ``clock``),
    the quota or the ``deadline``; cut off the clients still running and mark the arrivals beyond
    the quota late."""
    wait = env.all_of(procs + ([clock] if clock is not None else []))
    if quota.enough is not None:
        wait = wait | quota.enough
    if deadline is not None:
        wait = wait | deadline
    yield wait
    for proc in procs:
        if proc.is_alive:
            proc.interrupt("late")
    yield env.timeout(0)  # let the interrupted processes record what they got through
    for rec in quota.arrivals[quota.keep:] if quota.enough is not None else []:
        rec.status = "late"
