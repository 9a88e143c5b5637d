"""The run directory (docs/design.md, "Run directory"): scenario.yaml, rounds.csv, clients.csv,
summary.json.

scenario.yaml and summary.json are written atomically (temp file in the same folder, fsync,
rename). The CSVs grow by one append per file per round - a single write() of that round's rows,
then fsync - so a killed run never leaves a half-written row and a round costs the same at round
10 as at round 10,000; ``--resume`` cuts them back to the checkpoint's round. Client rows are kept
in memory only as the few numbers summary.json sums, so a million-device replay stays small.
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import math
import operator
import os
import tempfile
from array import array
from contextlib import contextmanager
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Collection

import yaml

from edgefed.simulator.records import ClientRecord, RoundObserver, RoundRecord

if TYPE_CHECKING:
    from edgefed.simulator.engine import Engine, Round

EDGE_COLUMNS = ["backhaul_bytes_up", "backhaul_bytes_down"]  # written under hierarchical aggregation only
ASYNC_ROUND_COLUMNS = ["staleness_mean", "staleness_max", "energy_in_flight_j"]  # under asynchronous rounds only
TUNING_COLUMNS = ["tuning_accuracy"]  # written under task.evaluate_on both only
ASYNC_CLIENT_COLUMNS = ["start_version", "end_version", "start_s"]
EDGE_ROUND_COLUMNS = ["edge_round"]  # written under K > 1 edge rounds per cloud round only
LINK_COLUMNS = ["round", "link", "tier", "bytes_up", "bytes_down"]  # links.csv, with a topology only
ROUND_COLUMNS = [f.name for f in fields(RoundRecord)
                 if f.name not in EDGE_COLUMNS + ASYNC_ROUND_COLUMNS + TUNING_COLUMNS + ["links"]]
CLIENT_COLUMNS = [f.name for f in fields(ClientRecord)
                  if f.name not in ["finished_at", *EDGE_ROUND_COLUMNS, *ASYNC_CLIENT_COLUMNS]]


REPORT = "report.html"  # the run's page (edgefed/report.py), with output.report

# the figures that depend on the host, left out wherever runs are compared (sweep tables, regression)
HOST_COLUMNS = frozenset({"host_seconds"})


def flatten(data: dict, prefix: str = "") -> dict:
    """A nested mapping (a summary) as one level of dotted names; lists as JSON text."""
    out = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, list):
            out[name] = json.dumps(value, sort_keys=True)
        else:
            out[name] = value
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _umask()  # read once at import: os.umask can only be read by setting it


def atomic_write(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~UMASK)  # a plain file's mode, not mkstemp's owner-only 0600
    try:
        with os.fdopen(fd, mode) as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fmt(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # shortest round-trip form: sums over the CSV equal the summary's
    return value


def csv_text(columns: list[str], rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row.get(k)) for k in columns})
    return buf.getvalue()


def smoothed(accuracies: list[float], window: int) -> list[float | None]:
    """The moving mean of the last ``window`` evaluations at each evaluation (None until there are
    ``window`` of them): what the to-target figures compare with the target, so one lucky
    evaluation of a noisy curve does not decide them."""
    return [None if i + 1 < window else sum(accuracies[i + 1 - window: i + 1]) / window
            for i in range(len(accuracies))]


def to_target(rounds: list[dict], target: float | None, window: int = 1) -> dict:
    """Rounds, simulated time, energy, bytes and client FLOPs up to the first evaluation whose
    smoothed accuracy reaches ``target`` (all None when none does, or there is no target). The
    energy is what the fleet spent by then: asynchronous sessions still in flight count what they
    had spent (``energy_in_flight_j``); ``energy_to_target_completed_j`` counts the rows up to
    that version only, the sessions that ended by then. In synchronous rounds the two are equal."""
    evaluated = [r for r in rounds if r["accuracy"] not in (None, "")]
    curve = dict(zip((int(r["round"]) for r in evaluated),
                     smoothed([float(r["accuracy"]) for r in evaluated], window)))
    energy, sent, flops = 0.0, 0, 0.0
    for r in rounds:
        energy += float(r["energy_j"])
        sent += int(r["bytes_up"]) + int(r["bytes_down"])
        flops += float(r["client_flops"])
        acc = curve.get(int(r["round"]))
        if target is not None and acc is not None and acc >= target:
            in_flight = float(r.get("energy_in_flight_j") or 0.0)
            return {"rounds_to_target": int(r["round"]), "time_to_target_s": float(r["sim_time_s"]),
                    "energy_to_target_j": energy + in_flight, "energy_to_target_completed_j": energy,
                    "bytes_to_target": sent, "client_flops_to_target": flops}
    return dict.fromkeys(("rounds_to_target", "time_to_target_s", "energy_to_target_j", "energy_to_target_completed_j",
                          "bytes_to_target", "client_flops_to_target"))


def summarize(rounds: list[dict], totals: dict, target: float | None, window: int, excluded: list[dict],
              host_seconds: float, status: str) -> dict:
    """summary.json: accuracies, the *-to-target figures (null when the target was not reached) and
    the run's ``totals`` (summed as the rows were written)."""
    accs = [float(r["accuracy"]) for r in rounds if r["accuracy"] not in (None, "")]
    curve = smoothed(accs, window)
    return {
        "status": status,
        "rounds": int(rounds[-1]["round"]) if rounds else 0,
        "initial_accuracy": accs[0] if accs else None,
        "final_accuracy": accs[-1] if accs else None,
        "best_accuracy": max(accs) if accs else None,
        "final_smoothed_accuracy": curve[-1] if curve else None,
        "target_accuracy": target,
        "target_smoothing": window,
        **to_target(rounds, target, window),
        "totals": {"sim_time_s": float(rounds[-1]["sim_time_s"]) if rounds else 0.0, **totals},
        "excluded": excluded,
        "host_seconds": host_seconds,
    }


def retargeted(run_dir: Path, target: float | None) -> dict:
    """A finished run's summary.json with its to-target figures recomputed from rounds.csv for
    ``target``, under the smoothing it ran with; everything else unchanged."""
    summary = json.loads((run_dir / "summary.json").read_text())
    rounds = read_rows(run_dir / "rounds.csv")
    return {**summary, "target_accuracy": target, **to_target(rounds, target, summary.get("target_smoothing", 1))}


def retarget(run_dir: Path, target: float) -> dict:
    """Rewrite a finished run's summary.json for a target fixed after it ran (a benchmark whose
    target derives from its reference runs)."""
    summary = retargeted(run_dir, target)
    atomic_write(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


# client columns summed into summary.json's totals
SUMMED = ("download_s", "compute_s", "upload_s", "idle_s", "energy_compute_j", "energy_radio_j", "energy_idle_j",
          "flops", "energy_j")


class RunWriter(RoundObserver):
    """Appends each round's rows to rounds.csv and clients.csv and keeps what the summary needs."""

    def __init__(self, run_dir: Path, edge_tier: bool = False, asynchronous: bool = False, edge_rounds: int = 1,
                 tuning: bool = False, topology=None):
        self.dir = run_dir
        self.topology = topology  # simulator.topology.Topology: bytes per tier and links.csv
        self.tier_columns = topology.tier_columns() if topology is not None else []
        self.columns = (ROUND_COLUMNS + (EDGE_COLUMNS if edge_tier else []) + self.tier_columns
                        + (ASYNC_ROUND_COLUMNS if asynchronous else []) + (TUNING_COLUMNS if tuning else []))
        self.client_columns = (CLIENT_COLUMNS + (EDGE_ROUND_COLUMNS if edge_rounds > 1 else [])
                               + (ASYNC_CLIENT_COLUMNS if asynchronous else []))
        # a client row as csv.writer takes it (it writes a float as repr, as _fmt does, and None as "")
        self.client_fields = operator.attrgetter(*self.client_columns)
        self.rounds: list[dict] = []
        self.sums = {k: array("d") for k in SUMMED}
        self.bytes = {"bytes_up": 0, "bytes_down": 0}
        self.by_status: dict[str, int] = {}

    def write_scenario(self, resolved: dict, versions: dict) -> None:
        text = yaml.safe_dump({**resolved, "_versions": versions}, sort_keys=False)
        atomic_write(self.dir / "scenario.yaml", text)

    def round_done(self, engine: Engine, round: Round) -> None:
        row = asdict(round.record)
        links = row.pop("links") or {}
        if self.topology is not None:  # round 0 and a round with no transfer carried nothing
            row.update(self.topology.tier_bytes(links))
            names = self.topology.link_names
            _append(self.dir / "links.csv", LINK_COLUMNS,
                    [[row["round"], names[i], self.topology.tier_of_link(i), *links.get(i, (0, 0))]
                     for i in range(len(names))])
        self.rounds.append(row)
        values = list(map(self.client_fields, round.rows))
        self._count(values)
        _append(self.dir / "rounds.csv", self.columns, [[_fmt(self.rounds[-1][c]) for c in self.columns]])
        _append(self.dir / "clients.csv", self.client_columns, values)

    def _count(self, rows: list[tuple]) -> None:
        """Rows as tuples in CLIENT_COLUMNS order, perhaps with the edge-round or asynchronous
        columns after them (numbers, or the CSV's strings after a resume), taken a column at a time."""
        if not rows:
            return
        columns = dict(zip(CLIENT_COLUMNS, zip(*rows)))
        for key in SUMMED[:-1]:
            self.sums[key].extend(map(float, columns[key]))
        self.sums["energy_j"].extend(float(c) + float(r) + float(i) for c, r, i in
                                     zip(columns["energy_compute_j"], columns["energy_radio_j"], columns["energy_idle_j"]))
        for key in self.bytes:
            self.bytes[key] += sum(map(int, columns[key]))
        for status in columns["status"]:
            self.by_status[status] = self.by_status.get(status, 0) + 1

    def resume(self, last_round: int) -> None:
        """Cut both CSVs back to rounds ``<= last_round`` (what the checkpoint holds) and rebuild
        the summary's figures from them."""
        self.rounds = _truncate(self.dir / "rounds.csv", last_round)
        if self.topology is not None:
            _truncate(self.dir / "links.csv", last_round)
        self._count([tuple(row[c] for c in CLIENT_COLUMNS) for row in _truncate(self.dir / "clients.csv", last_round)])

    def summary(self, target: float | None, window: int, excluded: list[dict], host_seconds: float,
                status: str) -> dict:
        sums = {k: sum(v) for k, v in self.sums.items()}
        totals = {"energy_j": sums.pop("energy_j"), **self.bytes, "client_flops": sums.pop("flops"), **sums,
                  "client_rounds": self.by_status}
        if EDGE_COLUMNS[0] in self.columns:  # hierarchical aggregation: the backhaul's bytes
            totals.update({c: sum(int(r[c]) for r in self.rounds) for c in EDGE_COLUMNS})
        totals.update({c: sum(int(r[c]) for r in self.rounds) for c in self.tier_columns})
        return summarize(self.rounds, totals, target, window, excluded, host_seconds, status)

    def write_summary(self, summary: dict) -> None:
        atomic_write(self.dir / "summary.json", json.dumps(summary, indent=2) + "\n")


def read_rows(path: Path) -> list[dict[str, str]]:
    """A run directory's CSV table (rounds.csv, clients.csv, a sweep's sweep.csv) as rows of text:
    the one reader that the summary, plots, regression and the API share."""
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def peak_memory(run_dir: Path) -> float:
    """A run's peak memory per client: the most any row of its clients.csv records."""
    return max((float(r["peak_memory_bytes"]) for r in read_rows(run_dir / "clients.csv")), default=0.0)


class RunDirError(ValueError):
    """A run directory (or sweep folder) that cannot be read; the message names the file."""


@contextmanager
def reading(path: Path):
    """Turn a file a user named that cannot be read into RunDirError naming it."""
    try:
        yield
    except FileNotFoundError:
        raise RunDirError(f"{path}: missing (not a finished edgefed run directory?)") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise RunDirError(f"{path}: cannot read: {exc}") from None


def read_text(path: Path) -> str:
    with reading(path):
        return path.read_text(encoding="utf-8")


def read_json(path: Path) -> dict:
    """A JSON object (summary.json, provenance.json) from a folder a user named."""
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{path}: invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RunDirError(f"{path}: expected a JSON object")
    return data


def read_table(path: Path) -> list[dict[str, str]]:
    """``read_rows`` for a folder a user named (the API, ``edgefed report``): a missing,
    unreadable, empty or ragged CSV raises RunDirError naming it."""
    with reading(path):
        rows = read_rows(path)
        empty = not rows and not path.read_text(encoding="utf-8").strip()
    if empty or any(None in row or None in row.values() for row in rows):
        raise RunDirError(f"{path}: not a CSV table (empty, or rows with the wrong number of fields)")
    return rows


def read_columns(path: Path, numeric: Collection[str], block: int = 10_000) -> dict[str, array | list[str]]:
    """A CSV table a user named, a column at a time and with no dict per row (the clients.csv of a
    million-device replay): the ``numeric`` columns as arrays of doubles (an empty cell is NaN), the
    others as lists that hold one string object per distinct value. RunDirError names the file
    when it is missing, unreadable, empty or ragged, and the column of a cell that is no number."""
    with reading(path), path.open(newline="", encoding="utf-8") as fh:
        rows = csv.reader(fh)
        header = next(rows, None)
        if not header:
            raise RunDirError(f"{path}: not a CSV table (empty)")
        out: dict[str, array | list[str]] = {name: array("d") if name in numeric else [] for name in header}
        strings: dict[str, str] = {}
        while chunk := list(itertools.islice(rows, block)):
            if any(len(row) != len(header) for row in chunk):
                raise RunDirError(f"{path}: not a CSV table (rows with the wrong number of fields)")
            for name, cells in zip(header, zip(*chunk)):
                try:
                    out[name].extend([float(c) if c else math.nan for c in cells] if name in numeric
                                     else map(strings.setdefault, cells, cells))
                except ValueError as exc:
                    raise RunDirError(f"{path}: column {name}: {exc}") from None
    return out


def append_durably(path: Path, text: str) -> None:
    """Append ``text`` with one write(), then fsync: a kill leaves whole lines and at most one
    partial last line, which ``cut_back`` drops on resume."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def cut_back(path: Path, last_round: int, round_of: Callable[[bytes], int]) -> list[bytes]:
    """Cut a file of one header line and then one line per record, in round order, back to the
    records of rounds ``<= last_round`` (a partial last line goes too); returns the kept lines
    after the header. What resuming from a checkpoint needs of rounds.csv, clients.csv and
    trace.jsonl."""
    kept, size = [], 0
    with path.open("rb") as fh:
        for number, line in enumerate(iter(fh.readline, b"")):
            if not line.endswith(b"\n"):
                break
            if number > 0:
                if round_of(line) > last_round:
                    break
                kept.append(line)
            size += len(line)
    os.truncate(path, size)
    return kept


def _append(path: Path, columns: list[str], rows) -> None:
    """One round's rows (with the header if the file is new or was cut back to nothing)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if not path.exists() or path.stat().st_size == 0:
        writer.writerow(columns)
    writer.writerows(rows)
    append_durably(path, buf.getvalue())


def _truncate(path: Path, last_round: int) -> list[dict]:
    """Keep the rows of rounds ``<= last_round``; return them."""
    with path.open(newline="") as fh:
        columns = next(csv.reader([fh.readline()]))
    at = columns.index("round")
    lines = cut_back(path, last_round, lambda line: int(next(csv.reader([line.decode()]))[at]))
    return [dict(zip(columns, next(csv.reader([line.decode()])))) for line in lines]
