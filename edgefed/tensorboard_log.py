"""TensorBoard scalars per round (``output.tensorboard: true``; the ``tensorboard`` extra).

Written through ``torch.utils.tensorboard`` into ``RUN_DIR/tensorboard``, one step per round, so
runs can be compared live in TensorBoard beside other experiments; rounds.csv stays the record.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from edgefed.simulator.records import RoundObserver
from edgefed.scenario import ScenarioError

FOLDER = "tensorboard"


class TensorBoardLog(RoundObserver):
    """Observes each round (round 0 included); ``fresh`` clears a previous run's events (a resumed
    run appends to its own)."""

    def __init__(self, run_dir: Path, fresh: bool = True):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ScenarioError("output.tensorboard: needs the tensorboard package "
                                "(pip install 'edgefed[tensorboard]')") from None
        if fresh:
            shutil.rmtree(run_dir / FOLDER, ignore_errors=True)
        self.writer = SummaryWriter(str(run_dir / FOLDER))

    def round_done(self, engine, round) -> None:
        record = round.record
        scalars = {"accuracy": record.accuracy, "loss": record.loss, "sim_time_s": record.sim_time_s,
                   "energy_j": record.energy_j, "bytes_up": record.bytes_up, "bytes_down": record.bytes_down,
                   "client_flops": record.client_flops}
        for name, value in scalars.items():
            if value is not None:  # accuracy and loss only on evaluated rounds
                self.writer.add_scalar(name, value, record.round)
        self.writer.flush()

    def close(self, engine, status) -> None:
        self.writer.close()
