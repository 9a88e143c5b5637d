"""The systems fields from the command line: one-line errors naming the field, and a calibrated
host profile that a scenario can use through fleet.devices_file."""
import functools

import pytest
import yaml

from tests.conftest import write_scenario
from tests.test_cli_errors import _assert_one_line_error
from tests.helpers import edgefed


@pytest.mark.parametrize("mutate, needles", [
    (lambda d: d["fleet"]["groups"][0].__setitem__("cell", "nowhere"), ["fleet.groups.0.cell", "unknown cell"]),
    (lambda d: d["fleet"].__setitem__("availability", {"kind": "trace", "file": "/no/such.csv"}),
     ["fleet.availability.file", "not found"]),
    (lambda d: d["fleet"].__setitem__("availability", {"kind": "trace"}), ["fleet.availability.file", "required"]),
    (lambda d: d["fleet"].__setitem__("availability", {"kind": "weekly"}), ["fleet.availability.kind"]),
    (lambda d: d["fleet"].__setitem__("network", {"cells": {"ap": {"up_mbps": 0, "down_mbps": 1}}}),
     ["fleet.network.cells.ap.up_mbps"]),
    (lambda d: d["rounds"].__setitem__("selection", "oort"), ["rounds.selection"]),
    (lambda d: d["fleet"].__setitem__("battery_fraction", 2), ["fleet.battery_fraction"]),
    (lambda d: d["fleet"].__setitem__("devices_file", "/no/devices.yaml"), ["fleet.devices_file", "not found"]),
])
def test_bad_systems_fields_name_the_field(tmp_path, tiny_dict, mutate, needles):
    from edgefed.scenario import ScenarioError, load_scenario
    mutate(tiny_dict)
    with pytest.raises(ScenarioError) as err:  # the CLI prints this one line and exits 2 (test_cli_errors)
        load_scenario(write_scenario(tmp_path, tiny_dict))
    assert "\n" not in str(err.value)
    for needle in needles:
        assert needle in str(err.value), str(err.value)


def test_bad_trace_rows_name_the_file_and_line(tmp_path, tiny_dict):
    trace = tmp_path / "on.csv"
    trace.write_text("client,start_s,end_s\n0,0,100\n1,50,10\n")
    tiny_dict["fleet"]["availability"] = {"kind": "trace", "file": str(trace)}
    result = edgefed("run", write_scenario(tmp_path, tiny_dict), "--out", tmp_path / "r", "--quiet")
    _assert_one_line_error(result, "fleet.availability.file", "on.csv", "line 3")


def test_calibrate_writes_a_host_profile_a_scenario_can_use(tmp_path, tiny_dict, monkeypatch):
    """What the command writes and a scenario reads; the measurement's windows are shortened (one
    of 10 ms instead of five of 0.4 s), since their length is not what this tests."""
    import edgefed.calibrate as calibrate

    monkeypatch.setattr(calibrate, "_sustained_seconds",
                        functools.partial(calibrate._sustained_seconds, samples=1, min_seconds=0.01))
    result = edgefed("calibrate", "--out", tmp_path / "host.yaml")
    assert result.returncode == 0, result.stderr
    host = yaml.safe_load((tmp_path / "host.yaml").read_text())["devices"]["host"]
    assert host["flops"]["fp32"] > 1e8 and host["mem_bandwidth"] > 1e8 and host["rng_flops"] > 1e6
    assert "PLACEHOLDER" in host["sources"]["power_active_w"]
    tiny_dict["fleet"]["devices_file"] = "host.yaml"
    tiny_dict["fleet"]["groups"].append({"device": "host", "count": 1})
    validated = edgefed("validate", write_scenario(tmp_path, tiny_dict))
    assert validated.returncode == 0, validated.stderr
    resolved = yaml.safe_load(validated.stdout)
    assert resolved["fleet"]["devices"]["host"]["rng_flops"] == host["rng_flops"]
