"""The contract's templates (``Algorithm.catch_up``, ``client_update``) for every method in the
registry, each in the example configuration it declares, and the spec hook through which the
builder fits a method to its fleet without naming it."""
import pytest
import torch

from edgefed.algorithms.registry import METHODS
from tests.helpers import tiny_setup


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_leaves_the_global_model_and_stamps_its_peak_memory(name):
    model, data = tiny_setup()
    method = METHODS[name]
    algo = method.cls(model, data, method.Spec(name=name, **method.example), seed=1)
    before = algo.trainable.snapshot()
    plan = algo.configure_round(1, [0, 1])
    down, down_work = algo.catch_up(0, None, 1, plan)
    up, work = algo.client_update(0, 1, plan)
    assert all(torch.equal(a, b) for a, b in zip(before, algo.trainable.snapshot()))
    assert down_work.peak_memory_bytes == work.peak_memory_bytes == algo.peak_memory_bytes() > 0
    assert (down.kind, down.client, up.kind, up.client) == (algo.download_kind, 0, algo.upload_kind, 0)
    assert work.flops > 0 and up.arrays


def test_the_spec_names_the_device_a_method_fits(tiny_dict):
    from edgefed.build import build_run
    from edgefed.scenario import ScenarioError, validate_scenario
    from tests.conftest import REPO

    tiny_dict["algorithm"] = {"name": "fedspzo", "lr": 1e-3, "local_steps": 1, "batch_size": 8, "p1": 1,
                              "split": "auto", "p2": "auto", "auto_step_s": 0.002, "auto_device": "jetson-orin-nano"}
    scenario = validate_scenario(tiny_dict, REPO)
    device = scenario.fleet.profiles()[0]["jetson-orin-nano"]
    algo = build_run(scenario, REPO).engine.algo
    assert algo.device == (device.peak_flops(scenario.model.dtype), device.memory_bytes)
    tiny_dict["algorithm"]["auto_device"] = "no-such-phone"
    with pytest.raises(ScenarioError, match="algorithm.auto_device: unknown device 'no-such-phone'"):
        build_run(validate_scenario(tiny_dict, REPO), REPO)
