"""How fast the command line answers when it runs no model: ``edgefed validate
scenarios/quickstart.yaml`` (which loads neither torch nor transformers) beside ``edgefed --version``
(the interpreter, the package and the command line alone), each a fresh process, timed wall to
wall. The target is validate under 0.5 s on 2 cores.

    python bench/validate_speed.py [--runs 10]

Shared machines: each command's figures come with the load average (1 min) before and after; the
minimum over the runs is the least disturbed figure, the median the typical one.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from edgefed.provenance import write_bench_result

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "bench" / "results" / "validate_speed.json"
COMMANDS = {"validate": ["validate", "scenarios/quickstart.yaml"], "version": ["--version"]}


def timed(args: list[str], runs: int) -> dict:
    """Wall seconds of ``runs`` fresh ``edgefed ARGS`` processes (one untimed first, for the disk cache)."""
    command = [sys.executable, "-m", "edgefed", *args]
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    load_before, walls = os.getloadavg()[0], []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, cwd=REPO, check=True, capture_output=True)
        walls.append(round(time.perf_counter() - start, 3))
    return {"wall_s": walls, "wall_s_min": min(walls), "wall_s_median": statistics.median(walls),
            "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    figures = {name: timed(args, runs) for name, args in COMMANDS.items()}
    for name, f in figures.items():
        print(f"edgefed {' '.join(COMMANDS[name])}: min {f['wall_s_min']:.3f} s, median {f['wall_s_median']:.3f} s "
              f"over {runs} runs (load {f['load_before']} -> {f['load_after']})")
    write_bench_result(RESULT, {**figures, "cores": os.cpu_count(), "runs": runs}, __file__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
