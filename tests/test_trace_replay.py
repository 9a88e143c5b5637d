"""Replay mode and parallel clients against a real (tiny) run: same systems figures, exactly."""
import copy
import csv
import json

import pytest

from edgefed.simulator.records import RoundObserver
from edgefed.replay import load_trace
from edgefed.runner import run_scenario
from edgefed.scenario import ScenarioError, load_scenario
from tests.conftest import TINY, write_scenario

pytestmark = pytest.mark.xdist_group("ray")  # the Ray test shares the module's real run: it runs once, on one process


def _rows(path, drop=("host_seconds",)):
    with path.open() as fh:
        return [{k: v for k, v in r.items() if k not in drop} for r in csv.DictReader(fh)]


def _run(tmp, data, name):
    scenario, base = load_scenario(write_scenario(tmp, data, f"{name}.yaml"))
    summary = run_scenario(scenario, base, tmp / name)
    return tmp / name, summary


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("real")
    data = copy.deepcopy(TINY)
    data["rounds"].update(max=3, eval_every=2)
    run_dir, summary = _run(tmp, data, "real")
    return tmp, data, run_dir, summary


def _same_systems(a, b):
    assert (a / "clients.csv").read_text() == (b / "clients.csv").read_text()
    assert _rows(a / "rounds.csv") == _rows(b / "rounds.csv")
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    sa.pop("host_seconds"), sb.pop("host_seconds")
    assert sa == sb


def test_replay_of_a_real_trace_reproduces_its_systems_figures_exactly(real):
    tmp, data, run_dir, _ = real
    replay = {**copy.deepcopy(data), "replay": {"trace": str(run_dir / "trace.jsonl")}}
    replay_dir, _ = _run(tmp, replay, "replayed")
    _same_systems(run_dir, replay_dir)
    # and the replay is not a copy: another fleet's links change the figures
    replay["fleet"]["groups"][0]["link"] = "wifi"
    other, _ = _run(tmp, replay, "other-links")
    assert _rows(other / "rounds.csv") != _rows(run_dir / "rounds.csv")


def test_replay_scales_to_a_larger_fleet(real):
    tmp, data, run_dir, _ = real
    trace = load_trace(run_dir / "trace.jsonl")
    big = copy.deepcopy(data)
    big["replay"] = {"trace": str(run_dir / "trace.jsonl")}
    big["fleet"]["groups"] = [{"device": "rpi5", "count": 300}, {"device": "pixel-7a", "count": 200}]
    big["rounds"].update(clients_per_round=50)
    big_dir, summary = _run(tmp, big, "big")
    clients = _rows(big_dir / "clients.csv")
    assert len(clients) == 3 * 50 and summary["totals"]["client_rounds"] == {"ok": 150}
    first_time = trace["catch_up"][0][0][0]  # round 1, never synced
    assert {int(c["bytes_down"]) for c in clients if c["round"] == "1"} == {first_time}
    uploads = {v[0] for rnd in trace["updates"] for v in rnd.values()}
    assert {int(c["bytes_up"]) for c in clients} <= uploads
    assert summary["final_accuracy"] == trace["accuracy"][-1][1]


def test_replay_beyond_the_trace_is_bad_input(real):
    tmp, data, run_dir, _ = real
    long = {**copy.deepcopy(data), "replay": {"trace": str(run_dir / "trace.jsonl")}}
    long["rounds"]["max"] = 4
    with pytest.raises(ScenarioError, match="rounds.max"):
        _run(tmp, long, "long")


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_parallel_clients_give_the_sequential_outputs(real, backend, request):
    if backend == "ray":
        request.getfixturevalue("local_ray")
    tmp, data, run_dir, _ = real
    parallel = {**copy.deepcopy(data), "host": {"workers": 2, "backend": backend}}
    par_dir, _ = _run(tmp, parallel, f"parallel-{backend}")
    _same_systems(run_dir, par_dir)
    assert _rows(par_dir / "rounds.csv") == _rows(run_dir / "rounds.csv")  # accuracy and loss too


class StopAfter(RoundObserver):
    def __init__(self, rounds):
        self.rounds = rounds

    def round_done(self, engine, round):
        if round.number >= self.rounds:
            raise KeyboardInterrupt


def test_a_replay_interrupted_then_resumed_equals_the_uninterrupted_one(real):
    tmp, data, run_dir, _ = real
    replay = {**copy.deepcopy(data), "replay": {"trace": str(run_dir / "trace.jsonl")}}
    replay["fleet"]["groups"] = [{"device": "rpi5", "count": 30}, {"device": "pixel-7a", "count": 20}]
    replay["rounds"].update(clients_per_round=10)
    whole, _ = _run(tmp, replay, "whole")
    scenario, base = load_scenario(write_scenario(tmp, replay, "cut.yaml"))
    with pytest.raises(KeyboardInterrupt):
        run_scenario(scenario, base, tmp / "cut", progress=StopAfter(2))
    assert len(_rows(tmp / "cut" / "rounds.csv")) == 3  # rounds 0..2 on disk
    run_scenario(scenario, base, tmp / "cut", resume=True)
    _same_systems(whole, tmp / "cut")


def test_the_checkpoint_holds_neither_rows_nor_trace(real, tmp_path):
    from edgefed.checkpoint import load_checkpoint

    _, data, _, _ = real
    sizes = {}
    for stop in (1, 3):
        longer = copy.deepcopy(data)
        longer["rounds"].update(max=5)
        scenario, base = load_scenario(write_scenario(tmp_path, longer, "ckpt.yaml"))
        with pytest.raises(KeyboardInterrupt):
            run_scenario(scenario, base, tmp_path / f"stop{stop}", progress=StopAfter(stop))
        state = load_checkpoint(tmp_path / f"stop{stop}").state
        assert set(state) == {"scenario", "engine", "excluded", "host_seconds", "device_kind"}
        sizes[stop] = len(json.dumps(state))
    assert abs(sizes[3] - sizes[1]) < 64, sizes  # the header does not grow with the rounds run
