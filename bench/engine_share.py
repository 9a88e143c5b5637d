"""How much of a real run's host time the systems side takes: a tiny-bert run with 1,000 clients
per round (a fleet of 2,000 devices, iid shards of 2,000 SST-2 examples). The learning's host time
is what the rounds record (``host_seconds``: local steps, aggregation, evaluation); the rest of the
rounds' wall time is the systems side - the network, the SimPy processes, the selection and battery
bookkeeping - plus writing the run's files and checkpoints, so the share printed is an upper bound.
Prints the share and writes bench/results/engine_share.json.

    OMP_NUM_THREADS=1 python bench/engine_share.py [ROUNDS]
"""
from __future__ import annotations

import copy
import csv
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgefed.provenance import write_bench_result  # noqa: E402

RUN = ROOT / "bench/runs/engine-share"
DEVICES, PER_ROUND = 2000, 1000


def scenario(rounds: int):
    from edgefed.scenario import Scenario
    from tests.conftest import TINY
    data = copy.deepcopy(TINY)
    data["name"] = "engine-share"
    data["task"]["dataset"]["train_limit"] = 2000
    data["partition"] = {"kind": "iid"}
    data["algorithm"].update(local_steps=1, batch_size=2, perturbations=1)
    data["fleet"]["groups"] = [{"device": "pixel-7a", "count": DEVICES // 2, "link": "lte"},
                               {"device": "rpi5", "count": DEVICES // 2, "link": "wifi"}]
    data["rounds"].update(max=rounds, clients_per_round=PER_ROUND, eval_every=rounds)
    return Scenario.model_validate(data)


def main() -> None:
    from edgefed.runner import run_scenario
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    start = time.perf_counter()
    run_scenario(scenario(rounds), ROOT, RUN)
    wall = time.perf_counter() - start
    with (RUN / "rounds.csv").open() as fh:
        learning = sum(float(r["host_seconds"]) for r in csv.DictReader(fh) if int(r["round"]) > 0)
    with (RUN / "rounds.csv").open() as fh:
        setup = next(float(r["host_seconds"]) for r in csv.DictReader(fh) if int(r["round"]) == 0)
    systems = wall - setup - learning
    figures = {"omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "devices": DEVICES,
               "clients_per_round": PER_ROUND, "rounds": rounds, "wall_s": wall, "setup_s": setup,
               "learning_s": learning, "systems_s": systems, "systems_share_of_rounds": systems / (wall - setup)}
    print(f"{rounds} rounds x {PER_ROUND} clients: {wall:.1f} s wall, setup {setup:.1f} s, learning {learning:.1f} s, "
          f"systems {systems:.1f} s = {100 * figures['systems_share_of_rounds']:.1f}% of the rounds' host time")
    write_bench_result(ROOT / "bench/results/engine_share.json", figures, __file__)


if __name__ == "__main__":
    main()
