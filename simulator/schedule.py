"""When a synchronous run evaluates and when it stops.

The engine asks its schedule after each round, once the round's costs are known: ``evaluate``
whether the global model is to be evaluated now, then ``stop`` whether this was the last round.
``EveryRounds`` is ``rounds.eval_every`` and ``rounds.max``; a run can be given another rule that
reads the rounds' records (``edgefed.budget.CostBudget``: stop on a cost, evaluate at equal steps
of it). A schedule's ``state`` goes into the checkpoint so a resumed run decides as it would have.
"""
from __future__ import annotations

from typing import Protocol

from edgefed.simulator.records import RoundRecord


class Schedule(Protocol):
    def evaluate(self, record: RoundRecord) -> bool:
        """Called once per round, after its costs: evaluate the global model now?"""

    def stop(self, record: RoundRecord) -> bool:
        """After the round was reported: was it the run's last?"""

    def state(self) -> dict:
        """JSON for the checkpoint ({} when the round number is all it needs)."""

    def load_state(self, state: dict) -> None:
        """Continue from a checkpoint's ``state()``."""


class EveryRounds:
    """Evaluate every ``every`` rounds and at the last, ``last``; stop there."""

    def __init__(self, every: int, last: int):
        self.every, self.last = every, last

    def evaluate(self, record: RoundRecord) -> bool:
        return record.round % self.every == 0 or record.round == self.last

    def stop(self, record: RoundRecord) -> bool:
        return record.round >= self.last

    def state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        pass
