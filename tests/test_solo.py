"""Clients alone on their links are computed in closed form (simulator/solo.py); every figure must
equal the event path's bit for bit, on random links, devices, message sizes, deadlines, cells,
batteries, stragglers, availability windows and failures, across rounds that carry radio tails
and heat."""
from dataclasses import asdict, replace

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from edgefed.devices.profile import DeviceProfile, LinkProfile, ThermalProfile
from edgefed.devices.availability import Availability, AvailabilitySpec, StragglerSpec
from edgefed.simulator import solo as solo_module
from edgefed.simulator.engine import Client, Engine
from edgefed.simulator.network import CellSpec
from edgefed.simulator.inputs import EngineConfig
from edgefed.simulator.session import Sessions
from tests.test_systems import NO_EVALUATION, FakeAlgo, fleet

positive = st.floats(0.01, 100.0)
non_negative = st.one_of(st.just(0.0), st.floats(0.0, 10.0))


@st.composite
def links(draw):
    return LinkProfile(name="l", up_mbps=draw(positive), down_mbps=draw(positive), latency_s=draw(non_negative),
                       power_base_w=draw(non_negative), power_up_w_per_mbps=draw(non_negative),
                       power_down_w_per_mbps=draw(non_negative), promotion_s=draw(non_negative),
                       promotion_w=draw(non_negative), tail_s=draw(non_negative), tail_w=draw(non_negative),
                       idle_w=draw(non_negative), loss=draw(st.sampled_from([0.0, 0.01, 0.3])),
                       handshake_rtts=draw(st.integers(0, 3)), keepalive_s=draw(non_negative))


@st.composite
def devices(draw):
    thermal = draw(st.none() | st.builds(ThermalProfile, burst_s=st.floats(0.01, 20.0),
                                         sustained_fraction=st.floats(0.1, 1.0), cool_s=st.floats(0.01, 50.0),
                                         power_exponent=st.floats(1.0, 3.0)))
    active_w = draw(positive)
    return DeviceProfile(name="d", device_class="phone", flops={"fp32": draw(st.floats(0.05, 10.0)) * 1e9},
                         mem_bandwidth=1e12, memory_bytes=1e9, power_active_w=active_w,
                         power_idle_w=active_w * draw(st.floats(0.0, 1.0)), thermal=thermal,
                         battery_wh=draw(st.sampled_from([None, None, 0.01, 1.0])))


@st.composite
def setups(draw):
    n = draw(st.integers(1, 6))
    clients = [Client(i, "d", draw(devices()), draw(links()), cell=draw(st.sampled_from([None, None, "ap"])))
               for i in range(n)]
    algo = dict(down_bytes=draw(st.integers(0, 3_000_000)), up_bytes=draw(st.integers(0, 3_000_000)),
                flops=draw(st.floats(0.0, 5e10)))
    rounds = EngineConfig(seed=5, max_rounds=4, clients_per_round=draw(st.integers(1, n)),
                          deadline_s=draw(st.none() | st.floats(0.5, 60.0)))
    stragglers = draw(st.sampled_from([StragglerSpec(), StragglerSpec(sigma=0.5, probability=0.3, factor=3.0)]))
    availability = AvailabilitySpec(kind=draw(st.sampled_from(["always", "diurnal"])),
                                    on_hours=draw(st.floats(0.02, 24.0)),
                                    failures_per_hour=draw(st.sampled_from([0.0, 0.0, 1.0, 30.0])))
    return (clients, algo, rounds, stragglers, draw(st.sampled_from([None, 0.5])), availability,
            draw(st.sampled_from(["session", "round"])))


def make_engine(setup) -> Engine:
    clients, algo, rounds, stragglers, battery, availability, attribution = setup
    engine = Engine(FakeAlgo(**algo), clients,
                    replace(rounds, seed=5, **fleet({"ap": CellSpec(up_mbps=5.0, down_mbps=20.0, latency_s=0.01)},
                                                    stragglers, battery, attribution)),
                    availability=Availability(availability, len(clients), 5))
    engine.schedule = NO_EVALUATION
    return engine


def play(setup, closed_form: bool, monkeypatch):
    """Every round of ``setup``; the clock stops when the last round ends (an availability watch
    the event path leaves behind would move it on, to no effect)."""
    monkeypatch.setattr(Sessions, "closed_form", closed_form)
    engine, results = make_engine(setup), []

    def server():
        for r in range(1, engine.cfg.max_rounds + 1):
            rnd = yield from engine.run_round(r)
            if rnd is None:  # every battery share ran out
                return
            results.append(rnd)

    engine.env.run(until=engine.env.process(server()))
    return engine, [({**asdict(rnd.record), "host_seconds": None}, [asdict(row) for row in rnd.rows])
                    for rnd in results]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(setup=setups())
def test_closed_form_timelines_equal_the_event_path_exactly(setup, monkeypatch):
    solo, solo_rounds = play(setup, True, monkeypatch)
    events, event_rounds = play(setup, False, monkeypatch)
    assert solo_rounds == event_rounds  # == on floats: the same bits, not approximately
    assert solo.env.now == events.env.now
    for name, values in solo.arrays().items():
        assert np.array_equal(values, events.arrays()[name], equal_nan=True), name


def star(n: int) -> list[Client]:
    """Hot phones alone on links of 1-7 Mbps up."""
    hot = DeviceProfile(name="d", device_class="phone", flops={"fp32": 1e9}, mem_bandwidth=1e12, memory_bytes=1e9,
                        power_active_w=3.0, power_idle_w=0.5,
                        thermal=ThermalProfile(burst_s=1.0, sustained_fraction=0.5, cool_s=3.0))
    link = LinkProfile(name="l", up_mbps=8.0, down_mbps=16.0, latency_s=0.1, power_base_w=1.0,
                       power_up_w_per_mbps=0.5, power_down_w_per_mbps=0.1, promotion_s=0.5, promotion_w=2.0,
                       tail_s=5.0, tail_w=1.0, idle_w=0.1)
    return [Client(i, "d", hot, link.model_copy(update={"up_mbps": 1.0 + i % 7})) for i in range(n)]


def test_the_closed_form_is_taken_for_clients_alone_on_their_links(monkeypatch):
    """A star fleet of a thousand: every client's timeline comes from the closed form, and still
    equals the events'."""
    computed = []
    real = solo_module.timelines

    def counting(*args):
        found = real(*args)
        computed.append(len(found.finished_at))
        return found

    monkeypatch.setattr(solo_module, "timelines", counting)
    setup = (star(1000), dict(flops=2e9), EngineConfig(max_rounds=3, clients_per_round=600), StragglerSpec(sigma=0.3), None,
             AvailabilitySpec(), "round")
    _, solo_rounds = play(setup, True, monkeypatch)
    assert computed == [600, 600, 600]
    _, event_rounds = play(setup, False, monkeypatch)
    assert solo_rounds == event_rounds


def test_clients_that_go_off_after_their_upload_stay_in_the_closed_form(monkeypatch):
    """Failures give every client an off time; those that finish first are the closed form's, the
    others are cut off on the event path, and the rows equal the events' alone."""
    setup = (star(200), dict(flops=2e9), EngineConfig(max_rounds=1, clients_per_round=150), StragglerSpec(), None,
             AvailabilitySpec(failures_per_hour=360.0), "session")
    monkeypatch.setattr(Sessions, "closed_form", True)
    engine = make_engine(setup)
    process = engine.env.process(engine.run_round(1))
    engine.env.run(until=process)
    rnd = process.value
    cut = [cid for cid, c in rnd.clients.items() if c.rec.status == "dropped"]
    assert 0 < len(cut) == len(rnd.clients) < 150  # the event path took only those that went off first
    _, event_rounds = play(setup, False, monkeypatch)
    assert [asdict(row) for row in rnd.rows] == event_rounds[0][1]
