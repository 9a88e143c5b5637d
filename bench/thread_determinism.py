"""Does the thread count change a real run? The quickstart scenario (MiniLM-L6, all parameters
trainable, a few rounds) in fresh processes with 1 and 2 torch threads; prints which columns
differ and by how much, and writes bench/results/thread_determinism.json.

    OMP_NUM_THREADS=1 python bench/thread_determinism.py [--rounds 3]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from edgefed.provenance import write_bench_result

REPO = Path(__file__).resolve().parents[1]
OVERRIDES = ["algorithm.trainable=all", "task.dataset.train_limit=400", "task.dataset.test_limit=200",
             "rounds.eval_every=1", "output.plots=false", "output.report=false"]


def run(threads: int, rounds: int, out: Path) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    sets = [arg for o in OVERRIDES + [f"rounds.max={rounds}", "host.threads=null"] for arg in ("--set", o)]
    subprocess.run([sys.executable, "-m", "edgefed", "run", str(REPO / "scenarios/quickstart.yaml"), *sets,
                    "--out", str(out), "--quiet"], env=env, check=True, cwd=REPO)
    with (out / "rounds.csv").open() as fh:
        rounds_rows = list(csv.DictReader(fh))
    with (out / "clients.csv").open() as fh:
        return rounds_rows, list(csv.DictReader(fh))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    runs = REPO / "bench" / "runs" / "thread_determinism"
    (r1, c1), (r2, c2) = (run(t, args.rounds, runs / f"threads{t}") for t in (1, 2))
    differ = {}
    for col in r1[0]:
        if col == "host_seconds":
            continue
        deltas = [abs(float(a[col] or 0) - float(b[col] or 0)) for a, b in zip(r1, r2) if a[col] != b[col]]
        if deltas:
            differ[col] = {"rounds_differing": len(deltas), "max_abs_diff": max(deltas)}
    client_cols = [col for col in c1[0] if any(a[col] != b[col] for a, b in zip(c1, c2))]
    result = {"model": "minilm-l6", "trainable": "all", "rounds": args.rounds, "overrides": OVERRIDES,
              "rounds_columns_differing": differ, "clients_columns_differing": client_cols,
              "identical": not differ and not client_cols}
    print(json.dumps(result, indent=2))
    out = REPO / "bench" / "results" / "thread_determinism.json"
    write_bench_result(out, result, __file__)


if __name__ == "__main__":
    main()
