"""Bad input exits with code 2 and one line naming the dotted field or the file; no traceback."""
import pytest
import yaml

from tests.conftest import write_scenario
from tests.helpers import edgefed


def _assert_one_line_error(result, *needles):
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("mutate, needles", [
    (lambda d: d["algorithm"].__setitem__("lr", "fast"), ["algorithm.lr", "valid number", "'fast'"]),
    (lambda d: d["rounds"].__setitem__("eval_evry", 2), ["rounds.eval_evry", "unknown key"]),
    (lambda d: d["algorithm"].__setitem__("name", "sgd"), ["algorithm", "sgd"]),
    (lambda d: d["fleet"]["groups"][1].__setitem__("device", "pdp-11"), ["fleet.groups.1.device", "unknown device"]),
    (lambda d: d["fleet"]["groups"][0].__setitem__("link", "carrier-pigeon"), ["fleet.groups.0.link", "unknown link"]),
    (lambda d: d["fleet"]["groups"][0].__setitem__("link", "lte-2013"),
     ["fleet.groups.0.link", "unknown link 'lte-2013'", "lte-2012", "5g-mmwave", "5g-sa"]),
    (lambda d: d["rounds"].__setitem__("clients_per_round", 99), ["rounds.clients_per_round", "fleet size"]),
    (lambda d: d.pop("task"), ["task", "missing"]),
    (lambda d: d["task"]["dataset"].__setitem__("train", "/nonexistent/train.tsv"), ["task.dataset.train", "not found"]),
    (lambda d: d["task"]["dataset"].__setitem__("text_field", "review"), ["train.tsv", "no column 'review'"]),
    (lambda d: d["fleet"].__setitem__("links", {"slow": {"up_mbps": -1, "down_mbps": 1, "latency_s": 0,
                                                         "power_base_w": 0, "power_up_w_per_mbps": 0,
                                                         "power_down_w_per_mbps": 0}}),
     ["fleet.links.slow.up_mbps", "greater than 0"]),
    (lambda d: d["model"].__setitem__("name", "/nonexistent/model"), ["model.name"]),
])
def test_malformed_scenario_is_one_line_exit_2(tmp_path, tiny_dict, mutate, needles):
    mutate(tiny_dict)
    _assert_one_line_error(edgefed("run", write_scenario(tmp_path, tiny_dict), "--out", tmp_path / "o"), *needles)


def test_missing_scenario_file(tmp_path):
    _assert_one_line_error(edgefed("validate", tmp_path / "nope.yaml"), "nope.yaml", "not found")


def test_invalid_yaml_names_the_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nmodel: [unclosed\n")
    _assert_one_line_error(edgefed("validate", path), "broken.yaml", "line")


def test_bad_override_names_the_field(tiny_file):
    _assert_one_line_error(edgefed("validate", tiny_file, "--set", "rounds.max=-3"), "rounds.max", "greater than 0")


def test_an_override_that_is_not_yaml_names_the_field(tiny_file):
    _assert_one_line_error(edgefed("validate", tiny_file, "--set", "seed=["), "--set seed", "invalid YAML value")
    _assert_one_line_error(edgefed("validate", tiny_file, "--set", "task=&a {x: *a}"), "--set task",
                           "refers to a node that contains it")


def test_validate_prints_the_resolved_scenario_with_overrides(tiny_file):
    result = edgefed("validate", tiny_file, "--set", "algorithm.lr=0.5", "--set", "rounds.max=7")
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert resolved["algorithm"]["lr"] == 0.5 and resolved["rounds"]["max"] == 7
    assert resolved["algorithm"]["distribution"] == "gaussian"  # defaults are filled in


def test_output_folder_that_is_not_a_run_is_refused(tiny_file, tmp_path):
    target = tmp_path / "precious"
    target.mkdir()
    (target / "thesis.tex").write_text("do not delete")
    _assert_one_line_error(edgefed("run", tiny_file, "--out", target), "precious", "not empty")
    assert (target / "thesis.tex").exists()


def test_devices_lists_the_catalog():
    result = edgefed("devices")
    assert result.returncode == 0, result.stderr
    for name in ("rpi5", "jetson-orin-nano", "lte", "wifi"):
        assert name in result.stdout


def test_duplicate_keys_are_refused_with_file_and_line(tmp_path, tiny_dict):
    """Plain YAML keeps the last of two equal keys silently; a scenario must not."""
    text = yaml.safe_dump(tiny_dict, sort_keys=False).replace("rounds:\n", "rounds:\n  max: 9\n", 1)
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    _assert_one_line_error(edgefed("validate", path), "dup.yaml", "line", "duplicate key 'max'")
