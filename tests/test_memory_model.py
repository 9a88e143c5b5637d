"""Declared peak memory (the method's own model) against the peak measured on the host, on
tiny-bert: every method's example training every weight and its last two layers, and FedAvg
training LoRA adapters. bench/memory_model.py does the same for every trainable kind on MiniLM-L6.

Measured = weights + the peak of tensor storages alive during one local update, tracked op by op
with a TorchDispatchMode (``memory.PeakLiveBytes``), the host holding what a device holds
(``device_like``). Tolerance: within 15%."""
import pytest

from edgefed.algorithms.registry import METHODS, example
from tests.helpers import tiny_setup

from bench.memory_model import device_like, measure_update

CASES = [(name, kind) for name in METHODS for kind in ("all", "last:2")] + [("fedavg", "lora")]


@pytest.mark.parametrize("name,kind", CASES)
def test_declared_peak_memory_matches_host_measurement(name, kind):
    method = METHODS[name]
    cfg = method.Spec(**{**example(name), "trainable": kind})
    with device_like():
        model, data = tiny_setup()
        algo = method.cls(model, data, cfg, seed=0)
        measured = measure_update(algo)
    declared = algo.peak_memory_bytes()
    print(f"{name} {kind}: declared {declared} measured {measured}")
    assert abs(declared / measured - 1) < 0.15
