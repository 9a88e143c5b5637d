"""The Python API: edgefed.run on a file or a dict, edgefed.load of a run directory, clear errors."""
import json

import pytest

import edgefed
from edgefed import ScenarioError
from tests.conftest import write_scenario


@pytest.fixture(scope="module")
def dict_run(tmp_path_factory):
    import copy

    from tests.conftest import TINY
    scenario = copy.deepcopy(TINY)
    out = tmp_path_factory.mktemp("api") / "r"
    return scenario, edgefed.run(scenario, overrides={"rounds.max": 2}, out=out), out


def test_run_a_dict_scenario_with_overrides(dict_run):
    scenario, result, out = dict_run
    assert scenario["rounds"]["max"] == 3, "the caller's dict is left unchanged"
    assert result.run_dir == out and result.summary["rounds"] == 2
    assert result.summary == json.loads((out / "summary.json").read_text())
    assert result.scenario["rounds"]["max"] == 2
    assert result.provenance["files"]["task.dataset.train"]["sha256"]
    assert "final_accuracy=" in repr(result)
    assert result.report is None, "the tests' tiny scenario writes no report"


def test_tables_are_dataframes_with_pandas(dict_run):
    pd = pytest.importorskip("pandas")
    _, result, _ = dict_run
    assert isinstance(result.rounds, pd.DataFrame) and list(result.rounds["round"]) == [0, 1, 2]
    assert result.clients["energy_compute_j"].dtype.kind == "f"
    assert result.rounds["bytes_up"].sum() == result.summary["totals"]["bytes_up"]


def test_tables_are_lists_of_dicts_without_pandas(dict_run, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_pandas(name, *args, **kwargs):
        if name == "pandas":
            raise ImportError("no pandas here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    loaded = edgefed.load(dict_run[2])
    assert [r["round"] for r in loaded.rounds] == [0, 1, 2]
    assert loaded.rounds[0]["loss"] > 0 and isinstance(loaded.clients[0]["device"], str)
    assert sum(r["bytes_up"] for r in loaded.rounds) == loaded.summary["totals"]["bytes_up"]


def test_run_a_file_with_cli_style_overrides_equals_the_dict_run(tmp_path, tiny_dict, dict_run):
    path = write_scenario(tmp_path, tiny_dict)
    result = edgefed.run(path, overrides=["rounds.max=2"], out=tmp_path / "f")
    assert _rows(tmp_path / "f") == _rows(dict_run[2])
    assert result.summary["final_accuracy"] == dict_run[1].summary["final_accuracy"]


def _rows(run_dir):
    """rounds.csv without host_seconds (wall-clock time, the one column allowed to differ)."""
    import csv
    with (run_dir / "rounds.csv").open() as fh:
        return [{k: v for k, v in row.items() if k != "host_seconds"} for row in csv.DictReader(fh)]


def test_dict_paths_are_relative_to_base(tmp_path, tiny_dict):
    tiny_dict["task"]["dataset"]["train"] = "train.tsv"
    with pytest.raises(ScenarioError, match=r"scenario dict: task.dataset.train: file not found: .*train.tsv"):
        edgefed.run(tiny_dict, base=tmp_path, out=tmp_path / "x")


def test_bad_dict_scenario_names_the_field(tmp_path, tiny_dict):
    tiny_dict["algorithm"]["lr"] = "fast"
    with pytest.raises(ScenarioError, match=r"^scenario dict: algorithm.lr: "):
        edgefed.run(tiny_dict, out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("damage, named", [
    (lambda d: (d / "summary.json").unlink(), "summary.json: missing"),
    (lambda d: (d / "summary.json").write_text("{not json"), "summary.json: invalid JSON"),
    (lambda d: (d / "rounds.csv").write_text(""), "rounds.csv: not a CSV table"),
    (lambda d: (d / "scenario.yaml").write_text("a: [1"), "scenario.yaml: invalid YAML"),
])
def test_load_names_the_file_it_cannot_read(tmp_path, dict_run, damage, named):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(dict_run[2], copy)
    damage(copy)
    with pytest.raises(edgefed.RunDirError, match=named) as info:
        edgefed.load(copy)
    assert str(copy) in str(info.value)


def test_load_of_a_missing_folder(tmp_path):
    with pytest.raises(edgefed.RunDirError, match="no such folder"):
        edgefed.load(tmp_path / "nowhere")
