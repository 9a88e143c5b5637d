"""Replay mode (DESIGN section 7): the systems side driven by a learning trace, without the model.

A real run records ``trace.json``: the accuracy after every evaluated number of aggregated
updates, each round's client uploads and counted work, and the catch-up download and work for
every staleness a client can have in that round (probed once per round, so a larger fleet's clients
get exact catch-up costs too). Replaying the same scenario reproduces the run's systems figures
exactly; replaying a larger fleet gives client ``c`` the recorded update of client ``c`` if it took
part, else of recorded client ``c mod k`` (work differs between clients only by batch shapes), and
the accuracy recorded after as many aggregated updates. The trace grows with rounds squared.
"""
from __future__ import annotations

import gc
import json
import time
from dataclasses import dataclass
from pathlib import Path

from edgefed.algorithms.work import OP_KINDS, OpCount, Work
from edgefed.simulator.engine import Engine, RoundRecord
from edgefed.simulator.results import StreamingRunWriter, atomic_write
from edgefed.simulator.scenario import Scenario, ScenarioError, resolve_path, scenario_dict

TRACE_FORMAT = "edgefed-trace/1"


def ops_list(work: Work) -> list[float]:
    return [x for kind in OP_KINDS for x in (work.ops[kind].flops, work.ops[kind].bytes)]


def work_from(ops: list[float], peak: int) -> Work:
    return Work({kind: OpCount(ops[2 * i], ops[2 * i + 1]) for i, kind in enumerate(OP_KINDS)},
                peak_memory_bytes=peak)


class TraceRecorder:
    """Wraps a real algorithm for the engine and records what replay needs."""

    def __init__(self, algorithm):
        self.inner = algorithm
        self.applied = 0
        self.trace = {"format": TRACE_FORMAT, "peak_memory_bytes": algorithm.peak_memory_bytes(),
                      "accuracy": [], "catch_up": [], "updates": []}

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def configure_round(self, round, selected):
        self.inner.configure_round(round, selected)
        probes = []
        for last in [None, *range(round)]:  # every staleness a client can have this round
            message, work = self.inner.catch_up(0, last, round)
            probes.append([message.nbytes, work.peak_memory_bytes, *ops_list(work)])
        self.trace["catch_up"].append(probes)

    def aggregate(self, messages):
        self.applied += bool(messages)
        return self.inner.aggregate(messages)

    def record(self, record: RoundRecord, updates: dict) -> None:
        """After each round (round 0: the initial evaluation) with the engine's client updates."""
        if record.accuracy is not None:
            self.trace["accuracy"].append([self.applied, record.accuracy, record.loss])
        if record.round > 0:
            self.trace["updates"].append({str(cid): [up.nbytes, work.peak_memory_bytes, *ops_list(work)]
                                          for cid, (up, work) in updates.items()})

    def write(self, path: Path) -> None:
        atomic_write(path, json.dumps(self.trace, separators=(",", ":")) + "\n")


@dataclass(frozen=True)
class Sized:
    """A message of which replay knows only the size."""

    nbytes: int


class ReplayAlgorithm:
    """The algorithm contract served from a trace: recorded sizes and work, no model."""

    def __init__(self, trace: dict):
        self.trace = trace
        self.applied = 0
        self.round = 0
        # the round's recorded updates as ready objects; shared, since the engine only reads them
        self.updates: list[tuple[Sized, Work]] = []
        self.by_client: dict[int, int] = {}

    def peak_memory_bytes(self) -> int:
        return self.trace["peak_memory_bytes"]

    def configure_round(self, round, selected):
        self.round = round
        recorded = self.trace["updates"][round - 1]
        self.by_client = {int(cid): i for i, cid in enumerate(recorded)}
        self.updates = [(Sized(v[0]), work_from(v[2:], v[1])) for v in recorded.values()]

    def catch_up(self, client, last_round, round):
        entry = self.trace["catch_up"][round - 1][0 if last_round is None else last_round + 1]
        return Sized(entry[0]), work_from(entry[2:], entry[1])

    def client_update(self, client, round):
        return self.updates[self.by_client.get(client, client % len(self.updates))]

    def aggregate(self, messages):
        return len(messages)

    def rejects(self, message):
        return None  # the trace holds updates the real run's server accepted or not alike

    def apply(self, update):
        self.applied += bool(update)

    def accuracy(self) -> tuple[float, float]:
        """The recorded accuracy after the most aggregated updates not exceeding ours."""
        best = None
        for applied, acc, loss in self.trace["accuracy"]:
            if applied <= self.applied:
                best = (acc, loss)
        return best


class ReplayEngine(Engine):
    def measure(self, round):
        return self.algo.accuracy()

    def divergence(self, record, rows):
        return None  # no model here; the recorded run was checked when it ran


def load_trace(path: Path) -> dict:
    try:
        trace = json.loads(path.read_text())
    except FileNotFoundError:
        raise ScenarioError(f"replay.trace: file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise ScenarioError(f"replay.trace: cannot read {path}: {exc}") from None
    if not isinstance(trace, dict) or trace.get("format") != TRACE_FORMAT:
        raise ScenarioError(f"replay.trace: {path} is not an edgefed trace ({TRACE_FORMAT})")
    return trace


def run_replay(scenario: Scenario, base: Path, run_dir: Path, progress=None) -> dict:
    """Like ``run_scenario``, with the learning read from the trace and rows streamed to disk."""
    from edgefed.simulator.build import build_availability, build_fleet, mark_memory_exclusions
    from edgefed.simulator.runner import prepare_run_dir, versions

    wall_start = time.perf_counter()
    trace = load_trace(resolve_path(base, scenario.replay.trace))
    if scenario.rounds.max > len(trace["updates"]):
        raise ScenarioError(f"rounds.max: {scenario.rounds.max} exceeds the {len(trace['updates'])} rounds "
                            f"in replay.trace")
    prepare_run_dir(run_dir)
    writer = StreamingRunWriter(run_dir)
    writer.write_scenario(scenario_dict(scenario), versions())
    algorithm = ReplayAlgorithm(trace)
    clients = build_fleet(scenario, base)
    excluded = mark_memory_exclusions(clients, algorithm.peak_memory_bytes())
    if not any(c.eligible for c in clients):
        raise ScenarioError("fleet: no device can hold this method's peak memory "
                            f"({algorithm.peak_memory_bytes() / 1e9:.2f} GB)")
    engine = ReplayEngine(algorithm, clients, scenario.rounds, scenario.seed, scenario.model.dtype, scenario.fleet,
                          build_availability(scenario, base))
    accuracy, loss = algorithm.accuracy()
    writer.add_round(RoundRecord(0, 0.0, accuracy, loss, 0, 0, 0, 0, 0, 0.0, 0.0,
                                 time.perf_counter() - wall_start), engine.excluded_records())
    writer.flush()
    if progress:
        progress.start(scenario.rounds.max, accuracy)

    def on_round(record, rows):
        writer.add_round(record, rows)
        writer.flush()
        if progress:
            progress.advance(record)

    status = "done"
    gc.freeze()  # the interpreter's long-lived objects (torch, the trace) need no rescanning per round
    try:
        engine.run(on_round)
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        gc.unfreeze()
        if progress:
            progress.stop()
        summary = writer.summary(scenario.rounds.target_accuracy, excluded, time.perf_counter() - wall_start,
                                 status)
        writer.write_summary(summary)
    if scenario.output.plots:
        from edgefed.simulator.plots import plot_run_dir
        plot_run_dir(run_dir)
    return summary
