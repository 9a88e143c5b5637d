"""Every scenario the project ships validates, and a clone holds all the data they read."""
import subprocess
from pathlib import Path

import pytest

from edgefed.algorithms.data import load_dataset
from edgefed.scenario import ScenarioError, load_scenario
from tests.conftest import REPO

SHIPPED = sorted(p for p in (REPO / "scenarios").rglob("*.yaml")
                 if not {"sweeps", "golden", "compare"} & set(p.parts))
COMPARISONS = sorted((REPO / "scenarios" / "compare").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(REPO / "scenarios")) for p in SHIPPED])
def test_shipped_scenario_validates(path: Path):
    try:
        scenario, _ = load_scenario(path)
    except ScenarioError as exc:
        pytest.fail(str(exc))
    assert scenario.name


@pytest.mark.parametrize("name, text_field, rows, labels", [
    ("sst2/train_full.tsv.gz", "sentence", 67349, ["0", "1"]),
    ("agnews/train.tsv.gz", "text", 10001, ["Business", "Sci/Tech", "Sports", "World"]),
    ("agnews/test.tsv.gz", "text", 7600, ["Business", "Sci/Tech", "Sports", "World"]),
])
def test_embedded_benchmark_data_reads_whole(name, text_field, rows, labels):
    data = load_dataset(REPO / "scenarios" / "data" / name, text_field, "label")
    assert len(data) == rows and data.label_names == labels


def test_nothing_in_the_repository_points_outside_it():
    """A clone must reproduce everything: no path into a team folder beside the checkout."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    needle = "/".join(["..", "shared"])  # spelt apart so this file does not match itself
    offenders = [name for name in tracked.stdout.split("\0") if name and (REPO / name).is_file()
                 and needle.encode() in (REPO / name).read_bytes()]
    assert offenders == []
