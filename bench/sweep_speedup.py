"""An 8-point sweep (tiny-bert, 8 seeds, 20 rounds each) with 1 worker (in this process) and 2 local
worker processes: wall time and speed-up; the two sweep.csv tables must be identical. Figures in
bench/results/sweep_speedup.json.

    OMP_NUM_THREADS=1 python bench/sweep_speedup.py
"""
from __future__ import annotations

import copy
import shutil
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgefed.provenance import write_bench_result  # noqa: E402
from edgefed.sweep import run_sweep  # noqa: E402
from tests.conftest import TINY  # noqa: E402

RUNS = ROOT / "bench/runs/sweep-speedup"


def main() -> None:
    shutil.rmtree(RUNS, ignore_errors=True)
    RUNS.mkdir(parents=True)
    base = copy.deepcopy(TINY)
    base["rounds"].update(max=20, eval_every=5)  # enough work per point to outweigh a worker's start
    (RUNS / "base.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    (RUNS / "sweep.yaml").write_text(yaml.safe_dump({"base": "base.yaml", "grid": {"seed": list(range(8))}}))
    figures = {"points": 8}
    for workers in (1, 2):
        start = time.perf_counter()
        run_sweep(RUNS / "sweep.yaml", RUNS / f"workers-{workers}", workers=workers)
        figures[f"wall_s_{workers}_workers"] = time.perf_counter() - start
        print(f"8 points, {workers} worker(s): {figures[f'wall_s_{workers}_workers']:.1f} s", flush=True)
    figures["speedup"] = figures["wall_s_1_workers"] / figures["wall_s_2_workers"]
    figures["identical_tables"] = ((RUNS / "workers-1/sweep.csv").read_text()
                                   == (RUNS / "workers-2/sweep.csv").read_text())
    print(f"speed-up {figures['speedup']:.2f}x; identical sweep.csv: {figures['identical_tables']}")
    write_bench_result(ROOT / "bench/results/sweep_speedup.json", figures, __file__)


if __name__ == "__main__":
    main()
