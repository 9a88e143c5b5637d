"""End to end through the CLI on a tiny random-config model: files, sums and determinism."""
import json
from pathlib import Path

import pytest

from edgefed.algorithms.message import Message
from edgefed.results import read_rows as read_csv
from tests.conftest import write_scenario
from tests.helpers import edgefed

ROUND_COLS = ["round", "sim_time_s", "accuracy", "loss", "selected", "aggregated", "dropped", "bytes_up",
              "bytes_down", "energy_j", "client_flops", "host_seconds"]
CLIENT_COLS = ["round", "client", "device", "status", "download_s", "compute_s", "upload_s", "idle_s",
               "energy_compute_j", "energy_radio_j", "energy_idle_j", "bytes_up", "bytes_down", "flops",
               "peak_memory_bytes"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from tests.conftest import TINY
    tmp = tmp_path_factory.mktemp("run")
    path = write_scenario(tmp, TINY)
    result = edgefed("run", path, "--out", tmp / "out", "--quiet")
    assert result.returncode == 0, result.stderr
    return tmp / "out", result


def test_run_directory_has_the_contract_files(tiny_run):
    run_dir, result = tiny_run
    for name in ("scenario.yaml", "rounds.csv", "clients.csv", "summary.json"):
        assert (run_dir / name).is_file(), name
    assert list(read_csv(run_dir / "rounds.csv")[0]) == ROUND_COLS
    assert list(read_csv(run_dir / "clients.csv")[0])[: len(CLIENT_COLS)] == CLIENT_COLS
    assert "results:" in result.stdout
    assert not list(run_dir.glob(".*.tmp"))
    # atomically written files get the umask's mode like the appended CSVs, not mkstemp's 0600
    assert (run_dir / "summary.json").stat().st_mode & 0o777 == (run_dir / "rounds.csv").stat().st_mode & 0o777


def test_summary_totals_equal_sums_over_clients(tiny_run):
    run_dir, _ = tiny_run
    clients = read_csv(run_dir / "clients.csv")
    rounds = read_csv(run_dir / "rounds.csv")
    summary = json.loads((run_dir / "summary.json").read_text())
    energy = sum(float(c["energy_compute_j"]) + float(c["energy_radio_j"]) + float(c["energy_idle_j"]) for c in clients)
    assert summary["totals"]["energy_j"] == pytest.approx(energy, rel=1e-9)
    assert summary["totals"]["energy_j"] == pytest.approx(sum(float(r["energy_j"]) for r in rounds), rel=1e-9)
    for key in ("download_s", "compute_s", "upload_s", "idle_s"):
        assert summary["totals"][key] == pytest.approx(sum(float(c[key]) for c in clients), rel=1e-9)
    assert summary["totals"]["bytes_up"] == sum(int(c["bytes_up"]) for c in clients)
    assert summary["totals"]["bytes_up"] == sum(int(r["bytes_up"]) for r in rounds)
    assert summary["totals"]["client_flops"] == pytest.approx(sum(float(r["client_flops"]) for r in rounds))
    # every round's clients finish by the round's end time: busy + idle spans the round
    for r in rounds[1:]:
        rows = [c for c in clients if c["round"] == r["round"]]
        start = float(rounds[int(r["round"]) - 1]["sim_time_s"])
        for c in rows:
            span = sum(float(c[k]) for k in ("download_s", "compute_s", "upload_s", "idle_s"))
            assert span == pytest.approx(float(r["sim_time_s"]) - start, rel=1e-9)


def test_bytes_equal_serialized_message_lengths(tiny_run, tiny_dict):
    """Replay the learning of round 1 directly and compare with the CSV's byte counts."""
    from edgefed.simulator.engine import Engine
    from edgefed.build import build_fleet, build_learning, engine_config
    from edgefed.scenario import Scenario

    run_dir, _ = tiny_run
    scenario = Scenario.model_validate(tiny_dict)
    algo = build_learning(scenario, Path("."))
    engine = Engine(algo, build_fleet(scenario), engine_config(scenario.rounds, seed=scenario.seed))
    selected = engine.select(1)
    plan = algo.configure_round(1, selected)
    rows = {int(c["client"]): c for c in read_csv(run_dir / "clients.csv") if c["round"] == "1"}
    assert sorted(rows) == selected
    for cid in selected:
        down, _ = algo.catch_up(cid, None, 1, plan)
        up, _ = algo.client_update(cid, 1, plan)
        assert isinstance(up, Message)
        assert int(rows[cid]["bytes_down"]) == len(down.encode())
        assert int(rows[cid]["bytes_up"]) == len(up.encode())


def test_same_scenario_and_seed_give_identical_outputs(tiny_run, tmp_path):
    from tests.conftest import TINY
    run_dir, _ = tiny_run
    again = edgefed("run", write_scenario(tmp_path, TINY), "--out", tmp_path / "again", "--quiet")
    assert again.returncode == 0, again.stderr
    assert (run_dir / "clients.csv").read_text() == (tmp_path / "again" / "clients.csv").read_text()
    strip = lambda rows: [{k: v for k, v in r.items() if k != "host_seconds"} for r in rows]  # noqa: E731
    assert strip(read_csv(run_dir / "rounds.csv")) == strip(read_csv(tmp_path / "again" / "rounds.csv"))


def test_a_run_directory_scenario_runs_again_from_anywhere(tmp_path, tiny_dict):
    """The run directory's scenario.yaml is the whole recipe: its relative data paths are recorded
    absolute and its ``_versions`` record is accepted, so it re-runs from another folder to the same
    metrics; edited versions only bring a one-line note."""
    import shutil

    import yaml

    from tests.conftest import REPO
    (tmp_path / "project" / "data").mkdir(parents=True)
    for name in ("train.tsv", "validation.tsv"):
        shutil.copy(REPO / "scenarios/data/sst2" / name, tmp_path / "project" / "data" / name)
    tiny_dict["task"]["dataset"].update(train="data/train.tsv", test="data/validation.tsv")
    tiny_dict["rounds"]["max"] = 2
    first = edgefed("run", write_scenario(tmp_path / "project", tiny_dict), "--out", tmp_path / "first", "--quiet")
    assert first.returncode == 0, first.stderr
    recorded = yaml.safe_load((tmp_path / "first" / "scenario.yaml").read_text())
    assert recorded["task"]["dataset"]["train"] == str((tmp_path / "project" / "data" / "train.tsv").resolve())
    (tmp_path / "elsewhere").mkdir()
    again = edgefed("run", tmp_path / "first" / "scenario.yaml", "--out", tmp_path / "again", "--quiet",
                    cwd=tmp_path / "elsewhere")
    assert again.returncode == 0, again.stderr
    assert "note:" not in again.stderr
    assert (tmp_path / "first" / "clients.csv").read_text() == (tmp_path / "again" / "clients.csv").read_text()
    strip = lambda rows: [{k: v for k, v in r.items() if k != "host_seconds"} for r in rows]  # noqa: E731
    assert strip(read_csv(tmp_path / "first" / "rounds.csv")) == strip(read_csv(tmp_path / "again" / "rounds.csv"))
    recorded["_versions"]["torch"] = "0.0.1"
    older = write_scenario(tmp_path, recorded, "older.yaml")
    noted = edgefed("run", older, "--out", tmp_path / "noted", "--quiet", "--set", "rounds.max=1")
    assert noted.returncode == 0, noted.stderr
    assert "torch 0.0.1 ->" in noted.stderr and "metrics may differ" in noted.stderr


def test_a_different_seed_changes_the_outcome(tiny_run, tmp_path, tiny_dict):
    run_dir, _ = tiny_run
    tiny_dict["seed"] = 4
    other = edgefed("run", write_scenario(tmp_path, tiny_dict), "--out", tmp_path / "other", "--quiet")
    assert other.returncode == 0, other.stderr
    assert (run_dir / "clients.csv").read_text() != (tmp_path / "other" / "clients.csv").read_text()


def test_deadline_marks_late_clients_and_keeps_sums(tmp_path, tiny_dict):
    tiny_dict["rounds"]["deadline_s"] = 0.3
    result = edgefed("run", write_scenario(tmp_path, tiny_dict), "--out", tmp_path / "d", "--quiet")
    assert result.returncode == 0, result.stderr
    clients = read_csv(tmp_path / "d" / "clients.csv")
    rounds = read_csv(tmp_path / "d" / "rounds.csv")
    late = [c for c in clients if c["status"] == "late"]
    assert late, "LTE phones (0.26 s promotion + 2 x 35 ms latency) cannot finish in 0.3 s"
    for r in rounds[1:]:
        assert float(r["sim_time_s"]) - float(rounds[int(r["round"]) - 1]["sim_time_s"]) <= 0.3 + 1e-9
        rows = [c for c in clients if c["round"] == r["round"]]
        assert int(r["aggregated"]) == sum(c["status"] == "ok" for c in rows)
        assert float(r["energy_j"]) == pytest.approx(
            sum(float(c["energy_compute_j"]) + float(c["energy_radio_j"]) + float(c["energy_idle_j"]) for c in rows))
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert summary["totals"]["client_rounds"]["late"] == len(late)


def test_devices_without_memory_are_excluded_and_reported(tmp_path, tiny_dict):
    tiny_dict["fleet"]["devices"] = {"watch": {
        "device_class": "phone", "flops": {"fp32": 1e9}, "mem_bandwidth": 1e9, "memory_bytes": 1e6,
        "power_active_w": 1.0, "power_idle_w": 0.1, "default_link": "wifi"}}
    tiny_dict["fleet"]["groups"].append({"device": "watch", "count": 2})
    result = edgefed("run", write_scenario(tmp_path, tiny_dict), "--out", tmp_path / "x", "--quiet",
                     "--set", "rounds.max=2")
    assert result.returncode == 0, result.stderr
    clients = read_csv(tmp_path / "x" / "clients.csv")
    excluded = [c for c in clients if c["status"] == "excluded"]
    assert {c["device"] for c in excluded} == {"watch"} and len(excluded) == 2
    assert all("needs" in c["note"] and "has 0.00 GB" in c["note"] for c in excluded)
    assert not [c for c in clients if c["device"] == "watch" and c["status"] != "excluded"]
    summary = json.loads((tmp_path / "x" / "summary.json").read_text())
    assert summary["excluded"][0]["device"] == "watch" and summary["excluded"][0]["count"] == 2
