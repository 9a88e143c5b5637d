"""Shared fixtures: a tiny random-config model scenario on the embedded SST-2 slice."""
from __future__ import annotations

import copy
import importlib.util
import os
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import settings

# Property tests draw the same examples on every machine and run (a suite that passes here passes
# in CI); HYPOTHESIS_EXPLORE=1 draws afresh, to look for new counterexamples on purpose.
settings.register_profile("suite", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile("explore" if os.environ.get("HYPOTHESIS_EXPLORE") else "suite")

# Tiny models run fastest on one thread, and test subprocesses must not oversubscribe shared cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Runs under test compute their frozen layers' outputs themselves (tests of the fill, threads and
# cache equality mean it); tests of the persistent store point it at a folder of their own.
os.environ["EDGEFED_FEATURE_STORE"] = "off"
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

REPO = Path(__file__).resolve().parents[1]

TINY = {
    "name": "tiny",
    "seed": 3,
    "model": {"name": "tiny-bert", "max_length": 32},
    "task": {"dataset": {"train": str(REPO / "scenarios/data/sst2/train.tsv"),
                         "test": str(REPO / "scenarios/data/sst2/validation.tsv"),
                         "train_limit": 240, "test_limit": 64},
             "head_init_examples": 4},
    "partition": {"kind": "dirichlet", "alpha": 0.5},
    "algorithm": {"name": "decomfl", "lr": 1e-3, "eps": 1e-3, "local_steps": 2, "batch_size": 8,
                  "perturbations": 2, "trainable": "all"},
    "fleet": {"groups": [{"device": "pixel-7a", "count": 3, "link": "lte"},
                         {"device": "rpi5", "count": 3, "link": "wifi"},
                         {"device": "jetson-orin-nano", "count": 2}]},
    "rounds": {"max": 3, "clients_per_round": 4, "eval_every": 1, "target_accuracy": 0.5},
    "output": {"plots": False, "report": False},
}


def bench_script(name: str):
    """bench/NAME.py imported as a module (bench/ is a folder of scripts, not a package); it is
    registered in sys.modules, where pydantic resolves a plan's annotations."""
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def write_scenario(tmp_path: Path, data: dict, name: str = "scenario.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def tiny_dict() -> dict:
    return copy.deepcopy(TINY)


@pytest.fixture
def tiny_file(tmp_path, tiny_dict) -> Path:
    return write_scenario(tmp_path, tiny_dict)


@pytest.fixture(scope="session")
def local_ray():
    """One local Ray for every test that needs it (its start costs seconds); skipped without Ray."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
