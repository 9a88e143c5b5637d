"""Where a new user's first quickstart run goes: the feature-cache fill against this host's
matrix-multiply speed, and the imports.

The first run of `edgefed run scenarios/quickstart.yaml` (empty feature store) fills the cache by
pushing every training and held-out sentence through the frozen MiniLM encoder once. This bench
times that fill alone, through the run's own ``FeatureCache`` (store off), counts its FLOPs with
the model's own counter, and compares the rate with bare fp32 GEMMs of an encoder layer's three
shapes at a chunk's size (``edgefed calibrate``'s ``gemm_flops``) on the same threads, measured
before and after the fill: a fill near the GEMM rate is compute-bound, and only less work could
make it faster. It also times the imports a run pays before any work (torch, then transformers'
BERT model; each in a fresh interpreter). Writes bench/results/feature_fill.json.

    python bench/feature_fill.py
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

os.environ["EDGEFED_FEATURE_STORE"] = "off"  # compute every vector: the fill a new user's first run pays

import torch  # noqa: E402

from edgefed.algorithms.features import CHUNK  # noqa: E402
from edgefed.build import build_learning  # noqa: E402
from edgefed.calibrate import gemm_flops  # noqa: E402
from edgefed.provenance import write_bench_result  # noqa: E402
from edgefed.scenario import load_scenario  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results" / "feature_fill.json"
CHUNK_TOKENS = CHUNK * 20  # a fill chunk's rows: its sentences, about 20 tokens each


def import_seconds(module: str) -> float:
    """Wall time of ``python -c 'import module'`` in a fresh interpreter, best of 3."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    scenario, base = load_scenario(REPO / "scenarios" / "quickstart.yaml")
    algorithm = build_learning(scenario, base)
    model, data = algorithm.model, algorithm.data
    threads = torch.get_num_threads()
    before = gemm_flops(CHUNK_TOKENS) / 1e9
    sets = {}
    for name, tokenized in (("held-out", data.test), ("training", data.train)):
        cache = tokenized.features
        chunks = [tokenized.batch(indices, cached=False, bucket=False) for indices in cache.chunks]
        flops = sum(model.forward_flops(batch, "block1", cache.split) for batch in chunks)
        start = time.perf_counter()
        cache.lookup(tokenized.batch(range(len(tokenized))))
        seconds = time.perf_counter() - start
        real = sum(len(ids) for ids in tokenized.ids)
        padded = sum(batch.input_ids.numel() for batch in chunks)
        sets[name] = {"sentences": len(tokenized), "chunks": len(chunks), "tokens": real, "padded_tokens": padded,
                      "tflop": round(flops / 1e12, 4), "fill_s": round(seconds, 2),
                      "gflops": round(flops / seconds / 1e9, 1)}
        print(f"{name:9s} {len(tokenized):5d} sentences, {padded:6d} tokens ({padded / real - 1:.1%} padding): "
              f"{seconds:5.2f} s, {flops / 1e12:.3f} TFLOP = {flops / seconds / 1e9:.1f} GFLOP/s")
    after = gemm_flops(CHUNK_TOKENS) / 1e9
    total_s = sum(s["fill_s"] for s in sets.values())
    total_flop = sum(s["tflop"] for s in sets.values()) * 1e12
    print(f"fill: {total_s:.2f} s at {total_flop / total_s / 1e9:.1f} GFLOP/s on {threads} threads; "
          f"bare GEMM {before:.1f} GFLOP/s before, {after:.1f} after")
    imports = {module: round(import_seconds(module), 2)
               for module in ("torch", "transformers.models.bert.modeling_bert", "matplotlib.pyplot")}
    print("imports (fresh interpreter, best of 3): " + ", ".join(f"{m} {s} s" for m, s in imports.items()))
    write_bench_result(OUT, {"threads": threads, "sets": sets, "fill_s": round(total_s, 2),
                             "fill_gflops": round(total_flop / total_s / 1e9, 1),
                             "gemm_gflops_before": round(before, 1), "gemm_gflops_after": round(after, 1),
                             "import_s": imports}, __file__)


if __name__ == "__main__":
    main()
