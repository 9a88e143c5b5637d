"""Every kind of bad input named in the robustness issue exits 2 with one line naming the dotted
field or the file (in process, so the cases cost no interpreter start-up)."""
import pytest
from typer.testing import CliRunner

from edgefed.cli import app
from tests.conftest import write_scenario


def data_file(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


CASES = {
    "wrong type": (lambda d, t: d["rounds"].__setitem__("clients_per_round", "four"), ["rounds.clients_per_round"]),
    "list for a number": (lambda d, t: d["algorithm"].__setitem__("eps", [1]), ["algorithm.eps"]),
    "unknown key": (lambda d, t: d["model"].__setitem__("nme", "x"), ["model.nme", "unknown key"]),
    "out of range": (lambda d, t: d["rounds"].__setitem__("target_accuracy", 1.5), ["rounds.target_accuracy"]),
    "not finite": (lambda d, t: d["algorithm"].__setitem__("lr", float("inf")), ["algorithm.lr", "finite"]),
    "too few tokens": (lambda d, t: d["model"].__setitem__("max_length", 2), ["model.max_length"]),
    "more tokens than positions": (lambda d, t: d["model"].__setitem__("max_length", 4096),
                                   ["model.max_length", "128 positions"]),
    "missing file": (lambda d, t: d["task"]["dataset"].__setitem__("test", str(t / "gone.tsv")),
                     ["task.dataset.test", "gone.tsv"]),
    "unreadable file": (lambda d, t: d["task"]["dataset"].__setitem__(
        "train", _binary(t)), ["bin.tsv", "cannot read"]),
    "unknown device": (lambda d, t: d["fleet"]["groups"][0].__setitem__("device", "zx81"), ["fleet.groups.0.device"]),
    "empty device name": (lambda d, t: d["fleet"]["groups"][1].__setitem__("device", ""),
                          ["fleet.groups.1.device", "empty or blank"]),
    "blank link name": (lambda d, t: d["fleet"]["groups"][0].__setitem__("link", "  "),
                        ["fleet.groups.0.link", "empty or blank"]),
    "empty model name": (lambda d, t: d["model"].__setitem__("name", ""), ["model.name", "empty or blank"]),
    "empty label field": (lambda d, t: d["task"]["dataset"].__setitem__("label_field", ""),
                          ["task.dataset.label_field", "empty or blank"]),
    "unknown model": (lambda d, t: d["model"].__setitem__("name", str(t / "no-model")), ["model.name"]),
    "empty dataset": (lambda d, t: d["task"]["dataset"].__setitem__("train", data_file(t, "e.tsv", "sentence\tlabel\n")),
                      ["e.tsv", "no examples"]),
    "absent label field": (lambda d, t: d["task"]["dataset"].__setitem__("label_field", "stars"),
                           ["train.tsv", "no column 'stars'"]),
    "more clients than examples": (lambda d, t: d["task"]["dataset"].__setitem__("train_limit", 5),
                                   ["fleet", "8 clients", "5 training examples"]),
    "label without examples": (lambda d, t: d["task"].__setitem__("label_names", ["0", "1", "2"]),
                               ["train.tsv", "label 2"]),
    "trainable beyond the model": (lambda d, t: d["algorithm"].__setitem__("trainable", "last:9"),
                                   ["algorithm.trainable", "4 layers"]),
    "battery share while charging": (
        lambda d, t: d["fleet"].update(battery_fraction=0.1, availability={"kind": "charging_wifi"}),
        ["fleet.battery_fraction", "charging_wifi"]),
    "fractional handshake": (
        lambda d, t: d["fleet"].__setitem__("links", {"slow": {"up_mbps": 1, "down_mbps": 1, "latency_s": 0.1,
                                                               "power_base_w": 1, "power_up_w_per_mbps": 0,
                                                               "power_down_w_per_mbps": 0, "handshake_rtts": 1.5}}),
        ["fleet.links.slow.handshake_rtts"]),
    "power exponent out of range": (
        lambda d, t: d["fleet"].__setitem__("devices", {"hot": {
            "device_class": "phone", "flops": {"fp32": 1e9}, "mem_bandwidth": 1e9, "memory_bytes": 1e9,
            "power_active_w": 3, "power_idle_w": 0.3,
            "thermal": {"burst_s": 10, "sustained_fraction": 0.5, "cool_s": 10, "power_exponent": 5}}}),
        ["fleet.devices.hot.thermal.power_exponent"]),
    "infinite link capacity": (
        lambda d, t: d["fleet"].__setitem__("links", {"fat": {"up_mbps": float("inf"), "down_mbps": 1, "latency_s": 0.1,
                                                              "power_base_w": 1, "power_up_w_per_mbps": 0,
                                                              "power_down_w_per_mbps": 0}}),
        ["fleet.links.fat.up_mbps"]),
    "a section that contains itself": (lambda d, t: d["rounds"].__setitem__("again", d["rounds"]),
                                       ["invalid YAML", "refers to a node that contains it"]),
    "unknown cut": (lambda d, t: d["rounds"].__setitem__("cut", "abort"), ["rounds.cut", "finish", "push"]),
    "cut for async sessions": (lambda d, t: d["rounds"].update(mode="async", concurrency=2, buffer=2, cut="push"),
                               ["rounds.cut", "synchronous"]),
    "negative keep-alive": (
        lambda d, t: d["fleet"].__setitem__("links", {"nat": {"up_mbps": 1, "down_mbps": 1, "latency_s": 0.1,
                                                              "power_base_w": 1, "power_up_w_per_mbps": 0,
                                                              "power_down_w_per_mbps": 0, "keepalive_s": -1}}),
        ["fleet.links.nat.keepalive_s"]),
    "unknown energy attribution": (lambda d, t: d["fleet"].__setitem__("energy_attribution", "device"),
                                   ["fleet.energy_attribution", "session", "round"]),
    "round attribution for async sessions": (
        lambda d, t: (d["fleet"].__setitem__("energy_attribution", "round"),
                      d["rounds"].update(mode="async", concurrency=2, buffer=2)),
        ["fleet.energy_attribution", "rounds.mode async"]),
}


def _binary(tmp_path):
    path = tmp_path / "bin.tsv"
    path.write_bytes(b"sentence\tlabel\n\xff\xfe\x00bad\t1\n")
    return str(path)


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_exit_2(tmp_path, tiny_dict, case):
    mutate, needles = CASES[case]
    mutate(tiny_dict, tmp_path)
    result = CliRunner().invoke(app, ["run", str(write_scenario(tmp_path, tiny_dict)), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgefed: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
