"""Overlay and Pareto plots on synthetic run directories (no model needed)."""
import json

import numpy as np
import yaml
from typer.testing import CliRunner

import edgefed.plots as plots
from edgefed.cli import app


def _fake_run(path, seed, times, accs, energy_per_round=10.0, mix="phones", target_round=None):
    path.mkdir(parents=True)
    rows = ["round,sim_time_s,accuracy,loss,selected,aggregated,dropped,bytes_up,bytes_down,energy_j,"
            "client_flops,host_seconds"]
    for r, (t, a) in enumerate(zip(times, accs)):
        rows.append(f"{r},{t},{a},0.5,2,2,0,10,20,{energy_per_round if r else 0.0},1e9,0.1")
    (path / "rounds.csv").write_text("\n".join(rows) + "\n")
    hit = target_round is not None
    (path / "summary.json").write_text(json.dumps({
        "target_accuracy": 0.6, "time_to_target_s": times[target_round] if hit else None,
        "energy_to_target_j": energy_per_round * target_round if hit else None}))
    (path / "scenario.yaml").write_text(yaml.safe_dump({"name": path.name, "seed": seed, "fleet": mix}))
    return path


def test_runs_of_one_scenario_group_over_seeds_and_average(tmp_path):
    a = _fake_run(tmp_path / "a", 0, [0, 10, 20], [0.5, 0.6, 0.7])
    b = _fake_run(tmp_path / "b", 1, [0, 30, 40], [0.5, 0.8, 0.9])
    c = _fake_run(tmp_path / "c", 0, [0, 5, 6], [0.5, 0.5, 0.5], mix="jetsons")
    groups = plots.collect([a, b, c])
    assert groups == {"a": [a, b], "c": [c]}
    x, y, lo, hi = plots.mean_curve(groups["a"], "sim_time_s")
    assert np.allclose(x, [0, 20, 30]) and np.allclose(y, [0.5, 0.7, 0.8])
    assert np.allclose(lo, [0.5, 0.6, 0.7]) and np.allclose(hi, [0.5, 0.8, 0.9])
    # a target other than the runs' own: time and cumulative energy at the first evaluation reaching it
    assert plots.run_to_target(a, 0.65) == (20.0, 20.0) and plots.run_to_target(c, 0.65) == (None, None)
    assert plots.mean_to_target(groups, 0.6) == {"a": (20.0, 10.0), "c": None}


def test_pareto_front_keeps_only_undominated_points():
    points = {"fast-hungry": (10.0, 500.0), "slow-frugal": (50.0, 100.0), "dominated": (60.0, 600.0),
              "middle": (30.0, 200.0)}
    assert plots.pareto_front(points) == ["fast-hungry", "middle", "slow-frugal"]


def test_plot_cli_writes_png_and_svg_and_refuses_non_runs(tmp_path):
    a = _fake_run(tmp_path / "a", 0, [0, 10, 20], [0.5, 0.6, 0.7], target_round=2)
    b = _fake_run(tmp_path / "b", 0, [0, 5, 6], [0.5, 0.55, 0.65], mix="jetsons", energy_per_round=50,
                  target_round=2)
    def cli(*args):
        return CliRunner().invoke(app, ["plot", *map(str, args)])

    done = cli(a, b, "--x", "energy")
    assert done.exit_code == 0, done.output
    png, svg = a / "plots" / "accuracy_vs_energy.png", a / "plots" / "accuracy_vs_energy.svg"
    assert png.read_bytes()[:4] == b"\x89PNG" and b"<svg" in svg.read_bytes()[:500]
    pareto = cli(a, b, "--pareto", "--out", tmp_path / "p.svg")
    assert pareto.exit_code == 0 and (tmp_path / "p.svg").exists()
    bad = cli(tmp_path)
    assert bad.exit_code == 2 and "not a run directory" in bad.stderr and bad.exception.__class__ is SystemExit
    bad_x = cli(a, "--x", "watts")
    assert bad_x.exit_code == 2 and "--x" in bad_x.stderr
