"""Every scenario the project ships validates (paper scenarios need ../shared/data: skipped without)."""
from pathlib import Path

import pytest

from edgefed.simulator.scenario import ScenarioError, load_scenario
from tests.conftest import REPO, SHARED_DATA

SHIPPED = sorted(p for p in (REPO / "scenarios").rglob("*.yaml")
                 if "sweeps" not in p.parts and "golden" not in p.parts)


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(REPO / "scenarios")) for p in SHIPPED])
def test_shipped_scenario_validates(path: Path):
    if "paper" in path.parts and not SHARED_DATA.exists():
        pytest.skip("paper scenarios read ../shared/data, which is absent")
    try:
        scenario, _ = load_scenario(path)
    except ScenarioError as exc:
        pytest.fail(str(exc))
    assert scenario.name
