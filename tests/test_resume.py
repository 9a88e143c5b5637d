"""Kill -9 mid-run, then ``edgefed run --resume``: the files equal an uninterrupted run's."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from safetensors import safe_open
from safetensors.torch import save
from typer.testing import CliRunner

from edgefed.algorithms.registry import METHODS, example
from edgefed.build import learning_device
from edgefed.checkpoint import CHECKPOINT, load_checkpoint
from edgefed.cli import app
from tests.conftest import write_scenario
from tests.test_end_to_end import read_csv

ROUNDS = 4


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def checkpoint_round(run_dir):
    try:
        return load_checkpoint(run_dir).state["engine"]["round"]
    except ValueError:  # not written yet
        return -1


def without_host_seconds(run_dir):
    rounds = [{k: v for k, v in r.items() if k != "host_seconds"} for r in read_csv(run_dir / "rounds.csv")]
    summary = json.loads((run_dir / "summary.json").read_text())
    summary.pop("host_seconds")
    return rounds, (run_dir / "clients.csv").read_text(), summary


@pytest.fixture
def scenario(tmp_path, tiny_dict):
    tiny_dict["rounds"].update(max=ROUNDS, eval_every=2)
    return write_scenario(tmp_path, tiny_dict)


def test_kill_9_mid_round_then_resume_equals_uninterrupted_run(tmp_path, scenario):
    kill_after = random.randrange(0, ROUNDS - 1)  # checkpoint round after which the run is killed
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "edgefed", "run", str(scenario), "--out", str(killed),
                             "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while checkpoint_round(killed) < kill_after and proc.poll() is None:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the run ended before the kill (kill_after={kill_after})"
    reached = checkpoint_round(killed)
    assert kill_after <= reached < ROUNDS
    assert not (killed / "summary.json").exists()
    assert len(read_csv(killed / "rounds.csv")) <= ROUNDS  # partial, never half-written rows

    resumed = cli("run", scenario, "--resume", killed, "--quiet")
    assert resumed.exit_code == 0, (kill_after, resumed.output)
    whole = cli("run", scenario, "--out", tmp_path / "whole", "--quiet")
    assert whole.exit_code == 0, whole.output
    assert without_host_seconds(killed) == without_host_seconds(tmp_path / "whole"), f"killed after round {reached}"
    assert not (killed / CHECKPOINT).exists() and not list(killed.glob(".*.tmp"))


def test_resume_refuses_missing_foreign_or_corrupt_checkpoints(tmp_path, scenario, monkeypatch):
    run_dir = tmp_path / "run"
    assert cli("run", scenario, "--out", run_dir, "--quiet", "--set", "rounds.max=2").exit_code == 0
    assert not (run_dir / CHECKPOINT).exists(), "a finished run keeps no checkpoint"
    result = cli("run", scenario, "--resume", run_dir, "--quiet", "--set", "rounds.max=2")
    assert result.exit_code == 2 and "no checkpoint" in result.output, result.output

    monkeypatch.setattr("edgefed.runner.remove_checkpoint", lambda run_dir: None)  # as if killed at the end
    assert cli("run", scenario, "--out", run_dir, "--quiet", "--set", "rounds.max=2").exit_code == 0
    before = (run_dir / "scenario.yaml").read_text()
    result = cli("run", scenario, "--resume", run_dir, "--quiet", "--set", "algorithm.lr=0.5")
    assert result.exit_code == 2 and "different scenario" in result.output, result.output
    assert (run_dir / "scenario.yaml").read_text() == before

    # made where the other kind of generator drew the directions: this run cannot continue it
    here = learning_device("auto").type
    other = "cuda" if here == "cpu" else "cpu"
    assert load_checkpoint(run_dir).state["device_kind"] == here
    with safe_open(str(run_dir / CHECKPOINT), framework="pt") as fh:
        meta, tensors = fh.metadata(), {k: fh.get_tensor(k) for k in fh.keys()}
    state = json.loads(meta["state"])
    (run_dir / CHECKPOINT).write_bytes(save(tensors, {**meta, "state": json.dumps({**state, "device_kind": other})}))
    result = cli("run", scenario, "--resume", run_dir, "--quiet", "--set", "rounds.max=2")
    assert result.exit_code == 2 and f"made on {other}" in result.output, result.output
    assert (run_dir / "scenario.yaml").read_text() == before

    (run_dir / CHECKPOINT).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    result = cli("run", scenario, "--resume", run_dir, "--quiet", "--set", "rounds.max=2")
    assert result.exit_code == 2 and CHECKPOINT in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


# the systems state a resume must restore besides the learning's (carried by one method's case)
SYSTEMS = ({"battery_fraction": 0.001, "availability": {"kind": "bernoulli", "p": 0.7, "failures_per_hour": 30},
            "stragglers": {"sigma": 0.3}},
           {"selection": "resource_aware", "deadline_s": 2.0})


@pytest.mark.parametrize("method", list(METHODS))
def test_resume_is_exact_for_every_algorithm_and_systems_state(tmp_path, tiny_dict, monkeypatch, method):
    """Stop after round 2's checkpoint (as a kill would), resume, compare with a whole run: the
    algorithm's history, batteries, resource-aware estimates and the clock must all survive. Every
    method of the registry, in its example configuration; DeComFL's run carries the systems state."""
    from edgefed.results import RunWriter

    fleet, rounds = SYSTEMS if method == "decomfl" else ({}, {})
    tiny_dict["algorithm"] = example(method)
    tiny_dict["fleet"].update(fleet)
    tiny_dict["rounds"].update(max=ROUNDS, eval_every=2, **rounds)
    scenario = write_scenario(tmp_path, tiny_dict)
    whole = cli("run", scenario, "--out", tmp_path / "whole", "--quiet")
    assert whole.exit_code == 0, whole.output

    round_done = RunWriter.round_done

    def stop_after_round_3_rows(self, engine, round):
        round_done(self, engine, round)
        if round.number == 3:  # round 3's rows are on disk; the checkpoint still holds round 2
            raise KeyboardInterrupt

    monkeypatch.setattr(RunWriter, "round_done", stop_after_round_3_rows)
    cli("run", scenario, "--out", tmp_path / "cut", "--quiet")
    assert checkpoint_round(tmp_path / "cut") == 2
    assert read_csv(tmp_path / "cut" / "rounds.csv")[-1]["round"] == "3"
    monkeypatch.setattr(RunWriter, "round_done", round_done)
    resumed = cli("run", scenario, "--resume", tmp_path / "cut", "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert without_host_seconds(tmp_path / "cut") == without_host_seconds(tmp_path / "whole")
