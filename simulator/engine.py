"""The SimPy engine: a server process running synchronous rounds over client processes.

Per round (DESIGN section 7): the server selects clients; the *learning* of every selected client
runs for real on the host first, in a fixed order and in zero simulated time; then SimPy plays the
systems side - each client process downloads over its link, computes for the time its counted
work takes on its device, and uploads. The server waits for all uploads or the deadline;
whatever arrived in time is aggregated, the rest is charged but dropped. Processes are plain
generators, as in SimPy's own examples.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import simpy

from algorithms.base import Algorithm, evaluate
from algorithms.message import Message
from algorithms.work import Work
from devices.profile import DeviceProfile, LinkProfile
from simulator.costs import compute_seconds
from simulator.energy import needs_promotion, tail_energy, transfer_cost


@dataclass
class Client:
    id: int
    device_name: str
    device: DeviceProfile
    link: LinkProfile
    eligible: bool = True
    note: str = ""


@dataclass
class ClientRecord:
    """One row of clients.csv."""

    round: int
    client: int
    device: str
    status: str = "ok"
    download_s: float = 0.0
    compute_s: float = 0.0
    upload_s: float = 0.0
    idle_s: float = 0.0
    energy_compute_j: float = 0.0
    energy_radio_j: float = 0.0
    energy_idle_j: float = 0.0
    bytes_up: int = 0
    bytes_down: int = 0
    flops: float = 0.0
    peak_memory_bytes: int = 0
    note: str = ""
    finished_at: float = field(default=0.0, repr=False)

    @property
    def energy_j(self) -> float:
        return self.energy_compute_j + self.energy_radio_j + self.energy_idle_j


@dataclass
class Job:
    """What the host's real learning produced for one client this round."""

    download: Message
    work: Work
    upload: Message


@dataclass
class RoundRecord:
    """One row of rounds.csv."""

    round: int
    sim_time_s: float
    accuracy: float | None
    loss: float | None
    selected: int
    aggregated: int
    dropped: int
    bytes_up: int
    bytes_down: int
    energy_j: float
    client_flops: float
    host_seconds: float


class Engine:
    def __init__(self, algorithm: Algorithm, clients: list[Client], rounds_cfg, seed: int, dtype: str = "fp32"):
        self.algo = algorithm
        self.clients = clients
        self.cfg = rounds_cfg
        self.seed = seed
        self.dtype = dtype
        self.env = simpy.Environment()
        self.last_sync: dict[int, int | None] = {c.id: None for c in clients}
        self.round = 0
        self.pool = None  # a ClientPool runs client updates on workers (simulator/parallel.py)
        self.updates: dict[int, tuple[Message, Work]] = {}  # the last round's, for trace recording

    # -- selection -----------------------------------------------------------------------
    def select(self, round: int) -> list[int]:
        eligible = [c.id for c in self.clients if c.eligible]
        rng = np.random.default_rng([self.seed, 3, round])
        k = min(self.cfg.clients_per_round, len(eligible))
        return sorted(rng.choice(eligible, size=k, replace=False).tolist())

    # -- one client's systems timeline -----------------------------------------------------
    def client_process(self, client: Client, job: Job, rec: ClientRecord):
        env, link = self.env, client.link
        compute_s = compute_seconds(job.work, client.device, self.dtype)
        phase, phase_start, phase_len = "download", env.now, 0.0
        try:
            down = transfer_cost(link, job.download.nbytes, "down", needs_promotion(link, None))
            phase, phase_start, phase_len = "download", env.now, down.seconds
            yield env.timeout(down.seconds)
            rec.download_s, rec.bytes_down, rec.energy_radio_j = down.seconds, job.download.nbytes, down.radio_j

            phase, phase_start, phase_len = "compute", env.now, compute_s
            yield env.timeout(compute_s)
            rec.compute_s, rec.flops = compute_s, job.work.flops
            rec.energy_compute_j = compute_s * client.device.power_active_w
            rec.energy_radio_j += tail_energy(link, compute_s)  # download tail, cut by the upload

            up = transfer_cost(link, job.upload.nbytes, "up", needs_promotion(link, compute_s))
            phase, phase_start, phase_len = "upload", env.now, up.seconds
            yield env.timeout(up.seconds)
            rec.upload_s, rec.bytes_up = up.seconds, job.upload.nbytes
            rec.energy_radio_j += up.radio_j + tail_energy(link, None)
            rec.finished_at = env.now
        except simpy.Interrupt as stop:
            self._charge_partial(client, job, rec, phase, env.now - phase_start, phase_len, str(stop.cause))

    def _charge_partial(self, client, job, rec, phase, elapsed, length, status):
        """A client cut off mid-phase: charge the fraction of that phase it got through."""
        rec.status = status
        frac = 0.0 if length <= 0 else min(1.0, elapsed / length)
        link = client.link
        if phase == "download":
            cost = transfer_cost(link, job.download.nbytes, "down", needs_promotion(link, None))
            rec.download_s, rec.bytes_down = elapsed, int(job.download.nbytes * frac)
            rec.energy_radio_j = cost.radio_j * frac + tail_energy(link, None)
        elif phase == "compute":
            rec.compute_s, rec.flops = elapsed, job.work.flops * frac
            rec.energy_compute_j = elapsed * client.device.power_active_w
            rec.energy_radio_j += tail_energy(link, elapsed)
        else:
            cost = transfer_cost(link, job.upload.nbytes, "up", needs_promotion(link, rec.compute_s))
            rec.upload_s, rec.bytes_up = elapsed, int(job.upload.nbytes * frac)
            rec.energy_radio_j += cost.radio_j * frac + tail_energy(link, None)
        rec.finished_at = self.env.now

    # -- the host's learning ---------------------------------------------------------------
    def client_updates(self, round: int, selected: list[int]) -> dict[int, tuple[Message, Work]]:
        """The selected clients' real local steps: in order on the host model, or on ``pool``'s
        workers (same results; catch-up is pure bookkeeping and stays here)."""
        if self.pool is not None:
            return self.pool.client_updates(self.algo, round, selected)
        return {cid: self.algo.client_update(cid, round) for cid in selected}

    def measure(self, round: int) -> tuple[float, float]:
        """Held-out accuracy and loss of the global model after ``round``."""
        return evaluate(self.algo.model, self.algo.data.test)

    # -- the server ----------------------------------------------------------------------
    def run_round(self, round: int, evaluate_now: bool):
        """Generator: one synchronous round; returns (RoundRecord, [ClientRecord])."""
        env, algo = self.env, self.algo
        host_start = time.perf_counter()
        selected = self.select(round)
        algo.configure_round(round, selected)
        downs = {cid: algo.catch_up(cid, self.last_sync[cid], round) for cid in selected}
        self.updates = self.client_updates(round, selected)  # the real learning, zero simulated time
        jobs = {cid: Job(downs[cid][0], downs[cid][1].merge(self.updates[cid][1]), self.updates[cid][0])
                for cid in selected}
        host_learning = time.perf_counter() - host_start

        start = env.now
        records = {cid: ClientRecord(round, cid, self.clients[cid].device_name,
                                     peak_memory_bytes=jobs[cid].work.peak_memory_bytes) for cid in selected}
        procs = {cid: env.process(self.client_process(self.clients[cid], jobs[cid], records[cid]))
                 for cid in selected}
        everyone = env.all_of(list(procs.values()))
        if self.cfg.deadline_s is not None:
            yield everyone | env.timeout(self.cfg.deadline_s)
        else:
            yield everyone
        end = env.now
        for proc in procs.values():
            if proc.is_alive:
                proc.interrupt("late")
        yield env.timeout(0)  # let the interrupted processes record what they got through

        arrived = [cid for cid in selected if records[cid].status == "ok"]
        host_start = time.perf_counter()
        algo.apply(algo.aggregate([jobs[cid].upload for cid in arrived]))
        for cid in selected:
            if records[cid].download_s > 0 and records[cid].bytes_down == jobs[cid].download.nbytes:
                self.last_sync[cid] = round - 1  # it pulled the model as of the previous round
        for rec in records.values():
            idle = max(0.0, end - rec.finished_at) if rec.status == "ok" else 0.0
            rec.idle_s = idle
            device = self.clients[rec.client].device
            rec.energy_idle_j = device.power_idle_w * (rec.download_s + rec.upload_s + idle)
        accuracy = loss = None
        if evaluate_now:
            accuracy, loss = self.measure(round)
        host_seconds = host_learning + time.perf_counter() - host_start
        rows = [records[cid] for cid in selected]
        self.round = round
        return RoundRecord(
            round=round, sim_time_s=end, accuracy=accuracy, loss=loss, selected=len(selected),
            aggregated=len(arrived), dropped=len(selected) - len(arrived),
            bytes_up=sum(r.bytes_up for r in rows), bytes_down=sum(r.bytes_down for r in rows),
            energy_j=sum(r.energy_j for r in rows), client_flops=sum(r.flops for r in rows),
            host_seconds=host_seconds), rows

    def excluded_records(self) -> list[ClientRecord]:
        return [ClientRecord(0, c.id, c.device_name, status="excluded", note=c.note,
                             peak_memory_bytes=self.algo.peak_memory_bytes())
                for c in self.clients if not c.eligible]

    def run(self, on_round, start_round: int = 1):
        """Drive rounds ``start_round..max``; ``on_round(RoundRecord, rows)`` after each one."""
        def server():
            for r in range(start_round, self.cfg.max + 1):
                evaluate_now = r % self.cfg.eval_every == 0 or r == self.cfg.max
                result = yield from self.run_round(r, evaluate_now)
                if on_round(*result) is False:
                    return
        self.env.process(server())
        self.env.run()
