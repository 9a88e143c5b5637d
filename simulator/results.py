"""The run directory (DESIGN section 9): scenario.yaml, rounds.csv, clients.csv, summary.json.

Every file is written atomically (temp file in the same folder, fsync, rename), so a crash or a
kill never leaves a half-written file; CSVs are rewritten whole at each round boundary.
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

import yaml

from edgefed.simulator.engine import ClientRecord, RoundRecord

ROUND_COLUMNS = [f.name for f in fields(RoundRecord)]
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


class RunWriter:
    """Keeps a run's rows and rewrites its files atomically after each round."""

    def __init__(self, run_dir: Path):
        self.dir = run_dir
        self.rounds: list[dict] = []
        self.clients: list[dict] = []

    def write_scenario(self, resolved: dict, versions: dict) -> None:
        text = yaml.safe_dump({**resolved, "_versions": versions}, sort_keys=False)
        atomic_write(self.dir / "scenario.yaml", text)

    def add_round(self, record: RoundRecord, rows: list[ClientRecord]) -> None:
        self.rounds.append(asdict(record))
        self.clients.extend({k: v for k, v in asdict(r).items() if k != "finished_at"} for r in rows)

    def add_clients(self, rows: list[ClientRecord]) -> None:
        self.clients.extend({k: v for k, v in asdict(r).items() if k != "finished_at"} for r in rows)

    def flush(self) -> None:
        atomic_write(self.dir / "rounds.csv", csv_text(ROUND_COLUMNS, self.rounds))
        atomic_write(self.dir / "clients.csv", csv_text(CLIENT_COLUMNS, self.clients))

    def write_summary(self, summary: dict) -> None:
        atomic_write(self.dir / "summary.json", json.dumps(summary, indent=2) + "\n")


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


class StreamingRunWriter(RunWriter):
    """For fleets of thousands: each flush appends the new rounds' rows (one write per file), and
    client rows are kept only as the few numbers summary.json sums, not as dicts.

    An append is not atomic: a crash can leave a torn last line, unlike ``RunWriter``'s files.
    """

    def __init__(self, run_dir: Path):
        super().__init__(run_dir)
        self.pending_rounds: list[dict] = []
        self.pending_clients: list[ClientRecord] = []
        self.sums = {k: array("d") for k in SUMMED}
        self.bytes = {"bytes_up": 0, "bytes_down": 0}
        self.by_status: dict[str, int] = {}

    def add_round(self, record: RoundRecord, rows: list[ClientRecord]) -> None:
        self.rounds.append(asdict(record))
        self.pending_rounds.append(self.rounds[-1])
        self.add_clients(rows)

    def add_clients(self, rows: list[ClientRecord]) -> None:
        for r in rows:
            for key in SUMMED[:-1]:
                self.sums[key].append(getattr(r, key))
            self.sums["energy_j"].append(r.energy_compute_j + r.energy_radio_j + r.energy_idle_j)
            self.bytes["bytes_up"] += r.bytes_up
            self.bytes["bytes_down"] += r.bytes_down
            self.by_status[r.status] = self.by_status.get(r.status, 0) + 1
        self.pending_clients.extend(rows)

    def flush(self) -> None:
        self._append("rounds.csv", ROUND_COLUMNS, [[_fmt(r[c]) for c in ROUND_COLUMNS] for r in self.pending_rounds])
        self._append("clients.csv", CLIENT_COLUMNS, map(CLIENT_FIELDS, self.pending_clients))
        self.pending_rounds, self.pending_clients = [], []

    def _append(self, name: str, columns: list[str], rows) -> None:
        path = self.dir / name
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        if not path.exists():
            writer.writerow(columns)
        writer.writerows(rows)
        with path.open("a") as fh:
            fh.write(buf.getvalue())

    def summary(self, target: float | None, excluded: list[dict], host_seconds: float, status: str) -> dict:
        summary = summarize(self.rounds, [], target, excluded, host_seconds, status)
        totals = {k: sum(v) for k, v in self.sums.items()}
        summary["totals"].update(energy_j=totals.pop("energy_j"), client_flops=totals.pop("flops"), **self.bytes,
                                 **totals, client_rounds=self.by_status)
        return summary
