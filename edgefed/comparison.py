"""The comparison file of ``edgefed compare`` and the runs it plans (docs/compare.md).

A comparison names a base scenario and its regime (``set``), the cost that "cheaper" is measured
on and the report budget in it, the arms (a method and its grid of configurations), the
reference arm, the report seeds and the tuning seeds. It offers no option that would make the
comparison unfair: every run spends the same budget under rule 1, tuning scores every
configuration at the full budget (rule 2) with the collapse-aware score (rule 3), and the report
runs of every arm share their seeds (rule 4). The file is validated like a scenario: an unknown
key or a bad value gives one line naming its dotted field.

Every run of a comparison is a sweep point of the base scenario; its folder under ``OUT/runs``
is named by arm, configuration and seed, so adding report seeds moves no other run.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError, field_validator, \
    model_validator

from edgefed.budget import COSTS
from edgefed.scenario import ScenarioError, load_scenario, read_scenario_file

#: successive halving's factor (Jamieson and Talwalkar 2016): fixed, not an option
HALVING = 3
#: the most rounds a comparison's run may take: the budget, not a round count, ends it
MAX_ROUNDS = 1_000_000
#: scenario fields the protocol sets itself; ``set`` may not touch them
PROTOCOL_FIELDS = ("seed", "rounds.max", "rounds.eval_every", "rounds.budget", "rounds.target_accuracy",
                   "rounds.target_smoothing", "rounds.mode", "task.tuning_split", "task.evaluate_on",
                   "algorithm.name", "replay", "output")


class CompareFailed(RuntimeError):
    """Runs failed (the others finished, and a rerun retries them), or a result cannot be paired."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Arm(Strict):
    """One method under comparison: its fixed algorithm fields (any key but these three), the
    configurations to try (``configs``, a list, times ``grid``, a product), of which tuning picks one."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    name: str = Field(description="the method (algorithm.name): decomfl, fedspzo, fedkseed, fedzo, fedavg")
    configs: list[dict[str, Any]] = Field([{}], min_length=1,
                                          description="algorithm fields that go together, one mapping each "
                                          "(e.g. [{split: 3, p2: 4}, {split: 4, p2: 8}])")
    grid: dict[str, list[Any]] = Field({}, description="algorithm field -> values, "
                                       "a product (lr like any other field)")

    @field_validator("grid")
    @classmethod
    def _values(cls, grid: dict) -> dict:
        for key, values in grid.items():
            if not values:
                raise ValueError(f"{key}: no values")
        return grid

    @property
    def fixed(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def configurations(self) -> list[dict[str, Any]]:
        """Every configuration in grid order: each of ``configs``, times the grid's product."""
        axes = [[(key, value) for value in values] for key, values in self.grid.items()]
        return [{**config, **dict(combo)} for config in self.configs for combo in itertools.product(*axes)]


class Tuning(Strict):
    seeds: list[int] = Field([101, 102, 103], min_length=1,
                             description="tuning seeds, disjoint from the report seeds")
    split: PositiveInt = Field(500, description="training examples held out as the tuning split (the same draw "
                               "for every arm and seed); selection reads only them")


class ComparisonSpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", max_length=200,
                      description="the comparison's folder under runs/ by default")
    base: str = Field(description="the base scenario, relative to the comparison file")
    set: dict[str, Any] = Field({}, description="dotted path -> value for every run (the regime)")
    cost: Literal[COSTS] = Field(description="what 'cheaper' is measured on: client FLOPs, fleet energy (J), "
                                 "simulated seconds or bytes up and down")
    budget: PositiveFloat = Field(description="the report budget, in the cost's unit; tuning scores at it too")
    arms: dict[str, Arm] = Field(min_length=2, description="label -> method and configurations")
    reference: str = Field(description="the arm every other arm is compared with")
    seeds: list[int] = Field([0, 1, 2, 3, 4], min_length=3,
                             description="report seeds (at least 3: an interval needs them)")
    tuning: Tuning = Tuning()
    evaluations: PositiveInt = Field(24, description="evaluations per run, at equal steps of the budget "
                                     "(a multiple of 3: halving pauses at a third)")
    smoothing: PositiveInt = Field(3, description="the moving mean, in evaluations, wherever accuracy is read")
    checkpoints: list[float] = Field([0.25, 0.5, 0.75, 1.0], min_length=1,
                                     description="fractions of the budget at which accuracy is compared "
                                     "(1 is the primary outcome, the rest descriptive)")
    targets: list[float] = Field([], description="absolute accuracies for the secondary "
                                 "outcome, cost to target (each above every report seed's start)")
    code_versions: list[str] = Field([], description="code versions (git commits) whose runs "
                                     "may be mixed with the plan's own")

    @field_validator("seeds", "code_versions")
    @classmethod
    def _unique(cls, values: list) -> list:
        if len(set(values)) != len(values):
            raise ValueError("listed twice: " + ", ".join(map(str, sorted({v for v in values if values.count(v) > 1}))))
        return values

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: list[int]) -> list[int]:
        if any(s < 0 for s in seeds):
            raise ValueError("seeds are non-negative integers")
        return seeds

    @field_validator("checkpoints")
    @classmethod
    def _checkpoints(cls, checkpoints: list[float]) -> list[float]:
        if any(not 0 < f <= 1 for f in checkpoints) or sorted(set(checkpoints)) != checkpoints:
            raise ValueError("increasing fractions of the budget in (0, 1]")
        if checkpoints[-1] != 1.0:
            raise ValueError("the last checkpoint is the full budget, 1")
        return checkpoints

    @field_validator("targets")
    @classmethod
    def _targets(cls, targets: list[float]) -> list[float]:
        if any(not 0 < t < 1 for t in targets):
            raise ValueError("accuracies in (0, 1)")
        return targets

    @field_validator("set")
    @classmethod
    def _regime_only(cls, values: dict) -> dict:
        for key in values:
            for field in PROTOCOL_FIELDS:
                if key == field or key.startswith(field + "."):
                    raise ValueError(f"{key}: set by the protocol, not the regime")
        return values

    @model_validator(mode="after")
    def _consistent(self) -> ComparisonSpec:
        if self.reference not in self.arms:
            raise ValueError(f"reference: no arm {self.reference!r} (arms: {', '.join(self.arms)})")
        clash = sorted(set(self.seeds) & set(self.tuning.seeds))
        if clash:
            raise ValueError(f"tuning.seeds: {clash[0]} is also a report seed (tuning seeds are disjoint from them)")
        if len(set(self.tuning.seeds)) != len(self.tuning.seeds):
            raise ValueError("tuning.seeds: a seed listed twice")
        if self.evaluations % HALVING:
            raise ValueError(f"evaluations: {self.evaluations} is not a multiple of {HALVING} (halving pauses "
                             f"every configuration at a third of the budget)")
        for f in self.checkpoints:
            if (Fraction(f).limit_denominator(10**6) * self.evaluations).denominator != 1:
                raise ValueError(f"checkpoints: {f} of {self.evaluations} evaluations is not a whole evaluation")
        return self


def spec_dump(spec: ComparisonSpec) -> dict:
    """The spec as JSON data, every default filled in (what plan.json registers)."""
    return spec.model_dump(mode="json")


@dataclass(frozen=True)
class Run:
    """One run of the comparison: an arm's configuration on a seed, as a sweep point of the base."""

    arm: str
    config: int  # its index in the arm's configurations (grid order)
    seed: int
    overrides: dict

    @property
    def folder(self) -> str:
        return f"runs/{self.arm}/c{self.config:02d}-s{self.seed}"


@dataclass(frozen=True)
class Comparison:
    """A loaded comparison: its spec, the file and the base scenario, and each arm's configurations
    as full ``algorithm`` sections."""

    spec: ComparisonSpec
    path: Path
    base: Path
    algorithms: dict[str, list[dict]]

    def run(self, arm: str, config: int, seed: int) -> Run:
        spec = self.spec
        overrides = {**{k: v for k, v in spec.set.items() if not k.startswith("algorithm.")},
                     "algorithm": self.algorithms[arm][config], "seed": seed,
                     "task.tuning_split": spec.tuning.split, "task.evaluate_on": "both",
                     "rounds.budget": {"cost": spec.cost, "amount": spec.budget, "evaluations": spec.evaluations},
                     "rounds.max": MAX_ROUNDS, "rounds.target_accuracy": None,
                     "rounds.target_smoothing": spec.smoothing, "output.plots": False}
        return Run(arm, config, seed, overrides)

    @property
    def pause(self) -> int:
        """Halving's pause: the evaluation slot at a third of the budget."""
        return self.spec.evaluations // HALVING


def load_comparison(source: str | Path | dict, base: Path | None = None) -> Comparison:
    """Read and validate a comparison (a file, or a dict whose relative paths start from ``base``);
    every configuration of every arm is validated as a scenario now, so a bad one fails before any run."""
    if isinstance(source, dict):
        raw, where, folder = source, "comparison", (base or Path.cwd()).resolve()
    else:
        path = Path(source)
        raw, where, folder = read_scenario_file(path), str(path), path.resolve().parent
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: expected a mapping of comparison fields")
    try:
        spec = ComparisonSpec.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else \
            "missing required field" if err["type"] == "missing" else err["msg"].removeprefix("Value error, ")
        raise ScenarioError(f"{where}: {f'{loc}: ' if loc else ''}{msg}") from None  # a whole-file rule names its field
    base_file = (folder / spec.base).resolve()
    if not base_file.is_file():
        raise ScenarioError(f"{where}: base: file not found: {base_file}")
    base_algorithm = load_scenario(base_file)[0].algorithm.model_dump(mode="json")
    shared = {k.split(".", 1)[1]: v for k, v in spec.set.items() if k.startswith("algorithm.")}
    algorithms = {label: [algorithm_section(label, arm, config, base_algorithm, shared, where)
                          for config in arm.configurations()] for label, arm in spec.arms.items()}
    unused = sorted(set(shared) - {k for sections in algorithms.values() for a in sections for k in a})
    if unused:
        raise ScenarioError(f"{where}: set.algorithm.{unused[0]}: no arm's method takes it")
    comparison = Comparison(spec, Path(where) if not isinstance(source, dict) else folder / "comparison",
                            base_file, algorithms)
    for label, sections in algorithms.items():
        for index in range(len(sections)):
            run = comparison.run(label, index, spec.seeds[0])
            try:
                point_scenario(base_file, run.overrides)
            except ScenarioError as exc:
                raise ScenarioError(f"{where}: arms.{label} (configuration {index}): "
                                    f"{str(exc).split(': ', 1)[-1]}") from None
    return comparison


def algorithm_section(label: str, arm: Arm, config: dict, base: dict, shared: dict, where: str) -> dict:
    """A configuration's full ``algorithm``: the base scenario's and the regime's fields that the
    method takes, then the arm's fixed fields, then the configuration's."""
    from edgefed.algorithms.registry import METHODS

    if arm.name not in METHODS:
        raise ScenarioError(f"{where}: arms.{label}.name: unknown method {arm.name!r} (known: {', '.join(METHODS)})")
    takes = set(METHODS[arm.name].Spec.model_fields)
    inherited = {k: v for k, v in {**base, **shared}.items() if k in takes and k != "name"}
    return {**inherited, **arm.fixed, **config, "name": arm.name}


def point_scenario(base: Path, overrides: dict):
    """A run's scenario: the base with its overrides (the sweep's rule)."""
    from edgefed.sweep import point_scenario as sweep_point

    return sweep_point(base, overrides)


def stage_cost(comparison: Comparison) -> dict:
    """The plan's cost by stage, in budgets and in the cost's unit: pruning n x B/3, the survivors
    8B/3 each (the rest of the first tuning seed, and the other tuning seeds), the report picks x
    seeds x B; and each arm's share of it, in budgets."""
    spec, b = comparison.spec, comparison.spec.budget
    from edgefed.protocol import survivors

    n = {label: len(sections) for label, sections in comparison.algorithms.items()}
    kept = {label: survivors(count) for label, count in n.items()}
    more = len(spec.tuning.seeds) - 1
    by_arm = {label: {"pruning": n[label] * Fraction(1, HALVING),
                      "survivors": kept[label] * (Fraction(HALVING - 1, HALVING) + more),
                      "report": len(spec.seeds)} for label in n}
    stages = {stage: sum(arm[stage] for arm in by_arm.values()) for stage in ("pruning", "survivors", "report")}
    return {"configurations": n, "survivors": kept,
            "arm_budgets": {label: float(sum(arm.values())) for label, arm in by_arm.items()},
            "budgets": {k: float(v) for k, v in stages.items()}, "total_budgets": float(sum(stages.values())),
            "cost": {k: float(v * Fraction(b)) for k, v in stages.items()}, "total_cost": float(sum(stages.values()) * Fraction(b))}


def plan_text(comparison: Comparison) -> str:
    """What ``edgefed compare FILE --plan`` prints: each stage's runs, their budget and the total."""
    from edgefed.protocol import format_cost

    spec, cost = comparison.spec, stage_cost(comparison)
    fmt = lambda v: format_cost(v, spec.cost)  # noqa: E731
    lines = [f"{spec.name}: {len(spec.arms)} arms, budget {fmt(spec.budget)} per run, reference {spec.reference}",
             f"tuning seeds {spec.tuning.seeds} on a {spec.tuning.split}-example tuning split; report seeds {spec.seeds}",
             "", f"1. pruning: every configuration on tuning seed {spec.tuning.seeds[0]} to a third of the budget "
             f"({fmt(spec.budget / HALVING)}), scored over ({fmt(spec.budget * 2 / 9)}, {fmt(spec.budget / 3)}]"]
    for label, n in cost["configurations"].items():
        lines.append(f"   {label}: {n} configuration{'s' * (n != 1)} x {fmt(spec.budget / HALVING)}")
    lines.append(f"   stage: {fmt(cost['cost']['pruning'])}")
    lines.append(f"2. survivors: the best min(n, max(2, ceil(n/3))) per arm continue to the full budget and run "
                 f"on tuning seeds {spec.tuning.seeds[1:]}; scored over the last third, mean over tuning seeds")
    for label, k in cost["survivors"].items():
        lines.append(f"   {label}: {k} x {fmt(spec.budget * (HALVING - 1) / HALVING)} + {k} x "
                     f"{len(spec.tuning.seeds) - 1} x {fmt(spec.budget)}")
    lines.append(f"   stage: {fmt(cost['cost']['survivors'])}")
    lines.append(f"3. report: each arm's pick on seeds {spec.seeds}, {len(spec.arms)} x {len(spec.seeds)} x "
                 f"{fmt(spec.budget)}")
    lines.append(f"   stage: {fmt(cost['cost']['report'])}")
    lines.append(f"total: {fmt(cost['total_cost'])} ({cost['total_budgets']:.2f} budgets)")
    return "\n".join(lines)


def json_schema() -> str:
    """The comparison file's JSON Schema (``edgefed schema --kind comparison``)."""
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **ComparisonSpec.model_json_schema(),
              "title": "edgefed comparison"}
    return json.dumps(schema, indent=2) + "\n"
