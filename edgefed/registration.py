"""Rule 8 of the comparison protocol: the plan is fixed by its hash before any run (docs/compare.md).

The first ``edgefed compare`` writes ``OUT/plan.json``: the comparison (every default filled in),
its sha256, the sha256 of the scenarios it resolves to and of every file they read, and the code
version. Every run records the plan's sha256 in its provenance.json. A rerun whose comparison or
scenarios hash otherwise is refused with one line naming what changed. Two fields stay out of the
hash: report seeds may be added (to every arm alike: the summary gives the registered seeds' result
first and flags the extension) and ``code_versions`` may be extended; neither may lose an entry.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from edgefed.comparison import Comparison, point_scenario, spec_dump
from edgefed.results import atomic_write
from edgefed.scenario import ScenarioError, scenario_dict

PLAN = "plan.json"
FORMAT = "edgefed-compare-plan/1"
#: the comparison's fields that may grow after registration, left out of its hash
UNHASHED = ("seeds", "code_versions")


def digest(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def code_version(code: dict) -> str:
    """A run's or this process's code as one string: its commit, ``+dirty`` with uncommitted
    changes to the package (``unknown`` outside a checkout: such runs can only be mixed by listing it)."""
    commit = code.get("commit") or "unknown"
    return commit + ("+dirty" if code.get("dirty") else "")


def plan_record(comparison: Comparison) -> dict:
    """What plan.json registers (``starts`` and the timestamps aside)."""
    from edgefed.provenance import code, input_files, sha256

    spec = spec_dump(comparison.spec)
    # the base is named by what it holds, not where it lies: a comparison file and a dict naming
    # one base register alike, and a plan moves with its checkout
    hashed = {k: v for k, v in spec.items() if k not in (*UNHASHED, "base")}
    scenarios, files = {}, {"base": sha256(comparison.base)}
    for label, sections in comparison.algorithms.items():
        for index in range(len(sections)):
            run = comparison.run(label, index, 0)  # the seed varies per run: every other field is here
            scenario, folder = point_scenario(comparison.base, run.overrides)
            scenarios[f"{label}/c{index:02d}"] = digest(scenario_dict(scenario))
            files.update({field: sha256(path) for field, path in input_files(scenario, folder).items()})
    record = {"comparison_sha256": digest(hashed), "scenarios_sha256": digest(scenarios), "files": files}
    return {"format": FORMAT, "plan_sha256": digest(record), **record, "scenarios": scenarios,
            "code_version": code_version(code()), "spec": spec}


def register(comparison: Comparison, out: Path, starts=None) -> dict:
    """Write plan.json on the first call; later, check the comparison against it and return it
    (with extension seeds and code versions added). ``starts(seeds)``: the report seeds' round-0
    accuracies, asked only for seeds not yet registered (targets are checked against them)."""
    record = plan_record(comparison)
    path = out / PLAN
    if not path.is_file():
        record["registered_seeds"] = list(comparison.spec.seeds)
        record["starts"] = starts(comparison.spec.seeds) if starts else {}
        atomic_write(path, json.dumps(record, indent=2) + "\n")
        return record
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ScenarioError(f"{path}: unreadable plan: {exc}") from None
    if stored.get("format") != FORMAT:
        raise ScenarioError(f"{path}: not a plan of this version ({FORMAT})")
    refuse_changes(path, stored, record)
    new = [s for s in comparison.spec.seeds if s not in stored["registered_seeds"]
           and str(s) not in stored.get("starts", {})]
    if new and starts:
        stored["starts"] = {**stored.get("starts", {}), **starts(new)}
        stored["spec"]["seeds"] = comparison.spec.seeds
        atomic_write(path, json.dumps(stored, indent=2) + "\n")
    return {**stored, "spec": record["spec"]}


def refuse_changes(path: Path, stored: dict, record: dict) -> None:
    """One line naming the first thing that changed since registration."""
    old, new = stored["spec"], record["spec"]
    for key in sorted(set(old) | set(new)):
        if key == "base":
            continue  # registered by its content, among the files below
        if key in UNHASHED:
            lost = [v for v in old.get(key, []) if v not in new.get(key, [])]
            if key == "seeds":
                lost = [v for v in stored["registered_seeds"] if v not in new.get(key, [])]
            if lost:
                raise ScenarioError(f"{path}: {key}: the registered {lost[0]!r} cannot be dropped (only added)")
            continue
        if old.get(key) != new.get(key):
            raise ScenarioError(f"{path}: the comparison changed since its plan was registered: {changed(key, old.get(key), new.get(key))} "
                                "(a changed plan needs a new --out folder)")
    for name in sorted(set(stored["scenarios"]) | set(record["scenarios"])):
        if stored["scenarios"].get(name) != record["scenarios"].get(name):
            raise ScenarioError(f"{path}: the scenario of {name} changed since registration (its base or "
                                "defaults); a changed plan needs a new --out folder")
    for file in sorted(set(stored["files"]) | set(record["files"])):
        if stored["files"].get(file) != record["files"].get(file):
            raise ScenarioError(f"{path}: the file of {file} changed since registration (sha256); a changed plan "
                                "needs a new --out folder")


def changed(key: str, old, new) -> str:
    """The dotted path of the first difference between two JSON values, with both values."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new), key=str):
            if old.get(k) != new.get(k):
                return changed(f"{key}.{k}", old.get(k), new.get(k))
    return f"{key} (was {json.dumps(old)}, now {json.dumps(new)})"


def allowed_versions(plan: dict, spec_versions: list[str]) -> list[str]:
    """The code versions whose runs this comparison takes: the plan's own and those listed."""
    return [plan["code_version"], *[v for v in spec_versions if v != plan["code_version"]]]


def check_code(plan: dict, spec_versions: list[str], current: str) -> None:
    """Refuse to run at a code version the plan does not take (rule 8)."""
    allowed = allowed_versions(plan, spec_versions)
    if current not in allowed:
        raise ScenarioError(f"code_versions: this code is {current}, the plan was registered at "
                            f"{plan['code_version']}; list {current} in code_versions to mix their runs")
