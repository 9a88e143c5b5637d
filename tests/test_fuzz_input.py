"""Property: any mutation of a valid scenario either runs or exits 2 with one line naming the
dotted field or the file; never a traceback, never exit 1. The same for a comparison file, which
``edgefed compare --plan`` validates whole (every configuration as a scenario) without running.

Mutations replace, delete or add keys anywhere in the scenario, and point files at missing,
empty, binary, header-only or foreign files and model folders. Integers stay small (rounds.max is
never mutated): a valid but huge workload is not an input error. One round of the tiny model per
valid example; the example budget (40, derandomized; FUZZ_N=500 explores afresh) keeps this
under a minute on one core.
"""
import copy
import json
import os
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import yaml

from edgefed.cli import app
from edgefed.comparison import ComparisonSpec
from edgefed.scenario import Scenario
from tests.conftest import REPO, TINY, write_scenario

BASE = copy.deepcopy(TINY)
BASE["rounds"]["max"] = 1
BASE["rounds"]["budget"] = {"cost": "client_flops", "amount": 5.0e9, "evaluations": 3}
BASE["task"].update(tuning_split=20, evaluate_on="both")
PROBES = [None, True, False, -1, 0, 1, 2, 7, -0.5, 0.0, 0.5, 1.5, float("nan"), float("inf"), "", "abc",
          "{x}", "{text.__class__}", "../..", "/", [], [1], ["a", "b"], {}, {"k": 1}]
# "<section>.<key>...: what is wrong", or "<any key>: unknown key"
FIELD_LINE = re.compile(rf"^(?:(?:{'|'.join(Scenario.model_fields)})(?:\.[^.:]+)*: |[^:]+: unknown key)")


def paths(node, prefix=()):
    """Every dotted path into the scenario (sections, leaves and list items)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in items:
        path = prefix + (key,)
        if path != ("rounds", "max"):
            yield path
            yield from paths(child, path)


PATHS = list(paths(BASE))


@pytest.fixture(scope="module", autouse=True)
def offline():
    """Hub ids fail at once instead of retrying for half a minute (tests have no network)."""
    import huggingface_hub.constants

    saved, huggingface_hub.constants.HF_HUB_OFFLINE = huggingface_hub.constants.HF_HUB_OFFLINE, True
    yield
    huggingface_hub.constants.HF_HUB_OFFLINE = saved


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Bad data files and model folders, made once."""
    root = tmp_path_factory.mktemp("bad")
    (root / "empty.tsv").write_text("")
    (root / "header.tsv").write_text("sentence\tlabel\n")
    (root / "nolabel.tsv").write_text("sentence\tstars\na fine film\t5\n")
    (root / "binary.tsv").write_bytes(bytes(range(256)) * 4)
    (root / "broken.jsonl").write_text('{"sentence": "x", "label": 1}\n{oops\n')
    (root / "onelabel.tsv").write_text("sentence\tlabel\n" + "".join(f"film {i}\t1\n" for i in range(40)))
    (root / "dir.tsv").mkdir()
    pickle_model = root / "pickle-model"
    pickle_model.mkdir()
    (pickle_model / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (pickle_model / "pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")
    fake = root / "fake-safetensors"
    fake.mkdir()
    (fake / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    (fake / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json header!")
    data = [str(root / n) for n in ("empty.tsv", "header.tsv", "nolabel.tsv", "binary.tsv", "broken.jsonl",
                                    "onelabel.tsv", "dir.tsv", "missing.tsv")]
    models = [str(pickle_model), str(fake), str(root / "empty.tsv"), str(root / "nowhere"), "pdp-11",
              "minilm-l7"]
    return {"data": data, "models": models}


def set_path(data, path, value):
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def delete_path(data, path):
    node = data
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]


def mutations(files):
    replace = st.tuples(st.just("set"), st.sampled_from(PATHS), st.sampled_from(PROBES))
    delete = st.tuples(st.just("del"), st.sampled_from(PATHS), st.none())
    extra = st.tuples(st.just("add"), st.sampled_from([p for p in PATHS if isinstance(_get(p), dict)] + [()]),
                      st.sampled_from(["zz_unknown", "seed ", "Rounds"]))
    data_file = st.tuples(st.just("set"), st.sampled_from([("task", "dataset", "train"), ("task", "dataset", "test")]),
                          st.sampled_from(files["data"]))
    model = st.tuples(st.just("set"), st.just(("model", "name")), st.sampled_from(files["models"]))
    return st.lists(st.one_of(replace, delete, extra, data_file, model), min_size=1, max_size=3)


def _get(path):
    node = BASE
    for key in path:
        node = node[key]
    return node


def apply(mutation_list):
    data = copy.deepcopy(BASE)
    for op, path, value in mutation_list:
        try:
            if op == "set":
                set_path(data, path, copy.deepcopy(value))  # a shared probe would link two fields
            elif op == "del":
                delete_path(data, path)
            else:
                node = data
                for key in path:
                    node = node[key]
                node[value] = 1
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation removed or replaced the parent
    return data


EXPLORE = os.environ.get("FUZZ_N")


@settings(max_examples=int(EXPLORE or 40), derandomize=not EXPLORE, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.data())
def test_mutated_scenarios_run_or_fail_with_one_line(tmp_path_factory, files, data):
    mutated = apply(data.draw(mutations(files)))
    folder = tmp_path_factory.mktemp("fuzz")
    path = write_scenario(folder, mutated)
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(folder / "out"), "--quiet"])
    assert result.exit_code in (0, 2), (mutated, result.output, repr(result.exception))
    if result.exit_code == 0:
        Scenario.model_validate(mutated)  # a run happened, so the scenario must be valid
        return
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgefed: error: "), result.stderr
    message = lines[0].removeprefix("edgefed: error: ").removeprefix(f"{path}: ")
    assert FIELD_LINE.match(message) or message.startswith("/"), message
    assert "Traceback" not in result.output


# the same property on a scenario with a network topology aggregated at the edge sites: its nodes,
# links and attach points are mutated like any field (a bad graph is one line naming the node or link)
TOPOLOGY_BASE = copy.deepcopy(TINY)
TOPOLOGY_BASE["rounds"].update(max=1, aggregation={"kind": "hierarchical", "at": ["edge"]})
TOPOLOGY_BASE["fleet"]["network"] = {"topology": {
    "nodes": {"a1": {"kind": "ap"}, "c1": {"kind": "cell"}, "e1": {"kind": "edge"}, "e2": {"kind": "edge"},
              "r": {"kind": "region"}, "dc": {"kind": "cloud"}},
    "links": [{"a": "a1", "b": "e1", "up_mbps": 100, "down_mbps": 100, "latency_s": 0.001},
              {"a": "c1", "b": "e2", "up_mbps": 150, "down_mbps": 450, "latency_s": 0.002},
              {"a": "e1", "b": "r", "up_mbps": 1000, "down_mbps": 1000, "latency_s": 0.003},
              {"a": "e2", "b": "r", "up_mbps": 1000, "down_mbps": 1000, "latency_s": 0.003, "loss": 0.01},
              {"a": "r", "b": "dc", "up_mbps": 1000, "down_mbps": 1000, "latency_s": 0.015}]}}
for group, node in zip(TOPOLOGY_BASE["fleet"]["groups"], ["a1", "c1", "e1"]):
    group["attach"] = node
TOPOLOGY_PATHS = [p for p in paths(TOPOLOGY_BASE) if p[:2] in (("fleet", "network"), ("fleet", "groups"))
                  or p[:2] == ("rounds", "aggregation")]
NODE_NAMES = ["a1", "c1", "e1", "e2", "r", "dc", "mars", "cloud", "edge", "cell"]


@settings(max_examples=int(EXPLORE or 12), derandomize=not EXPLORE, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.data())
def test_mutated_topologies_run_or_fail_with_one_line(tmp_path_factory, data):
    probes = st.sampled_from(PROBES + NODE_NAMES + [{"kind": "region"}, {"kind": "cloud"}, ["edge", "region"]])
    ops = st.lists(st.one_of(st.tuples(st.just("set"), st.sampled_from(TOPOLOGY_PATHS), probes),
                             st.tuples(st.just("del"), st.sampled_from(TOPOLOGY_PATHS), st.none())),
                   min_size=1, max_size=3)
    mutated = copy.deepcopy(TOPOLOGY_BASE)
    for op, path, value in data.draw(ops):
        try:
            (set_path(mutated, path, copy.deepcopy(value)) if op == "set" else delete_path(mutated, path))
        except (KeyError, IndexError, TypeError):
            pass
    folder = tmp_path_factory.mktemp("fuzz")
    path = write_scenario(folder, mutated)
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(folder / "out"), "--quiet"])
    assert result.exit_code in (0, 2), (mutated, result.output, repr(result.exception))
    if result.exit_code == 0:
        Scenario.model_validate(mutated)
        return
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgefed: error: "), result.stderr
    assert FIELD_LINE.match(lines[0].removeprefix("edgefed: error: ").removeprefix(f"{path}: ")), lines[0]


COMPARISON = yaml.safe_load((REPO / "scenarios" / "compare" / "tiny.yaml").read_text())
COMPARISON["base"] = str((REPO / "scenarios" / "quickstart.yaml").resolve())
COMPARISON_PATHS = list(paths(COMPARISON))
COMPARISON_LINE = re.compile(rf"^(?:(?:{'|'.join(ComparisonSpec.model_fields)})(?:\.[^:]+)*(?: \(configuration \d+\))?: "
                             r"|[^:]+: unknown key)")


def comparison_mutations():
    replace = st.tuples(st.just("set"), st.sampled_from(COMPARISON_PATHS), st.sampled_from(PROBES))
    delete = st.tuples(st.just("del"), st.sampled_from(COMPARISON_PATHS), st.none())
    return st.lists(st.one_of(replace, delete), min_size=1, max_size=3)


@settings(max_examples=int(EXPLORE or 40), derandomize=not EXPLORE, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.data())
def test_mutated_comparisons_plan_or_fail_with_one_line(tmp_path_factory, data):
    mutated = copy.deepcopy(COMPARISON)
    for op, path, value in data.draw(comparison_mutations()):
        try:
            (set_path(mutated, path, copy.deepcopy(value)) if op == "set" else delete_path(mutated, path))
        except (KeyError, IndexError, TypeError):
            pass
    path = tmp_path_factory.mktemp("fuzz") / "comparison.yaml"
    path.write_text(yaml.safe_dump(mutated))
    result = CliRunner().invoke(app, ["compare", str(path), "--plan"])
    assert result.exit_code in (0, 2), (mutated, result.output, repr(result.exception))
    if result.exit_code == 0:
        ComparisonSpec.model_validate(mutated)
        return
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"edgefed: error: {path}: "), result.stderr
    message = lines[0].removeprefix(f"edgefed: error: {path}: ")
    assert COMPARISON_LINE.match(message), message
