"""Measured device populations (issue 30): the shipped FLASH data and its provenance, the score ->
FLOP/s fit, seeded per-device draws, `edgefed devices --scenario` quantiles, memory exclusion that
varies per device, the CSV format and its errors, and FedScale's pickled traces read without
unpickling anything but builtin containers and numbers."""
import copy
import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgefed.build import build_availability, build_fleet, mark_memory_exclusions
from edgefed.devices import fedscale
from edgefed.devices.population import POPULATIONS_DIR, builtin, read_csv, usable_memory
from edgefed.devices.profile import default_catalog
from edgefed.scenario import load_scenario, validate_scenario
from tests.conftest import bench_script, write_scenario
from tests.helpers import edgefed

CATALOG = default_catalog()


def population_dict(tiny_dict, count=60, **group):
    tiny_dict["fleet"]["groups"] = [{"device": "rpi5", "count": 2, "link": "wifi"},
                                    {"population": "flash-phones", "count": count, "link": "lte", **group}]
    tiny_dict["task"]["dataset"]["train_limit"] = 2000
    return tiny_dict


def one_line_error(result) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgefed: error: "), result.stderr
    return lines[0]


# --- the shipped data --------------------------------------------------------------------------

def test_shipped_files_match_their_provenance_and_carry_the_licence():
    folder = POPULATIONS_DIR / "flash"
    record = yaml.safe_load((folder / "PROVENANCE.yaml").read_text())
    assert record["repository"] == "https://github.com/PKU-Chengxu/FLASH" and len(record["commit"]) == 40
    for name, entry in record["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == entry["sha256"], name
    licence = (folder / "LICENSE.md").read_text()
    assert "BSD 2-Clause License" in licence and "TalwalkarLab" in licence


def test_the_fit_reproduces_its_reference_socs_and_falls_off_below_them():
    found = builtin("flash-phones")
    fit = found.fit
    assert len(found) == 333 and len(fit.references) >= 8 and fit.slope > 0
    assert all(abs(r.residual) < 0.2 for r in fit.references)
    # a reference by the catalog's spec rule: Kirin 810, 2x A76 @2.27 x16 + 6x A55 @1.88 x8, x0.5
    kirin = next(r for r in fit.references if r.soc == "HiSilicon Kirin 810")
    assert kirin.flops == pytest.approx((2 * 2.27 * 16 + 6 * 1.88 * 8) * 0.5e9)
    scores = np.array([100.0, 500.0, fit.min_score, 2000.0, 4000.0])
    flops = fit.flops(scores)
    assert np.all(np.diff(flops) > 0) and flops[0] == pytest.approx(flops[2] * 100 / fit.min_score)
    assert found.flops.min() > 1e9 and found.flops.max() < 2e11


def test_usable_memory_follows_the_catalogs_android_phones():
    rule = yaml.safe_load((POPULATIONS_DIR / "flash-phones.yaml").read_text())["memory"]
    devices = default_catalog().devices
    assert usable_memory(np.array([4e9]), rule)[0] == devices["budget-phone"].memory_bytes
    assert usable_memory(np.array([8e9]), rule)[0] == devices["pixel-7a"].memory_bytes == \
        devices["galaxy-s24"].memory_bytes
    assert usable_memory(np.array([0.5e9]), rule)[0] == 0.125e9  # a quarter of the RAM at least


# --- draws -------------------------------------------------------------------------------------

def fleet_of(data, base=Path(".")):
    return build_fleet(validate_scenario(data, base), base)


def test_draws_are_deterministic_per_seed_and_group(tiny_dict):
    data = population_dict(tiny_dict)
    a, b = fleet_of(data), fleet_of(copy.deepcopy(data))
    names = lambda f: [f.groups[g].device_name for g in f.group]  # noqa: E731
    assert names(a) == names(b) and np.array_equal(a.up_mbps, b.up_mbps) and np.array_equal(a.down_mbps, b.down_mbps)
    assert len({n for n in names(a)[2:]}) > 20 and all(n.startswith("flash-phones:") for n in names(a)[2:])
    assert np.unique(a.up_mbps[2:]).size == 60  # every device its own rate
    other = fleet_of({**copy.deepcopy(data), "seed": data["seed"] + 1})
    assert names(other) != names(a)
    # a group added after it leaves its draws alone (they are keyed by the group's index)
    more = copy.deepcopy(data)
    more["fleet"]["groups"].append({"device": "pixel-7a", "count": 3})
    grown = fleet_of(more)
    assert names(grown)[:62] == names(a) and np.array_equal(grown.up_mbps[:62], a.up_mbps)


def test_memory_exclusion_varies_from_device_to_device(tiny_dict):
    fleet = fleet_of(population_dict(tiny_dict, count=300))
    memory = np.array([fleet.groups[g].device.memory_bytes for g in fleet.group[2:]])
    assert np.unique(memory).size >= 4
    excluded = mark_memory_exclusions(fleet, int(1e9))
    out = ~fleet.eligible[2:]
    assert 0 < out.sum() < 300 and np.array_equal(out, memory < 1e9)
    assert len({e["usable_bytes"] for e in excluded}) > 1  # not one figure for the whole group
    assert sum(e["count"] for e in excluded) == out.sum()


def test_devices_scenario_prints_the_quantiles_of_the_drawn_population(tmp_path, tiny_dict):
    path = write_scenario(tmp_path, population_dict(tiny_dict, count=40))
    shown = edgefed("devices", "--scenario", path)
    assert shown.returncode == 0, shown.stderr
    assert "40 devices drawn from flash-phones" in shown.stdout and "p50" in shown.stdout
    assert "fp32 GFLOP/s" in shown.stdout and "can hold the method" in shown.stdout
    result = edgefed("devices", "--scenario", path, "--json")
    assert result.returncode == 0, result.stderr
    [group] = json.loads(result.stdout)["populations"]
    scenario, base = load_scenario(path)
    fleet = build_fleet(scenario, base)
    up = fleet.up_mbps[2:]
    assert group["count"] == 40 and group["group"] == 1 and group["can_hold"] == 40
    q = group["quantiles"]
    assert q["up_mbps"]["min"] == up.min() and q["up_mbps"]["p50"] == pytest.approx(np.median(up))
    assert q["flops"]["min"] <= q["flops"]["p10"] <= q["flops"]["p50"] <= q["flops"]["p90"] <= q["flops"]["max"]


# --- a CSV of your own -------------------------------------------------------------------------

OWN = """# my devices
name,flops,memory_bytes,up_mbps,down_mbps,windows
phone a,5e10,2e9,5,20,0-3600;7200-10800
phone b,1e11,4e9,10,40,
"old, slow",1e10,5e8,1,4,100-200
pi,7.6e10,7.4e9,50,200,
"""


def test_a_csv_population_runs_each_row_as_a_device(tmp_path, tiny_dict):
    (tmp_path / "own.csv").write_text(OWN)
    tiny_dict["fleet"]["groups"] = [{"population": "own.csv", "count": 4, "link": "wifi", "like": "rpi5"},
                                    {"device": "jetson-orin-nano", "count": 2}]
    tiny_dict["rounds"].update(max=2, clients_per_round=3)
    scenario, base = load_scenario(write_scenario(tmp_path, tiny_dict))
    fleet = build_fleet(scenario, base)
    assert [c.device_name for c in fleet][:4] == ["own:phone a", "own:phone b", "own:old, slow", "own:pi"]
    assert fleet.up_mbps[:4].tolist() == [5, 10, 1, 50] and fleet[2].device.memory_bytes == 5e8
    assert fleet[0].device.power_active_w == default_catalog().devices["rpi5"].power_active_w
    avail = build_availability(scenario, base)
    ids = np.arange(6)
    assert avail.on(ids, 50.0, (1, 0)).tolist() == [True, True, False, True, True, True]
    assert avail.on(ids, 5000.0, (1, 0)).tolist() == [False, True, False, True, True, True]
    path = write_scenario(tmp_path, tiny_dict)
    runs = [edgefed("run", path, "--out", tmp_path / name, "--quiet") for name in ("one", "two")]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    clients = [(tmp_path / name / "clients.csv").read_text() for name in ("one", "two")]
    assert clients[0] == clients[1] and "own:phone" in clients[0]
    recorded = yaml.safe_load((tmp_path / "one" / "scenario.yaml").read_text())
    assert recorded["fleet"]["groups"][0]["population"] == str(tmp_path / "own.csv")  # pinned, runs from anywhere


def test_a_sample_of_a_longer_csv_keeps_file_order(tmp_path):
    rows = "".join(f"r{i},{1e9 * (i + 1)},1e9,1,1\n" for i in range(20))
    (tmp_path / "many.csv").write_text("name,flops,memory_bytes,up_mbps,down_mbps\n" + rows)
    population = read_csv(tmp_path / "many.csv")
    drawn, _, _ = population.draw(5, np.random.default_rng(0))
    assert len(set(drawn.tolist())) == 5 and drawn.tolist() == sorted(drawn.tolist())


BAD = {
    "missing column": ("name,flops,memory_bytes,up_mbps\nx,1e10,1e9,5\n", ["row 1", "missing column 'down_mbps'"]),
    "negative rate": ("flops,memory_bytes,up_mbps,down_mbps\n1e10,1e9,5,20\n1e10,1e9,-2,20\n",
                      ["row 3", "up_mbps", "negative"]),
    "not a number": ("flops,memory_bytes,up_mbps,down_mbps\n1e10,lots,5,20\n", ["row 2", "memory_bytes"]),
    "unknown column": ("flops,memory_bytes,up_mbps,down_mbps,colour\n1e10,1e9,5,20,red\n", ["unknown column 'colour'"]),
    "short row": ("flops,memory_bytes,up_mbps,down_mbps\n1e10,1e9,5\n", ["row 2", "3 fields"]),
    "bad windows": ("flops,memory_bytes,up_mbps,down_mbps,windows\n1e10,1e9,5,20,50-10\n", ["row 2", "windows"]),
    "too few rows": ("flops,memory_bytes,up_mbps,down_mbps\n1e10,1e9,5,20\n", ["fleet.groups.0.count", "exceeds"]),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_csv_is_one_line_naming_the_file_and_row(tmp_path, tiny_dict, case):
    text, needles = BAD[case]
    (tmp_path / "bad.csv").write_text(text)
    tiny_dict["fleet"]["groups"][0] = {"population": "bad.csv", "count": 3}
    line = one_line_error(edgefed("run", write_scenario(tmp_path, tiny_dict), "--out", tmp_path / "o"))
    assert "fleet.groups.0" in line and ("bad.csv" in line or case == "too few rows")
    for needle in needles:
        assert needle in line, line


@pytest.mark.parametrize("change, needles", [
    ({"population": "flash-phone"}, ["fleet.groups.1.population", "unknown population 'flash-phone'", "flash-phones"]),
    ({"population": "gone.csv"}, ["fleet.groups.1.population", "file not found", "gone.csv"]),
    ({"like": "zx81"}, ["fleet.groups.1.like", "unknown device 'zx81'"]),
    ({"device": "pixel-7a"}, ["fleet.groups.1", "either device or population"]),
])
def test_bad_population_groups_are_one_line(tmp_path, tiny_dict, change, needles):
    data = population_dict(tiny_dict, count=10)
    data["fleet"]["groups"][1].update(change)
    line = one_line_error(edgefed("validate", write_scenario(tmp_path, data)))
    for needle in needles:
        assert needle in line, line


def test_windows_need_an_availability_that_can_hold_them(tmp_path, tiny_dict):
    (tmp_path / "own.csv").write_text(OWN)
    tiny_dict["fleet"]["groups"][0] = {"population": "own.csv", "count": 4}
    tiny_dict["fleet"]["availability"] = {"kind": "bernoulli", "p": 0.5}
    line = one_line_error(edgefed("validate", write_scenario(tmp_path, tiny_dict)))
    assert "fleet.groups.0.population" in line and "availability windows" in line and "bernoulli" in line


# --- FedScale's traces -------------------------------------------------------------------------

CAPACITY = {1: {"computation": 40.0, "communication": 20000.0}, 2: {"computation": 120, "communication": 3000},
            3: {"computation": 15.0, "communication": 80000.0}}
BEHAVIOUR = {1: {"duration": 3600, "active": [0, 40000], "inactive": [3600, 50000], "finish_time": 86400,
                 "model": "SM-G960F"},
             3: {"duration": 100, "active": [100], "inactive": [200], "finish_time": 86400, "model": "Pixel, 3"},
             7: {"duration": 1, "active": [0], "inactive": [1], "finish_time": 10}}


class Planted:
    """An arbitrary class: unpickling it would create a folder."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_fedscale_traces_convert_to_a_population_csv(tmp_path, tiny_dict, protocol):
    """Pickles built to the format FedScale's reader expects (fedscale/cloud/internal/client_metadata.py:
    computation in ms per sample, communication in kbit/s; behaviour windows active..inactive every
    finish_time seconds)."""
    (tmp_path / "cap").write_bytes(pickle.dumps(CAPACITY, protocol=protocol))
    (tmp_path / "beh").write_bytes(pickle.dumps(BEHAVIOUR, protocol=protocol))
    result = edgefed("convert-fedscale", tmp_path / "cap", "--behaviour", tmp_path / "beh",
                     "--horizon-s", 172800, "--out", tmp_path / "fs.csv")
    assert result.returncode == 0, result.stderr
    assert "3 devices, 2 with availability windows" in result.stdout and "1 behaviour-only" in result.stdout
    population = read_csv(tmp_path / "fs.csv")
    assert population.names == ["client 1 (SM-G960F)", "client 2", "client 3 (Pixel, 3)"]
    assert population.flops.tolist() == pytest.approx([6e8 / 0.040, 6e8 / 0.120, 6e8 / 0.015])
    assert population.up.tolist() == pytest.approx([20000 * 1024 / 1e6, 3000 * 1024 / 1e6, 80000 * 1024 / 1e6])
    assert population.up.tolist() == population.down.tolist() and set(population.memory.tolist()) == {3.5e9}
    assert population.windows == [[(0, 3600), (40000, 50000), (86400, 90000), (126400, 136400)], [],
                                  [(100, 200), (86500, 86600)]]
    tiny_dict["fleet"]["groups"][0] = {"population": "fs.csv", "count": 3}
    validate_scenario(tiny_dict, tmp_path)  # the converted file is a valid population


def test_a_pickle_of_an_arbitrary_class_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "planted"
    (tmp_path / "evil").write_bytes(pickle.dumps({1: Planted(marker)}))
    line = one_line_error(edgefed("convert-fedscale", tmp_path / "evil", "--out", tmp_path / "x.csv"))
    assert "evil" in line and "refuses to load" in line and "mkdir" in line
    assert not marker.exists() and not (tmp_path / "x.csv").exists()
    (tmp_path / "cls").write_bytes(pickle.dumps({1: {"computation": Planted, "communication": 1.0}}))
    line = one_line_error(edgefed("convert-fedscale", tmp_path / "cls", "--out", tmp_path / "x.csv"))
    assert f"refuses to load {Planted.__module__}.Planted" in line


def test_fedscale_input_errors_are_one_line(tmp_path):
    cases = {"nodict": ([1, 2], "expected a dict of clients"),
             "field": ({1: {"computation": 1.0}}, "client 1: missing field 'communication'"),
             "negative": ({1: {"computation": -3.0, "communication": 1.0}}, "computation: -3.0"),
             "text": ({1: {"computation": "fast", "communication": 1.0}}, "computation: 'fast'")}
    for name, (data, needle) in cases.items():
        (tmp_path / name).write_bytes(pickle.dumps(data))
        line = one_line_error(edgefed("convert-fedscale", tmp_path / name, "--out", tmp_path / "x.csv"))
        assert name in line and needle in line, line
    (tmp_path / "cut").write_bytes(pickle.dumps(CAPACITY)[:-5])
    assert "not a readable pickle" in one_line_error(
        edgefed("convert-fedscale", tmp_path / "cut", "--out", tmp_path / "x.csv"))
    assert "--out FILE.csv" in one_line_error(edgefed("convert-fedscale", tmp_path / "cut"))
    with pytest.raises(fedscale.TraceError, match="more than the 10 this reader accepts"):
        fedscale.restricted_load(tmp_path / "cut", limit=10)


# --- issue 40 item 3: a drawn phone's power follows its compute; link power clamped to its fitted range ---

def test_a_drawn_phone_gets_the_fitted_power_for_its_flops():
    """The catalog's phones, J/GFLOP above idle = (active - idle) / GFLOP/s: budget-phone 3.2 / 83 =
    0.038554, pixel-7a 5.2 / 158 = 0.032911, galaxy-s24 6.2 / 198 = 0.031313. Least squares of
    ln J on ln GFLOP/s over the three: slope -0.240713, intercept -2.192693. At 120 GFLOP/s:
    exp(-2.192693 - 0.240713 x ln 120) = exp(-3.345105) = 0.035256 J/GFLOP, so a phone drawn like
    budget-phone (idle 0.3 W) computes at 0.3 + 0.035256 x 120 = 4.5308 W. At 7 GFLOP/s the line
    gives more than budget-phone's 0.038554, the phones' top, so 0.3 + 0.038554 x 7 = 0.5699 W;
    at 300 it is clamped to galaxy-s24's 0.031313: 0.3 + 0.031313 x 300 = 9.6939 W."""
    from edgefed.devices.population import Population, power_fit

    fit = power_fit()
    assert fit.slope == pytest.approx(-0.240713, abs=1e-6) and fit.intercept == pytest.approx(-2.192693, abs=1e-6)
    assert fit.power_active_w(120e9, 0.3) == pytest.approx(4.5308, abs=1e-4)
    assert fit.power_active_w(7e9, 0.3) == pytest.approx(0.5699, abs=1e-4)
    assert fit.power_active_w(300e9, 0.3) == pytest.approx(9.6939, abs=1e-4)
    assert all(abs(r) < 0.005 for r in fit.residuals().values())  # three phones, nearly on one line
    population = Population(name="p", source="p", description="", names=["a", "b"],
                            flops=np.array([120e9, 7e9]), memory=np.array([2e9, 2e9]), sources={})
    phone = population.profile(0, CATALOG.devices["budget-phone"])
    assert phone.power_active_w == pytest.approx(4.5308, abs=1e-4) and phone.power_idle_w == 0.3
    assert "ESTIMATE" in phone.sources["power_active_w"]
    assert population.profile(1, CATALOG.devices["budget-phone"]).power_active_w == pytest.approx(0.5699, abs=1e-4)
    jetson = population.profile(0, CATALOG.devices["jetson-orin-nano"])  # not a phone: keeps its own power
    assert jetson.power_active_w == CATALOG.devices["jetson-orin-nano"].power_active_w


def test_a_rate_above_the_fitted_range_pays_the_ranges_top_power_but_moves_at_its_own_rate():
    """lte's uplink slope is fitted over 1.0-24.9 Mbps. At 97 Mbps, 97e6 bits take 1 s on the air
    (+ 35 ms of request round trip, no promotion) and cost 1.035 x 1.929 + 0.0818 x 24.9 x 1 =
    1.996515 + 2.03682 = 4.033335 J (the unclamped line: 1.996515 + 0.0818 x 97 = 9.931115 J);
    radio power 1.929 + 0.0818 x 24.9 = 3.96582 W. At 0.5 Mbps, below the range's 1.0, the
    throughput term is 0.0818 x 1.0 per second of air time: 0.5e6 bits, 1 s, 1.035 x 1.929 +
    0.0818 = 2.078315 J. The closed form's arrays give the same."""
    from types import SimpleNamespace

    from edgefed.simulator.energy import radio_w, transfer_j, transfer_s

    lte = CATALOG.links["lte"]
    assert lte.power_fit_up_mbps == (1.0, 24.9)
    fast = lte.model_copy(update={"up_mbps": 97.0})
    delay, air = transfer_s(fast, "up", 97e6, False, 0)
    assert (delay, air) == (pytest.approx(0.035), pytest.approx(1.0))
    assert transfer_j(fast, "up", delay + air, False, 97e6) == pytest.approx(4.033335, abs=1e-6)
    assert radio_w(fast, "up") == pytest.approx(3.96582, abs=1e-6)
    slow = lte.model_copy(update={"up_mbps": 0.5})
    assert transfer_j(slow, "up", 0.035 + 1.0, False, 0.5e6) == pytest.approx(2.078315, abs=1e-6)
    inside = lte.model_copy(update={"up_mbps": 10.0})  # inside the range: the line itself
    assert transfer_j(inside, "up", 1.035, False, 10e6) == pytest.approx(1.035 * 1.929 + 0.0818 * 10, abs=1e-9)
    fields = {f: np.array([getattr(lte, f)] * 2) for f in ("promotion_s", "promotion_w", "power_base_w",
                                                              "power_up_w_per_mbps", "loss")}
    arrays = SimpleNamespace(**fields, up_mbps=np.array([97.0, 0.5]),
                             power_fit_up_mbps=(np.array([1.0, 1.0]), np.array([24.9, 24.9])))
    np.testing.assert_allclose(transfer_j(arrays, "up", np.array([1.035, 1.035]), np.array([False, False]),
                                          np.array([97e6, 0.5e6])), [4.033335, 2.078315], atol=1e-6)


def test_the_catalogs_fitted_rate_ranges_are_the_fits():
    """Each link's power_fit_*_mbps equals the binned rates bench/link_power_fit.py fits its slope through."""
    fit = bench_script("link_power_fit")
    ranges = fit.fitted_ranges(json.loads(fit.SUMMARY.read_text()))
    for link, tech in (("lte", "LTE"), ("lte-tmobile", "LTE"), ("5g-nsa-lowband", "low-band NSA"),
                       ("5g-mmwave", "mmWave NSA"), ("5g-sa", "low-band NSA")):
        assert list(CATALOG.links[link].power_fit_up_mbps) == ranges[tech]["up"], link
        assert list(CATALOG.links[link].power_fit_down_mbps) == ranges[tech]["down"], link
