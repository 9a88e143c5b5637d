"""One import namespace: everything is ``edgefed.*``; the wheel installs nothing else at top level,
and its console script runs from a fresh virtual environment."""
import ast
import shutil
import subprocess
import sys
import venv
import zipfile

import pytest

from tests.conftest import REPO

OURS = {"simulator", "algorithms", "devices"}


def python_files():
    for folder in ("edgefed", "simulator", "algorithms", "devices", "tests", "bench"):
        yield from sorted((REPO / folder).rglob("*.py"))


def top_level_imports(path):
    """Module names imported by ``path`` whose first component is one of ours (static: running
    from the repository root would otherwise hide a missing mapping)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            if name.split(".")[0] in OURS:
                yield node.lineno, name


def test_no_top_level_import_of_our_folders():
    offenders = [f"{path.relative_to(REPO)}:{line}: import {name}"
                 for path in python_files() for line, name in top_level_imports(path)]
    assert offenders == [], "import them as edgefed.<folder>:\n" + "\n".join(offenders)


def test_the_scan_catches_a_top_level_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom simulator.engine import Engine\nimport devices.profile as p\n"
                      "import edgefed.cli as cli\n")
    assert [name for _, name in top_level_imports(sample)] == ["simulator.engine", "devices.profile"]


# what the wheel is built from: setuptools builds inside the source folder (build/, *.egg-info), so
# each build works on its own copy and two test processes can never collide in the checkout
PACKAGED = ("pyproject.toml", "README.md", "LICENSE", "edgefed", "simulator", "algorithms", "devices")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    source = tmp_path_factory.mktemp("source")
    for name in PACKAGED:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(out), str(source)], capture_output=True, text=True)
    if build.returncode != 0 and "No module named" in build.stderr and "setuptools" in build.stderr:
        pytest.skip("setuptools is not installed beside pip; cannot build offline")
    assert build.returncode == 0, build.stderr
    return next(out.glob("edgefed-*.whl"))


def test_the_wheel_installs_only_edgefed_at_top_level(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"edgefed"}
    for module in ("edgefed/cli.py", "edgefed/report_page.html",
                   "edgefed/simulator/engine.py", "edgefed/algorithms/fedspzo.py", "edgefed/devices/catalog.yaml",
                   "edgefed/devices/populations/flash-phones.yaml", "edgefed/devices/populations/flash/LICENSE.md",
                   "edgefed/devices/populations/flash/PROVENANCE.yaml",
                   "edgefed/devices/populations/flash/raw_ai_benchmark_list.json",
                   "edgefed/devices/populations/flash/speed_distri.json"):
        assert module in names


def test_the_wheel_ships_the_licence_text(wheel):
    wheel_zip = zipfile.ZipFile(wheel)
    licence = [n for n in wheel_zip.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
    assert licence, "LICENSE missing from the wheel's dist-info"
    assert "Apache License" in wheel_zip.read(licence[0]).decode()
    metadata = next(n for n in wheel_zip.namelist() if n.endswith(".dist-info/METADATA"))
    assert "License-Expression: Apache-2.0" in wheel_zip.read(metadata).decode()


def test_the_installed_console_script_runs(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    # the test venv's packages stand in for the dependencies (no network needed); edgefed from the wheel
    site = subprocess.run([sys.executable, "-c", "import site; print(site.getsitepackages()[0])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (next((env_dir / "lib").glob("python*")) / "site-packages" / "deps.pth").write_text(site + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True)
    out = subprocess.run([str(env_dir / "bin" / "edgefed"), "devices"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "pixel-7a" in out.stdout
    where = subprocess.run([str(py), "-c", "import edgefed.simulator as s; print(s.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, check=True).stdout
    assert str(env_dir) in where, "edgefed must come from the wheel, not the checkout"
