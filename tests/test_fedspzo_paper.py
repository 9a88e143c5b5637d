"""bench/fedspzo_paper.py end to end on a tiny plan: tuning on the tuning split, each method's best
reported over seeds, the target fixed from the reference method alone, paired ratios, per-class
replays; resuming skips finished runs; bad plans fail with one line before any run. Version 2
(issue 33) on a tiny plan too: scores at a client-FLOPs budget, picks by label, gzipped report
traces, runs from two kinds of machine refused; its analysis (bench/fedspzo_ratio.py) on run
folders written by hand: the reading at the budget, the ratio curve with bounds and a t-interval."""
from __future__ import annotations

import contextlib
import gzip
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import yaml

from edgefed.sweep import run_sweep
from tests.conftest import REPO, TINY, bench_script, write_scenario

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
            code = bench_script("fedspzo_paper").main()
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
    paper = bench_script("fedspzo_paper")

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


# --- plan version 2 (issue 33): a client-FLOPs budget, labels, ratio curves -------------------------

B = 1.6e9  # tiny-bert, 4 clients of 8: 0.6-1.7 GFLOP a round per configuration below


def plan_v2(base: Path) -> dict:
    return {
        "version": 2,
        "regime": {"base": str(base), "set": {"algorithm.trainable": "all", "algorithm.local_steps": 1}},
        "budget": {"client_flops": B, "evaluations": 1, "slack": 0.25},
        "lr_grid": [1.0e-3],
        "methods": {
            "fedspzo": {"configs": [{"split": 1, "p1": 1, "p2": 2, "rounds": 3, "eval_every": 1}]},
            "decomfl": {"configs": [{"perturbations": 1, "rounds": 3, "eval_every": 1},
                                    {"perturbations": 2, "rounds": 3, "eval_every": 1}],
                        "also_next_best_if": {"perturbations": 2}},
            # the control's shape: DeComFL under its own label, with a trainable set of its own
            "decomfl-top": {"method": "decomfl",
                            "configs": [{"perturbations": 8, "trainable": "norm+head", "rounds": 3, "eval_every": 1}]},
        },
        "tuning": {"seeds": [0], "tuning_split": 40, "smoothing": 2, "levels": [0.5]},
        "report": {"seeds": [0, 1], "client_flops": 2e9, "evaluations": 1, "smoothing": 2},
        "target": {"reference": "decomfl", "fraction_of_gain": 0.9, "curve": [0.5, 1.0]},
        "device_classes": {"jetsons": [{"device": "jetson-orin-nano", "count": 8}]},
    }


def read_at(run: Path, budget: float, window: int) -> float:
    """By hand: the moving mean of ``window`` evaluations at the last one within ``budget``."""
    spent, accs = 0.0, []
    for line in (run / "rounds.csv").read_text().splitlines()[1:]:
        cells = line.split(",")
        spent += float(cells[10])
        if cells[2] and spent <= budget:
            accs.append(float(cells[2]))
    return sum(accs[-window:]) / window


def test_v2_budget_picks_labels_gzipped_traces_and_one_kind_of_machine(tmp_path, base):
    done = bench(tmp_path, plan_v2(base), "all")
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    result = json.loads((tmp_path / "result.json").read_text())
    # each configuration scored at its last evaluation within B; per label the best
    tuning = result["tuning"]
    assert len(tuning) == 4 and {t["label"] for t in tuning} == {"fedspzo", "decomfl", "decomfl-top"}
    for row in tuning:
        assert row["score_at_budget"] == pytest.approx(read_at(out / row["runs"][0], B, 2))
        assert all(f <= B for f in row["read_at_client_flops"]) and row["reused"] == [False]
    best = {label: max(t["score_at_budget"] for t in tuning if t["label"] == label)
            for label in plan_v2(base)["methods"]}
    assert {k: result["chosen"][k]["score_at_budget"] for k in best} == best
    chosen_p = result["chosen"]["decomfl"]["perturbations"]
    assert ("decomfl-next" in result["chosen"]) == (chosen_p == 2)  # the grid's edge: its next best too
    assert result["chosen"]["decomfl-top"]["trainable"] == "norm+head"
    # report: every pick over both seeds, rounds that spend the report budget, traces gzipped
    report = yaml.safe_load((out / "report" / "sweep.yaml").read_text())
    assert report["grid"] == {"seed": [0, 1]} and len(report["points"]) == len(result["chosen"])
    assert set(result["methods"]) == set(result["chosen"])
    for point in report["points"]:
        assert point["rounds.max"] % point["rounds.eval_every"] == 0
    for run in out.glob("report/p*"):
        assert not (run / "trace.jsonl").exists()
        lines = gzip.decompress((run / "trace.jsonl.gz").read_bytes()).decode().splitlines()
        assert json.loads(lines[0])["format"] and len(lines) == yaml.safe_load(
            (run / "scenario.yaml").read_text())["rounds"]["max"] + 2  # the header and round 0
    assert not (out / "classes" / "traces").exists()  # unpacked for the replays, then removed
    assert set(result["device_classes"]["jetsons"]["methods"]) == set(result["chosen"])
    # ratio curves: every other pick against FedSPZO, over the targets, the plan's one marked
    target = result["target"]
    for name in result["chosen"]:
        if name == "fedspzo":
            continue
        curve = result["ratio_curve"][f"{name}/fedspzo"]
        assert [p["fraction"] for p in curve["points"]] == [0.5, 0.9, 1.0]
        assert [p["marked"] for p in curve["points"]] == [False, True, False]
        for p in curve["points"]:
            assert p["target"] == pytest.approx(target["initial"] + p["fraction"] * target["mean_gain"])
            assert [s["seed"] for s in p["per_seed"]] == [0, 1] and p["exact"] + p["excluded"] == 2
        assert (out / "plots" / f"ratio_vs_fraction_{name}.png").is_file()
    assert result["machines"]["kinds"] == ["cpu"] and len(result["methods"]["fedspzo"]["machine"]) == 2
    assert result["learning_ran_on"]["report"]["host_seconds"] > 0
    assert sum(result["learning_ran_on"]["tune (new runs)"]["runs_by_device"].values()) == 4
    # runs added after the plan (posthoc/sweep.yaml: report points) join a post-hoc comparison whose
    # targets come from the reference's best smoothed accuracy instead of its last
    sweep = yaml.safe_load((out / "report" / "sweep.yaml").read_text())
    point = next(p for p in sweep["points"] if p["algorithm"]["name"] == "decomfl"
                 and p["algorithm"].get("trainable") != "norm+head")
    (out / "posthoc").mkdir()
    (out / "posthoc" / "sweep.yaml").write_text(yaml.safe_dump(
        {**sweep, "points": [{**point, "algorithm": {**point["algorithm"], "lr": 2e-3}}]}))
    run_sweep(out / "posthoc" / "sweep.yaml", out / "posthoc", workers=1)
    again = bench(tmp_path, plan_v2(base), "summary")
    assert again.returncode == 0, again.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    post = result["post_hoc"]
    assert list(post["runs"]) == ["decomfl-lr0.002"] and post["runs"]["decomfl-lr0.002"]["seeds"] == [0, 1]
    assert set(post["ratio_curve"]) == {f"{name}/fedspzo" for name in [*result["chosen"], "decomfl-lr0.002"]
                                        if name != "fedspzo"}
    assert post["target"]["mean_gain"] >= target["mean_gain"]  # a best is never below a last
    assert post["target"]["accuracy"] == pytest.approx(post["target"]["initial"] + 0.9 * post["target"]["mean_gain"])
    assert sum(result["learning_ran_on"]["post hoc"]["runs_by_device"].values()) == 2
    # docs/fedspzo_study.md: every finding read from this JSON, each pick and its marked target named
    repo = tmp_path / "repo"
    (repo / "bench" / "results").mkdir(parents=True)
    shutil.copy(tmp_path / "result.json", repo / "bench" / "results" / "fedspzo_paper_v2.json")
    docs = bench_script("write_docs")
    page = docs.study_md(repo)
    assert page.startswith("<!-- Generated by") and docs.number(target["accuracy"]) in page
    plan_says = result["ratio_curve"] if target["mean_gain"] > 0 else {}
    if not plan_says:
        assert "The plan's target rule gave no usable target" in page
    for prefix, curves in (("- **", plan_says), ("  - post hoc: **", post["ratio_curve"])):
        for pair, curve in curves.items():
            marked = next(p for p in curve["points"] if p["marked"])
            line = next(line for line in page.splitlines() if line.startswith(f"{prefix}{pair.split('/')[0]} ("))
            assert (docs.number(marked["geometric_mean"]) + "x") in line if "geometric_mean" in marked \
                else "no seed gave a ratio" in line
    assert docs.study_md(tmp_path / "nowhere") is None  # no JSON yet: the page is not written
    # the README's summary: the same findings between its markers, the rest of it untouched
    start, end = docs.STUDY_MARKERS
    (repo / "README.md").write_text(f"# Manual\n\nBefore.\n{start}\nold findings\n{end}\nAfter.\n")
    readme = docs.readme_with_study(repo)
    assert readme.startswith("# Manual\n\nBefore.\n") and readme.endswith(f"{end}\nAfter.\n")
    assert "old findings" not in readme and all(line in readme for line in docs.readme_findings(result))
    for pair in post["ratio_curve"]:  # the plan's rule gave no target here: the post-hoc one, each pick a row
        assert f"| {docs.pick_name(result, pair.split('/')[0])} |" in readme
    assert docs.readme_with_study(repo) == docs.readme_with_study(repo)
    # a comparison whose runs learned on a CPU and a GPU is refused: one line, exit 2
    prov = next(out.glob("report/p*/provenance.json"))
    data = json.loads(prov.read_text())
    prov.write_text(json.dumps({**data, "learning_device": "cuda:0 (NVIDIA H200)",
                                "machine": {**data["machine"], "gpu": "NVIDIA H200"}}))
    mixed = bench(tmp_path, plan_v2(base), "summary")
    assert mixed.returncode == 2 and len(mixed.stderr.strip().splitlines()) == 1, mixed.stderr
    assert "different kinds of machine" in mixed.stderr and "gpu NVIDIA H200" in mixed.stderr
    prov.write_text(json.dumps(data))
    # a budget the tuning runs did not spend is refused by name before any report run
    dear = plan_v2(base)
    dear["budget"]["client_flops"] = 1e12
    short = bench(tmp_path, dear, "report")
    assert short.returncode == 2 and "add rounds" in short.stderr, short.stderr
    # an earlier stage's runs of the same points (rounds and cadence aside) are read, not re-run
    again = plan_v2(base)
    again["tuning"]["reuse"] = str(out / "tune")
    again["methods"]["fedspzo"]["configs"][0]["rounds"] = 4
    (tmp_path / "second").mkdir()
    reused = bench(tmp_path / "second", again, "tune")
    assert reused.returncode == 0 and "4 of 4 tuning runs read from" in reused.stdout, reused.stdout


def write_run(folder: Path, flops: list[float], accuracies: dict[int, float], learned_on: str = "cpu") -> Path:
    """A run folder by hand: client FLOPs per round (round 0 spends none) and the evaluations."""
    folder.mkdir(parents=True)
    rows = ["round,sim_time_s,accuracy,bytes_up,bytes_down,energy_j,client_flops"] + [
        f"{r},{r},{accuracies.get(r, '')},0,0,0,{f}" for r, f in enumerate([0.0, *flops])]
    (folder / "rounds.csv").write_text("\n".join(rows) + "\n")
    (folder / "provenance.json").write_text(json.dumps({"learning_device": learned_on, "code": {"commit": "abc"},
                                                        "machine": {"cpu": "x", "gpu": None}}))
    return folder


def test_a_reading_at_the_budget_is_the_last_evaluation_within_it(tmp_path):
    bench_script("fedspzo_paper")
    import fedspzo_ratio as fr

    # 10 FLOPs a round, evaluated every 2 rounds: 20 FLOPs apart
    run = write_run(tmp_path / "a", [10.0] * 8, {0: 0.5, 2: 0.6, 4: 0.7, 6: 0.8, 8: 0.9})
    at = fr.at_budget(run, 60.0, 2, evaluations=3)  # an evaluation exactly at B counts
    assert (at["round"], at["client_flops"], at["smoothed"], at["ok"]) == (6, 60.0, pytest.approx(0.75), True)
    at = fr.at_budget(run, 59.0, 2, evaluations=2)  # round 6 is past it: round 4, and the mean of 2 and 4
    assert (at["round"], at["smoothed"], at["ok"]) == (4, pytest.approx(0.65), True)
    assert "more than budget/8" in fr.at_budget(run, 80.0, 2, evaluations=8)["why"]  # 20 apart, B/8 = 10
    assert fr.at_budget(run, 80.0, 2, evaluations=4)["ok"]  # 20 = B/4
    assert not fr.at_budget(run, 76.0, 2, evaluations=4)["ok"] and fr.at_budget(run, 76.0, 2, 4, slack=0.06)["ok"]
    assert "add rounds" in fr.at_budget(run, 90.0, 2, evaluations=1)["why"]  # it spent 80
    assert "fewer than 2" in fr.at_budget(run, 15.0, 2, evaluations=1)["why"]  # round 0 alone within it


def test_the_ratio_curve_over_targets_with_bounds_and_a_t_interval(tmp_path, monkeypatch):
    bench_script("fedspzo_paper")
    import fedspzo_ratio as fr

    acc = {r: 0.5 + 0.05 * r for r in range(0, 9, 2)}  # rounds 0 .. 8; smoothed over 2: 0.55 .. 0.85
    ours = {s: write_run(tmp_path / f"ours{s}", [1.0 * (s + 1)] * 8, acc) for s in range(3)}
    # theirs: 2 and 3 x the cost of ours on seeds 0 and 1; seed 2 learns half as far (smoothed .525 .. .675)
    theirs = {0: write_run(tmp_path / "t0", [2.0] * 8, acc), 1: write_run(tmp_path / "t1", [6.0] * 8, acc),
              2: write_run(tmp_path / "t2", [4.0] * 8, {r: 0.5 + 0.025 * r for r in range(0, 9, 2)})}
    curve = fr.ratio_curve(theirs, ours, initial=0.5, gain=0.3, fractions=[0.4, 1.0], marked=0.9, budget=1e9,
                           window=2, confidence=0.95)
    low, marked, high = curve["points"]
    assert [p["fraction"] for p in curve["points"]] == [0.4, 0.9, 1.0] and marked["marked"] and not low["marked"]
    # target 0.62: ours at round 4 (4, 8, 12 FLOPs), theirs at round 4 (8, 24) and round 6 (24)
    assert low["target"] == pytest.approx(0.62)
    assert [s["ratio"]["value"] for s in low["per_seed"]] == pytest.approx([2.0, 3.0, 2.0])
    assert (low["exact"], low["excluded"], low["min"], low["max"]) == (3, 0, 2.0, 3.0)
    logs = np.log([2.0, 3.0, 2.0])
    half = 4.303 * logs.std(ddof=1) / np.sqrt(3)  # t_0.975 on 2 degrees of freedom
    assert low["t_interval"] == pytest.approx([np.exp(logs.mean() - half), np.exp(logs.mean() + half)], rel=1e-3)
    assert low["geometric_mean"] == pytest.approx(np.exp(logs.mean()))
    # target 0.8: theirs seed 2 ends at 0.675, a bound (it spent 32 by round 8, ours crossed at 24),
    # kept and left out of the interval
    bound = high["per_seed"][2]
    assert bound["ratio"] == {"at_least": pytest.approx(32.0 / 24.0)}
    assert (high["exact"], high["excluded"], high["excluded_as"]["at_least"]) == (2, 1, 1)
    assert bound["theirs"]["final_smoothed"] == pytest.approx(0.675) and not bound["theirs"]["ends_at_or_above"]
    assert bound["ours"]["ends_at_or_above"] and bound["ours"]["flops_to_target"] == 24.0
    assert high["min"] == 2.0 and high["max"] == 3.0 and "t_interval" in high
    # seed-averaged curves: theirs' mean ends at (0.85 + 0.85 + 0.675) / 3 < 0.8, ours' crosses at round 8
    assert high["seed_mean"]["ours"]["flops_to_target"] == pytest.approx(16.0)
    assert high["seed_mean"]["ratio"] == {"at_least": pytest.approx(32.0 / 16.0)}
    # ... and 0.62 at round 4 on both: (8 + 24 + 16) / 3 against (4 + 8 + 12) / 3
    assert low["seed_mean"]["ratio"] == {"value": pytest.approx(2.0)}
    # within a budget of 7 FLOPs neither run of seed 1 crosses 0.8
    tight = fr.ratio_curve(theirs, ours, 0.5, 0.3, [1.0], 1.0, budget=7.0, window=2, confidence=0.95)
    assert tight["points"][0]["per_seed"][1]["ratio"] == {"neither_reached": True}
    assert tight["points"][0]["excluded_as"]["neither_reached"] == 3 and "t_interval" not in tight["points"][0]
    # the t quantile from the table when scipy is missing, and the table agrees with scipy
    with monkeypatch.context() as patched:
        patched.setitem(sys.modules, "scipy.stats", None)
        assert fr.t_quantile(0.95, 2) == 4.303 and fr.t_quantile(0.95, 30) == 2.042
        with pytest.raises(ValueError):
            fr.t_quantile(0.9, 2)
    pytest.importorskip("scipy.stats")
    assert [round(fr.t_quantile(0.95, df), 3) for df in range(1, 31)] == list(fr.T975)


def test_machine_kinds_and_gzipped_traces(tmp_path):
    bench_script("fedspzo_paper")
    import fedspzo_ratio as fr

    cpu = write_run(tmp_path / "cpu", [1.0], {0: 0.5, 1: 0.6})
    h200 = write_run(tmp_path / "h200", [1.0], {0: 0.5, 1: 0.6}, learned_on="cuda:0 (NVIDIA H200)")
    a100 = write_run(tmp_path / "a100", [1.0], {0: 0.5, 1: 0.6}, learned_on="cuda:0 (NVIDIA A100)")
    assert fr.machine(cpu)["kind"] == "cpu" and fr.machine(h200)["kind"] == "gpu cuda:0 (NVIDIA H200)"
    assert fr.machine(cpu)["commit"] == "abc"
    assert fr.mixed_kinds({"a": fr.machine(cpu), "b": fr.machine(cpu)}) is None
    assert fr.mixed_kinds({"a": fr.machine(h200), "b": fr.machine(a100)}).count("1 on gpu") == 2  # two GPU models
    assert "1 on cpu (a)" in fr.mixed_kinds({"a": fr.machine(cpu), "b": fr.machine(h200)})
    (cpu / "trace.jsonl").write_text('{"format": 1}\n{"round": 0}\n')
    packed = fr.gzip_trace(cpu)
    assert not (cpu / "trace.jsonl").exists()
    assert gzip.decompress(packed.read_bytes()) == b'{"format": 1}\n{"round": 0}\n'
    first = packed.read_bytes()
    (cpu / "trace.jsonl").write_text('{"format": 1}\n{"round": 0}\n')
    assert fr.gzip_trace(cpu).read_bytes() == first  # the same bytes for the same trace
    assert fr.unpacked_trace(cpu, tmp_path / "unpacked").read_text() == '{"format": 1}\n{"round": 0}\n'


@pytest.mark.parametrize("edit, named", [
    (lambda p: p["target"].update(reference="decomfl-p9"), "no label 'decomfl-p9'"),
    (lambda p: p["methods"]["decomfl"].update(also_next_best_if={"pertubations": 2}), "pertubations"),
    (lambda p: p["methods"]["decomfl-top"]["configs"][0].update(trainable="lora-last:x"), "trainable"),
    (lambda p: p["methods"]["decomfl"]["configs"][0].pop("rounds"), "rounds"),
])
def test_a_bad_v2_plan_is_one_line_exit_2_before_any_run(tmp_path, base, edit, named):
    data = plan_v2(base)
    edit(data)
    done = bench(tmp_path, data, "tune")
    assert done.returncode == 2 and named in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not list((tmp_path / "out").glob("tune/p*"))


def test_picks_per_label_and_the_next_best_at_the_grids_edge(base):
    paper = bench_script("fedspzo_paper")
    plan = paper.PlanV2.model_validate(plan_v2(base))

    def row(label, config, lr, score):
        return {"label": label, "_config": config, "lr": lr, "score_at_budget": score,
                "_algorithm": {"name": label, "config": config, "lr": lr}, "_runs": []}

    rows = [row("fedspzo", 0, 1e-3, 0.6), row("fedspzo", 0, 2e-3, 0.6),  # a tie: the smaller lr
            row("decomfl", 0, 1e-3, 0.62), row("decomfl", 1, 1e-3, 0.65), row("decomfl", 1, 2e-3, 0.64),
            row("decomfl-top", 0, 1e-3, 0.5)]
    picks = paper.choose_v2(plan, rows)
    assert list(picks) == ["decomfl", "decomfl-next", "fedspzo", "decomfl-top"]  # the reference first
    assert picks["decomfl"].config == {"lr": 1e-3, "perturbations": 2}
    assert picks["decomfl-next"].config == {"lr": 1e-3, "perturbations": 1}  # the best of the other P
    assert picks["fedspzo"].config["lr"] == 1e-3 and picks["decomfl-top"].config["trainable"] == "norm+head"
    rows[2]["score_at_budget"] = 0.7  # P = 1 best: not the edge, no next best
    assert list(paper.choose_v2(plan, rows)) == ["decomfl", "fedspzo", "decomfl-top"]


def test_the_committed_v2_plan_reads_and_keeps_its_rules():
    paper = bench_script("fedspzo_paper")
    plan = paper.load_plan(REPO / "bench" / "fedspzo_paper_v2.yaml")
    assert isinstance(plan, paper.PlanV2) and plan.lr_grid == [1e-3, 2e-3, 4e-3]
    assert plan.budget.client_flops == 3.3e13 and plan.budget.evaluations == 8
    assert {plan.target.reference, paper.HEADLINE} <= set(plan.methods)
    control = plan.methods["decomfl-block2"]
    assert control.method == "decomfl" and {c.overrides["trainable"] for c in control.configs} == {"lora-last:2+head"}
    assert sorted(c.overrides["perturbations"] for c in plan.methods["decomfl"].configs) == [1, 2, 4, 8]
    for arm in plan.methods.values():
        for c in arm.configs:
            assert c.rounds % c.eval_every == 0


@pytest.mark.parametrize("point, says", [
    ({"t_interval": [1.2, 3.0]}, "FedSPZO needed fewer"),
    ({"t_interval": [0.3, 0.9]}, "FedSPZO needed more"),
    ({"t_interval": [0.8, 1.3]}, "contains 1"),
    ({"geometric_mean": 2.0}, "too few seeds"),
])
def test_the_study_page_says_what_the_interval_shows(point, says):
    assert says in bench_script("write_docs").verdict(point)
