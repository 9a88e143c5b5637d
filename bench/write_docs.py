"""Write docs/benchmarks.md and bench/README.md from the recorded results, so a quoted figure is
always the one in its bench/results/*.json, beside the commit and machine that produced it.

Each result's section takes what the bench measures and how to rerun it from the bench script's
docstring, its figures from the JSON (tables; a renderer of its own where the generic one would
be unreadable) and its provenance block. The output depends on the committed files alone (sorted,
no timestamps), so ``--check`` can tell CI and the tests whether a committed copy is out of date.

    python bench/write_docs.py [--check]
"""
from __future__ import annotations

import argparse
import ast
import json
import re
import sys
import textwrap
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
    """The paper comparison: tuning grid, chosen configurations, per-seed report runs, paired
    ratios, equal-compute gaps and the per-device-class replays (a version-2 plan's: ``study_v2``)."""
    if data["plan"].get("version") == 2:
        return study_v2(data)
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


RENDERERS = {"bench/fedspzo_paper.py": fedspzo_paper, "bench/fedspzo_vs_baselines.py": fedspzo_vs_baselines}


# --- the FedSPZO study page ----------------------------------------------------------------------

STUDY = "fedspzo_paper_v2"  # the study the page reads: bench/results/STUDY.json, its runs beside it
CONTROL_LABEL = "decomfl-block2"
CONTROL = (f"`{CONTROL_LABEL}` is the control: DeComFL training only what FedSPZO's block 2 trains at split 4 (the "
           "LoRA adapters of the last two layers and the head, `trainable: lora-last:2+head`). If it matches "
           "FedSPZO, the gain comes from training the top of the model, not from splitting the perturbations.\n")


def pick_name(data: dict, name: str) -> str:
    """A pick as a reader wants it: its label, method and configuration with its lr."""
    if name in data["methods"]:
        m = data["methods"][name]
        return f"{name} ({m['method']}, {configuration(m['config'], ('label',))})"
    algo = data["post_hoc"]["runs"][name]["config"]
    return f"{name} ({algo['name']}, lr {number(algo['lr'])}, run post hoc)"


def verdict(point: dict) -> str:
    """What a ratio point's interval says of FedSPZO against the other pick."""
    if "t_interval" not in point:
        return "too few seeds with a value for an interval"
    low, high = point["t_interval"]
    if low > 1:
        return "the interval lies above 1: FedSPZO needed fewer client FLOPs"
    if high < 1:
        return "the interval lies below 1: FedSPZO needed more client FLOPs"
    return "the interval contains 1: no difference is shown with these seeds"


def pair_findings(data: dict, curves: dict, prefix: str = "") -> list[str]:
    """Per pair: the ratio at the marked target with its interval and what it says, the seeds that
    gave only bounds, and the ratio's range over targets."""
    lines = []
    for pair, curve in curves.items():
        name = pair.split("/")[0]
        marked = next(p for p in curve["points"] if p["marked"])
        exact = [p for p in curve["points"] if "geometric_mean" in p]
        if "geometric_mean" in marked:
            text = (f"- {prefix}**{pick_name(data, name)}** needed {number(marked['geometric_mean'])}x FedSPZO's "
                    f"client FLOPs to reach the marked target {number(marked['target'])} (geometric mean over "
                    f"{marked['exact']} of {len(curve['seeds'])} seeds with a value; "
                    f"{number(100 * curve['confidence'])}% t-interval {interval(marked)}): {verdict(marked)}.")
        else:
            text = (f"- {prefix}**{pick_name(data, name)}**: no seed gave a ratio at the marked target "
                    f"{number(marked['target'])}.")
        if marked["excluded"]:
            text += (f" {marked['excluded']} seed(s) gave only a bound: "
                     f"{', '.join(bound(s['ratio']) for s in marked['per_seed'] if 'value' not in s['ratio'])}.")
        if exact:
            means = [p["geometric_mean"] for p in exact]
            text += (f" Over targets f = {number(exact[0]['fraction'])} to {number(exact[-1]['fraction'])} of the "
                     f"gain the geometric mean ran from {number(min(means))}x to {number(max(means))}x; on the "
                     f"seed-mean curves the marked target gives {bound(marked['seed_mean']['ratio'])}.")
        lines.append(text)
    return lines


def budget_findings(data: dict) -> list[str]:
    """At equal client compute (the report budget): FedSPZO's smoothed accuracy against each other
    pick's, and whether every seed agrees on the sign."""
    lines = []
    every = {**data["at_budget"], **data["post_hoc"]["at_budget"]}
    for pair, gap in every.items():
        if gap["min"] > 0:
            says = "FedSPZO ahead on every seed"
        elif gap["max"] < 0:
            says = f"{pair.split('/')[0]} ahead on every seed"
        else:
            says = "the seeds disagree"
        lines.append(f"- At the report budget ({tflop(data['report_budget']['client_flops'])} client TFLOP), FedSPZO's "
                     f"smoothed test accuracy minus {pick_name(data, pair.split('/')[0])}'s: {number(gap['mean'])} on "
                     f"average, {number(gap['min'])} to {number(gap['max'])} over seeds ({says}).")
    return lines


def in_short(data: dict) -> list[str]:
    """The page's findings, each computed from the JSON: the plan's ratios (or why its rule gave no
    usable target), the post-hoc ones, and the runs that ended below where they began."""
    target = data["target"]
    reference = data["plan"]["target"]["reference"]
    if target["mean_gain"] > 0:
        lines = pair_findings(data, data["ratio_curve"])
    else:
        lines = [f"- **The plan's target rule gave no usable target.** {reference}'s smoothed test accuracy at the "
                 f"end of the report budget was on average {number(-target['mean_gain'])} below where it began (gain "
                 f"per seed {show(target['reference_gain_per_seed'])}), so every target initial + f x gain lies at or "
                 "below the start, and the plan's ratio curve (kept below) compares the cost of the first smoothed "
                 "evaluation, not of learning."]
    post = data["post_hoc"]
    if post["ratio_curve"]:
        lines.append(f"- Post hoc, the gain measured at {reference}'s best smoothed accuracy within the report "
                     f"budget instead ({number(post['target']['mean_gain'])} on average) gives the marked target "
                     f"{number(post['target']['accuracy'])}"
                     + (":" if post["target"]["mean_gain"] > 0 else " (no gain either: these targets too lie at or "
                        "below the start):"))
        lines += [f"  {line}" for line in pair_findings(data, post["ratio_curve"], "post hoc: ")]
    lines += budget_findings(data)
    starts = [a for m in data["methods"].values() for a in m["initial_accuracy"]]
    lines.append(f"- Initial test accuracy differs by seed, from {number(min(starts))} to {number(max(starts))} (one "
                 "seed starts every method at the same point). The targets start from the mean over seeds, so a seed "
                 "that starts above a target reaches it at its first smoothed evaluation, and its ratio there is the "
                 "first window's cost ratio, not a learning speed: the tables show where.")
    ratio_of_budgets = data["report_budget"]["client_flops"] / data["budget"]["client_flops"]
    for name, m in {**data["methods"], **post["runs"]}.items():
        below = [seed for seed, a, b in zip(m["seeds"], m["initial_accuracy"], m["final_smoothed_accuracy"]) if b < a]
        if below:
            lines.append(f"- {len(below)} of {len(m['seeds'])} {name} report runs (seeds "
                         f"{', '.join(map(str, below))}) ended the report budget below their initial accuracy. "
                         f"The report runs spend {number(ratio_of_budgets)}x the tuning budget B at which the "
                         "learning rate was picked. First crossings before the fall still count; the final "
                         "accuracies are in the tables.")
    return lines


def study_md(repo: Path = REPO) -> str | None:
    """docs/fedspzo_study.md from the study's JSON (None until it exists): the findings, the
    set-up as the plan fixed it, every table, the plots, and version 1 labelled for what it was."""
    path = repo / "bench" / "results" / f"{STUDY}.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    plan, budget = data["plan"], data["budget"]
    plots = sorted((repo / "bench" / "results" / STUDY / "plots").glob("*.png"))
    parts = [generated_note(COMMAND),
             "# FedSPZO against DeComFL, a top-block control and FedAvg, per client FLOP\n",
             f"What the committed study shows: its plan is [`bench/{STUDY}.yaml`](../bench/{STUDY}.yaml) (fixed "
             f"before its runs; its git history is the record), its runs are under "
             f"[`bench/results/{STUDY}/`](../bench/results/{STUDY}/) and every figure here is read from "
             f"[`bench/results/{STUDY}.json`](../bench/results/{STUDY}.json), which "
             "`python bench/fedspzo_paper.py summary --plan bench/fedspzo_paper_v2.yaml` rebuilds from the run "
             "folders without training.\n",
             "## In short\n", "\n".join(in_short(data)) + "\n",
             "A ratio above 1 means the other pick needed more client FLOPs than FedSPZO.\n",
             *([CONTROL] if CONTROL_LABEL in data["methods"] else []),
             "## The set-up\n",
             f"- Regime: `{plan['regime']['base']}` with {show(plan['regime']['set'])}.\n"
             f"- Tuning: every (configuration, learning rate) of every label, learning rates "
             f"{show(plan['lr_grid'])}, seed(s) {show(plan['tuning']['seeds'])} on a {plan['tuning']['tuning_split']}"
             f"-sentence tuning split, each run to a client-FLOPs budget B = {tflop(budget['client_flops'])} TFLOP "
             f"and evaluated at least every {tflop(budget['evaluated_at_least_every'])} TFLOP. The pick per label: "
             f"{budget['rule']}.\n"
             f"- Report: each pick over seeds {show(plan['report']['seeds'])} on the test split, to "
             f"{tflop(data['report_budget']['client_flops'])} client TFLOP, evaluated at least every "
             f"{tflop(data['report_budget']['evaluated_at_least_every'])} TFLOP; accuracy smoothed over "
             f"{plan['report']['smoothing']} evaluations.\n"
             f"- Target: {data['target']['rule']}; the ratio is also read at targets initial + f x gain for f in "
             f"{show(plan['target']['curve'])}.\n"
             f"- Machines: every run of the comparison learned on {show(data['machines']['kinds'])}, from commit(s) "
             f"{', '.join(c[:7] for c in data['machines']['commits'])}; the report tables' time, energy and bytes "
             "are the simulator's at those commits, and the per-class tables replay the gzipped traces at "
             f"{', '.join(c[:7] for c in data['systems_figures']['device_classes_replayed_at']) or '-'}.\n",
             "## The figures\n", *study_v2(data),
             "## Plots\n", *(f"![{png.stem}](../{png.relative_to(repo).as_posix()})\n" for png in plots)]
    v1 = repo / "bench" / "results" / "fedspzo_paper.json"
    if v1.is_file():
        parts += study_v1(json.loads(v1.read_text()))
    return "\n".join(parts)


def readme_findings(data: dict) -> list[str]:
    """The README's summary, one row per pick against FedSPZO: its client FLOPs ratio at the marked
    target with the interval (the plan's target, or the post-hoc one when the plan's rule gave
    none) and FedSPZO's accuracy gap at equal client compute."""
    usable = data["target"]["mean_gain"] > 0
    curves = data["ratio_curve"] if usable else data["post_hoc"]["ratio_curve"]
    target = data["target"] if usable else data["post_hoc"]["target"]
    gaps = {**data["at_budget"], **data["post_hoc"]["at_budget"]}
    rows = []
    for pair, curve in curves.items():
        marked = next(p for p in curve["points"] if p["marked"])
        gap = gaps[pair]
        rows.append([pick_name(data, pair.split("/")[0]),
                     f"{number(marked.get('geometric_mean'))}x ({interval(marked)}; {marked['exact']} of "
                     f"{len(curve['seeds'])} seeds with a value)",
                     f"{number(gap['mean'])} ({number(gap['min'])} to {number(gap['max'])})"])
    which = "the plan's target" if usable else "the post-hoc target (the plan's rule gave none)"
    return [f"At {which}, {number(target['accuracy'])} smoothed test accuracy, and at "
            f"{tflop(data['report_budget']['client_flops'])} client TFLOP:\n",
            table(["against FedSPZO", "its client FLOPs to the target over FedSPZO's (95% t-interval)",
                   "FedSPZO's accuracy minus its at equal compute (over seeds)"], rows).rstrip("\n")]


def readme_with_study(repo: Path = REPO) -> str | None:
    """The repository's README with the study's summary (``readme_findings``) between its two
    markers; None when it has no markers."""
    text = (repo / ROOT_README).read_text() if (repo / ROOT_README).is_file() else ""
    start, end = STUDY_MARKERS
    if start not in text or end not in text:
        return None
    data = json.loads((repo / "bench" / "results" / f"{STUDY}.json").read_text())
    head, rest = text.split(start, 1)
    return "\n".join([head + start, *readme_findings(data), end + rest.split(end, 1)[1]])


def study_v1(data: dict) -> list[str]:
    """Version 1 in brief, labelled for what its selection was: best per round, not per FLOP."""
    r = data["ratios"]["decomfl/fedspzo"]["client_flops_to_target"]
    return ["## Version 1: DeComFL at its best per round\n",
            "Version 1 ([`bench/fedspzo_paper.yaml`](../bench/fedspzo_paper.yaml), runs under "
            "[`bench/results/fedspzo_paper/`](../bench/results/fedspzo_paper/)) tuned every configuration for the "
            f"same number of rounds, so it picked DeComFL with {show(data['chosen']['decomfl'])}: the best per "
            "round, and the costliest per round. Its runs learned on a mix of CPU and GPU machines. Its client "
            f"FLOPs ratio at its single target {number(data['target']['accuracy'])}, DeComFL over FedSPZO per "
            f"seed: {', '.join(bound(e) for e in r['per_seed'])} (mean {number(r.get('mean'))}). It compares "
            "against a baseline chosen per round, not per FLOP; version 2 above replaces it. Its full tables "
            "are in [docs/benchmarks.md](benchmarks.md#fedspzo_paper).\n"]


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
    where = f"Figures: [`bench/results/{name}.json`](../bench/results/{name}.json), from [`{script}`](../{script})"
    if (repo / folder).is_dir():
        where += f"; run directories and plots under [`{folder}/`](../{folder}/)"
    parts.append(where + ".\n")
    if usage(doc):
        parts.append(f"```sh\n{usage(doc)}\n```\n")
    for png in dict.fromkeys(re.findall(r"docs/([\w.-]+\.png)", doc)):
        if (repo / "docs" / png).is_file():
            parts.append(f"![{png}]({png})\n")
    render = RENDERERS.get(script)
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
        rows.append([f"[`{Path(script).name}`]({Path(script).name})", summary(docstring(repo, script)),
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
    """What this script writes, by path relative to the repository (the study page once its JSON
    exists)."""
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
