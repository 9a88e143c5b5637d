"""Transfer time and energy: device power per phase and the radio model of Huang et al. (MobiSys 2012).

Radio power is ``power_base_w + alpha * throughput`` (alpha per direction), so a transfer that is
active for ``T`` seconds (latency + serialisation) and moves ``b`` bits costs
``power_base_w * T + alpha * b / 1e6`` whatever its rate did meanwhile - exact under shared-link
contention too. After the radio was idle longer than its tail it first pays a promotion
(``promotion_s`` at ``promotion_w``); after the transfer a tail (``tail_s`` at ``tail_w``) runs
until a following transfer cuts it short - ``simulator.radio`` keeps that state across rounds.
Bits lost on the link (``loss``) are sent again. The device's own baseline power
(``power_idle_w``) is charged whenever it is not computing, so the total is baseline + radio +
compute increment.

With ``simulator.radio``, ``simulator.thermal`` and ``simulator.costs`` this is the whole
per-client device model: one set of functions over profiles whose figures are floats (the event
path, one client) or arrays (the closed form, many clients), so both paths are the same arithmetic
by construction. A link is anything with ``LinkProfile``'s fields, a device anything with
``power_active_w``, ``power_throttled_w`` and ``power_idle_w``. On floats numpy's min/max/where answer numpy scalars; the
event path turns what it keeps back into floats before it reaches the SimPy clock or a row.
"""
from __future__ import annotations

import numpy as np

from edgefed.simulator import thermal


def _rate(link, direction: str):
    return link.up_mbps if direction == "up" else link.down_mbps


def _alpha(link, direction: str):
    return link.power_up_w_per_mbps if direction == "up" else link.power_down_w_per_mbps


def _fit_range(link, direction: str):
    return getattr(link, "power_fit_up_mbps" if direction == "up" else "power_fit_down_mbps", None)


def power_share(link, direction: str):
    """The rate's share charged by the throughput term: ``clip(rate, low, high) / rate`` over the
    range the link's slope was fitted on (1 inside it, or with no range), so a rate outside it is
    charged the power at the range's edge while it transfers at its own rate. The rate is the
    link's own (the device's drawn rate in a population); a flow slowed by sharing a link is
    charged by its link's rate, not its share."""
    fit = _fit_range(link, direction)
    if fit is None:
        return 1.0
    rate = _rate(link, direction)
    return np.clip(rate, fit[0], fit[1]) / rate


def capacity(link, direction: str):
    """Bits per second a link direction delivers: a loss rate ``p`` spends ``p`` of it on
    retransmissions."""
    return _rate(link, direction) * 1e6 * (1.0 - link.loss)


def first_bit_s(promotion_s, latency_s, handshakes):
    """Before a message's first bit: the radio's promotion (0 when none), ``handshakes`` round trips
    opening a connection (``radio.handshakes``) and the request's own, each ``latency_s`` (the path's)."""
    return promotion_s + latency_s * (1 + handshakes)


def transfer_s(link, direction: str, bits, promote, handshakes):
    """A flow alone on the device's link: the delay before its first bit (``first_bit_s``: the
    promotion where the transfer wakes the radio, ``promote``, and its ``handshakes``) and its
    serialisation at the link's whole capacity, what ``Network`` gives such a flow."""
    return first_bit_s(link.promotion_s * promote, link.latency_s, handshakes), bits / capacity(link, direction)


def transfer_j(link, direction: str, elapsed_s, promote, bits):
    """Radio energy of a transfer ``elapsed_s`` seconds after it started, ``bits`` put on the air:
    the promotion (or the part of it elapsed), then base power for the rest and the throughput term
(``power_share`` of it where the link's rate lies outside its fitted range).
    The tail is charged apart (``radio.tail``)."""
    promo_s = link.promotion_s * promote
    active_s = np.maximum(0.0, elapsed_s - promo_s)
    return np.minimum(elapsed_s, promo_s) * link.promotion_w + (
        active_s * link.power_base_w + _alpha(link, direction) * power_share(link, direction) * bits / 1e6
        / (1.0 - link.loss))


def radio_w(link, direction: str):
    """Radio power while transferring at the link's full rate (clamped to its fitted range)."""
    return link.power_base_w + _alpha(link, direction) * _rate(link, direction) * power_share(link, direction)


def compute_j(device, profile, heat_s, seconds, slowdown=1.0):
    """The energy of ``seconds`` of computation from heat ``heat_s`` (``simulator.thermal``;
    ``profile``: the device's thermal profile): ``power_active_w`` while at the burst clock,
    ``power_throttled_w`` after it. The device's baseline is part of both; outside computation
    it is charged apart (``baseline_j``).

    A straggler (``slowdown`` above 1) runs that many times longer because the device is busy
    with other work too, so FL is charged its share of the busy device, ``idle + (power - idle) /
    slowdown``: the baseline for every second, and above it the same joules as the work unslowed
    (ESTIMATE, docs/devices.md). A slowdown below 1 is the device running fast, at full power."""
    throttled = thermal.throttled_s(profile, heat_s, seconds)
    others = 1.0 - 1.0 / np.maximum(1.0, slowdown)  # the busy device's share that is not FL's; 0 unslowed
    burst_w = device.power_active_w - (device.power_active_w - device.power_idle_w) * others
    throttled_w = device.power_throttled_w - (device.power_throttled_w - device.power_idle_w) * others
    return (seconds - throttled) * burst_w + throttled * throttled_w


def baseline_j(device, download_s, upload_s, idle_s):
    """The device's baseline power over the time it was not computing."""
    return device.power_idle_w * (download_s + upload_s + idle_s)
