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
import json
import operator
import os
import tempfile
from array import array
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from edgefed.simulator.records import ClientRecord, RoundObserver, RoundRecord

if TYPE_CHECKING:
    from edgefed.simulator.engine import Engine

EDGE_COLUMNS = ["backhaul_bytes_up", "backhaul_bytes_down"]  # written under hierarchical aggregation only
ROUND_COLUMNS = [f.name for f in fields(RoundRecord) if f.name not in EDGE_COLUMNS]
CLIENT_COLUMNS = [f.name for f in fields(ClientRecord) if f.name != "finished_at"]
# a client row as csv.writer takes it (it writes a float as repr, as _fmt does, and None as "")
CLIENT_FIELDS = operator.attrgetter(*CLIENT_COLUMNS)


def atomic_write(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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


def summarize(rounds: list[dict], clients: list[dict], target: float | None, excluded: list[dict],
              host_seconds: float, status: str) -> dict:
    """Totals and the *-to-target figures (null when the target was not reached)."""
    evaluated = [r for r in rounds if r["accuracy"] not in (None, "")]
    accs = [float(r["accuracy"]) for r in evaluated]
    cum = {"time": 0.0, "energy": 0.0, "bytes": 0, "flops": 0.0}
    reached = None
    for r in rounds:
        cum["time"] = float(r["sim_time_s"])
        cum["energy"] += float(r["energy_j"])
        cum["bytes"] += int(r["bytes_up"]) + int(r["bytes_down"])
        cum["flops"] += float(r["client_flops"])
        if reached is None and target is not None and r["accuracy"] not in (None, "") and float(r["accuracy"]) >= target:
            reached = {"rounds_to_target": int(r["round"]), "time_to_target_s": cum["time"],
                       "energy_to_target_j": cum["energy"], "bytes_to_target": cum["bytes"],
                       "client_flops_to_target": cum["flops"]}
    by_status: dict[str, int] = {}
    for c in clients:
        by_status[c["status"]] = by_status.get(c["status"], 0) + 1
    sums = {k: sum(float(c[k]) for c in clients) for k in
            ("download_s", "compute_s", "upload_s", "idle_s", "energy_compute_j", "energy_radio_j", "energy_idle_j")}
    return {
        "status": status,
        "rounds": int(rounds[-1]["round"]) if rounds else 0,
        "initial_accuracy": accs[0] if accs else None,
        "final_accuracy": accs[-1] if accs else None,
        "best_accuracy": max(accs) if accs else None,
        "target_accuracy": target,
        **(reached or {"rounds_to_target": None, "time_to_target_s": None, "energy_to_target_j": None,
                       "bytes_to_target": None, "client_flops_to_target": None}),
        "totals": {
            "sim_time_s": cum["time"],
            "energy_j": sum(float(c["energy_compute_j"]) + float(c["energy_radio_j"]) + float(c["energy_idle_j"]) for c in clients),
            "bytes_up": sum(int(c["bytes_up"]) for c in clients),
            "bytes_down": sum(int(c["bytes_down"]) for c in clients),
            "client_flops": sum(float(c["flops"]) for c in clients),
            **sums,
            "client_rounds": by_status,
        },
        "excluded": excluded,
        "host_seconds": host_seconds,
    }


# client columns summed into summary.json's totals (kept per row so the sums equal summarize()'s)
SUMMED = ("download_s", "compute_s", "upload_s", "idle_s", "energy_compute_j", "energy_radio_j", "energy_idle_j",
          "flops", "energy_j")


class RunWriter(RoundObserver):
    """Appends each round's rows to rounds.csv and clients.csv and keeps what the summary needs."""

    def __init__(self, run_dir: Path, edge_tier: bool = False):
        self.dir = run_dir
        self.columns = ROUND_COLUMNS + (EDGE_COLUMNS if edge_tier else [])
        self.rounds: list[dict] = []
        self.sums = {k: array("d") for k in SUMMED}
        self.bytes = {"bytes_up": 0, "bytes_down": 0}
        self.by_status: dict[str, int] = {}

    def write_scenario(self, resolved: dict, versions: dict) -> None:
        text = yaml.safe_dump({**resolved, "_versions": versions}, sort_keys=False)
        atomic_write(self.dir / "scenario.yaml", text)

    def round_done(self, engine: Engine, record: RoundRecord, rows: list[ClientRecord]) -> None:
        self.rounds.append(asdict(record))
        self._count([{c: getattr(r, c) for c in CLIENT_COLUMNS} for r in rows])
        _append(self.dir / "rounds.csv", self.columns, [[_fmt(self.rounds[-1][c]) for c in self.columns]])
        _append(self.dir / "clients.csv", CLIENT_COLUMNS, map(CLIENT_FIELDS, rows))

    def _count(self, rows: list[dict]) -> None:
        for r in rows:
            for key in SUMMED[:-1]:
                self.sums[key].append(float(r[key]))
            self.sums["energy_j"].append(float(r["energy_compute_j"]) + float(r["energy_radio_j"])
                                         + float(r["energy_idle_j"]))
            self.bytes["bytes_up"] += int(r["bytes_up"])
            self.bytes["bytes_down"] += int(r["bytes_down"])
            self.by_status[r["status"]] = self.by_status.get(r["status"], 0) + 1

    def resume(self, last_round: int) -> None:
        """Cut both CSVs back to rounds ``<= last_round`` (what the checkpoint holds) and rebuild
        the summary's figures from them."""
        self.rounds = _truncate(self.dir / "rounds.csv", last_round)
        self._count(_truncate(self.dir / "clients.csv", last_round))

    def summary(self, target: float | None, excluded: list[dict], host_seconds: float, status: str) -> dict:
        summary = summarize(self.rounds, [], target, excluded, host_seconds, status)
        totals = {k: sum(v) for k, v in self.sums.items()}
        summary["totals"].update(energy_j=totals.pop("energy_j"), client_flops=totals.pop("flops"), **self.bytes,
                                 **totals, client_rounds=self.by_status)
        if self.columns != ROUND_COLUMNS:
            summary["totals"].update({c: sum(int(r[c]) for r in self.rounds) for c in EDGE_COLUMNS})
        return summary

    def write_summary(self, summary: dict) -> None:
        atomic_write(self.dir / "summary.json", json.dumps(summary, indent=2) + "\n")


def _append(path: Path, columns: list[str], rows) -> None:
    """One write() of ``rows`` (with the header if the file is new), then fsync."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if not path.exists():
        writer.writerow(columns)
    writer.writerows(rows)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, buf.getvalue().encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _truncate(path: Path, last_round: int) -> list[dict]:
    """Keep the rows of rounds ``<= last_round`` (rows are in round order); return them."""
    kept, size = [], 0
    with path.open(newline="") as fh:
        header = fh.readline()
        size = len(header.encode())
        columns = next(csv.reader([header]))
        for line in iter(fh.readline, ""):
            row = dict(zip(columns, next(csv.reader([line]))))
            if not line.endswith("\n") or int(row["round"]) > last_round:
                break
            kept.append(row)
            size += len(line.encode())
    os.truncate(path, size)
    return kept
