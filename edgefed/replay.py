"""Replay mode: the systems side driven by a learning trace, without the model.

A real run records ``trace.jsonl`` (one JSON line per round, appended as the round ends): the
accuracy after every evaluated number of aggregated updates, each round's client uploads and
counted work, and the catch-up download and work for every staleness a client can have in that
round (probed once per round, so a larger fleet's clients get exact catch-up costs too).
Replaying the same scenario reproduces the run's systems figures exactly; replaying a larger fleet
gives client ``c`` the recorded update of client ``c`` if it took part, else of recorded client
``c mod k`` (work differs between clients only by batch shapes), and the accuracy recorded after
as many aggregated updates. The probes grow with rounds squared. Asynchronous runs record no
trace, and a replay of one is refused (``scenario.py`` says why).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgefed.algorithms.work import OP_KINDS, OpCount, Work
from edgefed.results import append_durably, cut_back
from edgefed.scenario import ScenarioError
from edgefed.simulator.records import RoundObserver

if TYPE_CHECKING:
    from edgefed.simulator.engine import Engine, Round

TRACE = "trace.jsonl"
TRACE_FORMAT = "edgefed-trace/2"


def ops_list(work: Work) -> list[float]:
    return [x for kind in OP_KINDS for x in (work.ops[kind].flops, work.ops[kind].bytes)]


def work_from(ops: list[float], peak: int) -> Work:
    return Work({kind: OpCount(ops[2 * i], ops[2 * i + 1]) for i, kind in enumerate(OP_KINDS)},
                peak_memory_bytes=peak)


class TraceRecorder(RoundObserver):
    """Appends what replay needs to ``run_dir/trace.jsonl`` after every round; with ``resume_round``
    the file is first cut back to that round."""

    def __init__(self, run_dir: Path, peak_memory_bytes: int, resume_round: int | None = None):
        self.path = run_dir / TRACE
        self.applied = 0  # rounds that aggregated at least one update
        self.probes: list = []
        if resume_round is None:
            _append_line(self.path, {"format": TRACE_FORMAT, "peak_memory_bytes": peak_memory_bytes})
        else:
            self.applied = _cut_trace(self.path, resume_round)

    def round_configured(self, engine: Engine, round: Round) -> None:
        self.probes = []
        for last in [None, *range(round.number)]:  # every staleness a client can have this round
            message, work = engine.algo.catch_up(0, last, round.number, round.plan)
            self.probes.append([message.nbytes, work.peak_memory_bytes, *ops_list(work)])

    def round_done(self, engine: Engine, round: Round) -> None:
        record = round.record
        line: dict = {"round": record.round}
        if record.round > 0:
            self.applied += record.aggregated > 0
            line["catch_up"] = self.probes
            line["updates"] = {str(cid): [up.nbytes, work.peak_memory_bytes, *ops_list(work)]
                               for cid, (up, work) in round.updates.items()}
        line["applied"] = self.applied
        if record.accuracy is not None:
            line["accuracy"] = [record.accuracy, record.loss]
        _append_line(self.path, line)


def _append_line(path: Path, data: dict) -> None:
    append_durably(path, json.dumps(data, separators=(",", ":")) + "\n")


def _cut_trace(path: Path, last_round: int) -> int:
    """Keep the header and the lines of rounds ``<= last_round``; return the last kept ``applied``."""
    kept = cut_back(path, last_round, lambda line: json.loads(line)["round"])
    return json.loads(kept[-1])["applied"] if kept else 0


@dataclass(frozen=True)
class Sized:
    """A message of which replay knows only the size."""

    nbytes: int


class NoWeights:
    """A replay's trainable weights: none to train, checkpoint or check for NaN (and no torch)."""

    names: list[str] = []
    params: list = []

    @staticmethod
    def all_finite() -> bool:
        return True

    @staticmethod
    def restore(params: list) -> None:
        pass


class ReplayAlgorithm:
    """The algorithm contract served from a trace: recorded sizes and work, no model."""

    trainable = NoWeights()

    def __init__(self, trace: dict):
        self.trace = trace
        self.applied = 0

    def peak_memory_bytes(self) -> int:
        return self.trace["peak_memory_bytes"]

    def configure_round(self, round, selected):
        """The plan: the round's recorded updates as ready objects, by recorded client, and the
        catch-ups served so far this round (every client of a staleness gets the same objects)."""
        recorded = self.trace["updates"][round - 1]
        return ({int(cid): i for i, cid in enumerate(recorded)},
                [(Sized(v[0]), work_from(v[2:], v[1])) for v in recorded.values()], {})

    def catch_up(self, client, last_round, round, plan):
        index, served = 0 if last_round is None else last_round + 1, plan[2]
        if index not in served:
            entry = self.trace["catch_up"][round - 1][index]
            served[index] = Sized(entry[0]), work_from(entry[2:], entry[1])
        return served[index]

    def client_update(self, client, round, plan):
        by_client, updates, _ = plan
        return updates[by_client.get(client, client % len(updates))]

    def aggregate(self, messages):
        return len(messages)

    def rejects(self, message):
        return None  # the trace holds updates the real run's server accepted or not alike

    def apply(self, update, round, plan):
        self.applied += bool(update)

    def evaluate(self) -> tuple[float, float]:
        """The recorded accuracy after the most aggregated updates not exceeding ours."""
        best = None
        for applied, acc, loss in self.trace["accuracy"]:
            if applied <= self.applied:
                best = (acc, loss)
        return best

    def evaluate_tuning(self) -> None:
        """A trace records the test split's accuracy only (a replay with ``evaluate_on: both`` is refused)."""
        return None

    def state(self) -> dict[str, np.ndarray]:
        return {"applied": np.array([self.applied], dtype=np.int64)}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.applied = int(state["applied"][0])


def load_trace(path: Path) -> dict:
    """A recorded trace as lists indexed by round - 1 (``accuracy``: [applied, accuracy, loss])."""
    try:
        lines = [json.loads(line) for line in path.read_text().splitlines()]
    except FileNotFoundError:
        raise ScenarioError(f"replay.trace: file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise ScenarioError(f"replay.trace: cannot read {path}: {exc}") from None
    if not lines or not isinstance(lines[0], dict) or lines[0].get("format") != TRACE_FORMAT:
        raise ScenarioError(f"replay.trace: {path} is not an edgefed trace ({TRACE_FORMAT}; "
                            "record it again with this version)")
    rounds = lines[1:]
    return {"peak_memory_bytes": lines[0]["peak_memory_bytes"],
            "accuracy": [[r["applied"], *r["accuracy"]] for r in rounds if "accuracy" in r],
            "catch_up": [r["catch_up"] for r in rounds if r["round"] > 0],
            "updates": [r["updates"] for r in rounds if r["round"] > 0]}
