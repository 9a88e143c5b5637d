"""Numerical faults: a client's NaN/inf is rejected and never reaches the global model; a run whose
learning diverges stops with exit 1 and keeps its results."""
import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from edgefed.cli import app
from edgefed.simulator.engine import Engine
from edgefed.simulator.records import RoundObserver
from edgefed.build import build_fleet, build_learning, engine_config
from edgefed.scenario import Scenario
from tests.conftest import TINY, write_scenario
from tests.test_end_to_end import read_csv

BAD_ROUND = 2


def run_engine(tiny_dict, fault=None, drop_victim=False):
    """Three rounds in process; ``fault`` poisons the first client selected in BAD_ROUND."""
    scenario = Scenario.model_validate(tiny_dict)
    algo = build_learning(scenario, Path("."))
    engine = Engine(algo, build_fleet(scenario), engine_config(scenario.rounds, seed=scenario.seed))
    victim = engine.select(BAD_ROUND)[0]
    client_update, loss, aggregate = algo.client_update, algo.model.loss, algo.aggregate

    def poisoned_update(cid, r, plan):
        hit = fault is not None and (cid, r) == (victim, BAD_ROUND)
        if hit and fault == "loss":
            algo.model.loss = lambda batch: loss(batch) * float("inf")
        up, work = client_update(cid, r, plan)
        algo.model.loss = loss
        if hit and fault == "scalar":
            up.arrays["scalars"][0, -1] = np.nan
        return up, work

    algo.client_update = poisoned_update
    if drop_victim:
        algo.aggregate = lambda msgs: aggregate([m for m in msgs if (m.client, m.round) != (victim, BAD_ROUND)])
    collect = CollectRows()
    engine.observers = [collect]
    engine.run()
    return algo.trainable.snapshot(), collect.rows, victim


class CollectRows(RoundObserver):
    def __init__(self):
        self.rows = []

    def round_done(self, engine, round):
        self.rows.extend(round.rows)


@pytest.fixture(scope="module")
def references():
    """Final weights without the victim's message, and with its honest message."""
    return run_engine(copy.deepcopy(TINY), drop_victim=True)[0], run_engine(copy.deepcopy(TINY))[0]


@pytest.mark.parametrize("fault", ["scalar", "loss"])
def test_poisoned_message_is_rejected_and_model_equals_run_without_it(tiny_dict, fault, references):
    poisoned, rows, victim = run_engine(tiny_dict, fault)
    without, honest = references
    assert all(torch.equal(a, b) for a, b in zip(poisoned, without))
    assert any(not torch.equal(a, b) for a, b in zip(poisoned, honest)), "the victim's message must matter"
    bad = [r for r in rows if r.status == "rejected"]
    assert [(r.round, r.client) for r in bad] == [(BAD_ROUND, victim)]
    assert "non-finite scalars" in bad[0].note and ("nan" in bad[0].note)
    assert bad[0].bytes_up > 0 and bad[0].energy_j > 0, "its work and upload are still charged"


def test_eval_loss_nan_stops_the_run_with_exit_1_and_keeps_results(tmp_path, tiny_dict, monkeypatch):
    from edgefed.algorithms import base as base_module

    evaluate = base_module.evaluate
    calls = []

    def failing_evaluate(model, test):
        calls.append(1)
        accuracy, loss = evaluate(model, test)
        return (accuracy, float("nan")) if len(calls) == 3 else (accuracy, loss)  # rounds 0, 1, 2

    monkeypatch.setattr(base_module, "evaluate", failing_evaluate)
    result = CliRunner().invoke(app, ["run", str(write_scenario(tmp_path, tiny_dict)), "--out",
                                      str(tmp_path / "r"), "--quiet"])
    assert result.exit_code == 1, result.output
    assert "diverged at round 2: eval loss is nan" in result.output and "Traceback" not in result.output
    assert [r["round"] for r in read_csv(tmp_path / "r" / "rounds.csv")] == ["0", "1", "2"]
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["rounds"] == 2


def test_learning_rate_that_blows_up_every_client_stops_the_run(tmp_path, tiny_dict):
    tiny_dict["algorithm"]["lr"] = 1e30
    result = CliRunner().invoke(app, ["run", str(write_scenario(tmp_path, tiny_dict)), "--out",
                                      str(tmp_path / "r"), "--quiet"])
    assert result.exit_code == 1, result.output
    assert "diverged at round 1: every update that arrived was rejected" in result.output
    clients = read_csv(tmp_path / "r" / "clients.csv")
    assert {c["status"] for c in clients} == {"rejected"}
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["totals"]["client_rounds"] == {"rejected": 4}
