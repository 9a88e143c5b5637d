"""Asynchronous rounds (rounds.mode: async, simulator/asynchronous.py): they play synchronous rounds
bit for bit where the two coincide, follow FedBuff's rule, are deterministic, resume exactly after a
kill, and refuse what they do not define."""
import copy
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from types import SimpleNamespace

import numpy as np
import pytest

from edgefed.api import load
from edgefed.build import build_run
from edgefed.checkpoint import CHECKPOINT, load_checkpoint
from edgefed.devices.availability import Availability, AvailabilitySpec
from edgefed.devices.profile import default_catalog
from edgefed.results import RunWriter, read_rows as read_csv
from edgefed.scenario import validate_scenario
from edgefed.simulator.inputs import EngineConfig
from edgefed.simulator.asynchronous import AsyncEngine
from tests.conftest import REPO, write_scenario
from tests.helpers import edgefed
from tests.test_hierarchical import METHODS
from tests.test_resume import without_host_seconds
from tests.test_systems import FakeAlgo, LINK, device, fleet
from edgefed.simulator.fleet import Client
from edgefed.streams import Stream, rng

ASYNC_ONLY = {"start_version", "end_version", "start_s", "staleness_mean", "staleness_max", "energy_in_flight_j",
              "host_seconds"}


def trained(raw: dict) -> SimpleNamespace:
    """A scenario run in memory: every version's (round's) record and rows, and the final weights."""
    engine = build_run(validate_scenario(raw, REPO), REPO).engine
    out = SimpleNamespace(rounds=[])

    class Keep:
        def round_configured(self, engine, round):
            pass

        def round_done(self, engine, round):
            out.rounds.append(({k: v for k, v in asdict(round.record).items() if k not in ASYNC_ONLY},
                               [{k: v for k, v in asdict(row).items() if k not in ASYNC_ONLY} for row in round.rows]))

    engine.observers = [Keep()]
    engine.run()
    out.weights = [t.clone() for t in engine.algo.trainable.snapshot()]
    out.engine = engine
    return out


def same_run(a: SimpleNamespace, b: SimpleNamespace) -> None:
    assert a.rounds == b.rounds  # == on floats: the same bits
    assert all(np.array_equal(x.numpy(), y.numpy()) for x, y in zip(a.weights, b.weights))


@pytest.mark.parametrize("method", list(METHODS))
def test_one_slot_and_a_buffer_of_one_play_sync_rounds_of_one_bit_for_bit(tiny_dict, method):
    """C = K = 1 (weight 1: staleness is always 0) draws the same devices, learns, charges and
    evaluates as synchronous rounds of one client, on the tiny scenario's mixed fleet."""
    tiny_dict["algorithm"] = METHODS[method]
    tiny_dict["rounds"].update(max=3, clients_per_round=1, eval_every=1)
    sync = trained(tiny_dict)
    tiny_dict["rounds"]["mode"] = "async"
    same_run(trained(tiny_dict), sync)
    assert len(sync.rounds) == 4


LEARNED = ("accuracy", "loss", "tuning_accuracy")


def test_a_full_buffer_plays_sync_rounds_of_n_on_identical_devices_with_each_session_drawing_its_own(tiny_dict):
    """C = K = n on identical devices (no heat, no radio state, connections without set-up: a handshake
    depends on a device's history, issue 40 item 5) with equal downloads and equal work
    (iid shares, every batch full): every session of a version ends at one instant, so each
    version takes in, charges and times what a synchronous round of n does, and the next version
    draws the devices the next round draws. The learning is not the round's: a session's draws
    are keyed by its own number (1 + its index in the start order), not by its version, so the
    n sessions of version v learn as v n + 1 .. v n + n where the round's n clients all learn as
    round v + 1. (Keying by version gave these bits too, but let a device's two sessions at one
    version compute the same update; only C = K = 1, where session v + 1 is version v's one
    session, still learns as the synchronous round bit for bit.)"""
    tiny_dict["algorithm"] = METHODS["fedavg"]
    tiny_dict["partition"] = {"kind": "iid"}
    lan = {**default_catalog().links["ethernet"].model_dump(exclude={"name", "description", "sources"}),
           "handshake_rtts": 0}
    tiny_dict["fleet"].update(links={"lan": lan},
                              groups=[{"device": "jetson-orin-nano", "count": 8, "link": "lan"}])
    tiny_dict["rounds"].update(max=3, clients_per_round=4, eval_every=3)
    sync = trained(tiny_dict)
    tiny_dict["rounds"].update(mode="async", staleness={"kind": "constant"})
    asynchronous = trained(tiny_dict)
    assert [rows for _, rows in asynchronous.rounds] == [rows for _, rows in sync.rounds]
    assert [{k: v for k, v in rec.items() if k not in LEARNED} for rec, _ in asynchronous.rounds] == \
        [{k: v for k, v in rec.items() if k not in LEARNED} for rec, _ in sync.rounds]
    assert not all(np.array_equal(x.numpy(), y.numpy()) for x, y in zip(asynchronous.weights, sync.weights))
    assert {row["client"] for _, rows in sync.rounds[1:] for row in rows} != {0, 1, 2, 3}  # selection mattered


def test_same_scenario_and_seed_give_identical_files(tmp_path, tiny_dict):
    tiny_dict["rounds"].update(mode="async", concurrency=4, buffer=2, max=6, eval_every=3)
    path = write_scenario(tmp_path, tiny_dict)
    for out in ("a", "b"):
        assert edgefed("run", path, "--out", tmp_path / out, "--quiet").returncode == 0
    assert without_host_seconds(tmp_path / "a") == without_host_seconds(tmp_path / "b")
    rounds, clients = read_csv(tmp_path / "a" / "rounds.csv"), read_csv(tmp_path / "a" / "clients.csv")
    assert list(rounds[0])[-3:] == ["staleness_mean", "staleness_max", "energy_in_flight_j"]
    assert list(clients[0])[-3:] == ["start_version", "end_version", "start_s"]
    assert not (tmp_path / "a" / "trace.jsonl").exists()  # not replayable: no trace
    for r in rounds[1:]:
        rows = [c for c in clients if c["round"] == r["round"]]
        assert int(r["selected"]) == len(rows) and int(r["aggregated"]) == 2
        assert float(r["energy_j"]) == pytest.approx(sum(float(c["energy_compute_j"]) + float(c["energy_radio_j"])
                                                         + float(c["energy_idle_j"]) for c in rows), rel=1e-12)
        folded = [int(c["end_version"]) - int(c["start_version"]) for c in rows if c["status"] == "ok"]
        assert max(folded) == int(r["staleness_max"]) and sum(folded) / 2 == float(r["staleness_mean"])
    result = load(tmp_path / "a")  # the Python API reads it unchanged (the plots read the same rounds.csv)
    assert result.summary["rounds"] == 6 and len(result.rounds) == 7


def sessions(engine) -> list:
    """Every session row of a FakeAlgo run."""
    rows = []
    engine.observers = [SimpleNamespace(round_configured=lambda e, r: None,
                                        round_done=lambda e, r: rows.extend(r.rows))]
    engine.run()
    return rows


def fake_engine(algo, rounds, availability=None):
    """Devices of very different speeds (1 to 16 GFLOP/s) on one radio link."""
    devices = [device(g) for g in (1, 1, 2, 4, 8, 16)]
    clients = [Client(i, d.name, d, LINK) for i, d in enumerate(devices)]
    return AsyncEngine(algo, clients, replace(rounds, **fleet()),
                       availability=Availability(availability or AvailabilitySpec(), len(devices), 0))


class FoldingAlgo(FakeAlgo):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.folds = []

    def fold(self, messages, plans, scales, version):
        self.folds.append(([m.client for m in messages], scales, version))

    def evaluate(self):
        return 0.5, 1.0

    def evaluate_tuning(self):
        return None

    def peak_memory_bytes(self):
        return 0

    trainable = SimpleNamespace(all_finite=lambda: True)


class DrawingAlgo(FoldingAlgo):
    """Remembers each session's draw key and a number drawn from the batches stream under it, as
    the methods draw their batches (``Algorithm.batch_rng``)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.draws = []

    def client_update(self, client, round, plan):
        self.draws.append((client, round, int(rng(0, Stream.BATCHES, round, client).integers(2 ** 62))))
        return super().client_update(client, round, plan)


def test_a_fast_device_runs_two_sessions_within_one_version_and_they_draw_differently():
    """Two devices, C = K = 2, 2 GFLOP per session, 8 Mbit each way on links of 16/8 Mbps with no
    latency, promotion or tail: device 0 (4 GFLOP/s) takes 0.5 s down + 0.5 s compute + 1 s up =
    2 s, device 1 (0.5 GFLOP/s) 0.5 + 4 + 1 = 5.5 s. At 2 s device 0's session is the buffer's
    first arrival (no version yet), and device 0, idle again, starts a second session at version
    0 at once; it ends at 4 s, the buffer's second, making version 1 from device 0's two updates
    (both 0 versions old). Sessions are numbered in start order - device 0's first 1, device 1's
    2 (started together, in device order), device 0's second 3 - and draw under that number, so
    device 0's two sessions draw different batches. The run ends at version 1, cancelling device
    1's session."""
    link = LINK.model_copy(update=dict(latency_s=0.0, promotion_s=0.0, promotion_w=0.0, tail_s=0.0, tail_w=0.0))
    clients = [Client(0, "fast", device(4.0), link), Client(1, "slow", device(0.5), link)]
    rounds = EngineConfig(max_rounds=1, clients_per_round=2, slots=2, per_version=2)
    algo = DrawingAlgo(flops=2e9)
    rows = sessions(AsyncEngine(algo, clients, replace(rounds, **fleet())))
    assert [(c, key) for c, key, _ in algo.draws] == [(0, 1), (1, 2), (0, 3)]
    assert algo.draws[0][2] != algo.draws[2][2]
    assert algo.folds == [([0, 0], [1.0, 1.0], 1)]
    fast = sorted((r for r in rows if r.client == 0), key=lambda r: r.start_s)
    assert [(r.start_version, r.end_version, r.status) for r in fast] == [(0, 0, "ok"), (0, 0, "ok")]
    assert [r.start_s for r in fast] == [0.0, pytest.approx(2.0)]
    assert fast[1].download_s + fast[1].compute_s + fast[1].upload_s == pytest.approx(2.0)
    assert [r.status for r in rows if r.client == 1] == ["cancelled"]


def test_fedbuff_weights_staleness_and_discards_what_is_too_old():
    """Slots refill at once; every K arrivals make a version whose fold gets server_lr * w(s);
    updates older than max_staleness are discarded; a device runs one session at a time (any number
    per version); the
    sessions still running at the last version are cancelled, charged what they got through."""
    algo = FoldingAlgo(flops=4e9)
    rounds = EngineConfig(max_rounds=8, clients_per_round=2, slots=4, per_version=2, server_lr=0.5,
                        max_staleness=2, staleness_exponent=1.0)
    rows = sessions(fake_engine(algo, rounds))
    assert len(algo.folds) == 8 and [v for _, _, v in algo.folds] == list(range(1, 9))
    for _, scales, _ in algo.folds:
        assert all(any(s == pytest.approx(0.5 / (1 + k)) for k in range(3)) for s in scales)
    stale = [r for r in rows if r.status == "stale"]
    assert stale and all(r.end_version - r.start_version > 2 for r in stale)
    assert all(r.end_version - r.start_version <= 2 for r in rows if r.status == "ok")
    by_device = {}
    for r in rows:
        by_device.setdefault(r.client, []).append((r.start_s, r.start_s + r.download_s + r.compute_s + r.upload_s))
    for spans in by_device.values():  # one session at a time per device
        spans.sort()
        assert all(a[1] <= b[0] + 1e-9 for a, b in zip(spans, spans[1:]))
    starts = sorted(r.start_s for r in rows)
    for t in starts:  # at most C sessions at once
        assert sum(1 for spans in by_device.values() for s, e in spans if s <= t < e) <= 4
    cancelled = [r for r in rows if r.status == "cancelled"]
    assert cancelled and all(r.round == 8 and r.energy_j > 0 for r in cancelled)
    assert sum(1 for r in rows if r.status == "ok") == 16


def test_a_deadline_runs_from_each_session_start_and_availability_drops_sessions():
    algo = FoldingAlgo(flops=4e9)
    rounds = EngineConfig(max_rounds=4, clients_per_round=2, slots=3, per_version=1, deadline_s=5.0)
    rows = sessions(fake_engine(algo, rounds, AvailabilitySpec(failures_per_hour=600.0)))
    late = [r for r in rows if r.status == "late"]
    assert late and all(r.download_s + r.compute_s + r.upload_s == pytest.approx(5.0) for r in late)
    assert any(r.status == "dropped" for r in rows)
    assert all(r.download_s + r.compute_s + r.upload_s <= 5.0 + 1e-9 for r in rows)


def test_a_version_counts_what_the_sessions_in_flight_spent_by_its_time():
    """Three devices (3 W computing, 0.5 W baseline) start at 0 on links of 1 W base power, no
    promotion or tail, 0.1 W idle; 8 Mbit down, 8 Mbit up, 2 GFLOP each (K = 1, C = 3):
    - device 0 (2 GFLOP/s, 16/8 Mbps) downloads 0-0.5 s (0.5 J radio), computes 0.5-1.5 s (3 J,
      0.1 J idle radio), uploads 1.5-2.5 s (1 J), baseline 0.5 W x 1.5 s = 0.75 J: 5.35 J, and
      makes version 1 at 2.5 s;
    - device 1 (0.5 GFLOP/s) downloads the same 0.5 J and is 2 s into its 4 s of compute then:
      6 J of compute, 0.2 J of idle radio, baseline 0.5 W x 0.5 s = 0.25 J: 6.95 J;
    - device 2 (1 GFLOP/s) downloads at 2 Mbps with 0.1 W/Mbps: 2.5 s into its 4 s download it
      has spent 2.5 s x 1 W + 5 Mbit x 0.1 W/Mbps = 3 J of radio and 1.25 J of baseline: 4.25 J.
    Version 1's row holds device 0's 5.35 J, and 6.95 + 4.25 = 11.2 J in flight; the last
    version cancels what runs and takes it in, so none is in flight there."""
    link = LINK.model_copy(update=dict(latency_s=0.0, power_base_w=1.0, power_up_w_per_mbps=0.0,
                                       power_down_w_per_mbps=0.0, promotion_s=0.0, promotion_w=0.0, tail_s=0.0,
                                       tail_w=0.0, idle_w=0.1))
    slow_link = link.model_copy(update=dict(down_mbps=2.0, power_down_w_per_mbps=0.1))
    clients = [Client(0, "d", device(2.0), link), Client(1, "d", device(0.5), link), Client(2, "d", device(1.0), slow_link)]
    rounds = EngineConfig(max_rounds=2, clients_per_round=3, slots=3, per_version=1)
    engine = AsyncEngine(FoldingAlgo(flops=2e9), clients, replace(rounds, **fleet()))
    records = []
    engine.observers = [SimpleNamespace(round_configured=lambda e, r: None,
                                        round_done=lambda e, r: records.append(r.record))]
    engine.run()
    first, last = records[1], records[2]
    assert first.sim_time_s == pytest.approx(2.5) and first.energy_j == pytest.approx(5.35)
    assert first.energy_in_flight_j == pytest.approx(11.2)
    assert last.energy_in_flight_j == 0.0


ASYNC = {"mode": "async", "concurrency": 4, "buffer": 2, "max": 6, "eval_every": 2}


# the systems state a resume must rebuild besides the learning's (carried by one method's case)
SYSTEMS = ({"battery_fraction": 0.002, "availability": {"kind": "bernoulli", "p": 0.7, "failures_per_hour": 60},
            "stragglers": {"sigma": 0.3}}, {"deadline_s": 0.5, "max_staleness": 1})


@pytest.mark.parametrize("method", list(METHODS))
def test_stopped_then_resumed_equals_the_whole_run(tmp_path, tiny_dict, monkeypatch, method):
    """Stop with version 4's rows on disk and the checkpoint at version 3 (sessions in flight, the
    version history in the algorithm's state), resume: the files equal an uninterrupted run's, for
    every method of the registry; DeComFL's run carries the systems state."""
    fleet_extra, rounds_extra = SYSTEMS if method == "decomfl" else ({}, {})
    tiny_dict["algorithm"] = METHODS[method]
    tiny_dict["fleet"].update(fleet_extra)
    tiny_dict["rounds"].update(**ASYNC, **rounds_extra)
    scenario = write_scenario(tmp_path, tiny_dict)
    assert edgefed("run", scenario, "--out", tmp_path / "whole", "--quiet").returncode == 0
    round_done = RunWriter.round_done

    def stop_after_version_4_rows(self, engine, round):
        round_done(self, engine, round)
        if round.number == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(RunWriter, "round_done", stop_after_version_4_rows)
    edgefed("run", scenario, "--out", tmp_path / "cut", "--quiet")
    state = load_checkpoint(tmp_path / "cut").state["engine"]
    assert state["round"] == 3 and state["sessions"], "the checkpoint holds sessions in flight"
    monkeypatch.setattr(RunWriter, "round_done", round_done)
    resumed = edgefed("run", scenario, "--resume", tmp_path / "cut", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert without_host_seconds(tmp_path / "cut") == without_host_seconds(tmp_path / "whole")


def test_kill_9_then_resume_equals_the_whole_run(tmp_path, tiny_dict):
    tiny_dict["rounds"].update(**{**ASYNC, "max": 10, "eval_every": 4})
    scenario = write_scenario(tmp_path, tiny_dict)
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "edgefed", "run", str(scenario), "--out", str(killed), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        reached = -1
        while reached < 3 and proc.poll() is None:
            time.sleep(0.01)
            try:
                reached = load_checkpoint(killed).state["engine"]["round"]
            except ValueError:
                pass
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before the kill"
    resumed = edgefed("run", scenario, "--resume", killed, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert edgefed("run", scenario, "--out", tmp_path / "whole", "--quiet").returncode == 0
    assert without_host_seconds(killed) == without_host_seconds(tmp_path / "whole")
    assert not (killed / CHECKPOINT).exists()


@pytest.mark.parametrize("sets, field", [
    (["rounds.mode=async", "rounds.concurrency=2", "rounds.buffer=3"], "rounds.buffer"),
    (["rounds.mode=async", "rounds.concurrency=9"], "rounds.concurrency"),
    (["rounds.mode=async", "rounds.max_staleness=-1"], "rounds.max_staleness"),
    (["rounds.mode=async", "rounds.selection=resource_aware"], "rounds.selection"),
    (["rounds.mode=async", "rounds.aggregation.kind=hierarchical"], "rounds.mode"),
    (["rounds.buffer=2"], "rounds.buffer"),
])
def test_bad_asynchronous_input_is_one_line_naming_the_field(tmp_path, tiny_file, sets, field):
    for command in ("validate", "run"):
        result = edgefed(command, tiny_file, *[a for s in sets for a in ("--set", s)], "--out", tmp_path / "o") \
            if command == "run" else edgefed(command, tiny_file, *[a for s in sets for a in ("--set", s)])
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and f": {field}:" in result.stderr, result.stderr


def test_an_asynchronous_replay_is_refused_with_the_reason(tmp_path, tiny_dict):
    trace = tmp_path / "trace.jsonl"
    trace.write_text(json.dumps({"format": "edgefed-trace/2", "peak_memory_bytes": 1}) + "\n")
    tiny_dict["rounds"].update(mode="async")
    tiny_dict["replay"] = {"trace": str(trace)}
    result = edgefed("validate", write_scenario(tmp_path, tiny_dict))
    assert result.returncode == 2 and "replay: rounds.mode async cannot be replayed" in result.stderr


def test_a_synchronous_scenario_dumps_as_before(tiny_dict):
    rounds = validate_scenario(tiny_dict, REPO).model_dump(mode="json")["rounds"]
    assert not {"mode", "concurrency", "buffer", "server_lr", "staleness", "max_staleness"} & set(rounds)
    tiny_dict["rounds"]["mode"] = "async"
    assert validate_scenario(copy.deepcopy(tiny_dict), REPO).model_dump(mode="json")["rounds"]["mode"] == "async"
