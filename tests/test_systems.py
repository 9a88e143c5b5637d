"""The engine's systems side on hand-made devices and links: radio energy in closed form, dropouts,
over-selection, resource-aware selection, batteries, stragglers and shared cells."""
import json
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from edgefed.algorithms.decomfl import DeComFL
from edgefed.algorithms.work import Work
from edgefed.devices.availability import Availability, AvailabilitySpec, StragglerSpec
from edgefed.devices.profile import DeviceProfile, LinkProfile, default_catalog
from edgefed.simulator.engine import Client, Engine
from edgefed.simulator.network import CellSpec
from edgefed.simulator.schedule import EveryRounds
from edgefed.simulator.inputs import EngineConfig
from edgefed.simulator.session import Sessions
from tests.helpers import tiny_setup, zo_cfg

# Round numbers so the closed forms below can be checked by hand.
LINK = LinkProfile(name="radio", up_mbps=8.0, down_mbps=16.0, latency_s=0.1, power_base_w=1.0,
                   power_up_w_per_mbps=0.5, power_down_w_per_mbps=0.1, promotion_s=0.5, promotion_w=2.0,
                   tail_s=5.0, tail_w=1.0, handshake_rtts=0)  # kept-alive connections: tests/test_handshake.py


def device(gflops: float = 1.0, battery_wh: float | None = None) -> DeviceProfile:
    return DeviceProfile(name=f"d{gflops:g}", device_class="phone", flops={"fp32": gflops * 1e9},
                         mem_bandwidth=1e12, memory_bytes=1e9, power_active_w=3.0, power_idle_w=0.5,
                         battery_wh=battery_wh)


class FakeAlgo:
    """Fixed message sizes and work; remembers which clients' uploads it aggregated."""

    def __init__(self, down_bytes=1_000_000, up_bytes=1_000_000, flops=2e9):
        self.down_bytes, self.up_bytes, self.flops = down_bytes, up_bytes, flops
        self.aggregated: list[list[int]] = []

    def configure_round(self, round, selected):
        return None

    def catch_up(self, client, last_round, round, plan):
        return SimpleNamespace(nbytes=self.down_bytes), Work()

    def client_update(self, client, round, plan):
        work = Work()
        work.add("forward", flops=self.flops)
        return SimpleNamespace(nbytes=self.up_bytes, client=client), work

    def aggregate(self, messages):
        return sorted(m.client for m in messages)

    def apply(self, update, round, plan):
        self.aggregated.append(update)

    def rejects(self, message):
        return None


def fleet(cells=None, stragglers=None, battery_fraction=None, energy_attribution="session") -> dict:
    """The fleet's rules, as ``EngineConfig`` fields."""
    return dict(cells=cells or {}, stragglers=stragglers or StragglerSpec(), battery_fraction=battery_fraction,
                charge_wait=energy_attribution == "round")


def make_engine(algo, devices, link=LINK, rounds=None, cells=None, cell=None, availability=None, **fleet_kw):
    clients = [Client(i, d.name, d, link, cell=cell) for i, d in enumerate(devices)]
    rounds = rounds or EngineConfig(max_rounds=1, clients_per_round=len(devices))
    avail = Availability(availability, len(devices), 0) if isinstance(availability, AvailabilitySpec) else availability
    engine = Engine(algo, clients, replace(rounds, **fleet(cells, **fleet_kw)), availability=avail)
    engine.schedule = NO_EVALUATION  # these fakes have no model to evaluate
    return engine


NO_EVALUATION = EveryRounds(every=10**9, last=10**9)


def play(engine, rounds=1, first=1):
    """Run rounds ``first`` to ``rounds`` without evaluation; returns [(RoundRecord, rows)]."""
    engine.schedule = NO_EVALUATION  # also for engines made elsewhere: these fakes have no model to evaluate
    results = []

    def server():
        for r in range(first, rounds + 1):
            rnd = yield from engine.run_round(r)
            results.append((rnd.record, rnd.rows))

    engine.env.process(server())
    engine.env.run()
    return results


def restore(engine, saved) -> None:
    """``engine`` takes ``saved``'s state and per-device arrays through a JSON round trip, as a
    checkpoint carries them."""
    engine.load_state(json.loads(json.dumps(saved.state())), {k: v.copy() for k, v in saved.arrays().items()})


@pytest.mark.parametrize("flops, upload_promoted", [(2e9, False), (6e9, True)])
def test_radio_energy_equals_the_closed_form_with_tails(flops, upload_promoted):
    (record, [row]), = play(make_engine(FakeAlgo(flops=flops), [device(1.0)]))
    compute_s = flops / 1e9
    # download: promotion 0.5 s @ 2 W, then 0.1 s latency + 8 Mbit / 16 Mbps at 1 W, plus 0.1 W/Mbps x 8 Mbit
    down_j = 0.5 * 2.0 + (0.1 + 0.5) * 1.0 + 0.1 * 8
    tail_between_j = min(5.0, compute_s) * 1.0
    # upload: promoted only if compute outlasted the 5 s tail; 0.1 + 8/8 s at 1 W, plus 0.5 W/Mbps x 8 Mbit
    up_j = (0.5 * 2.0 if upload_promoted else 0.0) + (0.1 + 1.0) * 1.0 + 0.5 * 8
    assert row.energy_radio_j == pytest.approx(down_j + tail_between_j + up_j + 5.0 * 1.0)
    assert row.download_s == pytest.approx(1.1)
    assert row.upload_s == pytest.approx(1.1 + 0.5 * upload_promoted)
    assert row.compute_s == pytest.approx(compute_s)
    assert record.sim_time_s == pytest.approx(row.download_s + row.compute_s + row.upload_s)
    assert row.energy_compute_j == pytest.approx(3.0 * compute_s)
    assert row.energy_idle_j == pytest.approx(0.5 * (row.download_s + row.upload_s))


def test_clients_in_one_cell_share_its_backhaul():
    algo = FakeAlgo(down_bytes=1, up_bytes=1_250_000, flops=1e9)  # 10 Mbit up each
    fast = LINK.model_copy(update={"up_mbps": 100.0, "promotion_s": 0.0, "latency_s": 0.0})
    star = play(make_engine(algo, [device()] * 4, link=fast))[0][1]
    cell = play(make_engine(algo, [device()] * 4, link=fast, cells={"ap": CellSpec(up_mbps=10.0, down_mbps=10.0)},
                            cell="ap"))[0][1]
    assert [r.upload_s for r in star] == pytest.approx([0.1] * 4)  # 10 Mbit at 100 Mbps, alone
    assert [r.upload_s for r in cell] == pytest.approx([4.0] * 4)  # 40 Mbit through a 10 Mbps backhaul


def test_overselection_aggregates_the_first_k_and_marks_the_rest_cut():
    algo = FakeAlgo(flops=8e9)
    rounds = EngineConfig(max_rounds=1, clients_per_round=2, selection="overselect", overselect=2.0)
    record, rows = play(make_engine(algo, [device(g) for g in (1, 2, 4, 8)], rounds=rounds))[0]
    assert record.selected == 4 and record.aggregated == 2
    assert algo.aggregated == [[2, 3]]  # the two fastest devices
    status = {r.client: r.status for r in rows}
    assert status == {0: "cut", 1: "cut", 2: "ok", 3: "ok"}
    ok_finish = max(r.download_s + r.compute_s + r.upload_s for r in rows if r.status == "ok")
    assert record.sim_time_s == pytest.approx(ok_finish)
    assert record.energy_j == pytest.approx(sum(r.energy_j for r in rows))
    # cut: they compute on (8 and 4 s) and are refused at their upload's first contact (tests/test_cut_clients.py)
    assert [(r.compute_s, r.flops, r.bytes_up) for r in rows[:2]] == [(8.0, 8e9, 0), (4.0, 8e9, 0)]


def test_resource_aware_selection_prefers_devices_that_finish_by_the_deadline():
    algo = FakeAlgo(down_bytes=1000, up_bytes=1000, flops=4e9)
    devices = [device(0.4)] * 3 + [device(8.0)] * 3  # 10 s vs 0.5 s of compute
    rounds = EngineConfig(max_rounds=4, clients_per_round=2, deadline_s=5.0, selection="resource_aware")
    results = play(make_engine(algo, devices, rounds=rounds), rounds=4)
    for record, rows in results[1:]:  # round 1 has no reference job yet: uniform
        assert {r.client for r in rows} <= {3, 4, 5}
        assert record.aggregated == 2


def test_empty_battery_drops_the_device_mid_round_and_for_good():
    algo = FakeAlgo(flops=20e9)  # 20 s of compute at 3 W = 60 J
    # 30 J of battery share: enough for the download, dies during compute
    engine = make_engine(algo, [device(1.0, battery_wh=30 / 3600), device(1.0)],
                         rounds=EngineConfig(max_rounds=2, clients_per_round=2), battery_fraction=1.0)
    (first, rows), (second, rows2) = play(engine, rounds=2)
    dead = rows[0]
    assert dead.status == "dropped" and dead.note == "battery empty"
    assert 0 < dead.compute_s < 20.0 and dead.energy_j <= 30.0 + 1e-9
    assert algo.aggregated[0] == [1]
    assert [r.client for r in rows2] == [1]  # never selected again


@pytest.mark.parametrize("closed_form", [True, False])
def test_a_straggler_is_charged_fl_s_share_of_its_busy_device(closed_form, monkeypatch):
    """10 GFLOP on the catalog's rpi5 (7.6e10 FLOP/s fp32, 13.8 W active, 2.8 W idle, no thermal
    profile): 1e10 / 7.6e10 = 0.13158 s at 13.8 W = 1.8158 J. Slowed 4x it computes 0.52632 s;
    charged at full power that would be 7.2632 J, but FL's share of the busy device is
    2.8 + (13.8 - 2.8) / 4 = 5.55 W, so 0.52632 s x 5.55 W = 2.9211 J: the unslowed work's
    1.4474 J above idle (0.13158 s x 11 W) plus 1.4737 J of baseline (0.52632 s x 2.8 W).
    The closed form and the event path charge the same."""
    monkeypatch.setattr(Sessions, "closed_form", closed_form)
    rpi5 = default_catalog().devices["rpi5"]
    base = play(make_engine(FakeAlgo(flops=10e9), [rpi5]))[0][1][0]
    slow = play(make_engine(FakeAlgo(flops=10e9), [rpi5],
                            stragglers=StragglerSpec(probability=1.0, factor=4.0)))[0][1][0]
    assert base.compute_s == pytest.approx(0.131579, rel=1e-5) and slow.compute_s == pytest.approx(4 * base.compute_s)
    assert base.energy_compute_j == pytest.approx(1.81579, rel=1e-5)
    assert slow.energy_compute_j == pytest.approx(2.92105, rel=1e-5)


def test_devices_off_at_round_start_are_not_selected_and_the_server_waits(tmp_path):
    trace = tmp_path / "on.csv"
    trace.write_text("client,start_s,end_s\n0,100,1000\n1,100,1000\n2,5000,6000\n")
    spec = AvailabilitySpec(kind="trace", file=str(trace))
    from edgefed.devices.availability import read_trace
    avail = Availability(spec, 3, 0, read_trace(trace))
    record, rows = play(make_engine(FakeAlgo(), [device()] * 3, availability=avail,
                                    rounds=EngineConfig(max_rounds=1, clients_per_round=3)))[0]
    assert sorted(r.client for r in rows) == [0, 1]
    assert record.sim_time_s > 100.0


def test_dropout_mid_upload_leaves_the_aggregate_unchanged_and_charges_the_work(tmp_path):
    slow_up = LinkProfile(name="slow", up_mbps=0.001, down_mbps=10.0, latency_s=0.0, power_base_w=1.0,
                          power_up_w_per_mbps=0.0, power_down_w_per_mbps=0.0)

    def engine(avail=None):
        model, data = tiny_setup()
        return make_engine(DeComFL(model, data, zo_cfg(), seed=1), [device(1.0)] * 4, link=slow_up,
                           availability=avail)

    everyone = engine()
    (_, rows), = play(everyone)
    victim = rows[1]
    upload_start = victim.download_s + victim.compute_s
    trace = tmp_path / "on.csv"
    trace.write_text(f"client,start_s,end_s\n{victim.client},0,{upload_start + victim.upload_s / 2}\n")
    from edgefed.devices.availability import read_trace
    spec = AvailabilitySpec(kind="trace", file=str(trace))
    cut = engine(Availability(spec, 4, 0, read_trace(trace)))
    (record, cut_rows), = play(cut)
    dropped = cut_rows[1]
    assert dropped.status == "dropped" and record.aggregated == 3
    assert 0 < dropped.bytes_up < victim.bytes_up
    assert dropped.upload_s == pytest.approx(victim.upload_s / 2)
    assert dropped.compute_s == victim.compute_s and dropped.flops == victim.flops  # work charged in full
    assert dropped.energy_compute_j == victim.energy_compute_j
    assert 0 < dropped.energy_radio_j < victim.energy_radio_j

    model, data = tiny_setup()  # the same round with only the three survivors' uploads
    expected = DeComFL(model, data, zo_cfg(), seed=1)
    plan = expected.configure_round(1, [0, 1, 2, 3])
    expected.apply(expected.aggregate([expected.client_update(c, 1, plan)[0] for c in (0, 2, 3)]), 1, plan)
    got = cut.algo.trainable.snapshot()
    assert all(torch.equal(a, b) for a, b in zip(got, expected.trainable.snapshot()))
    assert not all(torch.equal(a, b) for a, b in zip(got, everyone.algo.trainable.snapshot()))


def test_link_variability_is_lognormal_around_the_catalog_median(tiny_dict):
    from edgefed.build import build_fleet
    from edgefed.scenario import Scenario
    tiny_dict["fleet"]["groups"] = [{"device": "pixel-7a", "count": 400, "link": "lte"}]
    tiny_dict["fleet"]["network"] = {"variability": {"kind": "lognormal", "sigma": 0.5}}
    ups = [c.link.up_mbps for c in build_fleet(Scenario.model_validate(tiny_dict))]
    assert all(type(u) is float for u in ups)  # plain floats: simulated times stay plain in the CSVs
    assert sorted(ups)[200] == pytest.approx(5.74, rel=0.1)  # the catalog's LTE median
    assert len(set(ups)) == 400
