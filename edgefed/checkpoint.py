"""Round-boundary checkpoints, so ``edgefed run --resume DIR`` continues a killed run exactly.

One safetensors file (no pickle) written atomically after every round: the trainable parameters,
the algorithm's state arrays (e.g. DeComFL's seed/scalar history) and the torch RNG state as
tensors; the engine's per-device arrays (last sync, battery charge, radio tail, heat) as tensors
too, only for the devices that took part so far (the rest hold a fresh engine's values), so a
checkpoint of a million-device fleet costs what its clients changed, not tens of MB a round; the rest of the engine state (round, simulated clock) and
the resolved scenario as JSON in the file's metadata. The result rows and the learning trace are not
in it - they are in the run directory's own files, which resume cuts back to the checkpoint's
round - so its size does not grow with the rows. Rounds are synchronous, so no SimPy process or
queue is pending at a boundary, and every per-round RNG derives from (seed, round): restoring this
state is enough to replay the rest bit for bit. Asynchronous rounds have sessions in flight at
every version: their engine (``simulator.asynchronous.AsyncEngine``) adds its session log and the
waiting uploads to ``state()``/``arrays()``, and on resume rebuilds the in-flight state by playing
the timeline again from the log (docs/design.md, section 5). A replay has no model, so no
parameters and no torch RNG: its checkpoint holds numpy arrays alone and is written and read
without torch.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from safetensors import SafetensorError, safe_open

from edgefed.simulator.records import RoundObserver

if TYPE_CHECKING:
    from edgefed.simulator.engine import Engine, Round
from edgefed.results import atomic_write

CHECKPOINT = "checkpoint.safetensors"
FORMAT = "edgefed-checkpoint-5"  # 5: a device's last contact and busy_until (issue 40, items 1 and 5)


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or made by another scenario; names the file."""


@dataclass
class Checkpoint:
    state: dict  # JSON: scenario, engine, excluded, host_seconds
    params: dict  # name -> torch.Tensor
    algorithm: dict[str, np.ndarray]
    torch_rng: object  # a torch.Tensor (None: a replay's, which has no model)
    engine: dict[str, np.ndarray]  # the engine's per-device arrays

    def restore(self, engine: Engine) -> None:
        """Put the engine and its algorithm back where they were after the checkpoint's round."""
        algo = engine.algo
        algo.trainable.restore([self.params[name] for name in algo.trainable.names])
        algo.load_state(self.algorithm)
        engine.load_state(self.state["engine"], self.engine)
        if self.torch_rng is not None:
            import torch

            torch.set_rng_state(self.torch_rng)


class Checkpointer(RoundObserver):
    """Saves a checkpoint after every round. ``started``: the ``time.perf_counter()`` at which the
    run's host time began (earlier sessions of a resumed run included)."""

    def __init__(self, run_dir: Path, resolved: dict, excluded: list[dict], started: float,
                 device_kind: str | None = None):
        self.run_dir, self.resolved, self.excluded, self.started = run_dir, resolved, excluded, started
        self.device_kind = device_kind  # cpu | cuda: the generator kind that drew the directions; None: replay

    def host_seconds(self) -> float:
        return time.perf_counter() - self.started

    def round_done(self, engine: Engine, round: Round) -> None:
        algo = engine.algo
        state = {"scenario": self.resolved, "engine": engine.state(), "excluded": self.excluded,
                 "host_seconds": self.host_seconds(), "device_kind": self.device_kind}
        save_checkpoint(self.run_dir, state, dict(zip(algo.trainable.names, algo.trainable.params)), algo.state(),
                        engine.arrays(), learning=self.device_kind is not None)


def save_checkpoint(run_dir: Path, state: dict, params: dict, algorithm: dict[str, np.ndarray],
                    engine: dict[str, np.ndarray], learning: bool = True) -> None:
    """Write the checkpoint atomically; ``learning``: with the torch RNG state (a replay has none)."""
    arrays = {**{f"algo/{k}": np.ascontiguousarray(v) for k, v in algorithm.items()},
              **{f"engine/{k}": np.ascontiguousarray(v) for k, v in engine.items()}}
    metadata = {"format": FORMAT, "state": json.dumps(state)}
    if not learning:
        from safetensors.numpy import save

        atomic_write(run_dir / CHECKPOINT, save(arrays, metadata=metadata))
        return
    import torch
    from safetensors.torch import save

    tensors = {f"param/{k}": v.detach().cpu().contiguous().clone() for k, v in params.items()}
    tensors.update({k: torch.from_numpy(v) for k, v in arrays.items()})
    tensors["rng/torch"] = torch.get_rng_state()
    atomic_write(run_dir / CHECKPOINT, save(tensors, metadata=metadata))


def checkpoint_state(run_dir: Path) -> dict:
    """The checkpoint's JSON state alone (scenario, engine, device kind), its tensors left unread:
    enough to tell whether a run can continue from it."""
    return _read(run_dir, tensors=False)[0]


def load_checkpoint(run_dir: Path) -> Checkpoint:
    state, tensors = _read(run_dir, tensors=True)
    params = {k.removeprefix("param/"): v for k, v in tensors.items() if k.startswith("param/")}
    numpy = {k: v if isinstance(v, np.ndarray) else v.numpy() for k, v in tensors.items()
             if k.startswith(("algo/", "engine/"))}
    algorithm = {k.removeprefix("algo/"): v for k, v in numpy.items() if k.startswith("algo/")}
    engine = {k.removeprefix("engine/"): v for k, v in numpy.items() if k.startswith("engine/")}
    return Checkpoint(state, params, algorithm, tensors.get("rng/torch"), engine)


def _read(run_dir: Path, tensors: bool) -> tuple[dict, dict]:
    """The JSON state and (with ``tensors``) every tensor: numpy arrays for a replay's checkpoint,
    torch tensors for a learning run's (its parameters may be bfloat16, which numpy lacks)."""
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint to resume (the run finished, or this is not a run folder)")
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
            if meta.get("format") != FORMAT:
                raise CheckpointError(f"{path}: not an edgefed checkpoint of this version ({FORMAT})")
            learning = "rng/torch" in fh.keys()
            arrays = {k: fh.get_tensor(k) for k in fh.keys()} if tensors and not learning else {}
        if tensors and learning:
            with safe_open(str(path), framework="pt") as fh:
                arrays = {k: fh.get_tensor(k) for k in fh.keys()}
        return json.loads(meta["state"]), arrays
    except (SafetensorError, OSError, ValueError, KeyError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"{path}: unreadable checkpoint: {exc}") from None


def remove_checkpoint(run_dir: Path) -> None:
    (run_dir / CHECKPOINT).unlink(missing_ok=True)
