"""One device's radio as a state machine over the whole timeline (Huang et al., MobiSys 2012):
idle -> promotion -> connected -> tail -> idle.

Rounds do not reset it: a transfer that starts inside the tail left by an earlier one (the
previous phase or the previous round) pays no promotion, and the part of that tail it cuts short
is refunded, so tails never overlap in the energy. A tail is charged in full when it starts
(nothing may follow it: the device may never be picked again) and a later transfer refunds what
it did not run. Outside transfers and tails the radio draws the link's ``idle_w``.

The state is the last tail, ``tail_from`` .. ``tail_until`` (NaN: the radio never woke); the
functions take it as floats or arrays alike (``simulator.energy`` says why).

The device's connection to its server is apart from the radio: it lives ``keepalive_s`` after the
last transfer ended (``contact``), whatever the radio did since (a 5G SA radio resuming from
RRC_INACTIVE, or one promoted from idle, finds it open while it lives); ``handshakes`` is the one
rule that says whether a transfer opens a new one.
"""
from __future__ import annotations

import numpy as np


def wake(link, tail_until, now):
    """A transfer starts at ``now``: whether it pays a promotion, and the energy of the
    already-charged tail it cuts short (to be subtracted). That is never more than a whole tail
    (``tail_until - now`` can round above ``tail_s``), so the row that cuts a tail, which ends with
    a whole tail of its own, never goes below zero."""
    in_tail = now <= tail_until  # False where the radio never woke (NaN)
    cut_s = np.minimum(tail_until - now, link.tail_s)
    return np.logical_not(in_tail) & (link.promotion_s > 0), np.where(in_tail, cut_s * link.tail_w, 0.0)


def tail(link, now):
    """A transfer ended (or was cut off) at ``now``: the tail it leaves and that tail's full energy."""
    return now, now + link.tail_s, link.tail_s * link.tail_w


def idle_j(link, tail_from, tail_until, start, stop):
    """Idle power over ``[start, stop]``, a span with no transfer in it, less its overlap with the
    last tail (fmax: none where the radio never woke)."""
    overlap = np.fmax(0.0, np.minimum(stop, tail_until) - np.maximum(start, tail_from))
    return link.idle_w * np.maximum(0.0, stop - start - overlap)


def handshakes(link, contact, now):
    """Round trips a transfer starting at ``now`` spends opening a connection: the link's
    ``handshake_rtts`` on first contact (``contact`` NaN) or when more than ``keepalive_s`` passed
    since its last transfer ended at ``contact`` (NAT bindings and keep-alives expire); none while
    the connection lives, whether or not the radio went idle since."""
    alive = now - contact <= link.keepalive_s  # False where it never talked to the server (NaN)
    return np.logical_not(alive) * link.handshake_rtts
