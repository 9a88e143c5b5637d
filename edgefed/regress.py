"""Scenario regression: rerun small scenarios and compare with golden outputs.

Goldens live in ``scenarios/regression/golden/<scenario stem>/`` (``summary.json``, ``rounds.csv``,
``clients.csv``).
Systems figures (time, energy, bytes, FLOPs, counts, *-to-target) must match up to float rounding
(``SYSTEMS_RTOL``, relative 1e-12). They are float64 sums and products in a fixed order; what can
differ on another CPU is a vectorised numpy/libm function (``exp``, ``log`` in the link and
straggler draws) rounding its last bit differently, at most 1 ulp (2**-52 relative) per call,
carried through at most ~10**3 operations of condition ~1: ~2e-13, under 1e-12. (With the AVX2
code paths forced, ``ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2``, every shipped scenario's systems
figures came out identical bit for bit.)
Accuracy and loss come out of float32 kernels whose summation order differs between CPUs and torch
builds, and training carries a rounding-level difference forward through every round, so no bound
follows from the operations alone; they match within ``ACCURACY_TOL`` (absolute: two of 64
held-out examples) and ``LOSS_TOL`` (relative). Measured on the shipped scenarios with the AVX2
code paths forced against goldens made on AVX-512 ones: losses moved by at most 1e-5 relative
(round 0, before any training: 2e-7, a few float32 roundings), accuracy by no example at all.
Host seconds are never compared.
"""
from __future__ import annotations

import csv
import difflib
import io
import json
import math
import shutil
import tempfile
from pathlib import Path

from edgefed.results import HOST_COLUMNS, atomic_write, flatten, read_rows

ACCURACY_TOL = 2 / 64
LOSS_TOL = 1e-2
SYSTEMS_RTOL = 1e-12
GOLDEN_FILES = ("summary.json", "rounds.csv", "clients.csv")
ACCURACY = {"accuracy", "initial_accuracy", "final_accuracy", "best_accuracy"}
LOSS = {"loss"}


def scenario_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.yaml"))


def golden_dir(scenario_file: Path) -> Path:
    return scenario_file.parent / "golden" / scenario_file.stem


def run_into(scenario_file: Path, run_dir: Path, overrides: list[str] | None = None) -> Path:
    from edgefed.runner import run_scenario
    from edgefed.scenario import load_scenario

    scenario, base = load_scenario(scenario_file, ["output.report=false", *(overrides or [])])
    run_scenario(scenario, base, run_dir)
    return run_dir


def _close(key: str, golden, actual) -> bool:
    if key in ACCURACY or key in LOSS:
        if golden in (None, "") or actual in (None, ""):
            return golden == actual
        g, a = float(golden), float(actual)
        return abs(g - a) <= ACCURACY_TOL if key in ACCURACY else math.isclose(g, a, rel_tol=LOSS_TOL)
    return golden == actual or _same_number(golden, actual)


def _same_number(golden, actual) -> bool:
    """Equal up to the last bits of float rounding (``SYSTEMS_RTOL``): a sum can round differently
    on another CPU's vector units, while any modelled change moves a figure by far more."""
    try:
        g, a = float(golden), float(actual)
    except (TypeError, ValueError):
        return False
    return math.isclose(g, a, rel_tol=SYSTEMS_RTOL, abs_tol=SYSTEMS_RTOL)


def compare(golden: Path, run_dir: Path) -> list[str]:
    """One line per mismatch: file, row, field, golden and actual values."""
    problems = []
    g_sum = flatten(json.loads((golden / "summary.json").read_text()))
    a_sum = flatten(json.loads((run_dir / "summary.json").read_text()))
    for key in sorted(set(g_sum) | set(a_sum)):
        name = key.rsplit(".", 1)[-1]
        if name not in HOST_COLUMNS and not _close(name, g_sum.get(key), a_sum.get(key)):
            problems.append(f"summary.json {key}: golden {g_sum.get(key)!r}, got {a_sum.get(key)!r}")
    for name in ("rounds.csv", "clients.csv"):
        g_rows, a_rows = read_rows(golden / name), read_rows(run_dir / name)
        if len(g_rows) != len(a_rows):
            problems.append(f"{name}: golden has {len(g_rows)} rows, got {len(a_rows)}")
        for i, (g, a) in enumerate(zip(g_rows, a_rows)):
            where = f"round {g['round']}" + (f" client {g['client']}" if "client" in g else "")
            for key in g:
                if key not in HOST_COLUMNS and not _close(key, g[key], a.get(key)):
                    problems.append(f"{name} row {i + 1} ({where}) {key}: golden {g[key]}, got {a.get(key)}")
    return problems


def _comparable_text(path: Path) -> list[str]:
    """A golden file without host-dependent figures, for a readable diff."""
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        data.pop("host_seconds", None)
        return json.dumps(data, indent=2).splitlines(keepends=True)
    rows = read_rows(path)
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, [k for k in rows[0] if k not in HOST_COLUMNS], extrasaction="ignore",
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue().splitlines(keepends=True)


def update(scenario_file: Path) -> str:
    """Rerun ``scenario_file``, rewrite its goldens; return the unified diff against the old ones."""
    target = golden_dir(scenario_file)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = run_into(scenario_file, Path(tmp) / "run")
        diff = []
        for name in GOLDEN_FILES:
            old = _comparable_text(target / name) if (target / name).exists() else []
            diff += difflib.unified_diff(old, _comparable_text(run_dir / name), f"golden/{name}", f"new/{name}")
            atomic_write(target / name, (run_dir / name).read_text())
    return "".join(diff)


def check(scenario_file: Path) -> list[str]:
    """Rerun ``scenario_file`` in a temporary folder and compare with its goldens."""
    target = golden_dir(scenario_file)
    if not all((target / name).exists() for name in GOLDEN_FILES):
        return [f"{target}: no goldens (run `edgefed regress --update`)"]
    tmp = Path(tempfile.mkdtemp())
    try:
        return compare(target, run_into(scenario_file, tmp / "run"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
