"""The to-target figures under a smoothed curve, a target fixed after the run, and the tuning split
that keeps hyperparameter choice off the test split."""
from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from edgefed.algorithms.data import load_split
from edgefed.build import build_learning
from edgefed.cli import app
from edgefed.results import retarget, smoothed, to_target
from edgefed.scenario import load_scenario
from tests.conftest import REPO, write_scenario


def _rounds(accuracies):
    """Rounds 0..n, each costing 1 s, 2 J, 10 bytes and 100 FLOPs; accuracy None = not evaluated."""
    return [{"round": r, "accuracy": "" if a is None else a, "sim_time_s": float(r), "energy_j": 2.0,
             "bytes_up": 4, "bytes_down": 6, "client_flops": 100.0} for r, a in enumerate(accuracies)]


def test_moving_mean_needs_a_full_window():
    assert smoothed([0.5, 0.7, 0.6, 0.9], 1) == [0.5, 0.7, 0.6, 0.9]
    assert smoothed([0.5, 0.7, 0.6, 0.9], 3) == [None, None, pytest.approx(0.6), pytest.approx(0.7333333)]


def test_one_lucky_evaluation_reaches_a_raw_target_but_not_a_smoothed_one():
    rounds = _rounds([0.5, None, 0.70, None, 0.55, None, 0.66, None, 0.68, None, 0.69])
    raw = to_target(rounds, 0.65, 1)
    assert raw["rounds_to_target"] == 2
    assert (raw["time_to_target_s"], raw["energy_to_target_j"], raw["bytes_to_target"],
            raw["client_flops_to_target"]) == (2.0, 6.0, 30, 300.0)
    # moving means of 3 evaluations: rounds 4: 0.583, 6: 0.637, 8: 0.63, 10: 0.677
    assert to_target(rounds, 0.65, 3)["rounds_to_target"] == 10
    assert to_target(rounds, 0.70, 3) == dict.fromkeys(raw)
    assert to_target(rounds, None, 1) == dict.fromkeys(raw)
    assert raw["energy_to_target_completed_j"] == raw["energy_to_target_j"]  # no sessions in flight: sync rounds


def test_energy_to_target_adds_what_the_sessions_in_flight_spent_by_then():
    """Async versions of 2 J each, and at version 2 (the target) 3.5 J spent by sessions still
    running: 2 + 2 + 2 = 6 J completed, 9.5 J spent by the target's time."""
    rounds = [{**r, "energy_in_flight_j": 1.0 + r["round"] * 1.25} for r in _rounds([0.5, None, 0.7])]
    reached = to_target(rounds, 0.65, 1)
    assert reached["energy_to_target_completed_j"] == 6.0 and reached["energy_to_target_j"] == 9.5


def test_a_run_reports_its_smoothing_and_a_later_target_rewrites_only_the_to_target_figures(tmp_path, tiny_dict):
    tiny_dict["rounds"].update(max=4, target_smoothing=2, target_accuracy=None)
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(write_scenario(tmp_path, tiny_dict)), "--out", str(run_dir),
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    before = json.loads((run_dir / "summary.json").read_text())
    with (run_dir / "rounds.csv").open() as fh:
        accs = [float(r["accuracy"]) for r in csv.DictReader(fh)]
    assert before["target_smoothing"] == 2 and before["rounds_to_target"] is None
    assert before["final_smoothed_accuracy"] == pytest.approx((accs[-1] + accs[-2]) / 2)
    target = min(smoothed(accs, 2)[1:])
    after = retarget(run_dir, target)
    assert after == json.loads((run_dir / "summary.json").read_text())
    assert after["target_accuracy"] == target and after["rounds_to_target"] is not None
    changed = {k for k in after if after[k] != before[k]}
    assert changed <= {"target_accuracy", "rounds_to_target", "time_to_target_s", "energy_to_target_j",
                       "energy_to_target_completed_j", "bytes_to_target", "client_flops_to_target"}


def test_the_tuning_split_leaves_training_and_is_the_same_for_every_seed(tmp_path, tiny_dict):
    tiny_dict["task"].update(tuning_split=40, evaluate_on="tuning")
    held = []
    for seed in (0, 1):
        tiny_dict["seed"] = seed
        algorithm = build_learning(*load_scenario(write_scenario(tmp_path, tiny_dict)))
        train, tuning = algorithm.data.train, algorithm.data.test
        assert (len(train), len(tuning)) == (200, 40)
        assert not {tuple(ids) for ids in train.ids} & {tuple(ids) for ids in tuning.ids}
        held.append([tuple(ids) for ids in tuning.ids])
    assert held[0] == held[1]
    tiny_dict["task"]["evaluate_on"] = "test"
    algorithm = build_learning(*load_scenario(write_scenario(tmp_path, tiny_dict)))
    assert (len(algorithm.data.train), len(algorithm.data.test)) == (200, 64)  # still kept out of training


def test_train_min_words_keeps_sentences_before_the_limit_and_leaves_the_test_split(tmp_path, tiny_dict):
    """SST-2's training split is mostly phrase fragments: the filter runs before train_limit, so the
    limit still gives that many training examples, and the test split is never filtered."""
    full = str(REPO / "scenarios/data/sst2/train_full.tsv.gz")
    tiny_dict["task"]["dataset"].update(train=full, train_min_words=12, test_limit=None)
    algorithm = build_learning(*load_scenario(write_scenario(tmp_path, tiny_dict)))
    train = load_split(load_scenario(write_scenario(tmp_path, tiny_dict))[0].task.dataset, "train", tmp_path)
    assert len(train) == 240 and min(len(t.split()) for t in train.texts) >= 12
    assert len(algorithm.data.test) == 872
    tiny_dict["task"]["dataset"]["train_min_words"] = 500
    result = CliRunner().invoke(app, ["run", str(write_scenario(tmp_path, tiny_dict)), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "train_min_words" in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("task, named", [({"evaluate_on": "tuning"}, "task.tuning_split"),
                                         ({"tuning_split": 240}, "task.tuning_split: 240")])
def test_bad_tuning_split_is_one_line_exit_2(tmp_path, tiny_dict, task, named):
    tiny_dict["task"].update(task)
    result = CliRunner().invoke(app, ["run", str(write_scenario(tmp_path, tiny_dict)), "--out",
                                      str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert named in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
