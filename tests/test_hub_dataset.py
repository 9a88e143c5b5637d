"""task.dataset.hub: a Hugging Face dataset (tested offline on a save_to_disk folder); an unknown id
offline is one line naming it, exit 2."""
import copy
import csv
import json
import os
import subprocess
import sys

import pytest

from edgefed.runner import run_scenario
from edgefed.scenario import ScenarioError, load_scenario
from tests.conftest import REPO, write_scenario
from tests.helpers import edgefed

datasets = pytest.importorskip("datasets")


def sst2_rows():
    with (REPO / "scenarios/data/sst2/train.tsv").open() as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


@pytest.fixture
def saved(tmp_path):
    """240 + 64 rows of the embedded SST-2 slice as a DatasetDict with a ClassLabel column."""
    rows = sst2_rows()
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})

    def split(part):
        return datasets.Dataset.from_dict({"sentence": [r["sentence"] for r in part],
                                           "label": [int(r["label"]) for r in part]}, features=features)

    datasets.DatasetDict(train=split(rows[:240]), validation=split(rows[240:304])).save_to_disk(str(tmp_path / "hf"))
    return tmp_path / "hf"


def hub_scenario(tiny_dict, hub, **dataset):
    tiny_dict["task"]["dataset"] = {"hub": hub, "train": "train", "test": "validation", **dataset}
    tiny_dict["rounds"]["max"] = 2
    return tiny_dict


def rounds_without_host_time(run_dir):
    with (run_dir / "rounds.csv").open() as fh:
        return [{k: v for k, v in row.items() if k != "host_seconds"} for row in csv.DictReader(fh)]


def test_a_saved_dataset_runs_exactly_like_the_same_rows_in_files(tmp_path, tiny_dict, saved):
    scenario, base = load_scenario(write_scenario(tmp_path, hub_scenario(copy.deepcopy(tiny_dict), "hf")))
    run_scenario(scenario, base, tmp_path / "hub")
    prov = json.loads((tmp_path / "hub" / "provenance.json").read_text())
    assert prov["dataset"]["hub"] == "hf" and prov["dataset"]["files"]
    assert "task.dataset.train" not in prov["files"]
    names = {"0": "negative", "1": "positive"}
    rows = sst2_rows()
    for name, part in (("train.tsv", rows[:240]), ("test.tsv", rows[240:304])):
        (tmp_path / name).write_text("sentence\tlabel\n" + "".join(f"{r['sentence']}\t{names[r['label']]}\n" for r in part))
    tiny_dict["task"]["dataset"] = {"train": "train.tsv", "test": "test.tsv"}
    tiny_dict["rounds"]["max"] = 2
    scenario, base = load_scenario(write_scenario(tmp_path, tiny_dict, "files.yaml"))
    run_scenario(scenario, base, tmp_path / "files")
    assert rounds_without_host_time(tmp_path / "hub") == rounds_without_host_time(tmp_path / "files")


def test_a_missing_split_names_it(tmp_path, tiny_dict, saved):
    scenario, base = load_scenario(write_scenario(tmp_path, hub_scenario(tiny_dict, "hf", test="test")))
    with pytest.raises(ScenarioError, match=r"has no split 'test' \(has train, validation\)"):
        run_scenario(scenario, base, tmp_path / "r")


def test_a_missing_column_names_it(tmp_path, tiny_dict, saved):
    scenario, base = load_scenario(write_scenario(tmp_path, hub_scenario(tiny_dict, "hf", text_field="text")))
    with pytest.raises(ScenarioError, match=r"task.dataset.hub: 'hf' split 'train' has no column 'text'"):
        run_scenario(scenario, base, tmp_path / "r")


def test_unknown_dataset_id_offline_is_one_line_exit_2(tmp_path, tiny_dict):
    path = write_scenario(tmp_path, hub_scenario(tiny_dict, "nobody-here/no-such-dataset"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "edgefed", "run", str(path), "--out", str(tmp_path / "o"), "--quiet"],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "task.dataset.hub" in lines[0] and "'nobody-here/no-such-dataset'" in lines[0], lines


def test_validate_does_not_look_for_split_names_as_files(tmp_path, tiny_dict):
    result = edgefed("validate", write_scenario(tmp_path, hub_scenario(tiny_dict, "some/dataset", config="x")))
    assert result.returncode == 0, result.stderr
    assert "hub: some/dataset" in result.stdout
