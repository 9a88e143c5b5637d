"""The Python API, for notebooks and scripts: run a scenario (a file or a dict) and read runs back.

``run`` writes the same run directory as ``edgefed run`` and returns it read back by ``load``, so a
result in memory and one loaded later are the same thing. Tables are pandas DataFrames when pandas
is installed (``pip install 'edgefed[pandas]'``), else lists of dicts with numbers parsed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from edgefed.results import REPORT, RunDirError, read_json, read_table, read_text

TABLES = ("rounds.csv", "clients.csv")


@dataclass(repr=False)
class Result:
    """One run directory in memory: ``summary`` (summary.json), ``rounds`` and ``clients`` (the
    CSV tables), the resolved ``scenario`` and, where recorded, ``provenance``; ``report`` is the
    path of its report.html (None when the run wrote none)."""

    run_dir: Path
    summary: dict
    rounds: Any
    clients: Any
    scenario: dict
    provenance: dict | None = field(default=None)
    report: Path | None = field(default=None)

    def __repr__(self) -> str:
        s = self.summary
        return (f"Result({str(self.run_dir)!r}, status={s.get('status')!r}, rounds={s.get('rounds')}, "
                f"final_accuracy={s.get('final_accuracy')}, sim_time_s={s.get('totals', {}).get('sim_time_s')})")


def run(scenario: str | Path | Mapping, overrides: Sequence[str] | Mapping[str, Any] | None = None,
        out: str | Path | None = None, base: str | Path | None = None) -> Result:
    """Run ``scenario`` (a YAML file, or a dict shaped like one) and return its result.

    ``overrides``: ``["rounds.max=5"]`` as on the command line, or ``{"rounds.max": 5}``.
    ``out``: the run directory (default ``output.dir/name``, relative to the working directory).
    ``base``: the folder a dict scenario's relative paths start from (default: the working
    directory; a file's own folder for a file). Bad input raises ``ScenarioError`` with the same
    one-line message the command line prints.
    """
    from edgefed.runner import default_run_dir, run_scenario
    from edgefed.scenario import parse_overrides, read_scenario_file, validate_scenario

    pairs = list(overrides.items()) if isinstance(overrides, Mapping) else parse_overrides(list(overrides or []))
    if isinstance(scenario, Mapping):
        raw, folder, source = dict(scenario), Path(base if base is not None else Path.cwd()).resolve(), "scenario dict"
    else:
        path = Path(scenario)
        raw, folder, source = read_scenario_file(path), path.resolve().parent, str(path)
    spec = validate_scenario(raw, folder, pairs, source)
    run_dir = Path(out) if out is not None else default_run_dir(spec)
    run_scenario(spec, folder, run_dir)
    return load(run_dir)


def compare(comparison: str | Path | Mapping, out: str | Path | None = None, workers: int = 1,
            backend: str = "local", base: str | Path | None = None) -> dict:
    """Run (or continue) a comparison (a YAML file, or a dict shaped like one) under the fair
    protocol of docs/compare.md, and return compare.json's figures (its ``sentences`` say what they
    show). ``out``: the comparison's folder (default ``runs/<name>``); ``base``: where a dict's
    relative paths start. Bad input raises ``ScenarioError``; failed runs raise ``CompareFailed``
    after the others finished (a rerun retries them)."""
    from edgefed.comparing import compare as run_comparison, default_out
    from edgefed.comparison import load_comparison

    loaded = load_comparison(dict(comparison) if isinstance(comparison, Mapping) else comparison,
                             Path(base) if base is not None else None)
    return run_comparison(loaded, Path(out) if out is not None else default_out(loaded), backend, workers)


def load(run_dir: str | Path) -> Result:
    """Read a finished (or interrupted) run directory."""
    import yaml

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: not a run directory (no such folder)")
    summary = read_json(run_dir / "summary.json")
    try:
        scenario = yaml.safe_load(read_text(run_dir / "scenario.yaml"))
    except yaml.YAMLError as exc:
        raise RunDirError(f"{run_dir / 'scenario.yaml'}: invalid YAML: {exc}") from None
    provenance = read_json(run_dir / "provenance.json") if (run_dir / "provenance.json").exists() else None
    rounds, clients = (_table(run_dir / name) for name in TABLES)
    report = run_dir / REPORT
    return Result(run_dir, summary, rounds, clients, scenario, provenance, report if report.is_file() else None)


def _number(value: str):
    if value == "":
        return None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _table(path: Path):
    try:
        import pandas as pd
    except ImportError:
        return [{k: _number(v) for k, v in row.items()} for row in read_table(path)]
    import io

    try:
        return pd.read_csv(io.StringIO(read_text(path)))
    except (ValueError, pd.errors.ParserError) as exc:  # EmptyDataError is a ValueError
        raise RunDirError(f"{path}: not a CSV table: {str(exc).splitlines()[0]}") from None
