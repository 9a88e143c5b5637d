"""output.tensorboard: per-round scalars through torch.utils.tensorboard, equal to rounds.csv."""
import csv
import sys

import pytest

from edgefed.runner import run_scenario
from edgefed.scenario import ScenarioError, load_scenario
from tests.conftest import write_scenario


def scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_scalars_per_round_match_rounds_csv(tmp_path, tiny_dict):
    pytest.importorskip("tensorboard")
    tiny_dict["output"]["tensorboard"] = True
    tiny_dict["rounds"]["eval_every"] = 2
    scenario, base = load_scenario(write_scenario(tmp_path, tiny_dict))
    run_scenario(scenario, base, tmp_path / "run")
    logged = scalars(tmp_path / "run" / "tensorboard")
    with (tmp_path / "run" / "rounds.csv").open() as fh:
        rounds = list(csv.DictReader(fh))
    assert {"accuracy", "loss", "sim_time_s", "energy_j", "bytes_up", "bytes_down", "client_flops"} <= set(logged)
    assert [step for step, _ in logged["sim_time_s"]] == [0, 1, 2, 3]
    assert [step for step, _ in logged["accuracy"]] == [int(r["round"]) for r in rounds if r["accuracy"]]
    for (step, value), row in zip(logged["energy_j"], rounds):
        assert step == int(row["round"]) and value == pytest.approx(float(row["energy_j"]), rel=1e-6)
    for (step, value), row in zip(logged["accuracy"], [r for r in rounds if r["accuracy"]]):
        assert value == pytest.approx(float(row["accuracy"]), rel=1e-6)
    # a second run into the same folder starts the log afresh
    run_scenario(scenario, base, tmp_path / "run")
    assert [step for step, _ in scalars(tmp_path / "run" / "tensorboard")["sim_time_s"]] == [0, 1, 2, 3]


def test_without_tensorboard_one_clear_error(tmp_path, tiny_dict, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    tiny_dict["output"]["tensorboard"] = True
    tiny_dict["rounds"]["max"] = 1
    scenario, base = load_scenario(write_scenario(tmp_path, tiny_dict))
    with pytest.raises(ScenarioError, match=r"output.tensorboard: needs the tensorboard package"):
        run_scenario(scenario, base, tmp_path / "run")
