"""charging_wifi availability: daily windows per user, phones on cellular links moved to their
home WiFi, bad traces refused with one line."""
import numpy as np
import pytest

from edgefed.devices.availability import (DAY_S, DEFAULT_DAILY_TRACE, Availability, AvailabilitySpec, daily_windows,
                                          read_daily_trace)
from edgefed.build import build_availability, build_fleet
from edgefed.scenario import Scenario
from tests.conftest import write_scenario
from tests.test_cli_errors import _assert_one_line_error
from tests.helpers import edgefed

H = 3600.0


def on(avail, client, t, draw=(1, 0)) -> bool:
    return bool(avail.on(np.array([client]), t, draw)[0])


def next_on(avail, client, t) -> float:
    return float(avail.next_on(np.array([client]), t)[0])


def test_one_users_windows_shifted_and_crossing_midnight():
    spec = AvailabilitySpec(kind="charging_wifi", jitter_h=0.0, start_hour=20.0)
    users = {"night": [(0.0, 7.0), (23.0, 24.0)]}
    avail = Availability(spec, 2, 0, daily=daily_windows(users, [True, False], spec, seed=0))
    # simulated 0 s is 20:00: on from 23:00 (3 h) to 07:00 (11 h) as one window
    assert not on(avail, 0, 2.9 * H) and on(avail, 0, 3 * H) and on(avail, 0, 10.9 * H)
    assert avail.off_at(0, 4 * H, 1) == pytest.approx(11 * H)
    assert next_on(avail, 0, 12 * H) == pytest.approx(DAY_S + 3 * H)  # the next evening
    assert on(avail, 0, DAY_S + 5 * H, (9, 0))
    assert on(avail, 1, 15 * H) and next_on(avail, 1, 15 * H) == 15 * H  # mains-powered: always


def test_fleet_participation_follows_the_time_of_day():
    spec = AvailabilitySpec(kind="charging_wifi")
    avail = Availability(spec, 500, 0, daily=daily_windows(read_daily_trace(DEFAULT_DAILY_TRACE), [True] * 500, spec, 0))
    share = {h: avail.on(np.arange(500), h * H, (1, 0)).mean() for h in (3, 15)}
    assert share[3] > 0.5 and share[15] < 0.3, share


@pytest.mark.parametrize("rows, needle", [
    ("a,22,23\na,6,5\n", "row 3: start_h..end_h: 6..5 is negative"),
    ("a,-1,5\n", "row 2: start_h..end_h: -1..5 is negative"),
    ("a,0,7\nb,1,2\na,6,9\n", "row 4: start_h..end_h: 6..9 overlaps 0..7 of user 'a'"),
])
def test_a_trace_with_negative_or_overlapping_windows_is_refused(tmp_path, rows, needle):
    path = tmp_path / "daily.csv"
    path.write_text("# comment\nuser,start_h,end_h\n" + rows)
    with pytest.raises(ValueError, match=needle.replace("..", r"\.\.").replace("(", r"\(")):
        read_daily_trace(path)


def _charging_fleet(tiny_dict, **group):
    tiny_dict["fleet"]["groups"] = [{"device": "pixel-7a", "count": 3, "link": "lte", **group},
                                    {"device": "rpi5", "count": 2}]
    tiny_dict["fleet"]["availability"] = {"kind": "charging_wifi"}
    return tiny_dict


def test_phones_on_cellular_train_on_their_home_link_and_mains_devices_are_always_on(tiny_dict):
    scenario = Scenario.model_validate(_charging_fleet(tiny_dict, home_link="5g-sa"))
    clients = build_fleet(scenario)
    assert [c.link.name for c in clients] == ["5g-sa"] * 3 + ["ethernet"] * 2
    assert [c.link.name for c in build_fleet(Scenario.model_validate(_charging_fleet(tiny_dict)))][:3] == ["wifi"] * 3
    avail = build_availability(scenario, DEFAULT_DAILY_TRACE.parent)
    assert set(avail.daily) == {0, 1, 2}
    tiny_dict["fleet"]["availability"] = {"kind": "always"}
    assert build_fleet(Scenario.model_validate(tiny_dict))[0].link.name == "lte"


def test_bad_daily_trace_or_home_link_is_one_line_exit_2(tmp_path, tiny_dict):
    (tmp_path / "daily.csv").write_text("user,start_h,end_h\nnight,22,24\nnight,23,24\n")
    _charging_fleet(tiny_dict)["fleet"]["availability"]["file"] = str(tmp_path / "daily.csv")
    _assert_one_line_error(edgefed("run", write_scenario(tmp_path, tiny_dict), "--out", tmp_path / "o"),
                           "fleet.availability.file", "row 3", "overlaps 22..24")
    tiny_dict["fleet"]["groups"][0]["home_link"] = "home-fibre"
    _assert_one_line_error(edgefed("validate", write_scenario(tmp_path, tiny_dict)),
                           "fleet.groups.0.home_link", "unknown link 'home-fibre'")


def test_the_server_waits_for_the_first_window_and_drops_a_phone_whose_window_closes():
    from edgefed.simulator.inputs import EngineConfig
    from tests.test_systems import FakeAlgo, device, make_engine, play
    spec = AvailabilitySpec(kind="charging_wifi", jitter_h=0.0)
    users = {"a": [(2.0, 2.0 + 10 / H)]}  # on from 02:00 for 10 s only
    avail = Availability(spec, 2, 0, daily=daily_windows(users, [True, True], spec, 0))
    (record, rows), = play(make_engine(FakeAlgo(flops=2e9), [device(1.0), device(0.1)], availability=avail,
                                       rounds=EngineConfig(max_rounds=1, clients_per_round=2)))
    assert [r.status for r in rows] == ["ok", "dropped"]  # 20 s of compute outlasts the window
    assert record.sim_time_s == pytest.approx(2 * H + 10.0)  # the round waited until 02:00
