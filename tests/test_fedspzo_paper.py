"""bench/fedspzo_paper.py end to end on a tiny plan: tuning on the tuning split, each method's best
reported over seeds, the target fixed from the reference method alone, paired ratios, per-class
replays; resuming skips finished runs; bad plans fail with one line before any run."""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import yaml

from tests.conftest import REPO, TINY, write_scenario

SCRIPT = REPO / "bench" / "fedspzo_paper.py"


def plan(base: Path) -> dict:
    return {
        "regime": {"base": str(base), "set": {"algorithm.trainable": "all", "algorithm.local_steps": 1}},
        "lr_grid": {"zero_order": [1.0e-3], "first_order": [1.0e-3]},
        "methods": {"decomfl": [{"perturbations": 1}],
                    "fedspzo": [{"split": 1, "p1": 1, "p2": 2}, {"split": "auto", "p1": 1, "p2": "auto"}]},
        "tuning": {"seeds": [0], "rounds": 2, "eval_every": 1, "smoothing": 2, "tuning_split": 40},
        "report": {"seeds": [0, 1], "rounds": 3, "eval_every": 1, "smoothing": 2},
        "target": {"reference_method": "decomfl", "fraction_of_gain": 0.9},
        "device_classes": {"jetsons": [{"device": "jetson-orin-nano", "count": 8}]},
    }


def load_script():
    spec = importlib.util.spec_from_file_location("fedspzo_paper", SCRIPT)
    paper = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = paper  # pydantic resolves the plan's annotations through it
    spec.loader.exec_module(paper)
    return paper


def bench(tmp_path: Path, data: dict, *stage: str) -> subprocess.CompletedProcess:
    """The script's ``main`` in this process (no fresh interpreter's imports), as a run of it shows:
    exit code, stdout and stderr."""
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data))
    argv = [str(SCRIPT), *stage, "--plan", str(path), "--out", str(tmp_path / "out"),
            "--result", str(tmp_path / "result.json")]
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.object(sys, "argv", argv), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = load_script().main()
        except SystemExit as exc:
            code = exc.code
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


@pytest.fixture
def base(tmp_path) -> Path:
    tiny = json.loads(json.dumps(TINY))
    tiny["model"]["device"] = "cpu"
    return write_scenario(tmp_path, tiny, "base.yaml")


def test_the_whole_comparison_on_a_tiny_plan(tmp_path, base):
    done = bench(tmp_path, plan(base), "all")
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    tune = yaml.safe_load((tmp_path / "out" / "tune" / "sweep.yaml").read_text())
    assert tune["set"]["task.evaluate_on"] == "tuning" and len(tune["points"]) == 3
    chosen = result["chosen"]
    assert len(result["tuning"]) == 3
    for method, row in chosen.items():
        tuned = [t for t in result["tuning"] if t["method"] == method]
        assert max(t["final_smoothed_tuning_accuracy"] for t in tuned) == next(
            t["final_smoothed_tuning_accuracy"] for t in tuned if all(t[k] == v for k, v in row.items()))
    report = yaml.safe_load((tmp_path / "out" / "report" / "sweep.yaml").read_text())
    assert report["set"]["task.evaluate_on"] == "test" and report["grid"] == {"seed": [0, 1]}
    # the target: the reference's mean initial accuracy + 0.9 of its mean gain, and every run carries it
    decomfl = [json.loads((run.parent / "summary.json").read_text())
               for run in (tmp_path / "out" / "report").glob("p*/scenario.yaml")
               if yaml.safe_load(run.read_text())["algorithm"]["name"] == "decomfl"]
    initial = sum(s["initial_accuracy"] for s in decomfl) / 2
    final = sum(s["final_smoothed_accuracy"] for s in decomfl) / 2
    assert len(decomfl) == 2 and result["target"]["accuracy"] == pytest.approx(initial + 0.9 * (final - initial))
    for run in (tmp_path / "out" / "report").glob("p*/summary.json"):
        summary = json.loads(run.read_text())
        assert summary["target_accuracy"] == result["target"]["accuracy"] and summary["target_smoothing"] == 2
    ratios = result["ratios"]["decomfl/fedspzo"]["client_flops_to_target"]["per_seed"]
    assert len(ratios) == 2 and all(len(r) == 1 for r in ratios)
    gaps = result["at_equal_compute"]["decomfl/fedspzo"]["per_seed"]
    assert len(gaps) == 2
    for gap in gaps:
        assert gap["budget_flops"] > 0 and all(0.0 <= gap[k] <= 1.0 for k in ("theirs", "ours"))
        assert gap["ours_minus_theirs"] == pytest.approx(gap["ours"] - gap["theirs"])
    jetsons = result["device_classes"]["jetsons"]
    assert set(jetsons["methods"]) == {"decomfl", "fedspzo"}
    reached = {m: f["time_to_target_s"] for m, f in jetsons["methods"].items() if None not in f["time_to_target_s"]}
    assert jetsons["least_time_to_target_s"] == (min(reached, key=lambda m: sum(reached[m])) if reached else None)
    assert result["auto_picks"]["jetsons"]["device"] == "jetson-orin-nano" and result["auto_picks"]["jetsons"]["p2"] >= 1
    assert (tmp_path / "out" / "plots" / "accuracy_vs_flops.png").is_file()
    orphan = tmp_path / "out" / "classes" / "p999-0badc0de"  # a replay of a run no longer reported
    orphan.mkdir()
    (orphan / "summary.json").write_text("{}")
    again = bench(tmp_path, plan(base), "all")
    assert not orphan.exists()
    assert again.returncode == 0 and "0 ran" in again.stdout and json.loads(
        (tmp_path / "result.json").read_text())["methods"] == result["methods"]
    # a tuning grid cut short (here: one run's summary gone) chooses nothing: one line, exit 2
    next((tmp_path / "out" / "tune").glob("p*/summary.json")).unlink()
    cut = bench(tmp_path, plan(base), "report")
    assert cut.returncode == 2 and "tune stage unfinished: 1 of 3" in cut.stderr, cut.stderr


@pytest.mark.parametrize("edit, named", [
    (lambda p: p["methods"].update(fedfoo=[{}]), "fedfoo"),
    (lambda p: p["methods"]["fedspzo"].append({"split": 9, "p1": 1, "p2": 2}), "split 9"),
    (lambda p: p["methods"]["decomfl"].append({"perturbationz": 2}), "perturbationz"),
    (lambda p: p["regime"].update(base="missing.yaml"), "missing.yaml"),
    (lambda p: p.update(seeds=3), "seeds"),
])
def test_a_bad_plan_is_one_line_exit_2_before_any_run(tmp_path, base, edit, named):
    data = plan(base)
    edit(data)
    done = bench(tmp_path, data, "tune")
    assert done.returncode == 2, done.stderr
    assert named in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not list((tmp_path / "out").glob("tune/p*"))


def test_accuracy_at_equal_compute_reads_the_smoothed_curve_within_the_budget(tmp_path):
    paper = load_script()

    def run(name: str, flops_per_round: float, accuracies: dict[int, float]) -> tuple[Path, dict]:
        folder = tmp_path / name
        folder.mkdir()
        rows = ["round,sim_time_s,accuracy,bytes_up,bytes_down,energy_j,client_flops"] + [
            f"{r},{r},{accuracies.get(r, '')},0,0,0,{0 if r == 0 else flops_per_round}" for r in range(7)]
        (folder / "rounds.csv").write_text("\n".join(rows) + "\n")
        return folder, {"target_smoothing": 2, "totals": {"client_flops": 6 * flops_per_round}}

    cheap = run("cheap", 1.0, {0: 0.5, 2: 0.6, 4: 0.7, 6: 0.8})  # 6 FLOPs in all
    dear = run("dear", 2.0, {0: 0.5, 2: 0.9, 4: 0.5, 6: 0.5})  # 12 FLOPs in all: 6 by round 3
    assert paper.smoothed_within(cheap[0], 6.0, 2) == pytest.approx(0.75)  # mean of rounds 4 and 6
    assert paper.smoothed_within(dear[0], 6.0, 2) == pytest.approx(0.70)  # rounds 0 and 2; round 4 is past it
    assert paper.smoothed_within(dear[0], 1.0, 2) is None  # one evaluation: no full window yet
    gap = paper.equal_compute(dear, cheap)
    assert gap["budget_flops"] == 6.0 and gap["ours_minus_theirs"] == pytest.approx(0.05)
