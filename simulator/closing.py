"""When a round closes for a set of clients: the one rule the server of a flat round and each edge
server of a hierarchical one apply to the clients that report to them.

Wait for every client, the deadline or the over-selection quota, whichever comes first; cut off
the clients still running (``late`` at the deadline, ``cut`` by the quota; ``cut_off`` is what
that costs them: a client computing does not know it was cut, ``rounds.cut``); an arrival beyond
the quota - one that came together with the quota's last - is ``late``. The quota and the
deadline are objects the caller hands in: under hierarchical aggregation every edge of a round
reports to the round's one quota, so its last arrival closes them all at once, and each edge's
deadline is the server's less the time its message needs up its backhaul (``simulator.edge``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import simpy

from edgefed.simulator import radio, thermal
from edgefed.simulator.energy import first_bit_s, transfer_j
from edgefed.simulator.records import ClientRecord


@dataclass(frozen=True)
class Cut:
    """What the server tells a client process it closed on: its status (``late``: the deadline,
    ``cut``: the quota filled)."""

    status: str


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
    cut = Cut("cut" if quota.enough is not None and quota.enough.triggered else "late")
    for proc in procs:
        if proc.is_alive:
            proc.interrupt(cut)
    yield env.timeout(0)  # let the interrupted processes record what they got through
    for rec in quota.arrivals[quota.keep:] if quota.enough is not None else []:
        rec.status = "late"


def cut_off(sessions, c, hops: list[tuple]) -> None:
    """The server closed on client ``c`` (a ``session.ClientRound``, played by ``sessions``, the
    ``session.Sessions``) still running, its path ``hops``. One in touch with it -
    transferring, or waiting for its edge server's download - learns at once and stops, charged
    what it got through; one computing does not (docs/design.md, Closing): under ``cut: finish`` it
    computes to the end and is refused at its upload's first contact, under ``push`` a push wakes
    its radio and stops it now."""
    if c.phase != "compute":
        sessions.charge_partial(c)
    elif sessions.cfg.cut == "push":
        sessions.charge_partial(c)
        _push(c, sessions.env.now)
    else:
        _finish(sessions, c, hops)


def _push(c, now: float) -> None:
    """``cut: push``: a push at the server's close wakes the radio (a promotion, unless a tail still
    runs, which it cuts and refunds) and leaves a tail; the connection to the server is not touched."""
    link, rec = c.client.link, c.rec
    promote, refund = radio.wake(link, c.tail_until, now)
    c.tail_from, c.tail_until, tail_j = radio.tail(link, now)
    rec.energy_radio_j += float(transfer_j(link, "down", link.promotion_s * promote, promote, 0.0) - refund + tail_j)
    rec.note = "stopped by a push at the round's close"


def _finish(sessions, c, hops: list[tuple]) -> None:
    """``cut: finish``: nothing reaches the device until it next talks to its server. It computes to
    the end, unless it goes off or its battery share runs out first, then its upload's first contact
    is refused: one request round trip over ``hops`` (after a promotion and handshakes where due), no
    payload, then a tail. All of it is known now, so its row is written now (its round's) and the
    device is busy until the contact ends."""
    rec, link = c.rec, c.client.link
    compute_s = float(thermal.duration(c.thermal_profile, c.heat_s, c.work_s))
    end = c.phase_start + compute_s
    empty_at = c.phase_start + sessions.battery_left_s(c, c.client.device.power_active_w + link.idle_w)
    if min(c.off, empty_at) < end:  # where the event path's watch or battery would have stopped it
        rec.status, rec.note = "dropped", "battery empty" if empty_at < c.off else "went off, computing after the close"
        sessions.charge_partial(c, min(c.off, empty_at))
        return
    sessions.computed(c, compute_s)
    promote, refund = radio.wake(link, c.tail_until, end)
    delay = float(first_bit_s(link.promotion_s * promote, sum(hop.latency_s for _, hop in hops),
                              radio.handshakes(link, c.contact, end)))
    done = end + delay
    c.tail_from, c.tail_until, tail_j = radio.tail(link, done)
    c.contact = done
    rec.energy_radio_j += float(transfer_j(link, "up", delay, promote, 0.0) - refund + tail_j)
    rec.upload_s, rec.finished_at = delay, done
    rec.note = "computed on after the round's close; its upload was refused"
    sessions.busy_until[c.client.id] = done
