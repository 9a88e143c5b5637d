"""Scenario regression: each scenario in scenarios/regression reruns to its goldens (systems
figures exactly, accuracy within edgefed.regress.ACCURACY_TOL), a run interrupted and resumed
reruns to the same goldens, and a changed device link fails."""
import pytest

import edgefed.regress as regress
from edgefed.simulator.records import RoundObserver
from tests.conftest import REPO

SCENARIOS = regress.scenario_files(REPO / "scenarios" / "regression")


@pytest.mark.parametrize("scenario_file", SCENARIOS, ids=[f.stem for f in SCENARIOS])
def test_scenario_matches_its_goldens(scenario_file):
    assert regress.check(scenario_file) == []


def test_changing_a_device_bandwidth_fails_the_regression(tmp_path):
    scenario_file = REPO / "scenarios" / "regression" / "custom-link-exclusion.yaml"
    run_dir = regress.run_into(scenario_file, tmp_path / "run", ["fleet.links.field-lte.up_mbps=2.0"])
    problems = regress.compare(regress.golden_dir(scenario_file), run_dir)
    assert any("sim_time_s" in p for p in problems)
    assert any("energy_j" in p for p in problems)
    assert not any("accuracy" in p for p in problems)  # the learning did not change, only the systems
    assert not (run_dir / "report.html").exists(), "regress writes no report"


def test_accuracy_within_tolerance_passes_and_beyond_fails(tmp_path):
    golden = regress.golden_dir(SCENARIOS[0])
    rows = (golden / "rounds.csv").read_text().splitlines()
    head, first = rows[0].split(","), rows[1].split(",")
    col = head.index("accuracy")
    for shift, ok in ((regress.ACCURACY_TOL / 2, True), (regress.ACCURACY_TOL * 2, False)):
        run = tmp_path / str(shift)
        run.mkdir()
        for name in ("summary.json", "clients.csv"):
            (run / name).write_text((golden / name).read_text())
        changed = first.copy()
        changed[col] = repr(float(first[col]) + shift)
        (run / "rounds.csv").write_text("\n".join([rows[0], ",".join(changed), *rows[2:]]) + "\n")
        assert (regress.compare(golden, run) == []) is ok


class StopAfter(RoundObserver):
    """Interrupts the run after ``rounds`` rounds, as Ctrl-C would."""

    def __init__(self, rounds: int):
        self.rounds = rounds

    def round_done(self, engine, round):
        if round.number >= self.rounds:
            raise KeyboardInterrupt


@pytest.mark.parametrize("stem, stop", [("mixed-deadline", 1), ("fedspzo-split", 1), ("fedkseed-pro", 2),
                                        ("decomfl-head", 0), ("hierarchical-cells", 2)])
def test_a_run_interrupted_then_resumed_matches_the_goldens(tmp_path, stem, stop):
    from edgefed.runner import run_scenario
    from edgefed.scenario import load_scenario

    scenario_file = REPO / "scenarios" / "regression" / f"{stem}.yaml"
    scenario, base = load_scenario(scenario_file)
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_scenario(scenario, base, run_dir, progress=StopAfter(stop))
    run_scenario(scenario, base, run_dir, resume=True)
    assert regress.compare(regress.golden_dir(scenario_file), run_dir) == []


def test_systems_figures_match_up_to_float_rounding_only():
    close = regress._close
    assert close("energy_j", "0.04726753588235293", "0.04726753588235294")  # last bit, another CPU
    assert not close("energy_j", "0.0472675358", "0.0472675359")  # a real change
    assert not close("bytes_up", "144", "145") and close("device", "rpi5", "rpi5")
