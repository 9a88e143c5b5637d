"""A 1,000-round tiny real run interrupted late and resumed equals the uninterrupted run, and the
checkpoint does not grow with the rows: checkpoint size and write time at round 10 vs round 1,000.

    OMP_NUM_THREADS=1 python bench/resume_long.py [--rounds 1000]

Prints its figures and writes bench/results/resume_long.json.
"""
from __future__ import annotations

import argparse
import copy
import json
import shutil
import time
from pathlib import Path

import torch

from edgefed.checkpoint import CHECKPOINT
from edgefed.provenance import write_bench_result
from edgefed.simulator.records import RoundObserver
from edgefed.runner import run_scenario
from edgefed.scenario import Scenario

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "bench" / "runs" / "resume-long"


def scenario(rounds: int) -> Scenario:
    data = {
        "name": "resume-long", "seed": 3,
        "model": {"name": "tiny-bert", "max_length": 32},
        "task": {"dataset": {"train": str(ROOT / "scenarios/data/sst2/train.tsv"),
                             "test": str(ROOT / "scenarios/data/sst2/validation.tsv"),
                             "train_limit": 240, "test_limit": 64}, "head_init_examples": 4},
        "partition": {"kind": "dirichlet", "alpha": 0.5},
        "algorithm": {"name": "decomfl", "lr": 1e-3, "eps": 1e-3, "local_steps": 1, "batch_size": 8,
                      "perturbations": 1, "trainable": "head"},
        "fleet": {"groups": [{"device": "pixel-7a", "count": 6, "link": "lte"},
                             {"device": "rpi5", "count": 4, "link": "wifi"}]},
        "rounds": {"max": rounds, "clients_per_round": 2, "eval_every": 50},
        "output": {"plots": False, "report": False},
    }
    return Scenario.model_validate(copy.deepcopy(data))


class Watch(RoundObserver):
    """Records the checkpoint's size after chosen rounds, and stops the run at ``stop``."""

    def __init__(self, run_dir: Path, sample: set[int], stop: int | None = None):
        self.run_dir, self.sample, self.stop, self.sizes = run_dir, sample, stop, {}
        self.last = time.perf_counter()

    def round_done(self, engine, round):
        if round.number in self.sample:
            self.sizes[round.number] = (self.run_dir / CHECKPOINT).stat().st_size if round.number else 0
        if self.stop is not None and round.number >= self.stop:
            raise KeyboardInterrupt


def files(run_dir: Path) -> tuple:
    def strip(text: str) -> list[str]:
        lines = text.splitlines()
        col = lines[0].split(",").index("host_seconds") if "host_seconds" in lines[0] else None
        return [",".join(c for i, c in enumerate(line.split(",")) if i != col) for line in lines]
    summary = json.loads((run_dir / "summary.json").read_text())
    summary.pop("host_seconds")
    return strip((run_dir / "rounds.csv").read_text()), (run_dir / "clients.csv").read_text(), summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    shutil.rmtree(RUNS, ignore_errors=True)
    rounds, stop = args.rounds, int(args.rounds * 0.7)
    whole_dir, cut_dir = RUNS / "whole", RUNS / "cut"
    watch = Watch(whole_dir, {10, rounds - 1})
    start = time.perf_counter()
    run_scenario(scenario(rounds), ROOT, whole_dir, progress=watch)
    whole_s = time.perf_counter() - start
    start = time.perf_counter()
    try:
        run_scenario(scenario(rounds), ROOT, cut_dir, progress=Watch(cut_dir, set(), stop))
    except KeyboardInterrupt:
        pass
    run_scenario(scenario(rounds), ROOT, cut_dir, resume=True)
    cut_s = time.perf_counter() - start
    figures = {
        "rounds": rounds, "interrupted_after": stop,
        "resumed_equals_uninterrupted": files(whole_dir) == files(cut_dir),
        "checkpoint_bytes": {str(k): v for k, v in sorted(watch.sizes.items())},
        "whole_run_wall_s": round(whole_s, 1), "cut_and_resumed_wall_s": round(cut_s, 1),
        "trace_jsonl_bytes": (whole_dir / "trace.jsonl").stat().st_size,
    }
    print(json.dumps(figures, indent=2))
    write_bench_result(ROOT / "bench" / "results" / "resume_long.json", figures, __file__)  # + commit, machine


if __name__ == "__main__":
    main()
