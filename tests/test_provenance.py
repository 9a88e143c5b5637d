"""Provenance: a run records the code, machine and exact input bytes; bench results can be checked
for staleness against HEAD."""
import hashlib
import json
import os
import subprocess
import sys

import pytest

import edgefed.provenance as provenance
from edgefed.runner import run_scenario
from edgefed.scenario import load_scenario
from tests.conftest import REPO, write_scenario


def file_sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_run_records_code_machine_and_every_input_file(tmp_path, tiny_dict, monkeypatch):
    monkeypatch.setenv("EDGEFED_CACHE", str(tmp_path / "cache"))
    devices_file = tmp_path / "host.yaml"
    devices_file.write_text("devices: {}\n")
    tiny_dict["fleet"]["devices_file"] = str(devices_file)
    tiny_dict["rounds"]["max"] = 1
    scenario, base = load_scenario(write_scenario(tmp_path, tiny_dict))
    run_scenario(scenario, base, tmp_path / "run")
    prov = json.loads((tmp_path / "run" / provenance.PROVENANCE).read_text())
    files = prov["files"]
    assert set(files) == {"devices.catalog", "task.dataset.train", "task.dataset.test", "fleet.devices_file"}
    assert files["task.dataset.train"]["sha256"] == file_sha(REPO / "scenarios/data/sst2/train.tsv")
    assert files["devices.catalog"]["sha256"] == file_sha(REPO / "devices/catalog.yaml")
    assert files["fleet.devices_file"]["sha256"] == file_sha(devices_file)
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        assert prov["code"]["commit"] == head.stdout.strip() and isinstance(prov["code"]["dirty"], bool)
    assert prov["machine"]["cores"] == os.cpu_count() and prov["machine"]["torch_threads"] >= 1
    assert prov["model"]["name"] == "tiny-bert" and "random" in prov["model"]["weights"]


def test_model_folder_is_hashed_by_its_weights_and_the_hash_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEFED_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "model"
    folder.mkdir()
    weights = folder / "model.safetensors"
    weights.write_bytes(b"A" * 1000)
    (folder / "config.json").write_text("{}")
    first = provenance.model_record(str(folder), None)
    assert first["files"] == {"model.safetensors": hashlib.sha256(b"A" * 1000).hexdigest()}
    # same size and mtime: the cached hash is used, the file is not read again
    stat = weights.stat()
    weights.write_bytes(b"B" * 1000)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert provenance.model_record(str(folder), None)["weights_sha256"] == first["weights_sha256"]
    # a new mtime: rehashed
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    again = provenance.model_record(str(folder), None)
    assert again["files"]["model.safetensors"] == hashlib.sha256(b"B" * 1000).hexdigest()
    assert again["weights_sha256"] != first["weights_sha256"]


def test_an_installed_copy_outside_a_checkout_records_no_commit(tmp_path):
    assert provenance.code(tmp_path) == {"edgefed": provenance.versions()["edgefed"], "commit": None, "dirty": None}


def test_a_copy_whose_git_is_stale_is_named_by_the_declared_commit(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEFED_SOURCE_COMMIT", "bb8f0a2")
    assert provenance.code() == {"edgefed": provenance.versions()["edgefed"], "commit": "bb8f0a2", "dirty": None}


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def bench_repo(tmp_path):
    """A small repository with two bench results: one recorded at the first commit, one at HEAD."""
    if subprocess.run(["git", "--version"], capture_output=True).returncode != 0:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    for folder in ("simulator", "algorithms", "devices", "edgefed", "bench/results", "docs"):
        (repo / folder).mkdir(parents=True)
    (repo / "simulator" / "engine.py").write_text("def f():\n    from edgefed.algorithms import zo\nA = 1\n")
    (repo / "algorithms" / "zo.py").write_text("B = 1\n")
    (repo / "devices" / "catalog.yaml").write_text("pi: 1\n")
    (repo / "edgefed" / "__main__.py").write_text("from edgefed.simulator.engine import A\n")
    (repo / "bench" / "speed.py").write_text("from edgefed.simulator.engine import A\nprint(A)\n")
    (repo / "bench" / "other.py").write_text("print(2)\n")
    (repo / "bench" / "command.py").write_text('import subprocess, sys\nsubprocess.run([sys.executable, "-m", "edgefed"])\n')
    git(repo, "init", "-q")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "one")
    first = git(repo, "rev-parse", "HEAD")
    return repo, first


def record(repo, name, commit, script, dirty=False):
    (repo / "bench" / "results" / f"{name}.json").write_text(json.dumps(
        {"figure": 1.0, "provenance": {"commit": commit, "dirty": dirty, "script": script}}))


def commit_all(repo, message):
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD")


def run_stale(repo):
    return subprocess.run([sys.executable, str(REPO / "bench" / "stale.py"), "--repo", str(repo)],
                          capture_output=True, text=True)


def test_stale_lists_results_whose_code_changed_since_their_commit(bench_repo):
    repo, first = bench_repo
    record(repo, "speed", first, "bench/speed.py")
    record(repo, "other", first, "bench/other.py")
    record(repo, "command", first, "bench/command.py")
    commit_all(repo, "results")
    out = run_stale(repo)
    assert out.returncode == 0 and "0 of 3" in out.stdout
    # reached only through engine.py's function-level import: stale for the scripts that run the
    # engine (directly, or through `python -m edgefed`), not for one that never imports it
    (repo / "algorithms" / "zo.py").write_text("B = 2\n")
    (repo / "docs" / "notes.md").write_text("docs do not make a result stale\n")
    commit_all(repo, "zo")
    out = run_stale(repo)
    assert out.returncode == 1
    listed = {line.split(":")[0] for line in out.stdout.splitlines() if line.startswith("bench/")}
    assert listed == {"bench/results/speed.json", "bench/results/command.json"}, out.stdout
    assert "algorithms/zo.py" in out.stdout and "notes.md" not in out.stdout
    (repo / "devices" / "catalog.yaml").write_text("pi: 2\n")  # data the code reads: every result
    commit_all(repo, "catalog")
    assert "3 of 3" in run_stale(repo).stdout


def test_stale_follows_each_result_own_script_only(bench_repo):
    repo, first = bench_repo
    (repo / "bench" / "other.py").write_text("print(3)\n")
    head = commit_all(repo, "other script")
    record(repo, "speed", first, "bench/speed.py")   # its script and the code are unchanged
    record(repo, "other", first, "bench/other.py")   # its script changed
    record(repo, "fresh", head, "bench/other.py")
    record(repo, "dirty", head, "bench/other.py", dirty=True)
    (repo / "bench" / "results" / "old.json").write_text(json.dumps({"figure": 2.0}))
    out = run_stale(repo)
    listed = {line.split(":")[0] for line in out.stdout.splitlines() if line.startswith("bench/")}
    assert listed == {"bench/results/other.json", "bench/results/dirty.json", "bench/results/old.json"}
    assert "no provenance" in out.stdout and "uncommitted changes" in out.stdout


def test_dirty_means_uncommitted_code_not_results(bench_repo):
    repo, _ = bench_repo
    (repo / "bench" / "results" / "speed.json").write_text("{}")  # a benchmark writing its result
    git(repo, "add", "-A")
    assert provenance.code(repo)["dirty"] is False
    (repo / "simulator" / "engine.py").write_text("A = 3\n")
    assert provenance.code(repo)["dirty"] is True
    assert provenance.code(repo)["commit"] == git(repo, "rev-parse", "HEAD")


def test_bench_results_carry_provenance(tmp_path):
    path = tmp_path / "x.json"
    provenance.write_bench_result(path, {"speed": 2.0}, REPO / "bench" / "zo_step.py")
    data = json.loads(path.read_text())
    assert data["speed"] == 2.0
    assert data["provenance"]["script"] == "bench/zo_step.py"
    assert {"commit", "dirty", "machine", "edgefed"} <= set(data["provenance"])


def test_pinned_paths_names_every_file_absolutely_and_leaves_ids_alone(tmp_path, monkeypatch):
    from edgefed.scenario import pinned_paths
    (tmp_path / "hf").mkdir()
    (tmp_path / "model").mkdir()
    monkeypatch.chdir(tmp_path)
    resolved = {"model": {"name": "model"}, "task": {"dataset": {"train": "a.tsv", "test": "/abs/b.tsv", "hub": None}},
                "fleet": {"devices_file": "d.yaml", "availability": {"file": "../av.csv"},
                          "network": {"variability": {"file": None}}}, "replay": {"trace": "t/trace.jsonl"}}
    pinned = pinned_paths(resolved, tmp_path / "sc")
    assert pinned["task"]["dataset"] == {"train": str(tmp_path / "sc" / "a.tsv"), "test": "/abs/b.tsv", "hub": None}
    assert pinned["fleet"]["devices_file"] == str(tmp_path / "sc" / "d.yaml")
    assert pinned["fleet"]["availability"]["file"] == str(tmp_path / "av.csv")
    assert pinned["replay"]["trace"] == str(tmp_path / "sc" / "t" / "trace.jsonl")
    assert pinned["model"]["name"] == str(tmp_path / "model")  # a local model folder is relative to the working folder
    assert resolved["task"]["dataset"]["train"] == "a.tsv"  # the argument is left as it was
    # a hub dataset's train/test are split names; a hub folder is a path, a hub id is not
    for hub, expect in (("hf", str(tmp_path / "hf")), ("nyu-mll/glue", "nyu-mll/glue")):
        pinned = pinned_paths({"model": {"name": "minilm-l6"}, "replay": None,
                               "task": {"dataset": {"train": "train", "test": "validation", "hub": hub}}}, tmp_path)
        assert pinned["task"]["dataset"] == {"train": "train", "test": "validation", "hub": expect}
        assert pinned["model"]["name"] == "minilm-l6"
