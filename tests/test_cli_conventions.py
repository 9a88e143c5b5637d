"""Command-line conventions: --version, shell completion, the JSON Schema (committed and up to date,
named by every shipped scenario), per-round lines for logs, unwrapped output when piped."""
import json

import pytest
import yaml

from edgefed import __version__
from edgefed.scenario import json_schema, load_yaml
from tests.conftest import REPO, write_scenario
from tests.helpers import console_script, edgefed
from tests.test_shipped_scenarios import SHIPPED

SCHEMA = REPO / "scenarios" / "scenario.schema.json"


def test_version_from_the_console_script():
    """The one test of the real process: ``python -m edgefed`` starts the command line."""
    result = console_script("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"edgefed {__version__}"


def test_shell_completion_script(monkeypatch):
    """Typer guesses the shell from the process tree (pytest's parent need not be a shell); its
    switch for naming the shell instead makes the test independent of who started it."""
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    result = edgefed("--show-completion", "bash")
    assert result.returncode == 0, result.stderr
    assert "complete" in result.stdout and "edgefed" in result.stdout


def test_committed_schema_is_up_to_date():
    assert SCHEMA.read_text() == json_schema(), "regenerate: edgefed schema --out scenarios/scenario.schema.json"


def test_schema_command_writes_the_schema(tmp_path):
    printed = edgefed("schema")
    assert printed.returncode == 0 and json.loads(printed.stdout)["title"] == "edgefed scenario"
    result = edgefed("schema", "--out", tmp_path / "s.json")
    assert result.returncode == 0 and (tmp_path / "s.json").read_text() == printed.stdout


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(REPO / "scenarios")) for p in SHIPPED])
def test_shipped_scenarios_name_the_schema_and_satisfy_it(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=")
    target = (path.parent / first.split("$schema=", 1)[1]).resolve()
    assert target == SCHEMA.resolve()
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(load_yaml(path.read_text()), json.loads(SCHEMA.read_text()))


def test_the_schema_catches_what_the_loader_refuses():
    jsonschema = pytest.importorskip("jsonschema")
    data = load_yaml((REPO / "scenarios" / "quickstart.yaml").read_text())
    data["rounds"]["eval_evry"] = 2
    with pytest.raises(jsonschema.ValidationError, match="eval_evry"):
        jsonschema.validate(data, json.loads(SCHEMA.read_text()))


def test_a_plain_line_per_round_when_stderr_is_not_a_terminal(tmp_path, tiny_dict):
    tiny_dict["rounds"]["max"] = 2
    path = write_scenario(tmp_path, tiny_dict)
    result = edgefed("run", path, "--out", tmp_path / "r")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("round ")]
    assert [line.split(":")[0] for line in lines] == ["round 1/2", "round 2/2"]
    assert all("accuracy 0." in line and "sim time" in line and "energy" in line for line in lines)
    quiet = edgefed("run", path, "--out", tmp_path / "q", "--quiet")
    assert not [line for line in quiet.stderr.splitlines() if line.startswith("round ")]


def test_validate_does_not_wrap_when_piped(tmp_path, tiny_dict):
    long_prompt = "A review that goes on and on " * 8 + "{text}"
    tiny_dict["task"]["prompt"] = long_prompt
    result = edgefed("validate", write_scenario(tmp_path, tiny_dict), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"prompt: '{long_prompt}'" in result.stdout or f"prompt: {long_prompt}" in result.stdout
    assert yaml.safe_load(result.stdout)["task"]["prompt"] == long_prompt
    assert max(len(line) for line in result.stdout.splitlines()) > 200
