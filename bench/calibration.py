"""Is the cost model right? Predict MiniLM ZO client steps on this host's measured profile and time
them for real; prints both and writes bench/results/calibration.json (target: within +-20%).
With one torch thread both sides read the process's CPU time (``host_clock``), so the figures hold
on a host shared with other jobs.

    OMP_NUM_THREADS=1 python bench/calibration.py
"""
from __future__ import annotations

from pathlib import Path
from unittest import mock

import torch

ROOT = Path(__file__).resolve().parents[1]

from edgefed.algorithms.zo import Directions  # noqa: E402
from edgefed.calibrate import host_clock, host_profile  # noqa: E402
from edgefed.simulator.costs import compute_seconds  # noqa: E402
from edgefed.build import build_learning  # noqa: E402
from edgefed.provenance import write_bench_result  # noqa: E402
from edgefed.scenario import load_scenario  # noqa: E402

# (label, overrides): the quickstart's head-only fine-tuning, and full-parameter MeZO
CASES = [
    ("head, 5 steps x batch 16", ["algorithm.trainable=head", "algorithm.local_steps=5"]),
    ("all 22.7M params, 2 steps x batch 16", ["algorithm.trainable=all", "algorithm.local_steps=2"]),
    ("all, cached z, 2 steps x batch 16", ["algorithm.trainable=all", "algorithm.local_steps=2",
                                           "algorithm.cache_z=true"]),
]
# the host must run every pass the device is charged for: no feature cache (with it, the head-only
# case timed 0.011 s of host work against 1.28 s of predicted device work - the encoder's passes),
# and no z kept beyond what a caching device keeps (``measure``: clients share a round's seeds)
COMMON = ["algorithm.batch_size=16", "model.max_length=48", "algorithm.perturbations=1", "task.dataset.test_limit=16",
          "host.feature_cache_bytes=0"]
CLIENTS = 4


def measure(overrides: list[str], host) -> dict:
    scenario, base = load_scenario(ROOT / "scenarios/quickstart.yaml", COMMON + overrides)
    with mock.patch.object(Directions, "KEEP_BYTES", 0):  # z drawn as often as the device is charged
        algo = build_learning(scenario, base)
    plan = algo.configure_round(1, list(range(CLIENTS)))
    algo.client_update(CLIENTS, 1, plan)  # warm-up: allocator, kernels
    clock, measured, predicted = host_clock(), 0.0, 0.0
    for client in range(CLIENTS):  # each client's update twice; the faster run (less host noise)
        times = []
        for _ in range(2):
            start = clock()
            _, work = algo.client_update(client, 1, plan)
            times.append(clock() - start)
        measured += min(times)
        predicted += compute_seconds(work, host)
    return {"measured_s": measured / CLIENTS, "predicted_s": predicted / CLIENTS,
            "ratio": predicted / measured}


def main() -> None:
    host = host_profile()
    print(f"host: {torch.get_num_threads()} threads, transformer layer {host.flops['fp32'] / 1e9:.1f} GFLOP/s "
          f"(bare GEMM {host.sources['flops'].rsplit(': ', 1)[-1]}), "
          f"memory {host.mem_bandwidth / 1e9:.1f} GB/s, RNG {host.rng_flops / 30 / 1e6:.0f} M numbers/s")
    results = {"host": host.model_dump(), "cases": {}}
    for label, overrides in CASES:
        r = measure(overrides, host)
        results["cases"][label] = r
        ok = "ok" if abs(r["ratio"] - 1) <= 0.2 else "OFF BY MORE THAN 20%"
        print(f"{label:40s} measured {r['measured_s']:.3f} s  predicted {r['predicted_s']:.3f} s  "
              f"ratio {r['ratio']:.2f}  {ok}")
    out = ROOT / "bench/results/calibration.json"
    write_bench_result(out, results, __file__)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
