"""Radio state and heat carried across rounds, against energies and times computed by hand on
round-number links and devices (tests/test_systems.py's LINK: promotion 0.5 s at 2 W, 1 W base,
0.1 / 0.5 W per Mbps down / up, 5 s tail at 1 W; 1 MB each way)."""

import pytest

from edgefed.devices.profile import ThermalProfile
from edgefed.simulator.inputs import EngineConfig
from tests.test_systems import LINK, FakeAlgo, device, make_engine, play, restore

IDLE_LINK = LINK.model_copy(update={"idle_w": 0.1})
DOWN_J = 0.6 * 1.0 + 0.1 * 8  # 0.1 s latency + 8 Mbit / 16 Mbps at 1 W, plus 0.1 W/Mbps x 8 Mbit
UP_J = 1.1 * 1.0 + 0.5 * 8  # 0.1 s + 8 Mbit / 8 Mbps at 1 W, plus 0.5 W/Mbps x 8 Mbit
PROMO_J, TAIL_J = 0.5 * 2.0, 5.0 * 1.0


def test_back_to_back_rounds_pay_one_promotion_and_no_overlapping_tail():
    (r1, [a]), (r2, [b]) = play(make_engine(FakeAlgo(flops=2e9), [device(1.0)], rounds=EngineConfig(max_rounds=2, clients_per_round=1)), 2)
    # round 1, from idle: promotion; the download's tail runs through the 2 s compute and is cut by
    # the upload at 3.1 s; the upload's tail (4.2 .. 9.2 s) is charged in full
    assert a.energy_radio_j == pytest.approx(PROMO_J + DOWN_J + 2.0 + UP_J + TAIL_J)  # 14.5 J
    assert r1.sim_time_s == pytest.approx(4.2)
    # round 2 starts at 4.2 s, inside that tail: no promotion, and the whole 5 s of it (charged in
    # round 1) is refunded since the download cuts it at once
    assert b.download_s == pytest.approx(0.6)
    assert b.energy_radio_j == pytest.approx(-TAIL_J + DOWN_J + 2.0 + UP_J + TAIL_J)  # 8.5 J
    assert r2.sim_time_s == pytest.approx(4.2 + 0.6 + 2.0 + 1.1)
    # the timeline integral: promotion, 2 downloads, 2 inter-phase tails, 2 uploads, one final tail
    assert a.energy_radio_j + b.energy_radio_j == pytest.approx(PROMO_J + 2 * (DOWN_J + 2.0 + UP_J) + TAIL_J)


@pytest.mark.parametrize("attribution", ["session", "round"])
def test_idle_radio_power_is_charged_outside_tails_while_a_device_takes_part(attribution):
    (record, [fast, slow]), = play(make_engine(FakeAlgo(flops=2e9), [device(1.0), device(0.1)], link=IDLE_LINK,
                                               energy_attribution=attribution))
    # slow: 20 s compute from 1.1 s; its download tail covers 5 s of it, idle 15 s at 0.1 W; the
    # upload then needs a promotion and ends at 22.7 s
    assert slow.energy_radio_j == pytest.approx(PROMO_J + DOWN_J + TAIL_J + 15 * 0.1 + PROMO_J + UP_J + TAIL_J)
    assert record.sim_time_s == pytest.approx(22.7)
    # fast: done at 4.2 s, waits 18.5 s; its upload tail covers 5 s of that, idle 13.5 s at 0.1 W, and
    # its device's baseline (0.5 W) runs through the wait - both charged only to a round, not a session,
    # which ends with the upload's tail
    assert fast.idle_s == pytest.approx(18.5)
    if attribution == "round":
        assert fast.energy_radio_j == pytest.approx(PROMO_J + DOWN_J + 2.0 + UP_J + TAIL_J + 13.5 * 0.1)
        assert fast.energy_idle_j == pytest.approx(0.5 * (1.1 + 1.1 + 18.5))
    else:
        assert fast.energy_radio_j == pytest.approx(PROMO_J + DOWN_J + 2.0 + UP_J + TAIL_J)
        assert fast.energy_idle_j == pytest.approx(0.5 * (1.1 + 1.1))


def test_a_phone_throttles_after_its_burst_and_starts_the_next_round_hot():
    hot = device(1.0).model_copy(update={"thermal": ThermalProfile(burst_s=10.0, sustained_fraction=0.5, cool_s=20.0)})
    (r1, [a]), (r2, [b]) = play(make_engine(FakeAlgo(flops=16e9), [hot], rounds=EngineConfig(max_rounds=2, clients_per_round=1)), 2)
    assert a.compute_s == pytest.approx(10.0 + 6.0 / 0.5)  # 10 s at full speed, the other 6 s of work at half
    # compute ends at 23.1 s; upload (promoted: the tail ended at 6.1 s) to 24.7 s; round-2 download
    # (inside the tail, no promotion) to 25.3 s: 2.2 s of cooling drain 1.1 s of the 10 s of heat
    assert b.compute_s == pytest.approx(1.1 + (16.0 - 1.1) / 0.5)
    # throttled at half the clock the device draws idle + (active - idle) x 0.5^2 = 0.5 + 2.5 / 4 W
    assert a.energy_compute_j == pytest.approx(10.0 * 3.0 + 12.0 * 1.125)  # 43.5 J, not 22 s x 3 W
    assert b.energy_compute_j == pytest.approx(1.1 * 3.0 + 29.8 * 1.125)
    assert b.flops == pytest.approx(16e9)


def test_a_throttled_flop_costs_less_energy_than_a_burst_one():
    hot = device(1.0).model_copy(update={"thermal": ThermalProfile(burst_s=10.0, sustained_fraction=0.5, cool_s=20.0,
                                                                   power_exponent=3.0)})
    assert hot.power_throttled_w == pytest.approx(0.5 + 2.5 * 0.125)
    assert hot.power_throttled_w / 0.5 < hot.power_active_w  # joules per burst-second of work
    linear = hot.model_copy(update={"thermal": hot.thermal.model_copy(update={"power_exponent": 1.0})})
    assert linear.power_throttled_w / 0.5 > hot.power_throttled_w / 0.5
    assert device(1.0).power_throttled_w == device(1.0).power_active_w  # no thermal profile: no throttling


def test_a_phone_stopped_by_a_push_while_throttled_is_charged_the_work_it_did():
    hot = device(1.0).model_copy(update={"thermal": ThermalProfile(burst_s=10.0, sustained_fraction=0.5, cool_s=20.0)})
    (record, [row]), = play(make_engine(FakeAlgo(flops=16e9), [hot], rounds=EngineConfig(max_rounds=1, clients_per_round=1, deadline_s=17.1, cut="push")))
    assert row.status == "late" and row.compute_s == pytest.approx(16.0)  # 1.1 s download, then 16 s
    assert row.flops == pytest.approx((10.0 + 6.0 * 0.5) * 1e9)  # 10 s at 1 GFLOP/s, 6 s at 0.5
    assert row.energy_compute_j == pytest.approx(10.0 * 3.0 + 6.0 * 1.125)  # 6 s of it throttled


def test_radio_and_heat_survive_a_state_round_trip_exactly():
    hot = device(1.0).model_copy(update={"thermal": ThermalProfile(burst_s=10.0, sustained_fraction=0.5, cool_s=20.0)})
    rounds = EngineConfig(max_rounds=2, clients_per_round=1)
    straight = play(make_engine(FakeAlgo(flops=16e9), [hot], link=IDLE_LINK, rounds=rounds), 2)

    first = make_engine(FakeAlgo(flops=16e9), [hot], link=IDLE_LINK, rounds=rounds)
    play(first, 1)
    resumed = make_engine(FakeAlgo(flops=16e9), [hot], link=IDLE_LINK, rounds=rounds)
    restore(resumed, first)
    (_, rows), = play(resumed, 2, first=2)
    assert rows[0] == straight[1][1][0]
