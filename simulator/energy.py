"""Energy: device power per phase and the radio model of Huang et al. (MobiSys 2012).

Radio power is ``power_base_w + alpha * throughput`` (alpha per direction), so a transfer that is
active for ``T`` seconds (latency + serialisation) and moves ``b`` bytes costs
``power_base_w * T + alpha * 8 b / 1e6`` whatever its rate did meanwhile - exact under shared-link
contention too. After the radio was idle longer than its tail it first pays a promotion
(``promotion_s`` at ``promotion_w``); after the transfer a tail (``tail_s`` at ``tail_w``) runs
until a following transfer cuts it short - ``simulator.radio`` keeps that state across rounds.
Bytes lost on the link (``loss``) are sent again. The device's own baseline power
(``power_idle_w``) is charged whenever it is not computing, so the total is baseline + radio +
compute increment.
"""
from __future__ import annotations

from dataclasses import dataclass

from edgefed.devices.profile import LinkProfile


@dataclass
class TransferCost:
    seconds: float  # promotion + latency + serialisation
    radio_j: float  # promotion + active energy (the tail is charged separately)


def transfer_cost(link: LinkProfile, nbytes: int, direction: str, promote: bool, mbps: float | None = None) -> TransferCost:
    """Time and radio energy of one transfer on a dedicated link (no contention)."""
    rate = mbps if mbps is not None else (link.up_mbps if direction == "up" else link.down_mbps)
    active_s = link.latency_s + 8.0 * nbytes / (rate * 1e6 * (1.0 - link.loss))
    promo_s = link.promotion_s if promote else 0.0
    return TransferCost(promo_s + active_s, radio_energy(link, direction, promote, active_s, nbytes))


def radio_energy(link: LinkProfile, direction: str, promote: bool, active_s: float, nbytes: float) -> float:
    """Promotion + ``active_s`` at base power + the throughput term for the bytes put on the air."""
    alpha = link.power_up_w_per_mbps if direction == "up" else link.power_down_w_per_mbps
    promo_j = link.promotion_s * link.promotion_w if promote else 0.0
    return promo_j + active_s * link.power_base_w + alpha * 8.0 * nbytes / 1e6 / (1.0 - link.loss)


def needs_promotion(link: LinkProfile, gap_s: float | None) -> bool:
    """A transfer after a gap longer than the tail (or the first one) pays a promotion."""
    return link.promotion_s > 0 and (gap_s is None or gap_s > link.tail_s)
