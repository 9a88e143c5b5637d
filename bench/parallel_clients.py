"""Round wall time with the selected clients' updates on 1 (sequential) and 2 local worker
processes: MiniLM-L6 (all 22.7M parameters trainable), 4 clients per round, 4 rounds, evaluation
only after the last round; rounds 2-3 time the learning alone (round 1 includes the workers'
start: spawn, imports, model load). Checks the outputs are identical.
Figures in bench/results/parallel_clients.json.

    OMP_NUM_THREADS=1 python bench/parallel_clients.py
"""
from __future__ import annotations

import csv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from edgefed.provenance import write_bench_result  # noqa: E402
from edgefed.runner import run_scenario  # noqa: E402
from edgefed.scenario import load_scenario  # noqa: E402

BUDGET = ["rounds.max=4", "rounds.eval_every=10", "rounds.clients_per_round=4", "algorithm.local_steps=2",
          "algorithm.batch_size=16", "algorithm.trainable=all", "model.max_length=32",
          "task.dataset.train_limit=400", "task.dataset.test_limit=50", "output.plots=false",
          "output.report=false"]


def rows(path: Path) -> list[dict]:
    with path.open() as fh:
        return [{k: v for k, v in r.items() if k != "host_seconds"} for r in csv.DictReader(fh)]


def main() -> None:
    figures = {}
    for workers in (1, 2):
        scenario, base = load_scenario(ROOT / "scenarios/quickstart.yaml", [*BUDGET, f"host.workers={workers}"])
        run_dir = ROOT / "bench/runs/parallel-clients" / f"workers-{workers}"
        run_scenario(scenario, base, run_dir)
        with (run_dir / "rounds.csv").open() as fh:
            host = [float(r["host_seconds"]) for r in csv.DictReader(fh)][2:4]
        figures[f"round_wall_s_{workers}_workers"] = sum(host) / len(host)
        print(f"{workers} worker(s): {figures[f'round_wall_s_{workers}_workers']:.2f} s per round "
              f"(4 clients, MiniLM-L6)", flush=True)
    runs = ROOT / "bench/runs/parallel-clients"
    figures["speedup"] = figures["round_wall_s_1_workers"] / figures["round_wall_s_2_workers"]
    figures["identical_outputs"] = (rows(runs / "workers-1/rounds.csv") == rows(runs / "workers-2/rounds.csv")
                                    and (runs / "workers-1/clients.csv").read_text()
                                    == (runs / "workers-2/clients.csv").read_text())
    print(f"speed-up {figures['speedup']:.2f}x; identical outputs: {figures['identical_outputs']}")
    write_bench_result(ROOT / "bench/results/parallel_clients.json", figures, __file__)


if __name__ == "__main__":
    main()
