"""A scenario is data, never code: safe YAML, safetensors weights only, writes stay inside the
chosen output folder, and a prompt template cannot reach into Python objects."""
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgefed.cli import app
from tests.conftest import REPO, write_scenario


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line_exit_2(result, *needles):
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("field, value, needle", [
    ("output.dir", "../escaped", "output.dir"),
    ("output.dir", "runs/../../escaped", "output.dir"),
    ("name", "..", "name"),
    ("name", "../escaped", "name"),
    ("name", ".hidden", "name"),
])
def test_output_paths_cannot_climb_out(tmp_path, tiny_dict, monkeypatch, field, value, needle):
    section, _, key = field.rpartition(".")
    (tiny_dict[section] if section else tiny_dict)[key] = value
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    path = write_scenario(work, tiny_dict)
    monkeypatch.chdir(work)  # no --out: the run folder is output.dir/name, relative to here
    one_line_exit_2(run("run", path, "--quiet"), needle)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "scenario.yaml"]


def test_pickle_only_model_folder_is_refused(tmp_path, tiny_dict, monkeypatch):
    import torch

    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}')
    torch.save({"weight": torch.zeros(1)}, folder / "pytorch_model.bin")
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load (pickle) was called"))
    tiny_dict["model"]["name"] = str(folder)
    one_line_exit_2(run("run", write_scenario(tmp_path, tiny_dict), "--out", tmp_path / "o"),
                    "model.name", "no .safetensors")


def test_safetensors_win_over_a_malicious_pickle_next_to_them(tmp_path, tiny_dict):
    """A folder with both formats loads the safetensors; the pickle, which would leave a file
    behind if unpickled, is never opened."""
    import pickle

    from edgefed.algorithms.models import load_backbone

    backbone, tokenizer, _ = load_backbone("tiny-bert", "encoder", "fp32")
    folder = tmp_path / "both"
    backbone.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(Exploit()))
    tiny_dict["model"].update(name=str(folder), kind="encoder")
    tiny_dict["rounds"]["max"] = 1
    result = run("run", write_scenario(tmp_path, tiny_dict), "--out", tmp_path / "o", "--quiet")
    assert result.exit_code == 0, result.output
    assert not marker.exists()


def test_yaml_tags_cannot_run_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(f'name: !!python/object/apply:os.system ["touch {marker}"]\n')
    one_line_exit_2(run("validate", path), "evil.yaml", "invalid YAML")
    assert not marker.exists()


@pytest.mark.parametrize("prompt", ["{text.__class__.__init__.__globals__}", "{text[0]}", "{text!r}", "{0} {text}",
                                    "no placeholder", "{text:>99999999}"])
def test_prompt_template_is_text_only(tmp_path, tiny_dict, prompt):
    tiny_dict["task"]["prompt"] = prompt
    one_line_exit_2(run("validate", write_scenario(tmp_path, tiny_dict)), "task.prompt")


def test_sources_use_only_safe_loaders():
    """No unsafe YAML loader, pickle or torch.load anywhere in the packages."""
    unsafe = re.compile(r"yaml\.(load|unsafe_load|full_load)\(|Loader=|torch\.load\(|import pickle|"
                        r"from pickle|trust_remote_code=True|(?<![.\w])(eval|exec)\(")
    restricted = REPO / "devices" / "fedscale.py"  # FedScale's pickled traces, through a refusing Unpickler
    hits = [f"{p.relative_to(REPO)}:{n}" for pkg in ("simulator", "algorithms", "devices")
            for p in (REPO / pkg).rglob("*.py") for n, line in enumerate(p.read_text().splitlines(), 1)
            if unsafe.search(line) and not (p == restricted and line == "import pickle")]
    assert hits == []
    # its only way in is RestrictedUnpickler, whose find_class refuses every class (tests/test_populations.py)
    source = restricted.read_text()
    assert "def find_class" in source and not re.search(r"pickle\.(load|loads|Unpickler\(|_Unpickler)\b", source)


def test_scenario_yaml_loader_is_safe():
    """Our duplicate-key-refusing loader is a SafeLoader: Python tags stay refused."""
    import yaml

    from edgefed.scenario import UniqueKeyLoader, load_yaml

    assert issubclass(UniqueKeyLoader, yaml.SafeLoader)
    with pytest.raises(yaml.YAMLError):
        load_yaml("x: !!python/object/apply:os.system ['true']")
