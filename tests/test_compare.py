"""``edgefed compare`` end to end on the shipped tiny comparison (tiny-bert, two arms, pruning and a
censored seed), and each protocol rule the orchestration owns: tuning at the full budget,
pre-registration, reruns, resumption after a kill, the Ray backend and bad input.

One comparison runs once for the module (about 15 s on 2 cores); tests that change it work on a
copy. The statistics themselves are tested by hand-computed cases in test_protocol.py."""
import copy
import html
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import edgefed
from edgefed.budget import nominal_cost
from edgefed.comparing import FINAL_WINDOW, PRUNING_WINDOW, Stages, compare, scored
from edgefed.comparison import load_comparison
from edgefed.outcomes import summary_markdown
from edgefed.report import comparison_html
from edgefed.protocol import rank, read_curve, reading
from edgefed.scenario import ScenarioError
from tests.conftest import REPO
from tests.helpers import edgefed as cli

pytestmark = pytest.mark.xdist_group("ray")  # the Ray test shares the module's comparison

TINY = REPO / "scenarios" / "compare" / "tiny.yaml"


def tiny() -> dict:
    """The shipped comparison as a dict (its base made absolute, so a copy runs from anywhere)."""
    data = yaml.safe_load(TINY.read_text())
    data["base"] = str((TINY.parent / data["base"]).resolve())
    return data


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "tiny"
    result = edgefed.compare(TINY, out=out)
    return out, result


def copy_of(compared, tmp_path) -> Path:
    out = tmp_path / "tiny"
    shutil.copytree(compared[0], out)
    return out


def figures(out: Path) -> str:
    return (out / "compare.json").read_text()


def test_the_tiny_comparison_writes_its_figures_summary_and_page(compared):
    out, result = compared
    assert json.loads(figures(out)) == result
    tuning = result["tuning"]
    assert len(tuning["decomfl"]["rows"]) == 4 and len(tuning["decomfl"]["survivors"]) == 2  # pruning happened
    assert sum(row["survived"] for row in tuning["decomfl"]["rows"]) == 2
    assert all("score" not in row for row in tuning["decomfl"]["rows"] if not row["survived"])
    assert set(result["picks"]) == {"decomfl", "fedavg"}
    assert all(p["grid_edges"] == {} for p in result["picks"].values()) and result["caveats"] == []  # 2-value grids
    summary = (out / "summary.md").read_text()
    assert summary.splitlines()[2] == f"- {result['sentences'][0]}"
    assert "95% t-interval" in result["sentences"][0] and "over 3 seeds" in result["sentences"][0]
    page = (out / "report.html").read_text()
    assert result["sentences"][0] in page and "compare-accuracy" in page


def test_a_pick_at_its_grids_edge_is_said_under_the_sentences(compared):
    """The caveat compare.json carries (``protocol.grid_edges``) follows the sentences in summary.md."""
    result = {**compared[1], "caveats": ["fedavg's pick is at the lowest lr (0.001) of its grid: ..."]}
    lines = summary_markdown(result).splitlines()
    assert lines[2:2 + len(result["sentences"]) + 2] == [*(f"- {s}" for s in result["sentences"]), "",
                                                          result["caveats"][0]]
    assert f'<p class="note">{html.escape(result["caveats"][0])}</p>' in comparison_html(result)


def test_readings_are_the_runs_own_curves_at_equal_cost(compared):
    """Rule 1 and 5: each paired difference is the two runs' smoothed test accuracy at their last
    evaluation within the budget, recomputed here from their rounds.csv."""
    out, result = compared
    spec = load_comparison(TINY).spec
    primary = next(e for e in result["checkpoints"]["registered"] if e["primary"])
    arm = primary["arms"]["fedavg"]
    for seed, difference in zip(arm["seeds"], arm["differences"]):
        at = {label: reading(read_curve(out / "runs" / label / f"c{result['picks'][label]['config']:02d}-s{seed}",
                                        "client_flops", spec.budget, spec.evaluations), spec.budget, spec.smoothing)
              for label in ("fedavg", "decomfl")}
        assert difference == pytest.approx(at["fedavg"].value - at["decomfl"].value, abs=1e-12)
        assert at["fedavg"].nominal == spec.budget and at["fedavg"].cost >= spec.budget


def test_censored_seeds_are_kept(compared):
    """Rule 6: a run that never reached the target is kept at the budget, never dropped."""
    _, result = compared
    target = result["targets"][0]
    runs = [r for by_seed in target["runs"].values() for r in by_seed.values()]
    assert len(runs) == 2 * 3
    censored = [r for r in runs if r["censored"]]
    assert censored and all(r["bound"] == result["budget"] and r["cost"] is None for r in censored)
    summary = target["ratios"]["fedavg"]["summary"]
    assert summary["pairs"] == 3 and sum(summary["signs"].values()) == 3


def test_paired_runs_start_from_the_same_model(compared):
    """Rule 4: report seed s gives every arm the same initial model and held-out set."""
    _, result = compared
    assert result["starts"]["unpaired_seeds"] == []
    assert all(len(set(by_arm.values())) == 1 for by_arm in result["starts"]["by_seed"].values())


def test_every_run_records_the_registered_plan(compared):
    out, _ = compared
    plan = json.loads((out / "plan.json").read_text())
    runs = sorted((out / "runs").glob("*/*"))
    assert len(runs) == (4 + 1) + (2 + 1) * 2 + 2 * 3  # pruning, the survivors on the other tuning seeds, report
    for run in runs:
        assert json.loads((run / "provenance.json").read_text())["comparison"]["plan_sha256"] == plan["plan_sha256"]


def test_pruned_configurations_stopped_at_a_third_of_the_budget(compared):
    out, result = compared
    spec = load_comparison(TINY).spec
    for row in result["tuning"]["decomfl"]["rows"]:
        run = out / "runs" / "decomfl" / f"c{row['config']:02d}-s{spec.tuning.seeds[0]}"
        summary = json.loads((run / "summary.json").read_text())
        curve = read_curve(run, spec.cost, spec.budget, spec.evaluations)
        if row["survived"]:
            assert summary["status"] == "done" and curve[-1].nominal == spec.budget
        else:
            assert summary["status"] == "paused" and curve[-1].nominal == spec.budget / 3
            assert not (run / "checkpoint.safetensors").exists()


def fake_run(folder: Path, accuracies: list[float], budget: float, evaluations: int, status: str = "done") -> Path:
    """A run directory whose evaluations fall on each multiple of budget / evaluations."""
    folder.mkdir(parents=True)
    step = budget / evaluations
    rows = ["round,sim_time_s,accuracy,loss,selected,aggregated,dropped,bytes_up,bytes_down,energy_j,client_flops,"
            "host_seconds,tuning_accuracy"]
    for k, acc in enumerate(accuracies):
        rows.append(f"{k},{k},{acc},1.0,1,1,0,10,10,1.0,{0.0 if k == 0 else step},0.0,{acc}")
    (folder / "rounds.csv").write_text("\n".join(rows) + "\n")
    (folder / "clients.csv").write_text("round,peak_memory_bytes\n1,100\n")
    totals = {"client_flops": budget, "energy_j": 1.0, "sim_time_s": 1.0, "bytes_up": 10, "bytes_down": 10}
    (folder / "summary.json").write_text(json.dumps({"status": status, "totals": totals}))
    return folder


def test_a_configuration_cannot_win_on_a_shorter_budget(tmp_path):
    """Rule 2 and 3: a configuration that leads at a third of the budget and then collapses loses
    to one that holds up to the full budget, and a run stopped early has no final score at all."""
    spec = load_comparison(TINY).spec
    comparison = load_comparison(TINY)
    stages = Stages(comparison, tmp_path, plan={"plan_sha256": "x"})
    budget, n = spec.budget, spec.evaluations
    early = [0.5, 0.62, 0.66, 0.7, 0.6, 0.5, 0.5]  # best at a third, collapsed by the end
    steady = [0.5, 0.55, 0.57, 0.6, 0.62, 0.63, 0.64]
    runs = {}
    for config, accs in enumerate([early, steady]):
        for seed in spec.tuning.seeds:
            run = comparison.run("decomfl", config, seed)
            fake_run(tmp_path / run.folder, accs, budget, n)
            runs.setdefault(config, []).append(run)
    pruning = [scored(stages, runs[c][:1], PRUNING_WINDOW) for c in (0, 1)]
    assert rank(pruning)[0].index == 0  # it would win at a third of the budget
    final = [scored(stages, runs[c], FINAL_WINDOW) for c in (0, 1)]
    assert rank(final)[0].index == 1  # and loses where the pick is made
    short = comparison.run("decomfl", 2, spec.tuning.seeds[0])
    fake_run(tmp_path / short.folder, early[: n // 3 + 1], budget, n, status="paused")
    assert scored(stages, [short], FINAL_WINDOW).score is None


def test_a_rerun_skips_every_finished_run(compared, tmp_path):
    out = copy_of(compared, tmp_path)
    before = figures(out)
    ran = []
    compare(load_comparison(TINY), out, on_run=lambda stage, run, result: ran.append(run.folder))
    assert ran == [] and figures(out) == before


@pytest.mark.parametrize("change, named", [
    (lambda d: d.update(budget=7.0e9), "budget (was 6000000000.0, now 7000000000.0)"),
    (lambda d: d["arms"]["decomfl"]["grid"].update(lr=[0.001, 0.008]), "arms.decomfl.grid.lr"),
    (lambda d: d.update(seeds=[0, 1, 3]), "seeds: the registered 2 cannot be dropped"),
    (lambda d: d["set"].update({"model.max_length": 48}), "set.model.max_length"),
])
def test_a_changed_plan_is_refused(compared, tmp_path, change, named):
    """Rule 8: a rerun whose comparison differs from its registered plan is refused by name."""
    out = copy_of(compared, tmp_path)
    data = tiny()
    change(data)
    with pytest.raises(ScenarioError, match="plan.json") as caught:
        edgefed.compare(data, out=out)
    assert named in str(caught.value) and "\n" not in str(caught.value)


def test_added_seeds_are_flagged_after_the_registered_result(compared, tmp_path):
    """Two new runs (one per arm), each a plain line on stderr when it is not a terminal; the
    registered seeds' result comes first, unchanged."""
    out = copy_of(compared, tmp_path)
    data = tiny()
    data["seeds"] = [0, 1, 2, 4]
    path = tmp_path / "more-seeds.yaml"
    path.write_text(yaml.safe_dump(data))
    printed = cli("compare", path, "--out", out)
    assert printed.returncode == 0, printed.stderr
    assert sorted(printed.stderr.splitlines()) == [
        line for line in sorted(printed.stderr.splitlines()) if line.startswith("report: runs/")]
    assert len(printed.stderr.splitlines()) == 2 and all("-s4 done" in line for line in printed.stderr.splitlines())
    result = json.loads(figures(out))
    assert printed.stdout.splitlines()[0] == result["sentences"][0]
    assert result["seeds"] == {"registered": [0, 1, 2], "added": [4]}
    registered = json.loads(figures(compared[0]))
    assert result["checkpoints"]["registered"] == registered["checkpoints"]["registered"]
    assert result["sentences"][0] == registered["sentences"][0]
    assert result["sentences"][1].endswith("(with the seeds added after registration: [4]).")
    assert "over 4 seeds" in result["sentences"][1]


def test_runs_of_another_code_version_are_refused_unless_listed(compared, tmp_path, monkeypatch):
    out = copy_of(compared, tmp_path)
    monkeypatch.setenv("EDGEFED_SOURCE_COMMIT", "0123456789abcdef")
    with pytest.raises(ScenarioError, match="code_versions: this code is 0123456789abcdef"):
        edgefed.compare(TINY, out=out)
    shutil.rmtree(out / "runs" / "fedavg" / "c00-s2")  # one run made again at the other version
    data = tiny()
    data["code_versions"] = ["0123456789abcdef"]
    result = edgefed.compare(data, out=out)
    assert "0123456789abcdef" in result["code_versions"] and len(result["code_versions"]) == 2
    assert result["checkpoints"] == json.loads(figures(compared[0]))["checkpoints"]


def test_runs_on_two_kinds_of_device_are_refused(compared, tmp_path):
    out = copy_of(compared, tmp_path)
    record = out / "runs" / "fedavg" / "c00-s1" / "provenance.json"
    data = json.loads(record.read_text())
    record.write_text(json.dumps({**data, "learning_device": "cuda:0 (NVIDIA H100 80GB HBM3)"}))
    with pytest.raises(ScenarioError, match="different kinds of device"):
        edgefed.compare(TINY, out=out)


def without_report_runs(compared, tmp_path) -> Path:
    """A copy of the module's comparison whose report stage has run for every seed but the last, one
    run per pick still to make (the stage's other runs are the same code with another seed)."""
    out = copy_of(compared, tmp_path)
    for label, pick in compared[1]["picks"].items():
        for seed in compared[1]["seeds"]["registered"][-1:]:
            shutil.rmtree(out / "runs" / label / f"c{pick['config']:02d}-s{seed}")
    (out / "compare.json").unlink()
    return out


def test_a_killed_comparison_resumes_to_the_same_figures(compared, tmp_path):
    """kill -9 in the middle of the report stage (a run cut mid-way, its checkpoint left); the
    rerun continues it and ends with the uninterrupted comparison's compare.json, byte for byte."""
    out = without_report_runs(compared, tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "edgefed", "compare", str(TINY), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    deadline = time.monotonic() + 300
    while not list((out / "runs").glob("*/*/checkpoint.safetensors")) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "compare.json").exists()
    edgefed.compare(TINY, out=out)
    assert figures(out) == figures(compared[0])


def test_the_ray_backend_gives_the_same_figures(compared, tmp_path, local_ray):
    """The report stage's runs made again as Ray tasks equal the local ones, so the figures do too."""
    out = without_report_runs(compared, tmp_path)
    edgefed.compare(TINY, out=out, backend="ray", workers=2)
    assert figures(out) == figures(compared[0])


def test_plan_prints_the_stages_and_runs_nothing(tmp_path):
    result = cli("compare", TINY, "--plan", "--out", tmp_path / "none")
    assert result.returncode == 0, result.stderr
    assert "1. pruning" in result.stdout and "3. report" in result.stdout and "total:" in result.stdout
    assert not (tmp_path / "none").exists()


def mutate(path: str, value):
    def apply(data: dict):
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node[key]
        if value is KeyError:
            del node[last]
        else:
            node[last] = value
    return apply


@pytest.mark.parametrize("change, message", [
    (mutate("bugdet", 1.0), "bugdet: unknown key"),
    (mutate("budget", "lots"), "budget: Input should be a valid number"),
    (mutate("budget", -1.0), "budget: Input should be greater than 0"),
    (mutate("cost", "watts"), "cost: Input should be"),
    (mutate("seeds", [0, 1]), "seeds: List should have at least 3 items"),
    (mutate("seeds", [0, 1, 1]), "seeds: listed twice: 1"),
    (mutate("tuning.seeds", [10, 2]), "tuning.seeds: 2 is also a report seed"),
    (mutate("reference", "fedzo"), "reference: no arm 'fedzo'"),
    (mutate("arms.fedavg.name", "sgd"), "arms.fedavg.name: unknown method 'sgd'"),
    (mutate("arms.fedavg.optimiser", "adam"), "arms.fedavg (configuration 0): algorithm.optimiser: unknown key"),
    (mutate("arms.decomfl.grid", {"lr": []}), "arms.decomfl.grid: lr: no values"),
    (mutate("arms.decomfl.grid", {"lr": ["fast"]}), "arms.decomfl (configuration 0): algorithm.lr"),
    (mutate("set", {"rounds.max": 3}), "set: rounds.max: set by the protocol"),
    (mutate("set", {"algorithm.pool_size": 3}), "set.algorithm.pool_size: no arm's method takes it"),
    (mutate("evaluations", 10), "evaluations: 10 is not a multiple of 3"),
    (mutate("checkpoints", [0.5]), "checkpoints: the last checkpoint is the full budget"),
    (mutate("checkpoints", [0.3, 1.0]), "checkpoints: 0.3 of 6 evaluations is not a whole evaluation"),
    (mutate("targets", [0.2]), "targets: target 0.2000 is at or below seed 0's starting accuracy"),
    (mutate("base", "missing.yaml"), "base: file not found"),
    (mutate("arms", KeyError), "arms: missing required field"),
    (lambda data: data["set"].__setitem__("loop", data["set"]), "invalid YAML: alias *id001 refers to a node that contains it"),
])
def test_bad_input_gives_one_line_and_exit_2(tmp_path, change, message):
    data = tiny()
    change(data)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    result = cli("compare", path, "--out", tmp_path / "out")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"edgefed: error: {path}") and message in lines[0], lines
    assert not (tmp_path / "out" / "runs").exists()


def test_a_file_that_is_not_a_mapping_or_yaml_is_refused(tmp_path):
    for text, message in (("- a\n- b\n", "expected a mapping"), ("name: [\n", "invalid YAML")):
        path = tmp_path / "c.yaml"
        path.write_text(text)
        result = cli("compare", path)
        assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_budget_rule_evaluates_at_each_step_of_the_cost(compared):
    """Rule 1 in the runner: a run evaluates exactly when its cumulative cost passes a new multiple
    of budget / evaluations, at every such multiple a round reaches, and stops at the budget."""
    out, result = compared
    spec = load_comparison(TINY).spec
    run = out / "runs" / "fedavg" / "c00-s0"
    spent, last, evaluated = 0.0, 0, []
    for row in (run / "rounds.csv").read_text().splitlines()[1:]:
        cells = dict(zip((run / "rounds.csv").read_text().splitlines()[0].split(","), row.split(",")))
        spent += float(cells["client_flops"])
        slot = round(nominal_cost(spent, spec.budget, spec.evaluations) / (spec.budget / spec.evaluations))
        assert (cells["accuracy"] != "") == (cells["round"] == "0" or slot > last)
        last = max(last, slot)
    assert last == spec.evaluations and spent >= spec.budget


def test_comparison_copy_is_independent():
    """The dict API leaves its argument unchanged."""
    data = tiny()
    before = copy.deepcopy(data)
    load_comparison(data)
    assert data == before


def test_a_diverged_tuning_run_is_a_result_that_ranks_last(tmp_path):
    """Divergence is deterministic, so a diverged run is final (a rerun would diverge again): it
    counts as done for its stage and its configuration scores nothing."""
    from edgefed.comparing import finished

    comparison = load_comparison(TINY)
    spec = comparison.spec
    stages = Stages(comparison, tmp_path, plan={"plan_sha256": "x"})
    good, bad = (comparison.run("decomfl", c, spec.tuning.seeds[0]) for c in (0, 1))
    fake_run(tmp_path / good.folder, [0.5, 0.55, 0.6, 0.6, 0.6, 0.6, 0.6], spec.budget, spec.evaluations)
    fake_run(tmp_path / bad.folder, [0.5, 0.7, 0.8], spec.budget, spec.evaluations, status="diverged")
    assert finished(tmp_path / bad.folder, None) and finished(tmp_path / bad.folder, 2)
    candidates = [scored(stages, [run], PRUNING_WINDOW) for run in (good, bad)]
    assert candidates[1].score is None and rank(candidates)[0].index == good.config
