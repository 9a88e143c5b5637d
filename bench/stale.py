"""List the benchmark results that the code has moved past.

A result is stale when the code its bench script runs changed between the commit its
``provenance`` block records and HEAD: the script itself, every ``edgefed`` module it imports
(followed through the modules they import, lazy imports included; a script that runs
``python -m edgefed`` runs the command line and all it imports) and the data files under
``simulator/``, ``algorithms/`` and ``devices/`` (the device catalog, traces). Results recorded from
a dirty checkout or with no provenance cannot be traced and are listed too. Exit 1 when any is
listed, so CI can ask for a rerun.

A commit that ``bench/same_behaviour.py`` found to leave every regression scenario and the
quickstart byte-identical (its verdict in ``bench/results/behaviour/COMMIT.json``, ``identical:
true``) does not count as a change to the package's code: its edits there, and the files it moved,
are followed through. Its changes to a bench script still make that script's result stale.

    python bench/stale.py [--repo DIR]
"""
from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from pathlib import Path

# import name -> folder, as pyproject.toml installs them (longest name first)
PACKAGES = {"edgefed.simulator": "simulator", "edgefed.algorithms": "algorithms", "edgefed.devices": "devices",
            "edgefed": "edgefed"}
DATA = ("simulator", "algorithms", "devices")


def module_file(repo: Path, name: str) -> str | None:
    """The repository file of module ``name`` (``edgefed.simulator.engine`` -> simulator/engine.py),
    or None when it is not one of ours (or is a name imported from a module)."""
    for package, folder in PACKAGES.items():
        if name == package or name.startswith(package + "."):
            rest = name[len(package) + 1:].split(".") if name != package else []
            base = Path(folder, *rest)
            for candidate in ([base.with_suffix(".py")] if rest else []) + [base / "__init__.py"]:
                if (repo / candidate).is_file():
                    return candidate.as_posix()
            return None
    return None


def imported_names(path: Path) -> set[str]:
    """Every absolute import in a file, at any depth (function-level imports are how the code
    defers heavy ones); ``from m import n`` gives both m and m.n (n may be a module)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def code_of(repo: Path, script: str) -> set[str]:
    """The files the bench script runs: itself, the edgefed modules it reaches, every parent
    package's __init__ (Python runs those first), and the data files the code reads."""
    text = (repo / script).read_text(encoding="utf-8")
    todo = sorted(imported_names(repo / script)) + (["edgefed.__main__"] if '"-m", "edgefed"' in text else [])
    files = {script}
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for module in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):
            found = module_file(repo, module)
            if found and found not in files:
                files.add(found)
                todo += sorted(imported_names(repo / found))
    data = git(repo, "ls-files", "--", *DATA).stdout.split()
    return files | {f for f in data if not f.endswith(".py")}


def git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)


def behaviour_preserving(repo: Path) -> set[str]:
    """The commits whose ``same_behaviour`` verdict says identical."""
    found = set()
    for verdict in (repo / "bench" / "results" / "behaviour").glob("*.json"):
        try:
            data = json.loads(verdict.read_text())
        except ValueError:
            continue
        if data.get("identical") is True and data.get("result") == verdict.stem:
            found.add(verdict.stem)
    return found


def only_imports_moved(repo: Path, commit: str, path: str) -> bool:
    """Whether ``commit`` changed nothing in ``path`` but edgefed import lines."""
    diff = git(repo, "diff", "-U0", f"{commit}^", commit, "--", path).stdout.splitlines()
    lines = [line[1:].strip() for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    return all(line.startswith(("from edgefed", "import edgefed")) or not line for line in lines)


def changed_files(repo: Path, since: str, code: list[str]) -> list[str] | None:
    """The files among ``code`` (named as at HEAD) changed between ``since`` and HEAD, leaving out
    what behaviour-preserving commits changed, and following the files they renamed; None when
    ``since`` is not in this repository's history."""
    listed = git(repo, "rev-list", "--first-parent", f"{since}..HEAD")
    if listed.returncode != 0:
        return None
    preserving = behaviour_preserving(repo)
    paths, end, changed = set(code), "HEAD", []
    for commit in listed.stdout.split():  # newest first
        if commit not in preserving:
            continue
        changed += git(repo, "diff", "--name-only", commit, end, "--", *sorted(paths)).stdout.split()
        # the verdict vouches for the package's code; a bench script it changed still counts, unless
        # the change only renamed what it imports (a move)
        scripts = sorted(q for q in paths if not q.startswith(tuple(f"{f}/" for f in PACKAGES.values())))
        changed += [q for q in scripts if not only_imports_moved(repo, commit, q)]
        renames = git(repo, "diff", "-M", "--name-status", "--diff-filter=R", f"{commit}^", commit).stdout
        old_name = {line.split("\t")[2]: line.split("\t")[1] for line in renames.splitlines() if line.count("\t") == 2}
        paths, end = {old_name.get(p, p) for p in paths}, f"{commit}^"
    changed += git(repo, "diff", "--name-only", since, end, "--", *sorted(paths)).stdout.split()
    return changed


def why_stale(repo: Path, result: Path) -> str | None:
    """Why ``result`` needs a rerun, or None when HEAD would produce it from the same code."""
    try:
        prov = json.loads(result.read_text()).get("provenance")
    except (OSError, ValueError, AttributeError):
        return "unreadable JSON"
    if not isinstance(prov, dict) or not prov.get("commit"):
        return "no provenance (recorded before bench results carried one)"
    script = prov.get("script")
    # a script gone from HEAD, or a result that names none: every package counts
    code = sorted(code_of(repo, script)) if script and (repo / script).is_file() else [*DATA, "edgefed"]
    files = changed_files(repo, prov["commit"], code)
    if files is None:
        return f"commit {prov['commit'][:10]} is not in this repository"
    if files:
        return f"code changed since {prov['commit'][:10]}: {', '.join(files[:5])}{' ...' if len(files) > 5 else ''}"
    if prov.get("dirty"):
        return f"recorded from a checkout of {prov['commit'][:10]} with uncommitted changes"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args()
    results = sorted((args.repo / "bench" / "results").glob("*.json"))
    stale = [(r, why) for r in results if (why := why_stale(args.repo, r))]
    for result, why in stale:
        print(f"{result.relative_to(args.repo)}: {why}")
    print(f"{len(stale)} of {len(results)} bench results stale")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
