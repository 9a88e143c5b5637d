"""Is a commit slower than its base? Runs of both, interleaved (base, result, base, ...) so that the
host's slow and fast spells fall on both alike: the 1,000,000-device replays of bench/replay_scale.py
(1,000 and 10,000 selected per round, 100 rounds) and the quickstart (`edgefed run`, feature store
off, so every run fills its cache; plots and, where the commit has it, the report off). Medians of
wall and CPU seconds (CPU: the replay's own process time, the quickstart's child-process time), and
the result's ratio to the base.

    python bench/interleaved.py BASE RESULT [--runs 5]
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from same_behaviour import git, installed

from edgefed.provenance import write_bench_result

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "bench" / "results" / "interleaved.json"
REPLAYS = ("1000000:1000:100", "1000000:10000:100")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def replay(tree: Path, env: dict, point: str, cwd: Path) -> tuple[float, float]:
    """One replay point in a fresh process of that commit: its own (wall, CPU) seconds."""
    done = subprocess.run([sys.executable, str(tree / "bench" / "replay_scale.py"), "--one", point], env=env,
                          cwd=cwd, capture_output=True, text=True, check=True)
    row = json.loads(done.stdout.strip().splitlines()[-1])
    return row["wall_s"], row["cpu_s"]


def quickstart(tree: Path, env: dict, out: Path) -> tuple[float, float]:
    """The quickstart in a fresh process of that commit: (wall, CPU) seconds of the whole command."""
    off = ["--set", "output.plots=false"]
    if (tree / "edgefed" / "report.py").exists():  # a commit that writes report.html: off, as plots are
        off += ["--set", "output.report=false"]
    cpu, start = children_cpu(), time.perf_counter()
    subprocess.run([sys.executable, "-m", "edgefed", "run", str(tree / "scenarios" / "quickstart.yaml"), "--out",
                    str(out), "--quiet", *off], env=env, cwd=out.parent, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start, children_cpu() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base")
    parser.add_argument("result")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    commits = {"base": git("rev-parse", args.base), "result": git("rev-parse", args.result)}
    times = {arm: {name: [] for name in (*REPLAYS, "quickstart")} for arm in commits}
    with tempfile.TemporaryDirectory() as tmp, installed(commits["base"], Path(tmp)) as base, \
            installed(commits["result"], Path(tmp)) as result:
        arms = {"base": base, "result": result}
        for arm, (tree, env) in arms.items():  # record each commit's replay trace once (not timed)
            subprocess.run([sys.executable, str(tree / "bench" / "replay_scale.py"), "1000:100:1"], env=env,
                           cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        for run in range(args.runs):
            for arm, (tree, env) in arms.items():
                for point in REPLAYS:
                    times[arm][point].append(replay(tree, env, point, Path(tmp)))
                times[arm]["quickstart"].append(quickstart(tree, env, Path(tmp) / f"qs-{arm}-{run}"))
                print(f"run {run + 1} {arm}: " + ", ".join(f"{name} {w:.1f} s wall / {c:.1f} s CPU"
                                                         for name, runs in times[arm].items() for w, c in runs[-1:]),
                      flush=True)
    table = {}
    for name in (*REPLAYS, "quickstart"):
        med = {arm: [statistics.median(x[i] for x in times[arm][name]) for i in (0, 1)] for arm in commits}
        table[name] = {"base_wall_s": med["base"][0], "result_wall_s": med["result"][0],
                       "base_cpu_s": med["base"][1], "result_cpu_s": med["result"][1],
                       "wall_ratio": med["result"][0] / med["base"][0], "cpu_ratio": med["result"][1] / med["base"][1],
                       "runs": {arm: times[arm][name] for arm in commits}}
        print(f"{name:20s} wall {med['base'][0]:7.1f} -> {med['result'][0]:7.1f} s ({table[name]['wall_ratio']:.3f}x), "
              f"CPU {med['base'][1]:7.1f} -> {med['result'][1]:7.1f} s ({table[name]['cpu_ratio']:.3f}x)")
    write_bench_result(RESULT, {"base": commits["base"], "result": commits["result"], "runs": args.runs,
                                "medians": table}, __file__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
