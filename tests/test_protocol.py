"""The compare protocol's statistics (edgefed/protocol.py) on hand-computed cases: rule 1's
nominal costs and readings, rule 3's score window and halving's ranking and
a pick at its grid's edge, rule 5's t-interval and
verdicts, rule 6's censored ratios (kept, never dropped), rule 7's collapse edge, the sentence."""
from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgefed.budget import COSTS, nominal_cost, slot
from edgefed.protocol import (INTERVAL_NOTE, Candidate, Crossing, Evaluation, Paired, Ratio, check_target,
                              collapse_rate, collapsed, cost_to_target, edge_sentence, format_cost, grid_edges,
                              mean_score, paired, paired_ratio, pick, rank, ratio_summary, read_curve, reading,
                              score, sentence, smooth, survivors)

HEADER = "round,sim_time_s,accuracy,loss,bytes_up,bytes_down,energy_j,client_flops"


def curve(tests, nominals=None, tunings=None) -> list[Evaluation]:
    """Evaluations with nominal = actual cost (0, 10, 20, ... unless given)."""
    nominals = nominals if nominals is not None else [10.0 * i for i in range(len(tests))]
    tunings = tunings if tunings is not None else [None] * len(tests)
    return [Evaluation(n, n, a, u) for n, a, u in zip(nominals, tests, tunings)]


# --- rule 1 -----------------------------------------------------------------------------------------

def test_nominal_cost_at_and_just_below_a_multiple():
    assert slot(10.0, 30.0, 3) == 1 and nominal_cost(10.0, 30.0, 3) == 10.0
    assert slot(9.999, 30.0, 3) == 0 and nominal_cost(9.999, 30.0, 3) == 0.0
    assert nominal_cost(29.9, 30.0, 3) == 20.0
    assert nominal_cost(30.0, 30.0, 3) == 30.0
    assert slot(35.0, 30.0, 3) == 3 and nominal_cost(35.0, 30.0, 3) == 30.0  # capped at the budget
    assert nominal_cost(0.0, 30.0, 3) == 0.0


@given(st.floats(0, 1e14), st.integers(1, 50))
def test_nominal_cost_is_the_multiple_at_or_below(cost, evaluations):
    budget = 1e14
    nominal = nominal_cost(cost, budget, evaluations)
    assert nominal <= cost * (1 + 1e-12) and 0 <= slot(cost, budget, evaluations) <= evaluations
    assert cost - nominal < budget / evaluations * (1 + 1e-9)


def write_rounds(tmp_path, lines: list[str], header: str = HEADER):
    (tmp_path / "rounds.csv").write_text("\n".join([header, *lines]) + "\n")
    return tmp_path


def test_read_curve_accumulates_each_cost_and_skips_rounds_without_evaluation(tmp_path):
    run = write_rounds(tmp_path, ["0,0.0,0.5,0.7,0,0,0.0,0.0,0.4",
                                  "1,1.5,,,10,20,2.0,4.0,",
                                  "2,3.0,0.6,0.6,10,20,2.5,4.0,0.45",
                                  "3,4.0,0.7,0.5,5,5,1.0,3.0,"], HEADER + ",tuning_accuracy")
    flops = read_curve(run, "client_flops")
    assert [e.cost for e in flops] == [0.0, 8.0, 11.0] == [e.nominal for e in flops]
    assert [e.test for e in flops] == [0.5, 0.6, 0.7] and [e.tuning for e in flops] == [0.4, 0.45, None]
    assert [e.cost for e in read_curve(run, "energy_j")] == [0.0, 4.5, 5.5]
    assert [e.cost for e in read_curve(run, "sim_time_s")] == [0.0, 3.0, 4.0]  # cumulative already
    assert [e.cost for e in read_curve(run, "bytes")] == [0.0, 60.0, 70.0]
    ruled = read_curve(run, "client_flops", budget=12.0, evaluations=3)  # multiples of 4
    assert [e.nominal for e in ruled] == [0.0, 8.0, 8.0] and [e.cost for e in ruled] == [0.0, 8.0, 11.0]
    assert set(COSTS) == {"client_flops", "energy_j", "sim_time_s", "bytes"}
    with pytest.raises(ValueError, match="cost 'flops'"):
        read_curve(run, "flops")
    with pytest.raises(ValueError, match="together"):
        read_curve(run, "bytes", budget=12.0)


def test_read_curve_without_a_tuning_column(tmp_path):
    run = write_rounds(tmp_path, ["0,0.0,0.5,0.7,0,0,0.0,0.0", "1,1.0,0.6,0.6,1,1,1.0,2.0"])
    assert read_curve(run, "client_flops") == [Evaluation(0.0, 0.0, 0.5, None), Evaluation(2.0, 2.0, 0.6, None)]


def test_smooth_waits_for_a_full_window_and_for_values():
    c = curve([0.5, 0.625, 0.75], tunings=[0.25, 0.5, None])
    assert smooth(c, 2) == [None, 0.5625, 0.6875]
    assert smooth(c, 2, "tuning") == [None, 0.375, None]
    assert smooth(c, 1) == [0.5, 0.625, 0.75]


def test_reading_is_the_last_evaluation_within_the_cost():
    c = curve([0.5, 0.625, 0.75, 0.875])
    assert reading(c, 20.0, 2) == reading(c, 29.0, 2)
    r = reading(c, 20.0, 2)
    assert (r.value, r.cost, r.nominal) == (0.6875, 20.0, 20.0)
    assert reading(c, 9.9, 2) is None  # the evaluation there has no full window yet
    assert reading(c, -1.0, 1) is None  # no evaluation within it
    tuned = curve([0.5, 0.625], tunings=[0.25, 0.5])
    assert reading(tuned, 10.0, 2, "tuning").value == 0.375


def test_reading_tolerates_the_float_multiple():
    budget, evaluations = 1e14, 9
    nominal = nominal_cost(6 * budget / evaluations, budget, evaluations)
    at = 2 / 3 * budget
    assert nominal > at  # a few ulps apart
    c = [Evaluation(0.0, 0.0, 0.5, None), Evaluation(nominal, nominal, 0.75, None)]
    assert reading(c, at, 1).value == 0.75


# --- rule 3 -----------------------------------------------------------------------------------------

B = 1e14  # 100 TFLOP: its multiples of B/9 are not exact in binary


def ruled_curve(budget: float, evaluations: int, tunings: list[float | None]) -> list[Evaluation]:
    """One evaluation at each multiple of budget/evaluations, as the runner takes them."""
    costs = [k * budget / evaluations for k in range(evaluations + 1)]
    assert [slot(c, budget, evaluations) for c in costs] == list(range(evaluations + 1))
    nominals = [nominal_cost(c, budget, evaluations) for c in costs]
    return [Evaluation(n, n, 0.5, u) for n, u in zip(nominals, tunings)]


def test_score_window_excludes_lo_and_includes_hi():
    c = ruled_curve(B, 9, [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    assert c[6].nominal > 2 / 3 * B and c[3].nominal > B / 3  # the float multiples sit ulps above lo x budget
    assert c[9].nominal == B
    assert score(c, B, 1, 2 / 3, 1) == pytest.approx(0.8)  # 0.7, 0.8, 0.9: not 0.6 at lo, 0.9 at hi
    assert score(c, B, 1, 2 / 9, 1 / 3) == pytest.approx(0.3)  # halving's pruning: 0.3 alone
    assert score(c, B, 2, 2 / 3, 1) == pytest.approx((0.65 + 0.75 + 0.85) / 3)


def test_score_is_none_without_a_value_in_the_window():
    c = ruled_curve(B, 9, [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, None, 0.9])
    assert score(c, B, 1, 2 / 3, 1) is None
    assert score(c, B, 1, 2 / 9, 1 / 3) == pytest.approx(0.3)
    assert score(c[:5], B, 1, 2 / 3, 1) is None  # no evaluation in the window
    assert mean_score([0.7, 0.8]) == pytest.approx(0.75)
    assert mean_score([0.7, None]) is None and mean_score([]) is None


def test_survivors():
    assert [survivors(n) for n in (1, 2, 3, 4, 8, 12)] == [1, 2, 2, 2, 3, 4]


def test_rank_ties_at_3_decimals_go_to_memory_then_bytes_then_index():
    cands = [Candidate(0, 0.7004, 100, 5), Candidate(1, 0.6996, 90, 9), Candidate(2, 0.7001, 90, 5),
             Candidate(3, 0.7003, 90, 5), Candidate(4, None, 1, 1), Candidate(5, 0.71, 200, 0)]
    assert [c.index for c in rank(cands)] == [5, 2, 3, 1, 0, 4]
    assert pick(cands).index == 5
    assert pick(cands[:5]).index == 2
    with pytest.raises(ValueError):
        pick([])


def test_grid_edges_of_fields_with_three_or_more_numeric_values():
    """v3's DeComFL grid: lr over 4 values and perturbations over 3, a pick at the low end of both;
    a two-valued field (every pick is at an end) and fields that are not numbers are not judged."""
    grid = [{"name": "decomfl", "lr": lr, "perturbations": p, "split": s, "trainable": t, "fast": f}
            for lr in (5e-4, 1e-3, 2e-3, 4e-3) for p in (1, 2, 4) for s, t, f in ((3, "head", True), (4, "all", False))]
    low = {**grid[0]}
    assert grid_edges(grid, low) == {"lr": "lowest", "perturbations": "lowest"}
    assert grid_edges(grid, {**low, "lr": 4e-3, "perturbations": 2}) == {"lr": "highest"}
    assert grid_edges(grid, {**low, "lr": 1e-3, "perturbations": 2}) == {}
    assert grid_edges([{"lr": 1e-3, "x": {"a": 1}}, {"lr": 2e-3, "x": {"a": 2}}], {"lr": 1e-3, "x": {"a": 1}}) == {}
    assert edge_sentence("decomfl", low, grid_edges(grid, low)) == (
        "decomfl's pick is at the lowest lr (0.0005) and the lowest perturbations (1) of its grid: the grid may not "
        "bracket its best configuration, and a wider one (in a new plan) might tune it better.")
    assert edge_sentence("decomfl", low, {}) == ""
    # an end that is the field's own limit is not the grid's: no grid has fewer than 1 perturbation
    assert grid_edges(grid, low, {"perturbations": (1, None), "lr": (None, None)}) == {"lr": "lowest"}
    assert grid_edges(grid, {**low, "lr": 4e-3}, {"lr": (None, 4e-3)}) == {"perturbations": "lowest"}


def test_a_method_s_own_limits_come_from_its_spec():
    """The limits ``pick_edges`` applies: attained bounds only (perturbations at least 1, a split at
    least 0), none on a real number that only has to be positive (lr)."""
    from edgefed.algorithms.registry import METHODS
    from edgefed.algorithms.spec import value_limits
    from edgefed.outcomes import pick_edges

    decomfl, fedspzo = value_limits(METHODS["decomfl"].Spec), value_limits(METHODS["fedspzo"].Spec)
    assert decomfl["perturbations"] == (1, None) and decomfl["lr"] == (None, None)
    assert fedspzo["split"] == (0, None) and fedspzo["p2"] == (1, None)
    grid = [{"name": "decomfl", "lr": lr, "perturbations": p} for p in (1, 2, 4) for lr in (5e-4, 1e-3, 2e-3, 4e-3)]
    assert pick_edges(grid, grid[0]) == {"lr": "lowest"}
    assert pick_edges(grid, grid[-1]) == {"lr": "highest", "perturbations": "highest"}


@given(st.lists(st.tuples(st.one_of(st.none(), st.floats(0, 1)), st.integers(0, 3), st.integers(0, 3)),
                min_size=1, max_size=12))
def test_rank_is_a_permutation_best_first(drawn):
    cands = [Candidate(i, s, m, b) for i, (s, m, b) in enumerate(drawn)]
    ranked = rank(cands)
    assert sorted(c.index for c in ranked) == list(range(len(cands)))
    scored = [round(c.score, 3) for c in ranked if c.score is not None]
    assert scored == sorted(scored, reverse=True)
    assert all(c.score is None for c in ranked[len(scored):])


# --- rule 5 -----------------------------------------------------------------------------------------

def diffs(*values: float) -> Paired:
    return paired({s: 0.0 for s in range(len(values))}, dict(enumerate(values)))


def test_paired_t_interval_by_hand():
    # differences 0.01, 0.03, -0.02: mean 0.006667, sd sqrt(0.0012667 / 2) = 0.025166,
    # t(0.975, 2) = 4.302653, half width 4.302653 x 0.025166 / sqrt(3) = 0.062515
    p = paired({0: 0.70, 1: 0.72, 2: 0.71}, {0: 0.71, 1: 0.75, 2: 0.69})
    assert p.seeds == (0, 1, 2) and p.n == 3
    assert p.mean == pytest.approx(0.006667, abs=1e-6) and p.sd == pytest.approx(0.025166, abs=1e-6)
    assert p.low == pytest.approx(0.006667 - 0.062515, abs=1e-5)
    assert p.high == pytest.approx(0.006667 + 0.062515, abs=1e-5)
    assert p.verdict == "no difference shown" and p.confidence == 0.95


def test_paired_verdicts():
    assert diffs(0.02, 0.03, 0.04).verdict == "higher"  # 0.03 +- 0.024841
    assert diffs(-0.02, -0.03, -0.04).verdict == "lower"
    assert diffs(0.0, 0.0, 0.0).verdict == "no difference shown"  # the interval [0, 0] holds 0: inclusive
    one = diffs(0.02)
    assert (one.verdict, one.low, one.high, one.sd, one.n) == ("too few seeds", None, None, None, 1)
    assert paired({0: 0.5, 1: 0.6}, {0: 0.55, 1: 0.7}, confidence=0.5).confidence == 0.5


def test_paired_refuses_different_seeds():
    with pytest.raises(ValueError, match="same seeds"):
        paired({0: 0.5, 1: 0.6}, {0: 0.5, 2: 0.6})
    with pytest.raises(ValueError):
        paired({}, {})


@given(st.lists(st.floats(-1, 1), min_size=2, max_size=8))
def test_the_interval_contains_the_mean(values):
    p = diffs(*values)
    assert p.low <= p.mean <= p.high
    assert (p.verdict == "no difference shown") == (p.low <= 0 <= p.high)


# --- rule 6 -----------------------------------------------------------------------------------------

def test_cost_to_target_first_crossing_or_censored():
    c = curve([0.5, 0.625, 0.75, 0.875])  # smoothed over 2: -, 0.5625, 0.6875, 0.8125
    assert cost_to_target(c, 0.6875, 30.0, 2) == Crossing(20.0, False, None)  # reached exactly counts
    assert cost_to_target(c, 0.8, 30.0, 2) == Crossing(30.0, False, None)
    assert cost_to_target(c, 0.8, 25.0, 2) == Crossing(None, True, 25.0)  # the crossing lies past the budget
    assert cost_to_target(c, 0.9, 30.0, 2) == Crossing(None, True, 30.0)


def test_paired_ratio_bounds():
    reached = lambda cost: Crossing(cost, False, None)  # noqa: E731
    censored = Crossing(None, True, 100.0)
    assert paired_ratio(reached(20.0), reached(10.0)) == Ratio(2.0, 2.0, False, False)
    assert paired_ratio(censored, reached(40.0)) == Ratio(2.5, math.inf, True, False)
    assert paired_ratio(reached(40.0), censored) == Ratio(0.0, 0.4, False, True)
    assert paired_ratio(censored, censored) == Ratio(0.0, math.inf, True, True)


def test_ratio_summary_keeps_censored_seeds():
    ratios = [Ratio(0.5, 0.5, False, False), Ratio(1.2, math.inf, True, False), Ratio(2.0, math.inf, True, False)]
    s = ratio_summary(ratios)
    # dropping the two censored seeds would report 0.5, cheaper; kept, the median is at least 1.2
    assert s["median"] == {"low": 1.2, "high": math.inf, "exact": False}
    assert s["signs"] == {"cheaper": 1, "costlier": 2, "equal": 0, "undetermined": 0}
    assert s["censored"] == {"arm": 2, "reference": 0} and s["pairs"] == 3


def test_ratio_summary_exact_equal_and_undetermined():
    s = ratio_summary([Ratio(0.5, 0.5, False, False), Ratio(0.8, 0.8, False, False), Ratio(0.0, 0.4, False, True)])
    assert s["median"] == {"low": 0.5, "high": 0.5, "exact": True}
    assert s["signs"]["cheaper"] == 3 and s["censored"] == {"arm": 0, "reference": 1}
    both = ratio_summary([Ratio(0.0, math.inf, True, True), Ratio(1.0, 1.0, False, False)])
    assert both["signs"] == {"cheaper": 0, "costlier": 0, "equal": 1, "undetermined": 1}
    assert both["median"]["high"] == math.inf and both["censored"] == {"arm": 1, "reference": 1}
    with pytest.raises(ValueError):
        ratio_summary([])


def test_check_target_names_the_seed():
    check_target(0.71, {0: 0.6, 1: 0.7})
    with pytest.raises(ValueError, match=r"target 0\.7000 is at or below seed 1's starting accuracy 0\.7000"):
        check_target(0.7, {0: 0.6, 1: 0.7})


# --- rule 7 -----------------------------------------------------------------------------------------

def test_collapse_at_the_edge_and_beyond():
    assert 0.8 - 0.75 > 0.05  # float rounding: the edge must not count as beyond it
    assert not collapsed(curve([0.6, 0.8, 0.75]), 1)
    assert collapsed(curve([0.6, 0.8, 0.7499]), 1)
    assert not collapsed(curve([0.6, 0.8, 0.7499]), 1, drop=0.1)
    assert collapsed(curve([0.5, 0.9, 0.5, 0.5]), 1)
    assert not collapsed(curve([0.5, 0.9, 0.5, 0.5]), 3)  # smoothed: 0.6333, 0.6333: one lucky evaluation
    assert collapsed(curve([0.9, 0.9, 0.9, 0.6, 0.6]), 3)  # smoothed: 0.9, 0.8, 0.7
    with pytest.raises(ValueError):
        collapsed(curve([0.5]), 2)
    assert collapse_rate([curve([0.6, 0.8, 0.75]), curve([0.6, 0.8, 0.7]), curve([0.5, 0.6])], 1) == (1, 3)


# --- the sentence -----------------------------------------------------------------------------------

COLLAPSE = ((0, 3), (1, 3))


def test_sentence_for_each_verdict():
    at = format_cost(30e12, "client_flops")
    assert sentence(diffs(0.01, 0.03, -0.02), "decomfl", "fedspzo", at, COLLAPSE) == (
        "At 30 client TFLOP, decomfl minus fedspzo: 0.007 smoothed test accuracy (95% t-interval -0.056 to 0.069 "
        "over 3 seeds): no difference shown; collapse rates 0/3 and 1/3.")
    assert sentence(diffs(0.02, 0.03, 0.04), "decomfl", "fedspzo", at, COLLAPSE) == (
        "At 30 client TFLOP, decomfl minus fedspzo: 0.030 smoothed test accuracy (95% t-interval 0.005 to 0.055 "
        "over 3 seeds): decomfl higher; collapse rates 0/3 and 1/3.")
    assert sentence(diffs(-0.02, -0.03, -0.04), "decomfl", "fedspzo", at, COLLAPSE) == (
        "At 30 client TFLOP, decomfl minus fedspzo: -0.030 smoothed test accuracy (95% t-interval -0.055 to -0.005 "
        "over 3 seeds): decomfl lower; collapse rates 0/3 and 1/3.")
    assert sentence(diffs(-0.004), "decomfl", "fedspzo", at, ((0, 1), (0, 1)), "fedspzo censored on 1 seed") == (
        "At 30 client TFLOP, decomfl minus fedspzo: -0.004 smoothed test accuracy (no interval over 1 seed): "
        "too few seeds; collapse rates 0/1 and 0/1; fedspzo censored on 1 seed.")
    assert ": 0.000 smoothed" in sentence(diffs(-0.0004, 0.0001), "a", "b", at, COLLAPSE)


def test_format_cost():
    assert [format_cost(v * 1e12, "client_flops") for v in (30, 7.5, 0.125, 123.45, 100)] == [
        "30 client TFLOP", "7.5 client TFLOP", "0.125 client TFLOP", "123 client TFLOP", "100 client TFLOP"]
    assert [format_cost(v, "energy_j") for v in (500, 1500, 2.5e6)] == ["500 J", "1.5 kJ", "2.5 MJ"]
    assert [format_cost(v, "sim_time_s") for v in (45, 90, 7200)] == ["45 s", "1.5 min", "2 h"]
    assert [format_cost(v, "bytes") for v in (1500, 2.5e6, 3e9)] == ["1.5 kB", "2.5 MB", "3 GB"]
    with pytest.raises(ValueError):
        format_cost(1.0, "flops")
    assert "seed-to-seed" in INTERVAL_NOTE and "test set" in INTERVAL_NOTE
