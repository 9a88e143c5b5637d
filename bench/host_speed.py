"""Host speed on this machine: the quickstart command end to end, a MiniLM ``last:2`` run with the
feature cache on and off, and what the cache holds for the quickstart and for SST-2's full
training set. Writes bench/results/host_speed.json (the parts measured, merged into what is there).

    python bench/host_speed.py quickstart        # `edgefed run scenarios/quickstart.yaml`, timed: three
                                                 # first runs (empty feature store) and one next run
    python bench/host_speed.py last2 [rounds] [--fast-z]
                                                 # last:2 at lr 2e-4, cache on and off (default 30 rounds;
                                                 # each length and direction kind under its own key);
                                                 # --fast-z: Rademacher directions with cached z
    python bench/host_speed.py memory            # cache sizes: quickstart, SST-2 67k sentences
    python bench/host_speed.py quickstart --note "2 cores shared with other work"
                                                 # a note on the machine's state, kept with the figures

The cache's gain on ``last:2`` grows with the run's length: it fills the frozen prefix once for
every train and test example, and each round then saves the prefix's pass. Each ``last2`` figure
comes with the gain that counting encoder-layer passes predicts from the run's own rounds
(``layer_pass_model``); the fill runs on all the process's threads and the rounds on
``host.threads``, so host time can beat the count where CPU time does not. The count leaves out
the ZO work that is not a forward pass (drawing z, perturbing, restoring and updating along it),
which the cache does not touch. It was a large share of a round while the host drew the
quickstart's Gaussian z for every use; the host now keeps z and draws each of a round's shared
step seeds once, and ``--fast-z`` (Rademacher directions, cheaper to draw) shrinks it further.

Shared machines: each figure comes with the load average (1 min) before and after and the
process's CPU seconds, which load inflates far less than wall time. Each part carries its own
``provenance`` (the file's top-level block is the last part's).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgefed.provenance import bench_provenance, write_bench_result

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results" / "host_speed.json"
FIRST_RUNS = 3  # a shared 2-core host's wall time moves by a fifth between identical runs
# the quickstart's 2e-3 suits the head alone; two whole layers diverge at it (to chance within 30
# rounds), and divergence blows float rounding up into different accuracies with the cache on and off
LAST2_LR = 2e-4
FAST_Z = ("algorithm.distribution=rademacher", "algorithm.cache_z=true")
SST2_FULL = REPO.parent / "shared" / "data" / "sst2" / "train.tsv"


def timed_run(*overrides: str, store: str = "off") -> dict:
    """``edgefed run scenarios/quickstart.yaml`` as a user types it: wall time from start to exit,
    with ``store`` as its EDGEFED_FEATURE_STORE (``off``: every frozen-encoder pass computed)."""
    with tempfile.TemporaryDirectory() as tmp:
        args = [sys.executable, "-m", "edgefed", "run", str(REPO / "scenarios/quickstart.yaml"), "--out",
                str(Path(tmp) / "run"), "--quiet"] + [a for o in overrides for a in ("--set", o)]
        load_before, cpu_before = os.getloadavg()[0], resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        # as a user types it: torch picks its threads (an OMP_NUM_THREADS=1 left from the other
        # benches' instructions once timed the quickstart on one core)
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        subprocess.run(args, check=True, capture_output=True, env={**env, "EDGEFED_FEATURE_STORE": store})
        wall = time.perf_counter() - start
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        summary = json.loads((Path(tmp) / "run" / "summary.json").read_text())
        with (Path(tmp) / "run" / "rounds.csv").open(newline="") as fh:
            rounds = list(csv.DictReader(fh))
    return {"overrides": list(overrides), "wall_s": round(wall, 2), "host_seconds": round(summary["host_seconds"], 2),
            "cpu_s": round(cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime, 2),
            "final_accuracy": summary["final_accuracy"], "load_before": load_before, "load_after": os.getloadavg()[0],
            "cores": os.cpu_count(), "client_updates": sum(int(r["selected"]) for r in rounds),
            "evaluations": sum(r["accuracy"] != "" for r in rounds)}


def layer_pass_model(run: dict, top: int = 2) -> dict:
    """What the cache saves on the quickstart with only the ``top`` layers training, counted in
    encoder-layer passes per example. Without it a local step runs the frozen prefix once and the
    top layers once per forward (two per perturbation), and an evaluation runs every layer; with it,
    steps and evaluations run the top layers only, after one fill of the prefix for every train and
    test example. Embeddings, the head and padding are left out."""
    from edgefed.scenario import load_scenario

    scenario, base = load_scenario(REPO / "scenarios/quickstart.yaml")
    algo, layers = scenario.algorithm, 6  # all-MiniLM-L6-v2
    sizes = [sum(1 for _ in open(base / f, encoding="utf-8")) - 1  # TSVs with a header line
             for f in (scenario.task.dataset.train, scenario.task.dataset.test)]
    examples = run["client_updates"] * algo.local_steps * algo.batch_size
    forwards = 2 * algo.perturbations
    evaluated = run["evaluations"] * sizes[1]
    off = examples * (layers - top + forwards * top) + evaluated * layers
    on = sum(sizes) * (layers - top) + examples * forwards * top + evaluated * top
    return {"layer_passes_off": off, "layer_passes_on": on, "predicted_speedup": off / on}


def cache_sizes() -> dict:
    """Bytes a full cache holds (fp32 MiniLM): pooled vectors (``head``) or per-token states (``last:2``)."""
    from edgefed.algorithms.data import load_dataset
    from edgefed.algorithms.models import Tokenized
    from edgefed.algorithms.features import FeatureCache
    from edgefed.algorithms.models import TaskModel, load_backbone

    backbone, tokenizer, kind = load_backbone("minilm-l6", "encoder", "fp32")
    model = TaskModel(backbone, tokenizer, kind, 2)
    sets = {"quickstart train (2,000)": REPO / "scenarios/data/sst2/train.tsv",
            "quickstart held-out (872)": REPO / "scenarios/data/sst2/validation.tsv"}
    if SST2_FULL.exists():
        sets["SST-2 full train (67,349)"] = SST2_FULL
    out = {}
    for name, path in sets.items():
        data = Tokenized(load_dataset(path, "sentence", "label"), tokenizer, 48)
        out[name] = {"examples": len(data), "head_bytes": FeatureCache.size_bytes(model, data, model.num_layers),
                     "last2_bytes": FeatureCache.size_bytes(model, data, model.num_layers - 2)}
        print(f"{name:28s} head {out[name]['head_bytes'] / 2**20:8.1f} MiB   "
              f"last:2 {out[name]['last2_bytes'] / 2**20:8.1f} MiB  (max_length 48, fp32)")
    return out


def report(label: str, run: dict) -> dict:
    print(f"edgefed run scenarios/quickstart.yaml, {label}: wall {run['wall_s']} s (host "
          f"{run['host_seconds']} s, CPU {run['cpu_s']} s), final accuracy {run['final_accuracy']:.4f}, "
          f"load {run['load_before']:.1f} -> {run['load_after']:.1f} on {run['cores']} cores")
    return run


def main(part: str, rounds: int, fast_z: bool, note: str | None = None) -> None:
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    if part == "quickstart":
        first = []
        for _ in range(FIRST_RUNS):  # each with an empty store: a new user's first run
            with tempfile.TemporaryDirectory() as store:
                first.append(report("first run", timed_run(store=store)))
                if len(first) == FIRST_RUNS:
                    results["quickstart_next_run"] = report("next run", timed_run(store=store))
        walls = sorted(run["wall_s"] for run in first)
        results["quickstart"] = {"runs": first, "wall_s_median": walls[len(walls) // 2],
                                 "wall_s_min": walls[0], "wall_s_max": walls[-1], **({"note": note} if note else {})}
        print(f"first run: median {walls[len(walls) // 2]} s, range {walls[0]}-{walls[-1]} s over {len(walls)} runs")
    elif part == "last2":
        runs = {}
        for label, budget in (("cache on", 2**31), ("cache off", 0)):
            runs[label] = timed_run("algorithm.trainable=last:2", f"algorithm.lr={LAST2_LR}", f"rounds.max={rounds}",
                                    "output.plots=false", "output.report=false", f"host.feature_cache_bytes={budget}",
                                    *(FAST_Z if fast_z else ()))
            print(f"last:2, {rounds} rounds, {label}: host {runs[label]['host_seconds']} s, CPU {runs[label]['cpu_s']} s, "
                  f"final accuracy {runs[label]['final_accuracy']:.4f}, "
                  f"load {runs[label]['load_before']:.1f} -> {runs[label]['load_after']:.1f}")
        runs["host_speedup"] = runs["cache off"]["host_seconds"] / runs["cache on"]["host_seconds"]
        runs["cpu_speedup"] = runs["cache off"]["cpu_s"] / runs["cache on"]["cpu_s"]
        runs["layer_pass_model"] = layer_pass_model(runs["cache on"])
        print(f"speed-up from the cache: host {runs['host_speedup']:.2f}x, CPU {runs['cpu_speedup']:.2f}x "
              f"(layer-pass count predicts {runs['layer_pass_model']['predicted_speedup']:.2f}x)")
        key = f"{rounds} rounds" + (", rademacher cached z" if fast_z else "")
        results.setdefault("last2", {})[key] = {**runs, "provenance": bench_provenance(__file__)}
    else:
        results["cache_bytes"] = cache_sizes()
    # parts (and each last:2 length) are measured at different times: each keeps the commit and
    # machine it ran on
    for key in {"quickstart": ("quickstart", "quickstart_next_run"), "last2": (), "memory": ("cache_bytes",)}[part]:
        results[key] = {**results[key], "provenance": bench_provenance(__file__)}
    write_bench_result(OUT, {k: v for k, v in results.items() if k != "provenance"}, __file__)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="host speed: quickstart, last:2 with the cache on and off, cache sizes")
    parser.add_argument("part", nargs="?", default="quickstart", choices=("quickstart", "last2", "memory"))
    parser.add_argument("rounds", nargs="?", type=int, default=30, help="last2: rounds (default 30)")
    parser.add_argument("--fast-z", action="store_true", help="last2: Rademacher directions with cached z")
    parser.add_argument("--note", help="quickstart: the machine's state while measured (e.g. shared cores)")
    args = parser.parse_args()
    main(args.part, args.rounds, args.fast_z, args.note)
