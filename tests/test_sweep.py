"""Sweeps: expansion, resume of an interrupted sweep (finished points skipped, a stopped one continued), and local vs Ray giving the same table."""
import copy
import csv
import json
import shutil

import pytest
import yaml

from edgefed.checkpoint import CHECKPOINT
from edgefed.simulator.records import RoundObserver
from edgefed.runner import run_scenario
from edgefed.scenario import ScenarioError
from edgefed.sweep import load_sweep, point_scenario, run_sweep
from tests.conftest import write_scenario
from tests.test_resume import without_host_seconds

pytestmark = pytest.mark.xdist_group("ray")  # the Ray test shares the module's sweep: it runs once, on one process


def _sweep_file(tmp_path, tiny_dict, grid, points=None):
    tiny_dict["rounds"]["max"] = 2
    write_scenario(tmp_path, tiny_dict, "base.yaml")
    spec = {"base": "base.yaml", "grid": grid, "set": {"rounds.clients_per_round": 2}}
    if points:
        spec["points"] = points
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _rows(path):
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_grid_times_points_with_labels_and_stable_ids(tmp_path, tiny_dict):
    mixes = {"pis": [{"device": "rpi5", "count": 4}], "phones": [{"device": "pixel-7a", "count": 4}]}
    path = _sweep_file(tmp_path, tiny_dict, {"seed": [1, 2], "fleet.groups": mixes},
                       points=[{"algorithm.lr": 0.01}, {"algorithm.lr": 0.1}])
    _, points = load_sweep(path)
    assert len(points) == 8
    assert len({p.id for p in points}) == 8
    assert points[0].labels == {"seed": 1, "fleet.groups": "pis", "algorithm.lr": 0.01}
    assert points[0].overrides["fleet.groups"] == mixes["pis"]
    assert [p.id for p in load_sweep(path)[1]] == [p.id for p in points]


def test_points_write_no_report_unless_the_sweep_asks_for_one(tmp_path, tiny_dict):
    tiny_dict["output"]["report"] = True
    base = write_scenario(tmp_path, tiny_dict)
    assert not point_scenario(base, {})[0].output.report
    assert point_scenario(base, {"output.report": True})[0].output.report


def test_a_bad_point_fails_before_anything_runs(tmp_path, tiny_dict):
    path = _sweep_file(tmp_path, tiny_dict, {"rounds.max": [2, -1]})
    with pytest.raises(ScenarioError, match="rounds.max"):
        run_sweep(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    """A two-point sweep run once on local processes, shared by the tests below."""
    from tests.conftest import TINY
    tmp = tmp_path_factory.mktemp("sweep")
    path = _sweep_file(tmp, copy.deepcopy(TINY), {"seed": [1, 2]})
    result = run_sweep(path, tmp / "local", workers=2)
    return path, tmp / "local", result


def test_interrupted_sweep_completes_only_missing_points(two_seeds, tmp_path):
    path, local, first = two_seeds
    out = tmp_path / "out"
    shutil.copytree(local, out)
    assert len(first["ran"]) == 2 and not first["skipped"]
    table = _rows(out / "sweep.csv")
    assert [r["seed"] for r in table] == ["1", "2"]
    # interrupt the second point: its run never wrote a finished summary
    victim = first["ran"][0]
    summary = json.loads((out / victim / "summary.json").read_text())
    (out / victim / "summary.json").write_text(json.dumps({**summary, "status": "interrupted"}))
    kept = {pid: (out / pid / "clients.csv").stat().st_mtime_ns for pid in first["ran"] if pid != victim}
    again = run_sweep(path, out)
    assert again["ran"] == [victim] and sorted(again["skipped"]) == sorted(kept)
    assert {pid: (out / pid / "clients.csv").stat().st_mtime_ns for pid in kept} == kept
    assert _rows(out / "sweep.csv") == table


class StopAfterRound1(RoundObserver):
    def round_done(self, engine, round):
        if round.number == 1:
            raise KeyboardInterrupt


def test_a_point_stopped_mid_run_resumes_from_its_checkpoint(two_seeds, tmp_path):
    path, local, first = two_seeds
    out = tmp_path / "out"
    shutil.copytree(local, out)
    victim = first["ran"][1]
    points = {p.id: p for p in load_sweep(path)[1]}
    scenario, folder = point_scenario(path.parent / "base.yaml", points[victim].overrides)
    with pytest.raises(KeyboardInterrupt):
        run_scenario(scenario, folder, out / victim, progress=StopAfterRound1())
    assert (out / victim / CHECKPOINT).is_file()
    stopped = (out / victim / "rounds.csv").read_text()
    again = run_sweep(path, out)
    assert again["ran"] == [victim]
    resumed = (out / victim / "rounds.csv").read_text()
    assert resumed.startswith(stopped) and len(resumed) > len(stopped), "rounds 0-1 kept as written: not re-run"
    assert without_host_seconds(out / victim) == without_host_seconds(local / victim)
    assert _rows(out / "sweep.csv") == _rows(local / "sweep.csv")


def test_local_and_ray_backends_write_identical_rows(two_seeds, tmp_path, local_ray):
    path, local_dir, _ = two_seeds
    run_sweep(path, tmp_path / "ray", backend="ray", workers=1)
    local, ray_rows = _rows(local_dir / "sweep.csv"), _rows(tmp_path / "ray" / "sweep.csv")
    assert len(local) == 2 and local == ray_rows
    assert local[0]["final_accuracy"] != "" and "totals.energy_j" in local[0]


def test_cli_bad_sweep_input_is_one_line_exit_2(tmp_path, tiny_dict):
    from typer.testing import CliRunner

    from edgefed.cli import app

    write_scenario(tmp_path, tiny_dict, "base.yaml")
    (tmp_path / "typo.yaml").write_text("base: base.yaml\ngrids: {seed: [1, 2]}\n")
    (tmp_path / "badpath.yaml").write_text("base: base.yaml\ngrid: {rounds.maxx: [1, 2]}\n")
    cases = [(["sweep", tmp_path / "typo.yaml"], "grids"), (["sweep", tmp_path / "badpath.yaml"], "rounds.maxx"),
             (["sweep", tmp_path / "typo.yaml", "--backend", "slurm"], "--backend"),
             (["sweep", tmp_path / "missing.yaml"], "missing.yaml"), (["regress", "--dir", tmp_path / "none"], "none")]
    for args, named in cases:
        result = CliRunner().invoke(app, [str(a) for a in args])
        assert result.exit_code == 2, (args, result.output)
        assert named in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_failing_points_are_rows_and_the_sweep_carries_on_then_exits_1(tmp_path, tiny_dict):
    """A point whose data file turns out malformed (bad input, exit 2) and one whose learning
    diverges (exit 1) sit between two good points: all four rows are in sweep.csv, the good ones
    finished, and the command exits 1 after naming each failure."""
    from typer.testing import CliRunner

    from edgefed.cli import app

    malformed = tmp_path / "malformed-train.tsv"
    malformed.write_text("no columns here\n")
    path = _sweep_file(tmp_path, tiny_dict, {"seed": [1]},
                       points=[{}, {"task.dataset.train": str(malformed)}, {"algorithm.lr": 1e30}, {"seed": 2}])
    result = CliRunner().invoke(app, ["sweep", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    table = _rows(tmp_path / "out" / "sweep.csv")
    assert [r["status"] for r in table] == ["done", "failed", "failed", "done"]
    assert [r["exit_code"] for r in table] == ["0", "2", "1", "0"]
    assert "malformed-train.tsv" in table[1]["reason"] and "diverged" in table[2]["reason"]
    assert all("\n" not in r["reason"] for r in table)
    assert table[3]["final_accuracy"] != "" and table[1]["final_accuracy"] == ""
    assert sum("failed p" in line for line in result.stderr.splitlines()) == 2
    # resuming retries only the failed points
    again = run_sweep(path, tmp_path / "out")
    assert sorted(again["ran"]) == sorted(r["point"] for r in table if r["status"] == "failed")
    assert sorted(again["failed"]) == sorted(again["ran"])
