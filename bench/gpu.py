"""The learning on a GPU: MiniLM-L6 all-parameter ZO step, the quickstart's host time on the GPU
and on this machine's CPUs, and their ratio. Writes bench/results/gpu.json with the card's name.

One step = perturb, forward, flip, forward, restore, update over all 22.7M parameters (one flat
buffer), batch 16x48, fp32, timed with the device synchronised. Target: <= 5 ms per step; the
quickstart <= 10 s of host time. Without CUDA it says so and writes nothing.

    python bench/gpu.py            # about 3 minutes on one H100 (two quickstart runs)
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch

os.environ["EDGEFED_FEATURE_STORE"] = "off"  # both quickstarts compute the encoder's pass, as a first run does

from edgefed.algorithms.trainable import select_trainable
from edgefed.algorithms.models import Batch, TaskModel, load_backbone
from edgefed.algorithms.work import Work
from edgefed.algorithms.zo import Directions, two_point_scalar
from edgefed.provenance import write_bench_result
from edgefed.runner import run_scenario
from edgefed.scenario import load_scenario

REPO = Path(__file__).resolve().parents[1]


def zo_step_ms(device: torch.device, repeats: int = 50) -> dict:
    backbone, tokenizer, kind = load_backbone("minilm-l6", "encoder", "fp32")
    model = TaskModel(backbone, tokenizer, kind, 2).to(device)
    trainable = select_trainable(model, "all")
    gen = torch.Generator().manual_seed(0)
    batch = Batch(torch.randint(1000, 20000, (16, 48), generator=gen).to(device),
                  torch.ones(16, 48, dtype=torch.long, device=device),
                  torch.randint(0, 2, (16,), generator=gen).to(device))
    out = {"params": trainable.numel, "batch": [16, 48]}
    with torch.no_grad():
        for name, (dist, cache) in {"rademacher, cache_z": ("rademacher", True),
                                    "gaussian, cache_z": ("gaussian", True),
                                    "gaussian, regenerated": ("gaussian", False)}.items():
            dirs = Directions(trainable.params, dist, cache)

            def step(seed):  # two host syncs per step: the losses leave the device as the scalar
                g = two_point_scalar(lambda: model.loss(batch), dirs, seed, 1e-3, Work())
                dirs.axpy(seed, -1e-6 * float(g))

            for seed in range(5):
                step(seed)
            torch.cuda.synchronize(device)
            start = time.perf_counter()
            for seed in range(repeats):
                step(100 + seed)
            torch.cuda.synchronize(device)
            out[name] = (time.perf_counter() - start) / repeats * 1e3
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            model.loss(batch)
        torch.cuda.synchronize(device)
        out["forward"] = (time.perf_counter() - start) / repeats * 1e3
    return out


def quickstart(device: str) -> dict:
    scenario, base = load_scenario(REPO / "scenarios/quickstart.yaml",
                                   [f"model.device={device}", "output.plots=false", "output.report=false"])
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = run_scenario(scenario, base, Path(tmp) / "run")
        wall = time.perf_counter() - start
    return {"host_seconds": summary["host_seconds"], "wall_s": wall, "final_accuracy": summary["final_accuracy"]}


def main() -> None:
    if not torch.cuda.is_available():
        print("bench/gpu.py: torch sees no CUDA device; nothing measured, nothing written")
        return
    device = torch.device("cuda:0")
    card = torch.cuda.get_device_name(device)
    print(f"{card}, torch {torch.__version__}, CUDA {torch.version.cuda}, {os.cpu_count()} CPU cores")
    step = zo_step_ms(device)
    print(f"MiniLM-L6 all {step['params'] / 1e6:.1f}M parameters, batch 16x48 fp32: forward {step['forward']:.2f} ms")
    for name in ("rademacher, cache_z", "gaussian, cache_z", "gaussian, regenerated"):
        print(f"  ZO step, {name:22s} {step[name]:6.2f} ms (target <= 5 ms)")
    gpu = quickstart("cuda")
    print(f"quickstart on the GPU: host {gpu['host_seconds']:.1f} s (target <= 10 s), final accuracy {gpu['final_accuracy']:.4f}")
    cpu = quickstart("cpu")
    print(f"quickstart on {torch.get_num_threads()} CPU threads: host {cpu['host_seconds']:.1f} s, "
          f"final accuracy {cpu['final_accuracy']:.4f}")
    ratio = gpu["host_seconds"] / cpu["host_seconds"]
    print(f"GPU/CPU host time: {ratio:.3f}")
    results = {"card": card, "torch": torch.__version__, "cuda": torch.version.cuda, "cpu_cores": os.cpu_count(),
               "cpu_threads": torch.get_num_threads(), "zo_step_ms": step, "quickstart_gpu": gpu,
               "quickstart_cpu": cpu, "gpu_cpu_host_ratio": ratio}
    out = REPO / "bench" / "results" / "gpu.json"
    write_bench_result(out, results, __file__)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
