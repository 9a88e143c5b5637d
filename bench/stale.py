"""List the benchmark results that the code has moved past.

A result is stale when ``simulator/``, ``algorithms/``, ``devices/`` or its own bench script
changed between the commit its ``provenance`` block records and HEAD; results recorded from a
dirty checkout or with no provenance cannot be traced and are listed too. Exit 1 when any is
listed, so CI can ask for a rerun.

    python bench/stale.py [--repo DIR]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CODE = ("simulator", "algorithms", "devices")


def git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)


def why_stale(repo: Path, result: Path) -> str | None:
    """Why ``result`` needs a rerun, or None when HEAD would produce it from the same code."""
    try:
        prov = json.loads(result.read_text()).get("provenance")
    except (OSError, ValueError, AttributeError):
        return "unreadable JSON"
    if not isinstance(prov, dict) or not prov.get("commit"):
        return "no provenance (recorded before bench results carried one)"
    script = prov.get("script")
    diff = git(repo, "diff", "--quiet", prov["commit"], "HEAD", "--", *CODE, *([script] if script else []))
    if diff.returncode == 1:
        changed = git(repo, "diff", "--name-only", prov["commit"], "HEAD", "--", *CODE, *([script] if script else []))
        files = changed.stdout.split()
        return f"code changed since {prov['commit'][:10]}: {', '.join(files[:5])}{' ...' if len(files) > 5 else ''}"
    if diff.returncode != 0:
        return f"commit {prov['commit'][:10]} is not in this repository"
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
