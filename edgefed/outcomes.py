"""What a comparison's report runs show (rules 4-8 of docs/compare.md): compare.json's figures and
the summary.md that opens with sentences generated from them.

Primary outcome: per arm against the reference, the paired differences in smoothed test accuracy
at the full budget, with a t-interval over seeds. The other checkpoints are descriptive. Cost to
each target keeps a seed that never reached it as censored at the budget. Every figure of an arm
comes with its collapse rate. Seeds added after registration are reported after the registered
seeds' result and flagged. Runs of code versions the plan does not take, or that learned on
different kinds of device, are refused.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from edgefed.algorithms.registry import METHODS
from edgefed.algorithms.spec import value_limits
from edgefed.budget import COSTS
from edgefed.comparison import CompareFailed, Comparison
from edgefed.protocol import (INTERVAL_NOTE, collapsed, cost_to_target, edge_sentence, format_cost, grid_edges, paired,
                              paired_ratio, read_curve, ratio_summary, reading, sentence, smooth)
from edgefed.registration import allowed_versions, code_version
from edgefed.results import peak_memory
from edgefed.scenario import ScenarioError

FORMAT = "edgefed-compare/1"


def device_kind(learning_device: str | None) -> str:
    """``cpu``, or a GPU's model (``cuda:0 (NVIDIA H100 80GB HBM3)`` -> ``NVIDIA H100 80GB HBM3``):
    runs that drew their directions on different kinds are not one comparison."""
    found = re.search(r"\((.*)\)$", learning_device or "")
    return found.group(1) if found else (learning_device or "unknown")


def provenance(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "provenance.json").read_text())
    except (OSError, ValueError):
        raise ScenarioError(f"{run_dir / 'provenance.json'}: missing or unreadable") from None


def check_runs(run_dirs: list[Path], plan: dict, spec_versions: list[str]) -> tuple[list[str], str]:
    """Rule 8 on the runs themselves: each of a code version the plan takes, all on one kind of
    device. Returns the versions mixed and the device kind."""
    allowed, versions, kinds = allowed_versions(plan, spec_versions), set(), {}
    for run_dir in run_dirs:
        record = provenance(run_dir)
        version = code_version(record.get("code", {}))
        if version not in allowed:
            raise ScenarioError(f"{run_dir}: ran at code version {version}, which the plan does not take "
                                f"(plan: {plan['code_version']}; list it in code_versions to mix)")
        versions.add(version)
        kinds.setdefault(device_kind(record.get("learning_device")), run_dir)
    if len(kinds) > 1:
        (a, run_a), (b, run_b) = list(kinds.items())[:2]
        raise ScenarioError(f"runs learned on different kinds of device ({a}: {run_a}; {b}: {run_b}): "
                            "their directions differ, so they are not one comparison")
    return sorted(versions), next(iter(kinds))


def totals(run_dir: Path) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    t = summary["totals"]
    return {"client_flops": t["client_flops"], "energy_j": t["energy_j"], "sim_time_s": t["sim_time_s"],
            "bytes": t["bytes_up"] + t["bytes_down"], "status": summary["status"]}


def analyse(comparison: Comparison, plan: dict, table: dict, runs: dict[str, dict[int, Path]], out: Path) -> dict:
    """compare.json: the tuning table and picks, the report runs' curves, the paired differences
    at every checkpoint, cost to each target, collapse rates and what each arm spent."""
    spec = comparison.spec
    ref, window, budget = spec.reference, spec.smoothing, spec.budget
    tuning_dirs = [d for label, t in table.items() for row in t["rows"] for seed in spec.tuning.seeds
                   if (d := out / comparison.run(label, row["config"], seed).folder).is_dir()]
    report_dirs = [d for by_seed in runs.values() for d in by_seed.values()]
    versions, kind = check_runs(report_dirs + tuning_dirs, plan, spec.code_versions)
    curves = {label: {seed: read_curve(d, spec.cost, budget, spec.evaluations) for seed, d in by_seed.items()}
              for label, by_seed in runs.items()}
    for label, by_seed in curves.items():
        for seed, curve in by_seed.items():
            if totals(runs[label][seed])["status"] == "diverged":
                raise CompareFailed(f"{runs[label][seed]}: the pick of {label} diverged on report seed {seed} "
                                    "(summary.json): no accuracy at the budget to pair")
            if not curve or curve[-1].nominal < budget:
                raise ScenarioError(f"{runs[label][seed]}: ended before the budget (at "
                                    f"{format_cost(curve[-1].cost if curve else 0.0, spec.cost)}): rounds.max or "
                                    "no device left to train")
    registered = [s for s in spec.seeds if s in plan["registered_seeds"]]
    added = [s for s in spec.seeds if s not in registered]
    collapse = {label: {s: collapsed(curves[label][s], window) for s in spec.seeds} for label in curves}
    starts = {str(s): {label: curves[label][s][0].test for label in curves} for s in spec.seeds}
    unpaired = [s for s, by_arm in starts.items() if len(set(by_arm.values())) > 1]
    result = {
        "format": FORMAT, "name": spec.name, "cost": spec.cost, "budget": budget, "reference": ref,
        "plan_sha256": plan["plan_sha256"], "code_versions": versions, "device": kind,
        "seeds": {"registered": registered, "added": added}, "tuning_seeds": spec.tuning.seeds,
        "smoothing": window, "evaluations": spec.evaluations,
        "tuning": {label: {**t, "rows": [{**row, "configuration": config_text(row["algorithm"], t)} for row in t["rows"]]}
                   for label, t in table.items()},
        "picks": {label: {"config": t["pick"], "algorithm": (chosen := comparison.algorithms[label][t["pick"]]),
                          "grid_edges": pick_edges(comparison.algorithms[label], chosen)}
                  for label, t in table.items()},
        "collapse": collapse_rates(collapse, registered),
        **({"collapse_all": collapse_rates(collapse, spec.seeds)} if added else {}),
        "starts": {"by_seed": starts, "unpaired_seeds": unpaired},
        "checkpoints": {"registered": checkpoints(spec, curves, registered, collapse_rates(collapse, registered)),
                        **({"all": checkpoints(spec, curves, spec.seeds, collapse_rates(collapse, spec.seeds))}
                           if added else {})},
        "targets": [target_outcome(spec, curves, t) for t in spec.targets],
        "spent": {label: {**mean_totals([runs[label][s] for s in spec.seeds]),
                          "peak_memory_bytes": peak_memory(runs[label][spec.seeds[0]])} for label in runs},
        "curves": {label: {str(s): [[e.nominal, e.cost, e.test, m] for e, m in zip(c, smooth(c, window))]
                           for s, c in by_seed.items()} for label, by_seed in curves.items()},
        "notes": [INTERVAL_NOTE, PAIRING_NOTE],
    }
    result["sentences"] = sentences(result)
    result["caveats"] = [c for label, p in result["picks"].items()
                         if (c := edge_sentence(label, p["algorithm"], p["grid_edges"]))]
    return result


def pick_edges(configurations: list[dict], chosen: dict) -> dict[str, str]:
    """``protocol.grid_edges`` of an arm's pick, within its method's own limits on each field."""
    return grid_edges(configurations, chosen, value_limits(METHODS[chosen["name"]].Spec))


PAIRING_NOTE = ("Report seed s gives every arm the same data partition, initial model (head included) and "
                "client-sampling stream; a method's perturbation directions follow its own stream, minibatches "
                "one stream per round and client drawn as far as each method's steps take them, and devices "
                "a method cannot fit in memory leave its sampling pool.")


def collapse_rates(collapse: dict[str, dict[int, bool]], seeds: list[int]) -> dict:
    """Rule 7 per arm over ``seeds``: how many report runs collapsed, of how many, and which."""
    return {label: {"collapsed": sum(flags[s] for s in seeds), "runs": len(seeds),
                    "seeds": [s for s in seeds if flags[s]]} for label, flags in collapse.items()}


def mean_totals(run_dirs: list[Path]) -> dict:
    figures = [totals(d) for d in run_dirs]
    return {k: sum(f[k] for f in figures) / len(figures) for k in COSTS}


def checkpoints(spec, curves: dict, seeds: list[int], rates: dict) -> list[dict]:
    """Rule 5 at every checkpoint over ``seeds``: each arm's paired differences from the reference."""
    out = []
    for fraction in spec.checkpoints:
        at = fraction * spec.budget
        readings = {label: {s: reading(curves[label][s], at, spec.smoothing) for s in seeds} for label in curves}
        missing = [(label, s) for label, by in readings.items() for s, r in by.items() if r is None]
        entry = {"fraction": fraction, "at": at, "primary": fraction == 1.0, "arms": {}}
        if missing:
            entry["unread"] = f"fewer than {spec.smoothing} evaluations by then (e.g. {missing[0][0]} seed {missing[0][1]})"
            out.append(entry)
            continue
        ref = {s: r.value for s, r in readings[spec.reference].items()}
        for label in curves:
            if label == spec.reference:
                continue
            p = paired(ref, {s: r.value for s, r in readings[label].items()})
            collapse = tuple((rates[a]["collapsed"], rates[a]["runs"]) for a in (label, spec.reference))
            entry["arms"][label] = {
                "seeds": list(p.seeds), "differences": list(p.differences), "mean": p.mean, "sd": p.sd,
                "low": p.low, "high": p.high, "verdict": p.verdict,
                "reference_mean": sum(ref.values()) / len(ref),
                "arm_mean": sum(r.value for r in readings[label].values()) / len(seeds),
                "read_at": {str(s): r.cost for s, r in readings[label].items()},
                "sentence": sentence(p, label, spec.reference, format_cost(at, spec.cost), collapse)}
        out.append(entry)
    return out


def target_outcome(spec, curves: dict, target: float) -> dict:
    """Rule 6 for one target: each run's crossing (censored ones kept), each arm's paired ratios."""
    crossings = {label: {s: cost_to_target(curves[label][s], target, spec.budget, spec.smoothing)
                         for s in spec.seeds} for label in curves}
    entry = {"target": target, "runs": {label: {str(s): {"cost": c.cost, "censored": c.censored, "bound": c.bound}
                                                for s, c in by.items()} for label, by in crossings.items()},
             "ratios": {}}
    for label in curves:
        if label == spec.reference:
            continue
        ratios = [paired_ratio(crossings[label][s], crossings[spec.reference][s]) for s in spec.seeds]
        summary = ratio_summary(ratios)
        summary["median"]["high"] = bounded(summary["median"]["high"])
        entry["ratios"][label] = {"per_seed": {str(s): {"low": r.low, "high": bounded(r.high)}
                                               for s, r in zip(spec.seeds, ratios)}, "summary": summary}
    return entry


def bounded(value: float) -> float | None:
    """An upper bound as JSON has it: None for none (a censored arm's ratio is unbounded above)."""
    return None if value == float("inf") else value


def sentences(result: dict) -> list[str]:
    """The full-budget sentence of every arm over the registered seeds, then over all seeds when
    some were added after registration (flagged as such)."""
    out = []
    for key, flag in (("registered", ""), ("all", "with the seeds added after registration")):
        for entry in result["checkpoints"].get(key, []):
            if entry["primary"]:
                out += [a["sentence"] if not flag else f"{a['sentence'][:-1]} ({flag}: {result['seeds']['added']})."
                        for a in entry["arms"].values()]
    return out


def number(value, digits: int = 3, none: str = "-") -> str:
    return none if value is None else f"{value:.{digits}f}"


def summary_markdown(result: dict) -> str:
    """summary.md: the sentences first, then the tables behind them."""
    cost, fmt = result["cost"], lambda v: format_cost(v, result["cost"])  # noqa: E731
    lines = [f"# {result['name']}: compared at a budget of {fmt(result['budget'])} per run", ""]
    lines += [f"- {s}" for s in result["sentences"]]
    lines += ["", *result["caveats"]] if result["caveats"] else []
    lines += ["", " ".join(result["notes"]), "",
              f"Reference `{result['reference']}`; report seeds {result['seeds']['registered']}"
              + (f" (added after registration: {result['seeds']['added']})" if result["seeds"]["added"] else "")
              + f"; tuning seeds {result['tuning_seeds']}; accuracy is the moving mean of {result['smoothing']} "
              f"evaluations; runs learned on {result['device']} at code {', '.join(result['code_versions'])}; "
              f"plan sha256 `{result['plan_sha256'][:16]}`.", "",
              "## Paired differences (arm minus reference, smoothed test accuracy)", "",
              "| at | arm | mean | 95% t-interval | verdict | collapse (arm, reference) | role |", "|---|---|---|---|---|---|---|"]
    ref = result["reference"]
    for entry in result["checkpoints"]["registered"]:
        role = "primary" if entry["primary"] else "descriptive"
        for label, a in entry["arms"].items():
            c, r = result["collapse"][label], result["collapse"][ref]
            lines.append(f"| {fmt(entry['at'])} | {label} | {number(a['mean'])} | {number(a['low'])} to "
                         f"{number(a['high'])} | {a['verdict']} | {c['collapsed']}/{c['runs']}, "
                         f"{r['collapsed']}/{r['runs']} | {role} |")
        if "unread" in entry:
            lines.append(f"| {fmt(entry['at'])} | - | - | - | {entry['unread']} | - | descriptive |")
    lines += ["", "## Picks and tuning", "",
              "| arm | configuration | pruning score | survived | score (last third, mean over tuning seeds) | pick |",
              "|---|---|---|---|---|---|"]
    for label, t in result["tuning"].items():
        for row in t["rows"]:
            lines.append(f"| {label} | {row['configuration']} | "
                         f"{number(row['pruning_score'])} | {'yes' if row['survived'] else 'no'} | "
                         f"{number(row.get('score'))} | {'**pick**' if row['config'] == t['pick'] else ''} |")
    lines += ["", "## What the picks spent (mean over report seeds)", "",
              "| arm | collapse | client TFLOP | energy (kJ) | simulated time (s) | MB up and down | peak memory (MB) |",
              "|---|---|---|---|---|---|---|"]
    for label, s in result["spent"].items():
        c = result["collapse"][label]
        lines.append(f"| {label} | {c['collapsed']}/{c['runs']} | {s['client_flops'] / 1e12:.3g} | "
                     f"{s['energy_j'] / 1e3:.4g} | {s['sim_time_s']:.4g} | {s['bytes'] / 1e6:.4g} | "
                     f"{s['peak_memory_bytes'] / 1e6:.4g} |")
    for t in result["targets"]:
        lines += ["", f"## Cost to {t['target']} smoothed test accuracy (descriptive; censored seeds kept)", "",
                  "| arm | per seed | ratio to reference: median bounds | cheaper / costlier / undetermined |",
                  "|---|---|---|---|"]
        for label, runs in t["runs"].items():
            per_seed = ", ".join(f"s{s}: " + (f"≥ {fmt(r['bound'])}" if r["censored"] else fmt(r["cost"]))
                                 for s, r in runs.items())
            ratio = t["ratios"].get(label)
            if ratio is None:
                lines.append(f"| {label} (reference) | {per_seed} | - | - |")
                continue
            m, signs = ratio["summary"]["median"], ratio["summary"]["signs"]
            bounds = number(m["low"]) if m["exact"] else f"{number(m['low'])} to {number(m['high'], none='∞')}"
            lines.append(f"| {label} | {per_seed} | {bounds} | {signs['cheaper']} / {signs['costlier']} / "
                         f"{signs['undetermined'] + signs['equal']} |")
    return "\n".join(lines) + "\n"


def config_text(algorithm: dict, arm_table: dict) -> str:
    """A configuration by the fields that vary within its arm (all of them when none vary)."""
    rows = [r["algorithm"] for r in arm_table["rows"]]
    varying = [k for k in algorithm if any(r.get(k) != algorithm[k] for r in rows)] or ["lr"]
    return ", ".join(f"{k} {algorithm[k]}" for k in varying)
