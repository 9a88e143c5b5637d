"""The fleet as arrays: selection, eligibility, batteries, resource-aware estimates and
availability over numpy give what the per-device Python rules give, device by device."""
import math

import numpy as np
import pytest

from edgefed.algorithms.work import Work
from edgefed.devices.availability import DAY_S, Availability, AvailabilitySpec
from edgefed.build import build_fleet, mark_memory_exclusions
from edgefed.simulator.costs import compute_seconds
from edgefed.simulator.energy import transfer_s
from edgefed.simulator.engine import Engine, Estimate
from edgefed.scenario import Scenario
from edgefed.simulator.inputs import EngineConfig


def _fleet(tiny_dict, size=300):
    tiny_dict["fleet"]["groups"] = [{"device": "pixel-7a", "count": size // 3, "link": "lte"},
                                    {"device": "rpi5", "count": size // 3, "link": "wifi"},
                                    {"device": "jetson-orin-nano", "count": size - 2 * (size // 3)}]
    tiny_dict["fleet"]["network"] = {"variability": {"kind": "lognormal", "sigma": 0.5}}
    return build_fleet(Scenario.model_validate(tiny_dict))


def _engine(fleet, selection="uniform", deadline_s=None):
    return Engine(None, fleet, EngineConfig(seed=5, max_rounds=1, clients_per_round=40, selection=selection,
                                            deadline_s=deadline_s))


def test_fleet_arrays_hold_each_device_as_the_scenario_says(tiny_dict):
    fleet = _fleet(tiny_dict)
    assert len(fleet) == 300 and [c.device_name for c in fleet][99:101] == ["pixel-7a", "rpi5"]
    c = fleet[150]
    assert c.link.name == "wifi" and c.link.up_mbps == fleet.up_mbps[150] != fleet.groups[1].link.up_mbps
    per_device = fleet.group.nbytes + fleet.up_mbps.nbytes + fleet.down_mbps.nbytes + fleet.eligible.nbytes
    assert per_device / len(fleet) <= 32  # bytes: a million devices in tens of MB


def test_selection_over_arrays_matches_the_per_device_rule(tiny_dict):
    fleet = _fleet(tiny_dict)
    smallest = min(g.device.memory_bytes for g in fleet.groups)
    excluded = mark_memory_exclusions(fleet, int(smallest) + 1)  # the devices with the least memory
    engine = _engine(fleet)
    engine.sessions.charge_j[:] = math.inf
    engine.sessions.charge_j[::7] = 0.0  # spent batteries
    engine.sessions.charge_j[1::7] = 5.0
    clients = list(fleet)
    usable = [c.id for c in clients if c.eligible and engine.sessions.charge_j[c.id] > 0]
    assert engine.sessions.usable().tolist() == usable
    assert 0 < sum(e["count"] for e in excluded) == sum(not c.eligible for c in clients) < len(clients)
    for round in (1, 2, 3):
        rng = np.random.default_rng([5, 3, round])
        assert engine.select(round) == sorted(rng.choice(usable, size=40, replace=False).tolist())


@pytest.mark.parametrize("with_deadline", [False, True])
def test_resource_aware_selection_matches_the_per_device_estimates(tiny_dict, with_deadline):
    fleet = _fleet(tiny_dict)
    work = Work()
    work.add("forward", flops=3e10, bytes=1e8)

    def expected(c):  # the rule on one device's own link, as a scalar: promotions after idle and after the tail,
        # a new connection at first contact and after keepalive_s
        down = sum(transfer_s(c.link, "down", 8.0 * 4_000_000, c.link.promotion_s > 0, c.link.handshake_rtts))
        compute = compute_seconds(work, c.device)
        return down + compute + sum(transfer_s(c.link, "up", 8.0 * 4_000_000,
                                               c.link.promotion_s > 0 and compute > c.link.tail_s,
                                               c.link.handshake_rtts * (compute > c.link.keepalive_s)))

    ids = np.arange(len(fleet))
    deadline_s = float(np.median([expected(c) for c in fleet])) if with_deadline else None
    engine = _engine(fleet, "resource_aware", deadline_s)
    engine.reference = Estimate(4_000_000, 4_000_000, work)
    assert engine.expected_seconds(ids).tolist() == [expected(c) for c in fleet]
    order = np.random.default_rng([5, 3, 1]).permutation(ids).tolist()
    times = {cid: expected(fleet[cid]) for cid in order}
    limit = deadline_s if deadline_s is not None else -math.inf
    in_time = [cid for cid in order if times[cid] <= limit]
    rest = sorted((cid for cid in order if times[cid] > limit), key=times.__getitem__)
    assert engine.select(1) == sorted((in_time[:40] + rest)[:40])
    if with_deadline:
        assert 40 < len(in_time) < len(fleet)  # the deadline splits the fleet


def test_availability_answers_for_arrays_as_for_each_device(tmp_path):
    ids = np.arange(50)
    diurnal = Availability(AvailabilitySpec(kind="diurnal", on_hours=8), 50, 1)
    for t in (0.0, 3 * 3600.0, 20 * 3600.0):
        into = [(t - diurnal.phase_s[c]) % DAY_S for c in ids]
        assert diurnal.on(ids, t, (1, 0)).tolist() == [x < 8 * 3600.0 for x in into]
        assert diurnal.next_on(ids, t).tolist() == [t if x < 8 * 3600.0 else t + DAY_S - x for x in into]
    trace = {3: [(10.0, 20.0), (40.0, 50.0)], 7: [(0.0, 5.0)]}
    traced = Availability(AvailabilitySpec(kind="trace", file="x"), 50, 1, trace)
    assert np.flatnonzero(~traced.on(ids, 30.0, (1, 0))).tolist() == [3, 7]
    nxt = traced.next_on(ids, 30.0)
    assert nxt[3] == 40.0 and math.isnan(nxt[7]) and (nxt[[0, 1, 49]] == 30.0).all()
    coin = Availability(AvailabilitySpec(kind="bernoulli", p=0.5), 50, 1)
    draw = coin.on(ids, 0.0, (2, 0))
    assert 0 < draw.sum() < 50 and coin.on(ids[::-1], 0.0, (2, 0)).tolist() == draw[::-1].tolist()
    assert draw.tolist() != coin.on(ids, 0.0, (2, 1)).tolist()  # a new attempt draws again


def test_a_checkpoint_holds_the_devices_that_took_part_and_restores_the_whole_fleet(tiny_dict):
    from tests.test_systems import NO_EVALUATION, FakeAlgo, play
    fleet = _fleet(tiny_dict, size=3000)
    engine = Engine(FakeAlgo(), fleet, EngineConfig(seed=5, max_rounds=2, clients_per_round=5))
    engine.schedule = NO_EVALUATION  # the fake has no model to evaluate
    play(engine, 2)
    arrays = engine.arrays()
    assert 5 < len(arrays["devices"]) <= 10 and {len(v) for v in arrays.values()} == {len(arrays["devices"])}
    restored = Engine(FakeAlgo(), fleet, EngineConfig(seed=5, max_rounds=2, clients_per_round=5))
    restored.load_state(engine.state(), {k: v.copy() for k, v in arrays.items()})
    for name in ("last_sync", "charge_j", "radio_thermal"):
        assert np.array_equal(getattr(restored.sessions, name), getattr(engine.sessions, name), equal_nan=True), name
