"""What thermal throttling does to phones' compute time, round after round.

One local step is the MeZO two-point step on MiniLM-L6 (batch 16 x 48 tokens, FLOPs counted by
``torch.utils.flop_counter`` and weight traffic as the engine charges it). A phone computes
``steps`` of them per round, then spends ``gap_s`` on transfers and waiting before its next
round; its heat carries over (``simulator/thermal.py``, the catalog's ``thermal`` profiles). For
each phone and workload this prints the compute time of the first and the tenth round and the
total over ten rounds, against the catalog's burst rate alone and the flat x0.7 factor the
catalog used before; and the compute energy of the ten rounds (``energy.compute_j``: throttled,
the device draws ``power_throttled_w``) against the burst power held throughout, the rule before
issue 28, in joules per burst-second of work. Writes bench/results/throttling.json.

    OMP_NUM_THREADS=1 python bench/throttling.py
"""
from __future__ import annotations

from pathlib import Path

import torch

from edgefed.algorithms.models import Batch, TaskModel, load_backbone
from edgefed.algorithms.work import Work
from edgefed.devices.profile import default_catalog
from edgefed.simulator.costs import compute_seconds
from edgefed.simulator.energy import compute_j
from edgefed.provenance import write_bench_result
from edgefed.simulator import thermal

REPO = Path(__file__).resolve().parents[1]
ROUNDS = 10
WORKLOADS = {"quickstart (5 steps)": 5, "FedKSeed default (200 steps)": 200}
GAPS_S = {"picked every round (20 s between)": 20.0, "picked every 5th round (300 s between)": 300.0}


def step_work() -> Work:
    backbone, tokenizer, kind = load_backbone("minilm-l6", "encoder", "fp32")
    model = TaskModel(backbone, tokenizer, kind, 2)
    gen = torch.Generator().manual_seed(0)
    batch = Batch(torch.randint(1000, 20000, (16, 48), generator=gen), torch.ones(16, 48, dtype=torch.long),
                  torch.randint(0, 2, (16,), generator=gen))
    weight_bytes = float(sum(p.numel() * p.element_size() for p in model.parameters()))
    work = Work()
    work.add_forward("full", model.forward_flops(batch, "full"), weight_bytes, count=2)
    return work


def rounds(device, work_s: float, gap_s: float) -> tuple[list[float], list[float]]:
    """Compute seconds and compute joules per round for a phone that starts cold."""
    profile = device.thermal or thermal.STEADY
    heat_s, at, seconds_out, joules_out = 0.0, 0.0, [], []
    for _ in range(ROUNDS):
        now = at + (gap_s if seconds_out else 0.0)
        heat_s = thermal.cooled(profile, heat_s, at, now)
        seconds = float(thermal.duration(profile, heat_s, work_s))
        joules_out.append(float(compute_j(device, profile, heat_s, seconds)))
        heat_s, at = thermal.heated(profile, heat_s, seconds), now + seconds
        seconds_out.append(seconds)
    return seconds_out, joules_out


def main() -> None:
    work = step_work()
    phones = {k: d for k, d in default_catalog().devices.items() if d.device_class == "phone"}
    results = {"step_gflop": work.flops / 1e9, "rounds": ROUNDS, "cases": []}
    print(f"MiniLM-L6 two-point step: {work.flops / 1e9:.1f} GFLOP; {ROUNDS} rounds per phone")
    print(f"{'phone':12s} {'workload':30s} {'schedule':42s} {'burst':>8s} {'round 1':>8s} {'round 10':>8s}"
          f" {'total':>8s} {'vs burst':>8s} {'flat x0.7':>9s} {'J/burst-s':>9s} {'before':>7s}")
    for name, device in phones.items():
        for label, steps in WORKLOADS.items():
            burst_s = compute_seconds(work, device) * steps
            for schedule, gap_s in GAPS_S.items():
                per_round, joules = rounds(device, burst_s, gap_s)
                total, flat = sum(per_round), ROUNDS * burst_s / 0.7
                per_work, held = sum(joules) / (ROUNDS * burst_s), total * device.power_active_w / (ROUNDS * burst_s)
                results["cases"].append({"phone": name, "workload": label, "steps": steps, "schedule": schedule,
                                         "gap_s": gap_s, "burst_round_s": burst_s, "round_s": per_round,
                                         "total_s": total, "flat_0.7_total_s": flat, "round_j": joules,
                                         "total_j": sum(joules), "j_per_burst_s": per_work,
                                         "burst_power_held_j_per_burst_s": held})
                print(f"{name:12s} {label:30s} {schedule:42s} {burst_s:8.1f} {per_round[0]:8.1f} {per_round[-1]:8.1f}"
                      f" {total:8.1f} {total / (ROUNDS * burst_s):7.2f}x {flat:9.1f} {per_work:9.2f} {held:7.2f}")
    write_bench_result(REPO / "bench" / "results" / "throttling.json", results, __file__)


if __name__ == "__main__":
    main()
