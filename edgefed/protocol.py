"""The statistics of ``edgefed compare``: the protocol's rules as pure functions of run curves, so
the runner, the read-back of older studies and the tests apply one definition of each.

A curve is a run's evaluations in order, each with the cost it stands for (its ``nominal`` cost,
rule 1), the cost it actually took, and its test (and tuning) accuracy. Rules: 1 spacing (an
evaluation at each multiple of budget/evaluations, read at the last one within a cost), 3 score
(the collapse-aware tuning score; a pick at its grid's edge is said), 5 paired outcome (per-seed
differences, t-interval, verdict), 6 cost to target (censored runs kept as bounds), 7 collapse.
Every function is deterministic.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import t as student_t

from edgefed.budget import COSTS, nominal_cost, spend
from edgefed.results import read_rows, smoothed

# far below any real difference of cost (relative) or accuracy (absolute), far above float rounding
TOLERANCE = 1e-9
INTERVAL_NOTE = ("The intervals cover seed-to-seed variation only, not the sampling error of the finite test set "
                 "every run is measured on.")


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of a run: the cost it stands for, the cumulative cost when it was taken,
    its test accuracy and its tuning accuracy (None when the run did not evaluate the tuning split)."""
    nominal: float
    cost: float
    test: float
    tuning: float | None


@dataclass(frozen=True)
class Reading:
    """A curve read at a cost: the smoothed value there, and the actual and nominal cost of the
    evaluation it comes from."""
    value: float
    cost: float
    nominal: float


@dataclass(frozen=True)
class Candidate:
    """A configuration competing in successive halving: its grid position, its score (None: no
    score, ranks last) and what breaks ties, peak memory then bytes."""
    index: int
    score: float | None
    peak_memory: float
    bytes: float


@dataclass(frozen=True)
class Paired:
    """Rule 5's outcome: per-seed differences (arm minus reference), their mean, standard
    deviation and t-interval (None below two seeds), and the verdict the interval gives."""
    seeds: tuple[int, ...]
    differences: tuple[float, ...]
    mean: float
    sd: float | None
    low: float | None
    high: float | None
    confidence: float
    verdict: str

    @property
    def n(self) -> int:
        return len(self.seeds)


@dataclass(frozen=True)
class Crossing:
    """Rule 6 for one run: the actual cost at which it reached the target, or censored at
    ``bound`` (it did not reach the target within the budget: its cost is at least the budget)."""
    cost: float | None
    censored: bool
    bound: float | None


@dataclass(frozen=True)
class Ratio:
    """Arm cost over reference cost for one seed, as bounds: exact when ``low == high``; a
    censored side makes it one-sided (or undetermined when both are censored)."""
    low: float
    high: float
    arm_censored: bool
    reference_censored: bool


def _at_most(value: float, limit: float) -> bool:
    """``value <= limit`` up to TOLERANCE relative: a float multiple of budget/evaluations is not
    pushed past a limit it equals."""
    return value <= limit + TOLERANCE * abs(limit)


# --- rule 1: where a run is evaluated, and its curve -----------------------------------------------

def read_curve(run_dir: Path, cost: str, budget: float | None = None,
               evaluations: int | None = None) -> list[Evaluation]:
    """A run's evaluations from its rounds.csv, with the cumulative ``cost`` (one of COSTS) at
    each; nominal costs by rule 1 when the run was made under it (``budget`` and
    ``evaluations``), else the actual cost (an older study's runs)."""
    if cost not in COSTS:
        raise ValueError(f"cost {cost!r}: one of {', '.join(COSTS)}")
    if (budget is None) != (evaluations is None):
        raise ValueError("budget and evaluations go together (both, or neither)")
    spent, curve = 0.0, []
    for row in read_rows(run_dir / "rounds.csv"):
        spent = spend(spent, row, cost)  # as the runner's schedule accumulates it
        if row["accuracy"] in (None, ""):
            continue
        tuning = row.get("tuning_accuracy")
        curve.append(Evaluation(spent if budget is None else nominal_cost(spent, budget, evaluations), spent,
                                float(row["accuracy"]), float(tuning) if tuning not in (None, "") else None))
    return curve


def smooth(curve: list[Evaluation], window: int, field: str = "test") -> list[float | None]:
    """The moving mean of the last ``window`` evaluations of ``field`` at each evaluation (None
    until there are ``window`` of them, or while one of them has no value)."""
    values = [getattr(e, field) for e in curve]
    means = smoothed([math.nan if v is None else v for v in values], window)
    return [None if m is None or math.isnan(m) else m for m in means]


def reading(curve: list[Evaluation], at_cost: float, window: int, field: str = "test") -> Reading | None:
    """Rule 1: the curve read at ``at_cost``, at its last evaluation whose nominal cost is within
    it; None when there is none or its smoothed value is not defined yet."""
    means = smooth(curve, window, field)
    within = [i for i, e in enumerate(curve) if _at_most(e.nominal, at_cost)]
    if not within or means[within[-1]] is None:
        return None
    e = curve[within[-1]]
    return Reading(means[within[-1]], e.cost, e.nominal)


# --- rule 3: the tuning score, and successive halving -----------------------------------------------

def score(curve: list[Evaluation], budget: float, window: int, lo: float, hi: float) -> float | None:
    """Rule 3: the mean smoothed tuning accuracy over the evaluations whose nominal cost lies in
    (lo x budget, hi x budget], so a configuration that peaks and collapses scores its collapse
    (final score: 2/3 to 1; halving's pruning: 2/9 to 1/3). None when there is no evaluation
    there or one has no smoothed tuning value."""
    means = smooth(curve, window, "tuning")
    values = [m for e, m in zip(curve, means)
              if not _at_most(e.nominal, lo * budget) and _at_most(e.nominal, hi * budget)]
    if not values or None in values:
        return None
    return sum(values) / len(values)


def mean_score(scores: list[float | None]) -> float | None:
    """Rule 3 over tuning seeds: the mean score, None when a seed has none."""
    if not scores or None in scores:
        return None
    return sum(scores) / len(scores)


def survivors(n: int) -> int:
    """How many of ``n`` configurations a halving step keeps: a third, at least 2
    (factor 3, Jamieson & Talwalkar 2016)."""
    return min(n, max(2, math.ceil(n / 3)))


def rank(candidates: list[Candidate]) -> list[Candidate]:
    """Best first by score, scores equal to 3 decimals tying (differences below that are noise);
    ties to the lower peak memory, then fewer bytes, then grid order; no score ranks last."""
    return sorted(candidates, key=lambda c: (c.score is None, 0.0 if c.score is None else -round(c.score, 3),
                                             c.peak_memory, c.bytes, c.index))


def pick(candidates: list[Candidate]) -> Candidate:
    """The configuration ``rank`` puts first."""
    if not candidates:
        raise ValueError("no candidates to pick from")
    return rank(candidates)[0]


def grid_edges(configurations: list[dict], chosen: dict,
               limits: dict[str, tuple[float | None, float | None]] | None = None) -> dict[str, str]:
    """Where a pick sits at an end of its grid: for each field with at least three numeric values
    among ``configurations`` ("lowest" or "highest" when ``chosen`` holds its least or greatest).
    Such a grid may not bracket the best value, and rule 8 keeps a registered plan's grid as it is,
    so the result says so rather than widening it. With two values every pick is at an end, which
    says nothing; an end that is the field's own limit (``limits``: least, greatest; perturbations
    are at least 1) is one no wider grid goes past."""
    limits = limits or {}
    edges = {}
    for key, value in chosen.items():
        numbers = [c.get(key) for c in configurations]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
            continue
        values = set(numbers)
        if len(values) < 3:
            continue
        least, greatest = limits.get(key, (None, None))
        if value == min(values) and value != least:
            edges[key] = "lowest"
        elif value == max(values) and value != greatest:
            edges[key] = "highest"
    return edges


def edge_sentence(arm: str, chosen: dict, edges: dict[str, str]) -> str:
    """One sentence on a pick at its grid's edge (``grid_edges``); empty when it is at none."""
    if not edges:
        return ""
    where = " and ".join(f"the {end} {key} ({chosen[key]})" for key, end in edges.items())
    return (f"{arm}'s pick is at {where} of its grid: the grid may not bracket its best configuration, and a wider "
            "one (in a new plan) might tune it better.")


# --- rule 5: the paired outcome ---------------------------------------------------------------------

def paired(reference: dict[int, float], arm: dict[int, float], confidence: float = 0.95) -> Paired:
    """Rule 5: arm minus reference per seed (runs paired by seed share their data split and
    start), the mean with its two-sided t-interval over seeds (df = n - 1), and the verdict: "no
    difference shown" when the interval holds 0, else the arm's accuracy "higher" or "lower";
    "too few seeds" below two."""
    if set(reference) != set(arm):
        raise ValueError(f"paired runs need the same seeds: reference has {sorted(reference)}, arm {sorted(arm)}")
    if not reference:
        raise ValueError("no seeds to pair")
    seeds = tuple(sorted(reference))
    diffs = np.array([arm[s] - reference[s] for s in seeds], dtype=float)
    mean = float(diffs.mean())
    if len(seeds) < 2:
        return Paired(seeds, tuple(map(float, diffs)), mean, None, None, None, confidence, "too few seeds")
    sd = float(diffs.std(ddof=1))
    half = float(student_t.ppf((1 + confidence) / 2, len(seeds) - 1)) * sd / math.sqrt(len(seeds))
    low, high = mean - half, mean + half
    verdict = "no difference shown" if low <= 0 <= high else ("higher" if low > 0 else "lower")
    return Paired(seeds, tuple(map(float, diffs)), mean, sd, low, high, confidence, verdict)


# --- rule 6: cost to a target, censored runs kept ---------------------------------------------------

def check_target(target: float, starts: dict[int, float]) -> None:
    """Rule 6 refuses a target at or below a seed's starting (round-0 test) accuracy: that seed
    would "reach" it before learning anything."""
    for seed in sorted(starts):
        if target <= starts[seed]:
            raise ValueError(f"target {target:.4f} is at or below seed {seed}'s starting accuracy "
                             f"{starts[seed]:.4f}: choose a target above every seed's start")


def cost_to_target(curve: list[Evaluation], target: float, budget: float, window: int) -> Crossing:
    """Rule 6: the actual cost of the first evaluation within the budget whose smoothed test
    accuracy reaches ``target``; a run that never does is censored at the budget, never dropped."""
    for e, m in zip(curve, smooth(curve, window)):
        if m is not None and m >= target and _at_most(e.nominal, budget):
            return Crossing(e.cost, False, None)
    return Crossing(None, True, budget)


def paired_ratio(arm: Crossing, ref: Crossing) -> Ratio:
    """Rule 6 for one seed: arm cost / reference cost, exact when both reached the target, a
    bound when one is censored (its budget is a lower bound on its cost), undetermined when both are."""
    if not arm.censored and not ref.censored:
        value = arm.cost / ref.cost
        return Ratio(value, value, False, False)
    if arm.censored and not ref.censored:
        return Ratio(arm.bound / ref.cost, math.inf, True, False)
    if ref.censored and not arm.censored:
        return Ratio(0.0, arm.cost / ref.bound, False, True)
    return Ratio(0.0, math.inf, True, True)


def ratio_summary(ratios: list[Ratio]) -> dict:
    """Rule 6 over seeds, every pair kept: bounds on the median ratio (the median of the lower
    bounds, of the upper bounds; exact when they agree), the paired sign count, and how many
    seeds each side had censored. Averaging only the seeds that reached would favour the side
    that fails more often."""
    if not ratios:
        raise ValueError("no ratios to summarise")
    low = float(np.median([r.low for r in ratios]))
    high = float(np.median([r.high for r in ratios]))
    signs = {"cheaper": 0, "costlier": 0, "equal": 0, "undetermined": 0}
    for r in ratios:
        sign = ("cheaper" if r.high < 1 else "costlier" if r.low > 1
                else "equal" if r.low == r.high == 1 else "undetermined")
        signs[sign] += 1
    return {"median": {"low": low, "high": high, "exact": low == high}, "signs": signs,
            "censored": {"arm": sum(r.arm_censored for r in ratios),
                         "reference": sum(r.reference_censored for r in ratios)},
            "pairs": len(ratios)}


# --- rule 7: collapse -------------------------------------------------------------------------------

def collapsed(curve: list[Evaluation], window: int, drop: float = 0.05) -> bool:
    """Rule 7: the run ends more than ``drop`` below its best smoothed test accuracy (a run that
    learned and then lost it, which a reading at the budget alone would not tell from one that
    never learned)."""
    means = [m for m in smooth(curve, window) if m is not None]
    if not means:
        raise ValueError(f"fewer than {window} evaluations: no smoothed accuracy to judge a collapse by")
    return max(means) - means[-1] > drop + TOLERANCE


def collapse_rate(curves: list[list[Evaluation]], window: int, drop: float = 0.05) -> tuple[int, int]:
    """Rule 7 over runs: (how many collapsed, how many runs)."""
    return sum(collapsed(c, window, drop) for c in curves), len(curves)


# --- the sentence a comparison ends with ------------------------------------------------------------

def _signed(value: float) -> str:
    """Three decimals, a minus sign only on a value that rounds below zero."""
    text = f"{value:.3f}"
    return "0.000" if text == "-0.000" else text


def _significant(value: float, digits: int = 3) -> str:
    """Up to ``digits`` significant digits, never in exponent form (7.5, 30, 0.125, 1230)."""
    if value == 0:
        return "0"
    rounded = round(value, digits - 1 - math.floor(math.log10(abs(value))))
    return np.format_float_positional(rounded, trim="-")


UNITS = {"energy_j": ((1.0, "J"), (1e3, "kJ"), (1e6, "MJ")),
         "sim_time_s": ((1.0, "s"), (60.0, "min"), (3600.0, "h")),
         "bytes": ((1e3, "kB"), (1e6, "MB"), (1e9, "GB"))}


def format_cost(value: float, cost: str) -> str:
    """A cost as the sentence says it: client FLOPs in client TFLOP, energy in J/kJ/MJ, time in
    s/min/h, bytes in kB/MB/GB (decimal), up to 3 significant digits."""
    scale, unit = cost_unit(value, cost)
    return f"{_significant(value / scale)} {unit}"


def cost_unit(value: float, cost: str) -> tuple[float, str]:
    """The unit ``format_cost`` says ``value`` in, and its size in the cost's own unit."""
    if cost == "client_flops":
        return 1e12, "client TFLOP"
    if cost not in UNITS:
        raise ValueError(f"cost {cost!r}: one of {', '.join(COSTS)}")
    return next(((s, u) for s, u in reversed(UNITS[cost]) if abs(value) >= s), UNITS[cost][0])


def sentence(paired: Paired, arm: str, reference: str, at: str,
             collapse: tuple[tuple[int, int], tuple[int, int]], extension: str = "") -> str:
    """The comparison's result in one sentence (rules 5 and 7): the mean paired difference with
    its interval and verdict at ``at`` (a ``format_cost`` string), then the arm's and the
    reference's collapse rates, then ``extension`` (a further clause) if any."""
    if paired.low is None:
        spread = f"no interval over {paired.n} seed{'s' if paired.n != 1 else ''}"
    else:
        spread = (f"{paired.confidence:.0%} t-interval {_signed(paired.low)} to {_signed(paired.high)} "
                  f"over {paired.n} seeds")
    verdict = f"{arm} {paired.verdict}" if paired.verdict in ("higher", "lower") else paired.verdict
    (arm_c, arm_n), (ref_c, ref_n) = collapse
    tail = f"; {extension}" if extension else ""
    return (f"At {at}, {arm} minus {reference}: {_signed(paired.mean)} smoothed test accuracy ({spread}): "
            f"{verdict}; collapse rates {arm_c}/{arm_n} and {ref_c}/{ref_n}{tail}.")
