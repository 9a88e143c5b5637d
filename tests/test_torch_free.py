"""No torch where no model runs: the scenario, the simulator and the devices import without torch or
transformers, and ``edgefed validate``, ``devices``, ``schema`` and a replay run work in an
environment whose ``torch`` and ``transformers`` raise on import (and ``networkx``, which only a
scenario with a network topology loads)."""
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.xdist_group("torch_free")  # one module-scoped folder of poisoned packages


@pytest.fixture(scope="module")
def no_torch(tmp_path_factory):
    """An environment whose path puts first a ``torch``, a ``transformers`` and a ``networkx`` that
    raise on import."""
    poisoned = tmp_path_factory.mktemp("poisoned")
    for name in ("torch", "transformers", "networkx"):
        (poisoned / name).mkdir()
        (poisoned / name / "__init__.py").write_text(f"raise ImportError('{name} must not be imported here')\n")
    return {**os.environ, "PYTHONPATH": str(poisoned), "EDGEFED_FEATURE_STORE": "off"}


def edgefed(env, *args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "edgefed", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_the_scenario_simulator_and_devices_import_without_torch(no_torch):
    modules = [f"edgefed.{room}.{p.stem}" for room, folder in (("simulator", "simulator"), ("devices", "devices"))
               for p in sorted((REPO / folder).glob("*.py")) if p.stem != "__init__"]
    code = "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)\n" \
           "print(sorted(m for m in ('torch', 'transformers', 'networkx') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code, "edgefed.scenario", *modules], env=no_torch,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("args", [["validate", "scenarios/quickstart.yaml"], ["devices"], ["devices", "--json"],
                                  ["schema"], ["schema", "--format", "markdown"]])
def test_commands_that_run_no_model_work_without_torch(no_torch, args):
    done = edgefed(no_torch, *args)
    assert done.returncode == 0, done.stderr
    assert done.stdout


def test_a_bad_scenario_is_still_one_line_without_torch(no_torch):
    done = edgefed(no_torch, "validate", "scenarios/quickstart.yaml", "--set", "algorithm.lr=fast")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "algorithm.lr" in done.stderr


def test_a_replay_runs_without_torch(no_torch, tmp_path):
    done = edgefed(no_torch, "run", str(REPO / "scenarios/regression/replay-larger-fleet.yaml"), "--out",
                   str(tmp_path / "replay"), "--quiet", "--set", "output.plots=false", "--set", "output.report=false")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "replay" / "summary.json").is_file()
