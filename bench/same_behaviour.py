"""Does a commit change what edgefed computes? Run every regression scenario and the quickstart at a
base commit and at a result commit, on this machine, and compare rounds.csv, clients.csv and
summary.json byte for byte (host seconds aside).

Each commit is checked out into a temporary git worktree and installed there (no dependencies,
into a folder put first on PYTHONPATH), so both run on the same interpreter and packages. The
verdict goes to bench/results/behaviour/RESULT.json; ``bench/stale.py`` treats a commit whose file
says ``identical: true`` as behaviour-preserving, so files that only moved do not make every
benchmark result stale.

    python bench/same_behaviour.py BASE RESULT [--keep DIR]
    python bench/same_behaviour.py BASE worktree --keep DIR   # while working: nothing written
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from edgefed.results import HOST_COLUMNS

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results" / "behaviour"
FILES = ("rounds.csv", "clients.csv", "summary.json")
WORKTREE = "worktree"


def git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=True).stdout.strip()


def scenarios(tree: Path) -> list[Path]:
    return sorted((tree / "scenarios" / "regression").glob("*.yaml")) + [tree / "scenarios" / "quickstart.yaml"]


def without_host(path: Path) -> str:
    """The file's text with host-dependent figures removed (everything else byte for byte)."""
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        data = {k: v for k, v in data.items() if k not in HOST_COLUMNS}
        return json.dumps(data, indent=1, sort_keys=True)
    rows = list(csv.reader(io.StringIO(path.read_text())))
    keep = [i for i, name in enumerate(rows[0]) if name not in HOST_COLUMNS] if rows else []
    return "\n".join(",".join(row[i] for i in keep if i < len(row)) for row in rows)


def play(tree: Path, env: dict, runs: Path, label: str) -> dict[str, dict[str, str]]:
    """Every scenario of ``tree`` run into ``runs`` (kept there: a finished one is read, not rerun)."""
    out = {}
    for scenario in scenarios(tree):
        run_dir = runs / scenario.stem
        if not all((run_dir / name).is_file() for name in FILES) or (run_dir / "checkpoint.safetensors").exists():
            subprocess.run([sys.executable, "-m", "edgefed", "run", str(scenario), "--out", str(run_dir), "--quiet",
                            "--set", "output.plots=false"], env=env, cwd=runs.parent, check=True,
                           stdout=subprocess.DEVNULL)
        out[scenario.stem] = {name: without_host(run_dir / name) for name in FILES}
        print(f"  {label} {scenario.stem}: done", flush=True)
    return out


@contextlib.contextmanager
def installed(commit: str, work: Path):
    """``commit`` checked out into a worktree and installed without dependencies into a folder:
    yields (the worktree, the environment whose PYTHONPATH runs that commit's edgefed)."""
    tree, site = work / f"tree-{commit[:10]}", work / f"site-{commit[:10]}"
    git("worktree", "add", "--detach", str(tree), commit)
    try:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--target", str(site), str(tree)], check=True, capture_output=True)
        env = {**os.environ, "PYTHONPATH": str(site), "EDGEFED_FEATURE_STORE": "off", "OMP_NUM_THREADS": "1"}
        # run from the temporary folder: a checkout's own edgefed/ must not shadow the installed copy
        where = subprocess.run([sys.executable, "-c", "import edgefed; print(edgefed.__file__)"], env=env, cwd=work,
                               capture_output=True, text=True, check=True).stdout.strip()
        if not where.startswith(str(site)):
            raise SystemExit(f"edgefed imported from {where}, not from {site}")
        yield tree, env
    finally:
        git("worktree", "remove", "--force", str(tree))


def run_all(commit: str, work: Path, keep: Path) -> dict[str, dict[str, str]]:
    """Every scenario's files at ``commit``, or, for ``worktree``, of the working tree through this
    interpreter's own edgefed."""
    if commit == WORKTREE:
        shutil.rmtree(work / "run-worktree", ignore_errors=True)
        env = {**os.environ, "EDGEFED_FEATURE_STORE": "off", "OMP_NUM_THREADS": "1"}
        return play(REPO, env, work / "run-worktree", WORKTREE)
    with installed(commit, work) as (tree, env):
        return play(tree, env, keep / f"run-{commit}", commit[:10])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base")
    parser.add_argument("result", help=f"a commit, or `{WORKTREE}`: the working tree as it is (no verdict file)")
    parser.add_argument("--keep", type=Path, help="keep commits' runs here and reuse them (a commit's runs never change)")
    args = parser.parse_args()
    base = git("rev-parse", args.base)
    result = WORKTREE if args.result == WORKTREE else git("rev-parse", args.result)
    with tempfile.TemporaryDirectory() as tmp:
        keep = args.keep.resolve() if args.keep else Path(tmp)
        keep.mkdir(parents=True, exist_ok=True)
        before, after = run_all(base, Path(tmp), keep), run_all(result, Path(tmp), keep)
    compared = {stem: {name: before[stem][name] == after.get(stem, {}).get(name) for name in FILES}
                for stem in before}
    identical = set(before) == set(after) and all(all(files.values()) for files in compared.values())
    for stem, files in compared.items():
        print(f"{stem:28s} " + "  ".join(f"{name} {'same' if same else 'DIFFERS'}" for name, same in files.items()))
    print(f"{result[:10]} against {base[:10]}: {'identical' if identical else 'DIFFERENT'} "
          f"({len(compared)} scenarios, host seconds aside)")
    if result == WORKTREE:
        return 0 if identical else 1
    OUT.mkdir(parents=True, exist_ok=True)
    machine = subprocess.run([sys.executable, "-c", "from edgefed.devices.profile import host_cpu; print(host_cpu())"],
                             capture_output=True, text=True).stdout.strip()
    (OUT / f"{result}.json").write_text(json.dumps(
        {"base": base, "result": result, "identical": identical, "machine": machine,
         "scenarios": compared}, indent=1) + "\n")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
