"""Parallel clients: a round's local updates on worker processes or Ray actors.

Each worker builds the scenario's learning once (same seed, so the same model and data). Per round
the host sends every worker the global trainable weights, the algorithm's server state and the
round's plan; the worker runs ``client_update`` for its share of the selected clients. ``client_update`` depends only on those (the algorithm contract), so the results equal
the sequential run's; the engine merges them in client order.
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import torch

from edgefed.scenario import HostSpec, Scenario, ScenarioError, scenario_dict

_ALGO = None  # a local worker process's own algorithm


def _start_worker(resolved: dict, base: str, threads: int) -> None:
    global _ALGO
    from edgefed.build import build_learning, fit_to_fleet

    torch.set_num_threads(threads)
    scenario = Scenario.model_validate(resolved)
    _ALGO = build_learning(scenario, Path(base))
    fit_to_fleet(_ALGO, scenario, Path(base))  # as the host's: FedSPZO's auto split and p2 fit the fleet


def _updates(algo, weights, state, round, plan, clients) -> dict:
    algo.trainable.restore(weights)
    algo.load_state(state)
    # round: the clients' draw key, or one per client (asynchronous sessions; simulator.host.draw_key)
    return {cid: algo.client_update(cid, round[cid] if isinstance(round, dict) else round, plan) for cid in clients}


def _local_updates(weights, state, round, plan, clients) -> dict:
    return _updates(_ALGO, weights, state, round, plan, clients)


def shares(selected: list[int], workers: int) -> list[list[int]]:
    """Contiguous, nearly equal shares of the selected clients, one per worker."""
    size, extra = divmod(len(selected), workers)
    out, start = [], 0
    for i in range(workers):
        end = start + size + (i < extra)
        if end > start:
            out.append(selected[start:end])
        start = end
    return out


class LocalPool:
    """Spawned worker processes, each holding its own copy of the learning."""

    def __init__(self, scenario: Scenario, base: Path, workers: int):
        threads = worker_threads(workers)
        self.workers = workers
        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                        initializer=_start_worker,
                                        initargs=(scenario_dict(scenario), str(base), threads))

    def client_updates(self, algo, round, selected, plan):
        weights, state = [t.cpu() for t in algo.trainable.snapshot()], algo.state()
        futures = [self.pool.submit(_local_updates, weights, state, round, plan, share)
                   for share in shares(selected, self.workers)]
        merged = {}
        for future in futures:
            merged.update(future.result())
        return {cid: merged[cid] for cid in selected}

    def close(self):
        self.pool.shutdown(cancel_futures=True)


def worker_threads(workers: int) -> int:
    """Each worker's share of this process's torch threads (which honour OMP_NUM_THREADS)."""
    return max(1, torch.get_num_threads() // workers)


def start_ray(workers: int, option: str):
    """Ray on ``RAY_ADDRESS``, else a local Ray with ``workers`` CPUs, unless one runs already;
    returns the module and whether this call started it (and so shuts it down). ``option`` names
    what asked for Ray in the one-line error when it is not installed."""
    try:
        import ray
    except ImportError:
        raise ScenarioError(f"{option}: Ray is not installed (pip install 'edgefed[ray]')") from None
    started = not ray.is_initialized()
    if started:
        address = os.environ.get("RAY_ADDRESS")
        ray.init(address=address, **({} if address else {"num_cpus": workers}),
                 include_dashboard=False, log_to_driver=False)
    return ray, started


class RayPool:
    """Ray actors (CPU, or GPU with ``host.gpus_per_worker``), on ``RAY_ADDRESS`` or a local Ray."""

    def __init__(self, scenario: Scenario, base: Path, workers: int, gpus: float):
        self.ray, self.started = start_ray(workers, "host.backend")

        from edgefed.build import learning_device

        resolved = scenario_dict(scenario)
        if gpus > 0:  # each actor's model on the GPU Ray gives it (the host draws z on a GPU too)
            if learning_device(scenario.model.device).type != "cuda":
                raise ScenarioError("host.gpus_per_worker: the host's model.device is not a GPU; directions "
                                    "drawn on a GPU differ from a CPU's, so the host and its workers must match")
            resolved["model"]["device"] = "cuda"

        class Worker:
            def __init__(self):
                _start_worker(resolved, str(base), 1)

            def updates(self, weights, state, round, plan, clients):
                return _local_updates(weights, state, round, plan, clients)

        actor = self.ray.remote(num_cpus=1, num_gpus=gpus)(Worker)
        self.actors = [actor.remote() for _ in range(workers)]

    def client_updates(self, algo, round, selected, plan):
        weights, state = self.ray.put([t.cpu() for t in algo.trainable.snapshot()]), self.ray.put(algo.state())
        refs = [a.updates.remote(weights, state, round, plan, share)
                for a, share in zip(self.actors, shares(selected, len(self.actors)))]
        merged = {}
        for part in self.ray.get(refs):
            merged.update(part)
        return {cid: merged[cid] for cid in selected}

    def close(self):
        for actor in self.actors:
            self.ray.kill(actor)
        if self.started:
            self.ray.shutdown()


def client_pool(host: HostSpec, scenario: Scenario, base: Path):
    """None (sequential on the host) for one local worker, else a pool."""
    if host.backend == "ray":
        return RayPool(scenario, base, host.workers, host.gpus_per_worker)
    return LocalPool(scenario, base, host.workers) if host.workers > 1 else None
