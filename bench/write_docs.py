"""Write docs/benchmarks.md and bench/README.md from the recorded results, so a quoted figure is
always the one in its bench/results/*.json, beside the commit and machine that produced it.

Each result's section takes what the bench measures and how to rerun it from the bench script's
docstring (for a script since removed, from ``RETIRED``), its figures from the JSON (tables; a
renderer of its own where the generic one would be unreadable) and its provenance block. The FedSPZO
study's page, docs/fedspzo_study.md, and its summary in the README come from its JSONs and from
version 3's comparison file. The output depends on the committed files alone (sorted,
no timestamps), so ``--check`` can tell CI and the tests whether a committed copy is out of date.

    python bench/write_docs.py [--check]
"""
from __future__ import annotations

import argparse
import ast
import json
import re
import statistics
import sys
import textwrap
from collections import Counter
from pathlib import Path

from edgefed.docgen import generated_note, number, prose, table
from edgefed.results import atomic_write

REPO = Path(__file__).resolve().parents[1]
COMMAND = "python bench/write_docs.py"
BENCHMARKS_MD = Path("docs/benchmarks.md")
README_MD = Path("bench/README.md")
STUDY_MD = Path("docs/fedspzo_study.md")
ROOT_README = Path("README.md")  # only its study summary, between the two markers, is written here
STUDY_MARKERS = ("<!-- fedspzo study summary: written by `python bench/write_docs.py` -->",
                 "<!-- end of the fedspzo study summary -->")


# --- reading the results and their scripts ------------------------------------------------------

def results(repo: Path) -> dict[str, dict]:
    """Every bench/results/*.json by name, sorted."""
    return {p.stem: json.loads(p.read_text()) for p in sorted((repo / "bench" / "results").glob("*.json"))}


def script_of(name: str, data: dict) -> str:
    """The bench script that wrote a result, as its provenance names it."""
    return (data.get("provenance") or {}).get("script") or f"bench/{name}.py"


def writes_result(path: Path) -> bool:
    """A bench script: it imports the helper that writes a result with its provenance."""
    return any(isinstance(node, ast.ImportFrom) and any(a.name == "write_bench_result" for a in node.names)
               for node in ast.walk(ast.parse(path.read_text())))


def docstring(repo: Path, script: str) -> str:
    path = repo / script
    return (ast.get_docstring(ast.parse(path.read_text())) or "") if path.is_file() else ""


def paragraphs(doc: str) -> list[str]:
    """The docstring's prose paragraphs (indented command blocks left out), each on one line."""
    return [prose(p) for p in re.split(r"\n\s*\n", doc) if p.strip() and not p.startswith(" ")]


def summary(doc: str) -> str:
    """One line for the README's table: the first sentence, up to a ';'."""
    first = (paragraphs(doc) or [""])[0]
    return re.split(r"(?<=[.?!])\s+(?=[A-Z])", first)[0].split("; ")[0].rstrip(".:")


def usage(doc: str) -> str:
    """The docstring's indented command lines (how the bench is run), relative indentation kept."""
    lines = [line for line in doc.splitlines() if line.startswith("    ")]
    return textwrap.dedent("\n".join(lines)).strip()


def provenance_line(prov: dict | None, wall_s=None, what: str = "") -> str:
    """The commit, checkout state and machine that produced a set of figures (``what``: a part of
    the file with a provenance of its own), and its wall time."""
    if not prov or not prov.get("commit"):
        return "*No provenance recorded.*\n"
    state = {True: " with uncommitted changes", None: " (checkout state unknown)"}.get(prov.get("dirty"), "")
    text = f"{what}: recorded" if what else "Recorded"
    text += f" at commit `{prov['commit'][:7]}`{state}"
    m = prov.get("machine") or {}
    if m:
        threads = m.get("torch_threads")
        text += (f" on {m.get('cpu')}, {m.get('cores')} cores"
                 + (f" ({threads} torch thread{'s' if threads != 1 else ''})" if threads else "")
                 + f", torch {m.get('torch')}, " + (f"GPU {m['gpu']}" if m.get("gpu") else "no GPU"))
    text += "." + (f" Wall time {number(wall_s)} s." if isinstance(wall_s, (int, float)) else "")
    if prov.get("note"):
        text += f" Note: {prov['note']}"
    return f"*{text}*\n"


def same_run(a: dict | None, b: dict | None) -> bool:
    """Two provenance blocks that name the same code and machine (one line says it for both)."""
    keys = ("commit", "dirty", "machine")
    return bool(a and b) and all(a.get(k) == b.get(k) for k in keys)


# --- figures as tables ---------------------------------------------------------------------------

def scalar(value) -> bool:
    """Fits in one table cell: a number or string, a list of them, or a small mapping of them."""
    if isinstance(value, list):
        return all(not isinstance(v, (dict, list)) for v in value)
    if isinstance(value, dict):
        return len(value) <= 4 and all(not isinstance(v, (dict, list)) for v in value.values())
    return True


def show(value) -> str:
    """One cell: lists and small mappings joined with '; ' (',' separates thousands)."""
    if isinstance(value, list):
        return "; ".join(map(number, value)) or "none"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {number(v)}" for k, v in value.items()) or "none"
    return number(value)


def record(value) -> bool:
    return isinstance(value, dict) and bool(value) and all(scalar(v) for v in value.values())


def records(rows, first: str = "") -> str:
    """A table of records (a mapping name -> record, or a list): one row each, one column per key."""
    items = rows.items() if isinstance(rows, dict) else ((str(i + 1), r) for i, r in enumerate(rows))
    items = [(k, {c: v for c, v in r.items() if c != "provenance"}) for k, r in items]
    columns = list(dict.fromkeys(c for _, r in items for c in r))
    return table([first, *columns], [[k, *(show(r[c]) if c in r else "" for c in columns)] for k, r in items])


def generic(data: dict, top: dict | None, path: str = "") -> list[str]:
    """Any result: its plain figures as a two-column table, then each mapping under its path
    (``a / b``): sibling records with the same keys, or a mapping of such records, as one table, a
    list of records as a table, anything deeper the same way; a part whose provenance differs from
    the file's gets its own line."""
    own = data.get("provenance")
    data = {k: v for k, v in data.items() if k != "provenance"}
    blocks = [f"**{path}**\n"] if path else []
    flat = {k: v for k, v in data.items() if v == {} or (not isinstance(v, dict) and scalar(v))}
    if flat:
        blocks.append(table(["figure", "value"], [[k, show(v)] for k, v in flat.items()]))
    rest = [(k, v) for k, v in data.items() if k not in flat]
    while rest:
        key, value = rest.pop(0)
        name = f"{path} / {key}" if path else key
        if record(value) and not same_keys(value):
            group = {key: value}
            while rest and record(rest[0][1]) and rest[0][1].keys() == value.keys():
                group.update([rest.pop(0)])
            if len(group) > 1:
                blocks.append(records(group))
            else:
                blocks += [f"**{name}**\n", table(["figure", "value"], [[k, show(v)] for k, v in value.items()])]
        elif same_keys(value):
            blocks += [f"**{name}**\n", records(value)]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            blocks += [f"**{name}**\n", records(value)]
        elif isinstance(value, dict):
            blocks += generic(value, top, name)
    if own and path and not same_run(own, top):
        blocks.append(provenance_line(own, what=path))
    if path and (len(blocks) == 1 or blocks[1].startswith("**")):  # nothing of its own before a deeper path
        blocks.pop(0)
    return blocks


def same_keys(value) -> bool:
    """A mapping of records that share their keys: one table, a row each."""
    return isinstance(value, dict) and bool(value) and all(record(v) for v in value.values()) \
        and len({tuple(v) for v in value.values()}) == 1


def bound(entry: dict) -> str:
    """A paired ratio: its value, or the bound a seed gives when only one side reached the target
    ('>=': the baseline never did; '<=': FedSPZO never did), or 'neither'."""
    if "value" in entry:
        return number(entry["value"])
    if "at_least" in entry:
        return f">= {number(entry['at_least'])}"
    if "at_most" in entry:
        return f"<= {number(entry['at_most'])}"
    return "neither"


def fedspzo_paper(data: dict) -> list[str]:
    """The study's version 1: tuning grid, chosen configurations, per-seed report runs, paired
    ratios, equal-compute gaps and the per-device-class replays."""
    rest = ("method", "lr", "final_smoothed_tuning_accuracy")
    lrs = sorted({row["lr"] for row in data["tuning"]})
    grid: dict[tuple, dict] = {}
    for row in data["tuning"]:
        config = ", ".join(f"{k} {v}" for k, v in row.items() if k not in rest)
        grid.setdefault((row["method"], config), {})[row["lr"]] = row["final_smoothed_tuning_accuracy"]
    target = data["target"]
    blocks = [
        "**Tuning**: final smoothed accuracy on the tuning split, per configuration and learning rate (seed "
        f"{', '.join(map(str, data['plan']['tuning']['seeds']))}).\n",
        table(["method", "configuration", *(f"lr {number(lr)}" for lr in lrs)],
              [[m, c, *(number(accs[lr]) if lr in accs else "" for lr in lrs)] for (m, c), accs in grid.items()]),
        "**Chosen** (best final smoothed tuning accuracy; ties: the smaller lr)\n",
        table(["method", "configuration"], [[m, show(c)] for m, c in data["chosen"].items()]),
        f"**Target**: {number(target['accuracy'])} test accuracy ({target['rule']}).\n",
    ]
    methods = data["methods"]
    seeds = next(iter(methods.values()))["seeds"]
    columns = [k for k, v in next(iter(methods.values())).items() if isinstance(v, list) and k != "seeds"]
    rows = [[method, seed, *(number(r[c][i]) for c in columns)]
            for method, r in methods.items() for i, seed in enumerate(r["seeds"])]
    blocks += ["**Report runs** (test split, chosen configuration, per seed)\n",
               table(["method", "seed", *columns], rows)]
    rows = []
    for pair, metrics in data["ratios"].items():
        for metric, r in metrics.items():
            rows.append([pair, metric, *(bound(e) for e in r["per_seed"]),
                         *(number(r.get(k)) for k in ("mean", "min", "max"))])
    blocks += ["**Paired ratios to target** (baseline over FedSPZO, per seed; `>=` where the baseline "
               "never reached the target)\n",
               table(["pair", "figure", *(f"seed {s}" for s in seeds), "mean", "min", "max"], rows)]
    rows = [[pair, seeds[i], *map(number, e.values())] for pair, r in data["at_equal_compute"].items()
            for i, e in enumerate(r["per_seed"])]
    columns = list(next(iter(data["at_equal_compute"].values()))["per_seed"][0])
    blocks += ["**At equal client compute** (smoothed accuracy at the cheaper whole run's client FLOPs)\n",
               table(["pair", "seed", *columns], rows),
               records({pair: {k: v for k, v in r.items() if k != "per_seed"}
                        for pair, r in data["at_equal_compute"].items()})]
    blocks += ["**Per device class** (the report traces replayed on one class of device; per seed)\n",
               class_table(data["device_classes"], "method"),
               records({cls: {**data.get("auto_picks", {}).get(cls, {}),
                              **{k: v for k, v in c.items() if k != "methods"}}
                        for cls, c in data["device_classes"].items()}, "class"),
               "**Where the learning ran**\n", learning_table(data["learning_ran_on"])]
    return blocks


def class_table(classes: dict, who: str) -> str:
    """Per device class and method (or pick): its replays' figures to the target, per seed."""
    rows = [[cls, method, *(show(v) for v in figures.values())]
            for cls, c in classes.items() for method, figures in c["methods"].items()]
    figures = list(next(iter(next(iter(classes.values()))["methods"].values())))
    return table(["class", who, *figures], rows)


def learning_table(ran_on: dict) -> str:
    """Per stage: the runs by device, CPU and commit, and their host seconds summed."""
    return table(["stage", "runs by device", "host seconds"],
                 [[stage, show(r["runs_by_device"]), number(r["host_seconds"])] for stage, r in ran_on.items()])


SENSITIVITY_FIELDS = ("label", "method", "score_at_budget", "client_flops_per_round", "read_at_round",
                      "read_at_client_flops", "client_flops")
TUNING_FIELDS = ("label", "method", "lr", "score_at_budget", "read_at_round", "read_at_client_flops",
                 "client_flops_per_round", "runs", "reused", "client_flops_to_level")


def tflop(flops) -> str:
    return "not reached" if flops is None else number(flops / 1e12)


def configuration(row: dict, leave_out=TUNING_FIELDS) -> str:
    return ", ".join(f"{k} {v}" for k, v in row.items() if k not in leave_out) or "-"


def interval(point: dict) -> str:
    return " to ".join(number(v) for v in point["t_interval"]) if "t_interval" in point else "-"


def report_rows(methods: dict, target: float) -> list[list]:
    """One row per report run: where it was read, its accuracies and its to-target figures."""
    return [[name, seed, m["rounds"][i], number(m["initial_accuracy"][i]), number(m["final_smoothed_accuracy"][i]),
             number(m["final_smoothed_accuracy"][i] >= target), tflop(m["client_flops_to_target"][i]),
             number(m["time_to_target_s"][i]), number(m["energy_to_target_j"][i]), number(m["bytes_to_target"][i])]
            for name, m in methods.items() for i, seed in enumerate(m["seeds"])]


REPORT_HEADER = ["pick", "seed", "round read", "initial", "final smoothed", "ends at or above target",
                 "TFLOP to target", "time to target, s", "energy to target, J", "bytes to target"]


def ratio_tables(curves: dict) -> list[str]:
    """Per pair: the client-FLOPs ratio at each target, per seed, over seeds and on the seed-mean curves."""
    blocks = []
    for pair, curve in curves.items():
        seeds = curve["seeds"]
        rows = [[f"{number(p['fraction'])}{' (marked)' if p['marked'] else ''}", number(p["target"]),
                 *(bound(s["ratio"]) for s in p["per_seed"]), f"{p['exact']} of {len(seeds)}",
                 number(p.get("geometric_mean")), interval(p), bound(p["seed_mean"]["ratio"])]
                for p in curve["points"]]
        blocks += [f"**{pair}: client FLOPs to target, theirs over FedSPZO's**, target = initial + f x mean gain "
                   f"(per seed; '>=': theirs never reached it, '<=': FedSPZO never did; geometric mean and "
                   f"{number(100 * curve['confidence'])}% t-interval over the exact seeds; the last column on "
                   "the seed-mean curves)\n",
                   table(["f", "target", *(f"seed {s}" for s in seeds), "exact", "geometric mean", "t-interval",
                          "seed-mean curves"], rows)]
    return blocks


def post_hoc_blocks(data: dict) -> list[str]:
    """The analysis added after the plan: targets from the reference's best accuracy, and the
    runs added after the plan's."""
    post = data["post_hoc"]
    target = post["target"]
    blocks = [f"**Post hoc, outside the plan**: targets from {post['rule']}: {number(target['accuracy'])} at the "
              f"plan's f (initial {number(target['initial'])}, mean gain {number(target['mean_gain'])}; per seed "
              f"{show(target['reference_gain_per_seed'])}).\n"]
    if post["runs"]:
        blocks += ["**Post-hoc report runs** (read as the plan's, at the post-hoc target)\n",
                   table(REPORT_HEADER, report_rows(post["runs"], target["accuracy"]))]
    return blocks + ratio_tables(post["ratio_curve"]) + class_blocks(post["device_classes"], "at the post-hoc target")


def class_blocks(classes: dict, which: str) -> list[str]:
    """Simulated time and energy to a target per device class, each report trace replayed there."""
    if not classes:
        return []
    return [f"**Per device class, {which}** (the report traces replayed on a fleet of one class; per seed)\n",
            class_table(classes, "pick")]


def study_v2(data: dict) -> list[str]:
    """A version-2 plan's comparison: tuning at the budget B, the picks, the report runs read at the
    report budget, the ratio curve over targets per pair, accuracy at the budget, the per-class
    replays and where every run learned."""
    budget, target = data["budget"], data["target"]
    lrs = sorted({row["lr"] for row in data["tuning"]})
    chosen = {(c["label"], c["lr"], configuration(c, ("label", "lr", "score_at_budget")))
              for c in data["chosen"].values()}
    grid: dict[tuple, dict] = {}
    for row in data["tuning"]:
        key = (row["label"], configuration(row), number(row["client_flops_per_round"] / 1e12))
        mark = (row["label"], row["lr"], configuration(row)) in chosen
        cell = number(row["score_at_budget"]) + (" (v1 run)" if any(row["reused"]) else "")
        grid.setdefault(key, {})[row["lr"]] = f"**{cell}**" if mark else cell
    blocks = [f"**Tuning at the budget**: smoothed tuning accuracy at each configuration's last evaluation within "
              f"B = {tflop(budget['client_flops'])} client TFLOP (seed "
              f"{', '.join(map(str, data['plan']['tuning']['seeds']))}; bold: the pick per label, "
              f"rule: {budget['rule']}).\n",
              table(["label", "configuration", "TFLOP a round", *(f"lr {number(lr)}" for lr in lrs)],
                    [[*key, *(accs.get(lr, "") for lr in lrs)] for key, accs in grid.items()])]
    levels = list(next(iter(data["sensitivity"].values())))
    blocks += ["**Sensitivity, not the rule**: the least client TFLOP any tuning run of a label needed to reach "
               "each tuning accuracy within B, and which run that was.\n",
               table(["label", *levels],
                     [[label, *(f"{tflop(r['client_flops'])} ({configuration(r, SENSITIVITY_FIELDS)})" if r
                                else "not reached" for r in row.values())]
                      for label, row in data["sensitivity"].items()]),
               f"**Target**: {number(target['accuracy'])} smoothed test accuracy: {target['rule']} (initial "
               f"{number(target['initial'])}, mean gain {number(target['mean_gain'])}).\n"]
    rows = report_rows(data["methods"], target["accuracy"])
    report = data["report_budget"]
    blocks += [f"**Report runs** (test split; each read at its last evaluation within {tflop(report['client_flops'])} "
               "client TFLOP; to-target figures at the first smoothed crossing)\n",
               table(REPORT_HEADER, rows)]
    blocks += ratio_tables(data["ratio_curve"])
    blocks += ["**At the report budget**: FedSPZO's smoothed accuracy minus the other's, per seed\n",
               table(["pair", "per seed", "mean", "min", "max"],
                     [[pair, show(g["ours_minus_theirs"]), *(number(g[k]) for k in ("mean", "min", "max"))]
                      for pair, g in data["at_budget"].items()])]
    if data["post_hoc"]["ratio_curve"]:
        blocks += post_hoc_blocks(data)
    blocks += [*class_blocks(data["device_classes"], "at the plan's target"),
               "**Where the learning ran** (host seconds summed over runs)\n", learning_table(data["learning_ran_on"])]
    return blocks


def fedspzo_vs_baselines(data: dict) -> list[str]:
    """One task: figures to the common target per method, then each method's totals."""
    methods = data["methods"]
    flat = {k: v for k, v in data.items() if k not in ("methods", "provenance")}
    return [table(["figure", "value"], [[k, show(v)] for k, v in flat.items()]),
            f"**To target** (this file is the `--task {data['task']}` run)\n",
            records({m: {k: v for k, v in r.items() if k != "totals"} for m, r in methods.items()}, "method"),
            "**Whole run**\n",
            records({m: r["totals"] for m, r in methods.items()}, "method")]


def crossing(flops, budget: float) -> str:
    """Client FLOPs to a target in TFLOP; a censored run as the bound it gives."""
    return f">= {number(budget / 1e12)} TFLOP" if flops is None else f"{number(flops / 1e12)} TFLOP"


def ratio_bounds(low: float, high: float | None) -> str:
    """A ratio given as bounds (a null upper bound: unbounded)."""
    if high is None:
        return f">= {number(low)}" if low > 0 else "undetermined"
    return number(low) if low == high else (f"<= {number(high)}" if low == 0 else f"{number(low)} to {number(high)}")


def compare_v2_readback(data: dict) -> list[str]:
    """v2's report runs under the compare protocol: paired differences with their intervals at
    each checkpoint, collapse rates, client FLOPs to the target with censored seeds kept, the
    generated sentences and what could not be applied (rule 3)."""
    ref, notes, budget = data["reference"], data["notes"], data["budget"]
    seeds = ", ".join(map(str, data["seeds"]))
    paired_rows = [[arm, row["at_text"], row["reading"], "; ".join(f"{d:+.4f}" for d in row["differences"]),
                    f"{row['mean']:+.4f}", f"{row['low']:+.4f} to {row['high']:+.4f}", row["verdict"]]
                   for arm, rows in data["paired"].items() for row in rows]
    labels = list(next(iter(data["collapse"].values())))
    collapse_rows = [[name, *(f"{rates[label]['collapsed']}/{rates[label]['runs']}" for label in labels),
                      "; ".join(number(v) for v in data["runs"][name]["best_smoothed"]),
                      "; ".join(number(v) for v in data["runs"][name]["readings"][labels[-1]])]
                     for name, rates in data["collapse"].items()]
    target = data["cost_to_target"]
    seed_rows = [[arm, s["seed"], crossing(s["arm"], budget), crossing(s["reference"], budget),
                  ratio_bounds(s["ratio_low"], s["ratio_high"])]
                 for arm, entry in target["arms"].items() for s in entry["per_seed"]]
    summary_rows = [[arm, e["summary"]["pairs"], ratio_bounds(e["summary"]["median"]["low"],
                                                              e["summary"]["median"]["high"]),
                     *(e["summary"]["signs"][k] for k in ("cheaper", "costlier", "equal", "undetermined")),
                     f"{e['summary']['censored']['arm']} / {e['summary']['censored']['reference']}"]
                    for arm, e in target["arms"].items()]
    sentences = [f"- ({row['reading']}) {row['sentence']}\n" for rows in data["paired"].values() for row in rows
                 if row["reading"] == "primary"]
    sentences += [f"- ({row['reading']}) {row['sentence']}\n" for rows in data["paired"].values() for row in rows
                  if row["reading"] != "primary"]
    return [
        "### v2 read back under the compare protocol\n",
        f"Reference `{ref}`, arms {', '.join(f'`{a}`' for a in data['arms'])} (v2's picks), seeds {seeds} paired by "
        f"seed, cost client FLOPs, test accuracy smoothed over {data['smoothing']} evaluations. {notes['rule_1']}\n",
        f"**Paired differences** (rule 5): smoothed test accuracy, arm minus `{ref}`, per seed ({seeds}) and their "
        f"mean with its {data['confidence']:.0%} t-interval over seeds. The reading at "
        f"{number(budget / 1e12)} client TFLOP, v2's report budget, is primary; the others are descriptive.\n",
        table(["arm", "at", "reading", "per seed", "mean", f"{data['confidence']:.0%} t-interval", "verdict"],
              paired_rows),
        f"**Collapse rates** (rule 7), collapsed runs of {len(data['seeds'])}. {notes['collapse']}\n",
        table(["pick", *labels, "best smoothed per seed", f"smoothed at {labels[-1]} per seed"], collapse_rows),
        f"**Client FLOPs to the target {number(target['target'])}** (rule 6; v2's post-hoc target) within "
        f"{number(budget / 1e12)} TFLOP: a run that never reaches it is censored, shown as its bound, and kept.\n",
        table(["arm", "seed", "arm to target", f"{ref} to target", f"ratio arm / {ref}"], seed_rows),
        table(["arm", "pairs", "median ratio", "cheaper", "costlier", "equal", "undetermined",
               f"censored (arm / {ref})"], summary_rows),
        "**Generated sentences**\n",
        "".join(sentences),
        f"**Rule 3 not applied.** {notes['rule_3']}\n",
        f"{notes['intervals']}\n",
    ]


def memory_model(data: dict) -> list[str]:
    """Declared against measured peak per model, method and trainable kind, in MB, with the error
    that the memory model must keep within the tolerance."""
    rows = [[r["model"], r["method"], r["trainable"], f"{r['trainable_params'] / 1e6:.3g}M",
             f"{r['declared_bytes'] / 1e6:.1f}", f"{r['measured_bytes'] / 1e6:.1f}", f"{r['error']:+.1%}"]
            for r in data["rows"]]
    return [table(["model", "method", "trainable", "trainable parameters", "declared MB", "measured MB",
                   "error (declared / measured - 1)"], rows),
            "Worst error " + and_join(f"{error:.1%} ({model})" for model, error in data["worst_error"].items())
            + f"; tolerance {data['tolerance']:.0%}.\n"]


# a result's own renderer, by the name of its JSON (bench/results/NAME.json)
RENDERERS = {"fedspzo_paper": fedspzo_paper, "fedspzo_paper_v2": study_v2,
             "fedspzo_vs_baselines_agnews": fedspzo_vs_baselines, "fedspzo_vs_baselines_sst2": fedspzo_vs_baselines,
             "compare_v2_readback": compare_v2_readback, "memory_model": memory_model}

# results whose script was removed, by that script: what they measured (the first sentence is the
# README's summary); their figures stay as history
RETIRED = {"bench/fedspzo_paper.py": (
    "The FedSPZO study's versions 1 and 2 (plans bench/fedspzo_paper.yaml and bench/fedspzo_paper_v2.yaml), kept "
    "as history. Their script was removed when `edgefed compare` replaced it: version 3 is the comparison file "
    "bench/fedspzo_v3.yaml. docs/fedspzo_study.md says what was wrong with versions 1 and 2.")}


# --- the FedSPZO study page ----------------------------------------------------------------------

STUDY = "fedspzo_paper_v2"  # version 2: bench/results/STUDY.json, its runs beside it
READBACK = "compare_v2_readback"  # version 2's report runs read back under the compare protocol
PLAN_V3 = Path("bench/fedspzo_v3.yaml")  # version 3, a comparison file for `edgefed compare`
RUNS_V3 = Path("bench/results/fedspzo_v3")  # where its header says to run it
CONTROL_LABEL = "decomfl-block2"
CONTROL = (f"`{CONTROL_LABEL}` is the control: DeComFL training only what FedSPZO's block 2 trains at split 4 (the "
           "LoRA adapters of the last two layers and the head, `trainable: lora-last:2+head`). If it matches "
           "FedSPZO, the gain comes from training the top of the model, not from splitting the perturbations.\n")


def fields(values: dict) -> str:
    """Algorithm fields as a reader wants them: 'split 3, p2 4'."""
    return ", ".join(f"{k} {number(v)}" for k, v in values.items()) or "-"


def and_join(items) -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = [str(i) for i in items]
    return ", ".join(items[:-1]) + f" and {items[-1]}" if len(items) > 1 else "".join(items)


def v3_plan(repo: Path) -> list[str]:
    """Version 3 as its comparison file fixes it, read through ``edgefed.comparison`` (the budget,
    the arms and their grids, the seeds, the stages and their cost), and what its runs spent."""
    from edgefed.comparison import load_comparison, stage_cost
    from edgefed.protocol import format_cost

    comparison = load_comparison(repo / PLAN_V3)
    spec, cost = comparison.spec, stage_cost(comparison)
    fmt = lambda value: format_cost(value, spec.cost)  # noqa: E731
    b = spec.budget
    base = comparison.base.relative_to(repo.resolve()).as_posix()
    spent = v3_stage_spent(repo / RUNS_V3, spec)
    started = v3_progress(repo / RUNS_V3, sum(spent.values()), cost["total_cost"], fmt)
    arms = [[f"`{label}`" + (" (reference)" if label == spec.reference else ""), arm.name, fields(arm.fixed),
             "; ".join(fields(c) for c in arm.configs),
             "; ".join(f"{k} {', '.join(number(v) for v in values)}" for k, values in arm.grid.items()),
             cost["configurations"][label], cost["survivors"][label]]
            for label, arm in spec.arms.items()]
    n, kept, more = sum(cost["configurations"].values()), sum(cost["survivors"].values()), spec.tuning.seeds[1:]
    stages = [["1. pruning", f"{n} configurations on tuning seed {spec.tuning.seeds[0]} to B/3 = {fmt(b / 3)}"],
              ["2. survivors", f"{kept} survivors: the rest of B on seed {spec.tuning.seeds[0]}, then B on seeds "
                               f"{', '.join(map(str, more))}"],
              ["3. report", f"{len(spec.arms)} picks x {len(spec.seeds)} seeds x B"]]
    rows = [[stage, runs, fmt(cost["cost"][key]), number(cost["budgets"][key]), fmt(spent[key])]
            for (stage, runs), key in zip(stages, ("pruning", "survivors", "report"))]
    rows.append(["total", "", fmt(cost["total_cost"]), number(cost["total_budgets"]), fmt(sum(spent.values()))])
    targets = (f"Targets {', '.join(map(number, spec.targets))} give a secondary outcome." if spec.targets
               else "There are no accuracy targets: the paired accuracy at B is the outcome.")
    return [
        "## The plan\n",
        f"Version 3 is planned in [`{PLAN_V3}`](../{PLAN_V3}), a comparison file run by `edgefed compare` "
        f"([docs/compare.md](compare.md)). The plan was committed before any of its runs. {started}\n",
        "What the plan fixes:\n",
        f"- **Budget.** Every run spends B = {fmt(b)}, whatever its method. It is evaluated every "
        f"B/{spec.evaluations} = {fmt(b / spec.evaluations)}, on the tuning split and on the test split. "
        f"Accuracy is smoothed over {spec.smoothing} evaluations.\n"
        f"- **Tuning at B.** Every configuration runs on tuning seed {spec.tuning.seeds[0]} to B/3. The best third "
        f"of each arm (at least 2) go on to B, and also run on tuning seeds {', '.join(map(str, more))}. The pick "
        "is the survivor with the best smoothed tuning accuracy over the last third of B, averaged over the tuning "
        f"seeds. The tuning split is {spec.tuning.split} training sentences held out from training.\n"
        f"- **Report.** Each arm's pick runs on seeds {', '.join(map(str, spec.seeds))}, paired by seed with "
        f"`{spec.reference}`. The outcome is the paired difference in smoothed test accuracy at B, with a 95% "
        f"t-interval over the {len(spec.seeds)} seeds. The readings at "
        f"{', '.join(fmt(f * b) for f in spec.checkpoints if f < 1)} are descriptive. Collapse rates are given "
        f"beside every figure. {targets}\n"
        f"- **Regime.** [`{base}`](../{base}) with {show(spec.set)}.\n",
        "**Arms** (configurations: each of the listed ones times the grid; survivors: how many reach B):\n",
        table(["arm", "method", "fixed", "configurations", "grid", "runs to B/3", "survivors"], arms),
        CONTROL,
        f"**Stages and cost** (what `edgefed compare {PLAN_V3} --plan` prints, and what the runs spent: a run "
        "overshoots its budget by up to one round):\n",
        table(["stage", "runs", "cost", "budgets B", "spent"], rows),
    ]


def v3_stage_spent(runs: Path, spec) -> dict[str, float]:
    """What each stage spent, from the run folders (each rounds.csv summed as the runner's schedule
    sums it; a run under way to its last committed round): pruning the first tuning seed's runs up
    to the round that reached B/3, where they paused; survivors the rest of those runs and the other
    tuning seeds' runs; report the report seeds' runs."""
    from edgefed.budget import spend
    from edgefed.comparison import HALVING
    from edgefed.results import read_rows

    spent = dict.fromkeys(("pruning", "survivors", "report"), 0.0)
    for run in sorted(runs.glob("runs/*/*")):
        if not (run / "rounds.csv").is_file():
            continue
        seed, by_run = int(run.name.rsplit("-s", 1)[1]), 0.0
        for row in read_rows(run / "rounds.csv"):
            before, by_run = by_run, spend(by_run, row, spec.cost)
            stage = ("report" if seed in spec.seeds else
                     "pruning" if seed == spec.tuning.seeds[0] and before < spec.budget / HALVING else "survivors")
            spent[stage] += by_run - before
    return spent


def v3_progress(runs: Path, spent: float, planned: float, fmt) -> str:
    """What the run folders hold: runs by status (a paused run is one pruned at B/3) and the cost
    they spent (``v3_stage_spent``), against the plan's estimate."""
    from edgefed.comparing import status

    counts = Counter(status(run) or "under way" for run in runs.glob("runs/*/*"))
    words = {"paused": "pruned at B/3"}
    states = and_join(f"{n} {words.get(state, state)}" for state, n in sorted(counts.items()))
    return f"Its runs: {states}, {fmt(spent)} spent against the plan's estimate of {fmt(planned)}."


def pick_edges(result: dict, label: str) -> dict[str, str]:
    """The grid fields an arm's pick sits at an end of (``outcomes.pick_edges`` over its tuning
    rows: compare.json carries them itself only from the commit that added the rule)."""
    from edgefed.outcomes import pick_edges as edges

    return edges([row["algorithm"] for row in result["tuning"][label]["rows"]], result["picks"][label]["algorithm"])


def v3_claim(result: dict) -> str:
    """One plain sentence on the paper's claim, from the primary reading of the zero-order baseline
    against FedSPZO (the reference): which way the interval points, or that it holds no difference;
    then the caveat when DeComFL's pick sits at an end of its grid (``protocol.edge_sentence``)."""
    ref = result["reference"]
    primary = next(e for e in result["checkpoints"]["registered"] if e["primary"])
    zo = primary["arms"].get("decomfl")
    if zo is None:
        return ""
    from edgefed.protocol import edge_sentence

    at = f"at {tflop(primary['at'])} client TFLOP"
    if zo["low"] is not None and zo["high"] is not None and zo["high"] < 0:
        claim = (f"So in this regime {ref} reaches a higher accuracy than DeComFL {at}, in the direction of the "
                 "paper's claim of less computation (this reading gives an accuracy difference, not a cost ratio).")
    elif zo["low"] is not None and zo["low"] > 0:
        claim = (f"So in this regime DeComFL reaches a higher accuracy than {ref} {at}: the paper's claim of 1.6-3x "
                 "less computation does not hold here.")
    else:
        claim = (f"So in this regime {ref} shows no accuracy gain over DeComFL {at}: the paper's claim of 1.6-3x "
                 "less computation is not reproduced here, and a gain smaller than the interval's width is not ruled "
                 "out.")
    caveat = edge_sentence("DeComFL", result["picks"]["decomfl"]["algorithm"], pick_edges(result, "decomfl"))
    return f"{claim} {caveat}".strip()


def v3_spent_sentence(result: dict) -> str:
    """What the zero-order picks buy instead: their peak memory and bytes beside FedAvg's (means
    over the report seeds, from the same runs; no ratio without an interval, so none)."""
    from edgefed.protocol import format_cost

    spent = result["spent"]
    if "fedavg" not in spent:
        return ""
    mb = lambda v: format_cost(v, "bytes")  # noqa: E731
    zo = [label for label in spent if label != "fedavg"]
    return ("What the zero-order methods buy instead, from the same runs (means over the report seeds): a client's "
            "peak memory of " + and_join(f"{mb(spent[k]['peak_memory_bytes'])} ({k})" for k in zo)
            + f" against FedAvg's {mb(spent['fedavg']['peak_memory_bytes'])}, and "
            + and_join(f"{mb(spent[k]['bytes'])} ({k})" for k in zo)
            + f" on the network per run against FedAvg's {mb(spent['fedavg']['bytes'])}.")


def v3_results(result: dict) -> list[str]:
    """Version 3's results from compare.json: the primary sentences, the paper's claim, what the
    zero-order picks buy, the checkpoint table, what the picks spent and the tuning table (picks at
    a grid edge marked)."""
    ref, collapse = result["reference"], result["collapse"]
    primary = [a["sentence"] for e in result["checkpoints"]["registered"] if e["primary"] for a in e["arms"].values()]
    rate = lambda label: f"{collapse[label]['collapsed']}/{collapse[label]['runs']}"  # noqa: E731
    checkpoints = [[tflop(e["at"]), label, number(a["mean"]), f"{number(a['low'])} to {number(a['high'])}",
                    a["verdict"], rate(label), rate(ref), "primary" if e["primary"] else "descriptive"]
                   for e in result["checkpoints"]["registered"] for label, a in e["arms"].items()]
    spent = [[label, rate(label), number(s["client_flops"] / 1e12), number(s["energy_j"] / 1e3),
              number(s["sim_time_s"]), number(s["bytes"] / 1e6), number(s["peak_memory_bytes"] / 1e6)]
             for label, s in result["spent"].items()]
    tuning = []
    for label, t in result["tuning"].items():
        edges = pick_edges(result, label)
        for row in t["rows"]:
            pick = row["config"] == t["pick"]
            edge = f" (at the {and_join(f'{end} {key}' for key, end in edges.items())} of its grid)" if edges else ""
            tuning.append([label, row["configuration"], number(row["pruning_score"]),
                           "yes" if row["survived"] else "no", number(row.get("score")),
                           ("pick" + edge) if pick else ""])
    return [
        "## Version 3: the result\n",
        f"**Primary, at the full budget** ({len(result['seeds']['registered'])} paired report seeds, the reference "
        f"`{ref}`; learned on {result['device']} at {and_join(v[:7] for v in result['code_versions'])}):\n",
        "".join(f"- {s}\n" for s in primary),
        *(f"{sentence}\n" for sentence in (v3_claim(result), v3_spent_sentence(result)) if sentence),
        " ".join(result["notes"]) + "\n",
        "**Every checkpoint** (the full budget is primary; the others are descriptive):\n",
        table(["at (client TFLOP)", "arm", f"mean difference from {ref}", "95% t-interval", "verdict",
               "arm collapsed", "reference collapsed", "reading"], checkpoints),
        "**What the picks spent** (means over the report seeds):\n",
        table(["arm", "collapsed", "client TFLOP", "energy (kJ)", "simulated time (s)", "MB up and down",
               "peak memory (MB)"], spent),
        "**Tuning** (successive halving, scored at the full budget; a pick at an end of its grid is marked, as "
        "`edgefed compare` now says it: docs/compare.md, rule 2):\n",
        table(["arm", "configuration", "pruning score", "survived", "score", "pick"], tuning),
    ]


def v3_replays(data: dict) -> list[str]:
    """The picks on the quickstart's fleet, each report trace replayed on the final simulator: the
    paired sentences per figure and each pick's per-seed figures at the budget."""
    figures = {"sim_time_s": ("simulated time (s)", 1.0), "energy_j": ("fleet energy (kJ)", 1e3),
               "bytes": ("kB up and down", 1e3)}
    rows = [[label, seed, *(number(p[k][i] / scale) for k, (_, scale) in figures.items())]
            for label, p in data["picks"].items() for i, seed in enumerate(p["seeds"])]
    return [
        "**Time and energy on the quickstart's fleet** (each report run's trace replayed on the final simulator, "
        "to the budget; the round that crosses it counted pro rata; script "
        "[`bench/fedspzo_v3_replays.py`](../bench/fedspzo_v3_replays.py)):\n",
        "".join(f"- {d['sentence']}\n" for by_figure in data["differences"].values() for d in by_figure.values()),
        table(["pick", "seed", *(name for name, _ in figures.values())], rows),
        provenance_line(data.get("provenance"), what="The replays"),
    ]


def v2_flaws(data: dict, readback: dict) -> list[str]:
    """What was wrong with version 2, each figure read from its JSON and from the read-back."""
    tune, report = data["budget"]["client_flops"], data["report_budget"]["client_flops"]
    pick = {k: v for k, v in data["chosen"]["decomfl"].items() if k not in ("label", "score_at_budget")}
    runs = readback["runs"]["decomfl"]
    collapsed = [i for i, c in enumerate(runs["collapsed_at_budget"]) if c]
    final = runs["readings"][next(reversed(runs["readings"]))]
    peaks = and_join(f"{runs['best_smoothed'][i]:.3f}" for i in collapsed)
    ends = and_join(f"{final[i]:.3f}" for i in collapsed)
    when = ", ".join(f"{rates['collapsed']} by {label.removesuffix(' client TFLOP')}"
                     for label, rates in readback["collapse"]["decomfl"].items())
    marked = next(p for p in data["post_hoc"]["ratio_curve"]["decomfl/fedspzo"]["points"] if p["marked"])
    target = data["post_hoc"]["target"]["accuracy"]
    per_seed = readback["cost_to_target"]["arms"]["decomfl"]["per_seed"]
    censored = [s for s in per_seed if s["arm_censored"]]
    plan_target = data["target"]
    starts = readback["cost_to_target"]["starting_accuracy"]
    nearest = min((s for s in starts if starts[s] < target), key=lambda s: target - starts[s])
    split = data["plan"]["tuning"]["tuning_split"]
    p = data["chosen"][readback["reference"]]["score_at_budget"]
    scores: dict[str, list] = {}
    for row in data["tuning"]:
        scores.setdefault(row["label"], []).append(row["score_at_budget"])
    leads = [sorted(s)[-1] - sorted(s)[-2] for s in scores.values() if len(s) > 1]
    return [
        "### Version 2\n",
        f"Version 2 ([`bench/{STUDY}.yaml`](../bench/{STUDY}.yaml), runs under "
        f"[`bench/results/{STUDY}/`](../bench/results/{STUDY}/), figures in "
        f"[`bench/results/{STUDY}.json`](../bench/results/{STUDY}.json)):\n",
        f"- **Tuned at a third of the report budget.** It picked learning rates at {tflop(tune)} client TFLOP and "
        f"reported at {tflop(report)}. DeComFL's pick ({fields(pick)}) then collapsed on {len(collapsed)} of "
        f"{len(final)} seeds ({when} client TFLOP). Seeds {and_join(readback['seeds'][i] for i in collapsed)} "
        f"peaked at {peaks} smoothed test accuracy and ended at {ends}. That collapse alone made v2's headline, "
        f"FedSPZO {data['at_budget']['decomfl/fedspzo']['mean']:+.2f} against DeComFL at {tflop(report)} client "
        "TFLOP.\n"
        f"- **A ratio that dropped a seed.** The README's \"DeComFL needs {number(marked['geometric_mean'])}x "
        f"FedSPZO's client FLOPs\" to the target {target:.4f} was a geometric mean over the {marked['exact']} of "
        f"{len(per_seed)} seeds that reached it. DeComFL never reached it on seed "
        f"{and_join(s['seed'] for s in censored)}. Counted at its bound (ratio "
        f"{and_join(ratio_bounds(s['ratio_low'], s['ratio_high']) for s in censored)}), the geometric mean over all "
        f"{len(per_seed)} seeds is at least {statistics.geometric_mean(s['ratio_low'] for s in per_seed):.2f}x: "
        "the sign flips.\n"
        f"- **The plan's target rule gave no target.** DeComFL ended the report budget "
        f"{-plan_target['mean_gain']:.3f} below where it began, on average. So the rule put the target at "
        f"{plan_target['accuracy']:.3f}, below the mean starting accuracy {plan_target['initial']:.3f}. The post-hoc "
        "rule that replaced it was written after DeComFL's report runs were in.\n"
        f"- **One target for seeds that start apart.** Seeds {and_join(starts)} start at "
        f"{and_join(f'{a:.3f}' for a in starts.values())} test accuracy. Seed {nearest} starts "
        f"{target - starts[nearest]:.3f} below the target {target:.4f}, so its cost to the target measures the "
        "first smoothing window, not learning.\n"
        f"- **Tuned on one seed.** Tuning used seed {and_join(data['plan']['tuning']['seeds'])}, also a report seed, "
        f"on {split} sentences. There the standard error of an accuracy near {p:.2f} is about "
        f"{(p * (1 - p) / split) ** 0.5:.2f}. Each label's pick led its runner-up by {min(leads):.3f} to "
        f"{max(leads):.3f}.\n",
    ]


def study_v1(data: dict) -> list[str]:
    """Version 1 in brief, labelled for what its selection was: best per round, not per FLOP."""
    r = data["ratios"]["decomfl/fedspzo"]["client_flops_to_target"]
    return ["### Version 1: DeComFL at its best per round\n",
            "Version 1 ([`bench/fedspzo_paper.yaml`](../bench/fedspzo_paper.yaml), runs under "
            "[`bench/results/fedspzo_paper/`](../bench/results/fedspzo_paper/)) tuned every configuration for the "
            "same number of rounds and picked by accuracy. So it picked DeComFL with "
            f"{fields(data['chosen']['decomfl'])}: the best per round, and the costliest per round, which gave it the "
            "most compute. Its runs learned on a mix of CPU and GPU machines. Its client FLOPs ratio at its single "
            f"target {number(data['target']['accuracy'])}, DeComFL over FedSPZO per seed: "
            f"{', '.join(bound(e) for e in r['per_seed'])}. It compares against a "
            "baseline chosen per round, not per FLOP. Its full tables are in "
            "[docs/benchmarks.md](benchmarks.md#fedspzo_paper).\n"]


def study_md(repo: Path = REPO) -> str | None:
    """docs/fedspzo_study.md (None until version 2's JSON, its read-back, version 1's JSON and
    version 3's compare.json exist): version 3's plan, result and replays, then what was wrong with
    versions 1 and 2, in brief, as history."""
    results_dir = repo / "bench" / "results"
    paths = [results_dir / f"{STUDY}.json", results_dir / f"{READBACK}.json", results_dir / "fedspzo_paper.json",
             repo / RUNS_V3 / "compare.json", repo / PLAN_V3]
    if not all(path.is_file() for path in paths):
        return None
    data, readback, v1, v3 = (json.loads(path.read_text()) for path in paths[:4])
    replays = results_dir / "fedspzo_v3_replays.json"
    return "\n".join([
        generated_note(COMMAND),
        "# The FedSPZO study: FedSPZO against DeComFL, a top-block control and FedAvg, per client FLOP\n",
        "The question comes from the FedSPZO paper (arXiv 2502.10239). Does splitting the network into two "
        "blocks, with more perturbations on block 2 and block 1's outputs reused, cut client computation "
        "against the zero-order state of the art? Versions 1 and 2 of this study did not answer it: their "
        "protocols decided the headline, not the methods. Version 3 answers it under `edgefed compare`, below.\n",
        *v3_plan(repo), *v3_results(v3), *(v3_replays(json.loads(replays.read_text())) if replays.is_file() else []),
        "## Versions 1 and 2, as history\n",
        f"What was wrong with each, in brief. Their own tables are in docs/benchmarks.md: [version 2](benchmarks.md#"
        f"{STUDY}), [version 1](benchmarks.md#fedspzo_paper), and [version 2's report runs read back under the "
        f"compare protocol](benchmarks.md#{READBACK}) (script [`bench/{READBACK}.py`](../bench/{READBACK}.py)).\n",
        *v2_flaws(data, readback), *study_v1(v1)])


def readme_block(repo: Path) -> list[str]:
    """The README's summary: version 3's primary sentences, what they mean for the paper's claim
    and what the zero-order methods buy."""
    result = json.loads((repo / RUNS_V3 / "compare.json").read_text())
    primary = next(e for e in result["checkpoints"]["registered"] if e["primary"])
    return [*(f"- {a['sentence']}" for a in primary["arms"].values()),
            f"\n{v3_claim(result)} {v3_spent_sentence(result)} The plan, every table and what was wrong with "
            f"versions 1 and 2: [docs/fedspzo_study.md](docs/fedspzo_study.md)."]


def readme_with_study(repo: Path = REPO) -> str | None:
    """The repository's README with the study's summary (``readme_block``) between its two
    markers; None when it has no markers."""
    text = (repo / ROOT_README).read_text() if (repo / ROOT_README).is_file() else ""
    start, end = STUDY_MARKERS
    if start not in text or end not in text:
        return None
    head, rest = text.split(start, 1)
    return "\n".join([head + start, *readme_block(repo), end + rest.split(end, 1)[1]])


# --- docs/design.md's figures -------------------------------------------------------------------

DESIGN_MD = Path("docs/design.md")  # only its blocks between markers (``design_marker``) are written here
DESIGN_BLOCKS = ("import path", "async findings")
METHOD_NAMES = {"decomfl": "DeComFL", "fedspzo": "FedSPZO", "fedavg": "FedAvg"}


def design_marker(block: str) -> tuple[str, str]:
    return f"<!-- {block}: written by `{COMMAND}` -->", f"<!-- end of the {block} -->"


def import_path_sentence(data: dict) -> str:
    """How many edgefed modules the quickstart has loaded when it writes its first row, by room."""
    rooms = data["by_room"]
    parts = [f"{rooms.get(room, 0)} {what}" for room, what in (("edgefed", "of the application"),
                                                               ("simulator", "of the model"),
                                                               ("algorithms", "of the learning"),
                                                               ("devices", "of the devices"))]
    return (f"when `edgefed run scenarios/quickstart.yaml` writes its first rounds.csv row, {data['count']} edgefed "
            f"modules are loaded - {', '.join(parts[:-1])} and {parts[-1]} (`python bench/import_path.py` lists them; "
            f"[figures](benchmarks.md#import_path)).")


def async_sentences(data: dict) -> list[str]:
    """The asynchronous-rounds findings as sentences: per fleet and method, the range of the
    per-seed async / sync ratios over the arms (time, energy, bytes, client FLOPs to the target),
    how many seed pairs favour each, and the accuracy after equal numbers of updates."""
    ratios, setup = data["ratios_async_over_sync"], data["setup"]
    fleets = dict.fromkeys(key.split(" / ")[0] for key in ratios)
    out = []
    for fleet in fleets:
        said, faster, cheaper, pairs = [], 0, 0, 0
        for method, name in METHOD_NAMES.items():
            arms = {k: v for k, v in ratios.items() if k.startswith(f"{fleet} / {method} /")}
            if not arms:
                continue
            spans = {}
            for cost in ("time_to_target", "energy_to_target", "bytes", "client_flops"):
                found = [v for arm in arms.values() for v in arm[cost] if isinstance(v, (int, float))]
                spans[cost] = f"{number(min(found))} to {number(max(found))}x" if found else "-"
            for arm in arms.values():
                for t, e in zip(arm["time_to_target"], arm["energy_to_target"]):
                    if isinstance(t, (int, float)) and isinstance(e, (int, float)):
                        pairs += 1
                        faster += t < 1
                        cheaper += e < 1
            said.append(f"{name} {spans['time_to_target']} the time, {spans['energy_to_target']} the energy, "
                        f"{spans['bytes']} the bytes and {spans['client_flops']} the client FLOPs")
        arms_named = sorted({k.split(" / ")[2].removesuffix(" over sync") for k in ratios if k.startswith(fleet)})
        out.append(f"- *{fleet.capitalize()} fleet* ({', '.join(arms_named)}; per seed, where both reached "
                   f"{number(setup['target_accuracy'])}): async took {'; '.join(said)} of synchronous rounds. "
                   f"It was faster in {faster} and used less energy in {cheaper} of those {pairs} seed pairs.")
    accuracy = data["accuracy_per_update"]
    last = f"after {setup['updates']} updates"
    for fleet in fleets:
        said = []
        for method, name in METHOD_NAMES.items():
            sync = accuracy.get(f"{fleet} / {method} / sync")
            if sync is None or last not in sync:
                continue
            arms = [f"{arm.split(' / ')[2]} {number(acc[last])}" for arm, acc in accuracy.items()
                    if arm.startswith(f"{fleet} / {method} / async") and last in acc]
            said.append(f"{name} {number(sync[last])} synchronous against {', '.join(arms)}")
        out.append(f"- *Accuracy {last}* ({fleet} fleet, means over {len(setup['seeds'])} seeds): {'; '.join(said)}.")
    for arms, share in data.get("folded_share", {}).items():
        said = [f"{device} {100 * s['share']:.1f}% ({100 * s['fleet_share']:.0f}% of the fleet)"
                for device, s in share.items() if s["share"] is not None]
        out.append(f"- *Folded share* ({arms}, methods and seeds together): each device class's part of the "
                   f"updates folded into versions: {', '.join(said)}.")
    return out


def design_with_figures(repo: Path = REPO) -> str | None:
    """docs/design.md with each marked block written from its bench result (None: no markers)."""
    text = (repo / DESIGN_MD).read_text() if (repo / DESIGN_MD).is_file() else ""
    found = results(repo)
    writers = {"import path": lambda: [import_path_sentence(found["import_path"])],
               "async findings": lambda: async_sentences(found["async_vs_sync"])}
    if not all(m in text for block in DESIGN_BLOCKS for m in design_marker(block)):
        return None
    for block in DESIGN_BLOCKS:
        start, end = design_marker(block)
        head, rest = text.split(start, 1)
        text = "\n".join([head + start, *writers[block](), end + rest.split(end, 1)[1]])
    return text


# --- the two pages -------------------------------------------------------------------------------

def section(repo: Path, name: str, data: dict) -> str:
    script = script_of(name, data)
    doc = docstring(repo, script)
    stem = Path(script).stem
    folder = Path("bench/results", name if name == stem else f"{stem}/{name.removeprefix(stem + '_')}")
    parts = [f"## {name}\n"]
    if paragraphs(doc):
        parts.append(paragraphs(doc)[0] + "\n")
    elif script in RETIRED:
        parts.append(RETIRED[script] + "\n")
    source = f"[`{script}`](../{script})" if (repo / script).is_file() else f"`{script}` (since removed)"
    where = f"Figures: [`bench/results/{name}.json`](../bench/results/{name}.json), from {source}"
    if (repo / folder).is_dir():
        where += f"; run directories and plots under [`{folder}/`](../{folder}/)"
    parts.append(where + ".\n")
    if usage(doc):
        parts.append(f"```sh\n{usage(doc)}\n```\n")
    for png in dict.fromkeys(re.findall(r"docs/([\w.-]+\.png)", doc)):
        if (repo / "docs" / png).is_file():
            parts.append(f"![{png}]({png})\n")
    render = RENDERERS.get(name)
    parts += render(data) if render else generic(data, data.get("provenance"))
    parts.append(provenance_line(data.get("provenance"), data.get("wall_s")))
    return "\n".join(parts)


def benchmarks_md(repo: Path = REPO) -> str:
    found = results(repo)
    head = [generated_note(COMMAND), "# Benchmarks\n",
            "The figures every benchmark in `bench/` last recorded, read from its `bench/results/*.json`, "
            "each under the commit and machine that produced it (how the benchmarks work: "
            "[bench/README.md](../bench/README.md)). `python bench/stale.py` lists the results whose code "
            "has changed since.\n",
            "".join(f"- [{name}](#{name})\n" for name in found)]
    return "\n".join(head + [section(repo, name, data) for name, data in found.items()])


def readme_md(repo: Path = REPO) -> str:
    found = results(repo)
    rows = []
    for name, data in found.items():
        script = script_of(name, data)
        wall = data.get("wall_s")
        gone = not (repo / script).is_file()
        rows.append([f"`{Path(script).name}` (removed)" if gone else f"[`{Path(script).name}`]({Path(script).name})",
                     summary(RETIRED.get(script, "") if gone else docstring(repo, script)),
                     f"{number(wall)} s" if isinstance(wall, (int, float)) else "-",
                     f"[`results/{name}.json`](results/{name}.json)",
                     f"[{name}](../docs/benchmarks.md#{name})"])
    ran = {script_of(n, d) for n, d in found.items()}
    for path in sorted((repo / "bench").glob("*.py")):
        script = f"bench/{path.name}"
        if script not in ran and writes_result(path):
            rows.append([f"[`{path.name}`]({path.name})", summary(docstring(repo, script)), "-", "not recorded",
                         "-"])
    return "\n".join([
        generated_note(COMMAND),
        "# Benchmarks\n",
        "Each script here measures one thing, prints its figures and writes them to "
        "`bench/results/NAME.json` with a `provenance` block: the commit it ran (and whether the checkout "
        "had uncommitted changes), the machine (CPU, cores, torch threads, torch, GPU) and the package "
        "versions. Every script's docstring says what it measures and how to run it.\n",
        "- `python bench/stale.py` lists the results whose code (the script and every `edgefed` module it "
        "reaches) changed since the commit they record; it exits 1 when any is listed, so CI can ask for a rerun.\n"
        "- `python bench/write_docs.py` regenerates this page and [docs/benchmarks.md](../docs/benchmarks.md), "
        "the figures as tables, from the results; `--check` exits 1 when a committed copy is out of date.\n",
        "The time column is the bench's own wall time where its result records one.\n",
        table(["script", "measures", "runs for", "result", "figures"], rows),
    ])


def outputs(repo: Path = REPO) -> dict[Path, str]:
    """What this script writes, by path relative to the repository (the study page and the README's
    summary once the study's files exist)."""
    study = study_md(repo)
    found = {BENCHMARKS_MD: benchmarks_md(repo), README_MD: readme_md(repo)}
    if study is not None:
        found[STUDY_MD] = study
        readme = readme_with_study(repo)
        if readme is not None:
            found[ROOT_README] = readme
    design = design_with_figures(repo)
    if design is not None:
        found[DESIGN_MD] = design
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 naming each committed file that differs")
    parser.add_argument("--repo", type=Path, default=REPO)
    args = parser.parse_args()
    differ = []
    for rel, text in outputs(args.repo).items():
        path = args.repo / rel
        if args.check:
            if not path.is_file() or path.read_text() != text:
                differ.append(rel)
                print(f"{rel}: differs from what `{COMMAND}` writes", file=sys.stderr)
            continue
        atomic_write(path, text)
        print(f"wrote {rel}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
