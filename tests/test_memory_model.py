"""Declared peak memory (the method's own model) against the peak measured on the host, for a
MeZO step and a FedAvg + Adam step on tiny-bert with every weight trainable.

Measured = weights + the peak of tensor storages alive during one step, tracked op by op with a
TorchDispatchMode (tests.helpers.PeakLiveBytes). Tolerance: within 30% for both, and FedAvg+Adam
must need at least 2.5x the ZO step (gradients + two Adam moments = 3x the weights)."""
import torch

from edgefed.algorithms.decomfl import DeComFL
from edgefed.algorithms.fedavg import FedAvg
from edgefed.algorithms.models import param_bytes
from edgefed.algorithms.work import Work
from edgefed.algorithms.zo import two_point_scalar
from tests.helpers import PeakLiveBytes, tiny_setup, zo_cfg


def measured(model, step) -> int:
    tensors = list(model.parameters()) + list(model.buffers())
    with PeakLiveBytes(tensors) as tracker:
        step()
    return param_bytes(model.parameters()) + tracker.peak


def test_declared_peak_memory_matches_host_measurement():
    model, data = tiny_setup()
    cfg = zo_cfg(batch_size=8, cache_z=True)
    batch = data.train.batch(range(8))
    zo = DeComFL(model, data, cfg, seed=0)

    def zo_step():
        with torch.no_grad():
            g = two_point_scalar(lambda: model.loss(batch), zo.dirs, 5, 1e-3, Work())
            zo.dirs.axpy(5, -1e-3 * float(g))

    zo_measured, zo_declared = measured(model, zo_step), zo.peak_memory_bytes()

    fo = FedAvg(model, data, zo_cfg(batch_size=8, optimizer="adam", lr=1e-3), seed=0)

    def fo_step():
        optimizer = torch.optim.Adam(fo.trainable.params, lr=1e-3)
        model.loss(batch).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)  # keep the gradients alive as a device would
        del optimizer

    fo_measured = measured(model, fo_step)
    fo_declared = fo.peak_memory_bytes() - param_bytes(fo.trainable.params)  # no round-start copy here
    print(f"ZO declared {zo_declared} measured {zo_measured}; FedAvg declared {fo_declared} measured {fo_measured}")
    assert abs(zo_measured / zo_declared - 1) < 0.3
    assert abs(fo_measured / fo_declared - 1) < 0.3
    assert fo_measured > 2.5 * zo_measured
