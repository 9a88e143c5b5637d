"""The MeZO step on MiniLM-L6 (all 22.7M parameters): forward time vs everything else.

One step = perturb, forward, flip, forward, restore, update (the MeZO step). Prints, per
variant (Gaussian z drawn for every pass as MeZO does, the host keeping none; Gaussian drawn once
per step, as the host does by default whatever ``cache_z`` says; Rademacher from raw bits, drawn
once per step), the step time, its two forwards and the non-forward share (perturb + RNG +
restore + update), and writes bench/results/zo_step.json. Each step has a new seed, so the host
keeps z only within the step.

    OMP_NUM_THREADS=1 python bench/zo_step.py
"""
from __future__ import annotations

from pathlib import Path
from unittest import mock

import torch

REPO = Path(__file__).resolve().parents[1]

from edgefed.algorithms.trainable import select_trainable  # noqa: E402
from edgefed.algorithms.models import Batch, TaskModel, load_backbone  # noqa: E402
from edgefed.algorithms.work import Work  # noqa: E402
from edgefed.algorithms.zo import Directions, two_point_scalar  # noqa: E402
from edgefed.calibrate import host_clock  # noqa: E402
from edgefed.provenance import write_bench_result  # noqa: E402

# name: (distribution, host memory for kept z's)
VARIANTS = {"gaussian, drawn every pass": ("gaussian", 0), "gaussian, drawn once": ("gaussian", Directions.KEEP_BYTES),
            "rademacher, drawn once": ("rademacher", Directions.KEEP_BYTES)}


def best_of(fn, repeats: int) -> float:
    """Fastest of ``repeats`` after a warm-up, on ``host_clock`` (CPU time with one thread: wall
    time on this shared host once made a step read faster than its own two forwards)."""
    clock = host_clock()
    fn()
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return min(times)


def main(repeats: int = 5) -> None:
    backbone, tokenizer, kind = load_backbone("minilm-l6", "encoder", "fp32")
    model = TaskModel(backbone, tokenizer, kind, 2)
    trainable = select_trainable(model, "all")
    gen = torch.Generator().manual_seed(0)
    batch = Batch(torch.randint(1000, 20000, (16, 48), generator=gen), torch.ones(16, 48, dtype=torch.long),
                  torch.randint(0, 2, (16,), generator=gen))
    with torch.no_grad():
        forward = best_of(lambda: model.loss(batch), repeats)
        results = {"params": trainable.numel, "batch": list(batch.shape), "threads": torch.get_num_threads(),
                   "forward_s": forward, "variants": {}}
        print(f"MiniLM-L6, {trainable.numel / 1e6:.1f}M trainable, batch 16x48, {torch.get_num_threads()} thread(s)")
        print(f"one forward: {forward * 1e3:.1f} ms")
        for name, (dist, keep) in VARIANTS.items():
            with mock.patch.object(Directions, "KEEP_BYTES", keep):
                dirs = Directions(trainable.params, dist)
            seeds = iter(range(10**6))

            def step(loss_fn):
                seed = next(seeds)
                g = two_point_scalar(loss_fn, dirs, seed, 1e-3, Work())
                dirs.axpy(seed, -1e-6 * float(g))

            # the non-forward part timed alone (forwards replaced by a constant), so that load on
            # a shared host does not blur the share; the step with real forwards for reference
            rest = best_of(lambda: step(lambda: 0.0), repeats)
            total = best_of(lambda: step(lambda: model.loss(batch)), repeats)
            share = rest / (rest + 2 * forward)
            results["variants"][name] = {"step_s": total, "non_forward_s": rest, "non_forward_share": share}
            print(f"{name:24s} step {total * 1e3:7.1f} ms   non-forward {rest * 1e3:6.1f} ms = {share:6.1%}")
    out = REPO / "bench" / "results" / "zo_step.json"
    write_bench_result(out, results, __file__)


if __name__ == "__main__":
    main()
