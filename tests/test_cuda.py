"""The learning on a GPU (``model.device``): reproducible per kind of device, catch-up exact, the
device recorded; CUDA tests skip with a reason where torch sees no GPU."""
import json

import numpy as np
import pytest
import torch
import yaml

from edgefed.algorithms.decomfl import DeComFL
from edgefed.algorithms.zo import Directions, replay
from tests.conftest import write_scenario
from tests.helpers import tiny_setup, zo_cfg
from tests.helpers import edgefed
from tests.test_end_to_end import read_csv

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA device")


def _comparable(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    summary.pop("host_seconds")
    drop = lambda rows: [{k: v for k, v in r.items() if k != "host_seconds"} for r in rows]  # noqa: E731
    return summary, drop(read_csv(run_dir / "rounds.csv")), drop(read_csv(run_dir / "clients.csv"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message a CPU-only host gives")
def test_cuda_without_a_gpu_is_one_line_exit_2(tmp_path, tiny_dict):
    tiny_dict["model"]["device"] = "cuda"
    result = edgefed("run", write_scenario(tmp_path, tiny_dict), "--out", tmp_path / "o")
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "model.device" in lines[0] and "no GPU" in lines[0], result.stderr


def test_run_directory_records_the_learning_device(tmp_path, tiny_dict):
    tiny_dict["rounds"]["max"] = 1
    result = edgefed("run", write_scenario(tmp_path, tiny_dict), "--out", tmp_path / "o", "--quiet")
    assert result.returncode == 0, result.stderr
    recorded = yaml.safe_load((tmp_path / "o" / "scenario.yaml").read_text())
    assert recorded["model"]["device"] == "auto"
    assert recorded["_versions"]["device"].startswith("cuda:" if torch.cuda.is_available() else "cpu")


@needs_cuda
@pytest.mark.parametrize("trainable", ["all", "last:2"])
def test_a_cuda_run_equals_itself(tmp_path, tiny_dict, trainable):
    """Same scenario, same seed, same kind of device: identical files except host seconds."""
    tiny_dict["model"]["device"] = "cuda"
    tiny_dict["algorithm"]["trainable"] = trainable
    path = write_scenario(tmp_path, tiny_dict)
    for name in ("a", "b"):
        result = edgefed("run", path, "--out", tmp_path / name, "--quiet")
        assert result.returncode == 0, result.stderr
    assert _comparable(tmp_path / "a") == _comparable(tmp_path / "b")
    assert "cuda" in yaml.safe_load((tmp_path / "a" / "scenario.yaml").read_text())["_versions"]["device"]


@needs_cuda
def test_catch_up_is_exact_on_cuda():
    model, data = tiny_setup()
    model.to("cuda")
    data.train.device = torch.device("cuda")
    algo = DeComFL(model, data, zo_cfg(trainable="last:2", distribution="rademacher"), seed=1)
    assert algo.trainable.flat.is_cuda and algo.dirs.flat.is_cuda
    start = algo.trainable.snapshot()
    rng = np.random.default_rng(0)
    for r in range(1, 4):
        selected = sorted(rng.choice(data.num_clients, 2, replace=False).tolist())
        plan = algo.configure_round(r, selected)
        algo.apply(algo.aggregate([algo.client_update(c, r, plan)[0] for c in selected]), r, plan)
    final = algo.trainable.snapshot()
    assert any(not torch.equal(a, b) for a, b in zip(start, final))
    msg, _ = algo.catch_up(client=0, last_round=None, round=4, plan=algo.configure_round(4, [0]))
    algo.trainable.restore(start)
    dirs = Directions(algo.trainable.params, algo.cfg.distribution)
    perts = algo.cfg.perturbations
    for step_seed, g in zip(msg.arrays["history_seeds"], msg.arrays["history_scalars"].reshape(-1, perts)):
        replay(dirs, algo.perturbation_seeds(int(step_seed)), g, algo.cfg.lr / perts)
    assert all(torch.equal(a, b) for a, b in zip(final, algo.trainable.snapshot()))


@needs_cuda
def test_cuda_directions_match_their_cached_form():
    params = [torch.zeros(1000, device="cuda"), torch.zeros(37, device="cuda")]
    for distribution in ("gaussian", "rademacher"):
        a = Directions(params, distribution, cache=True).direction(7)
        b = Directions(params, distribution, cache=False).direction(7)
        assert all(torch.equal(x, y) for x, y in zip(a, b))
