"""Rule 1 of the comparison protocol (docs/compare.md): a run spends a cost, not a round count.

With ``rounds.budget`` the runner gives the engine a ``CostBudget`` schedule: the run evaluates
after the round at which its cumulative cost first reaches each multiple of ``amount /
evaluations`` (round 0 is always evaluated) and stops after the round that reaches ``amount``, so
runs of methods whose rounds cost very different amounts are read at the same costs. Cost is
summed from the rounds' records in their order, as rounds.csv gives them back, so an analysis of
the CSV finds the same evaluation slots. ``pause`` stops a run early at a slot and keeps its
checkpoint (summary status ``paused``): successive halving continues a survivor from there.
"""
from __future__ import annotations

import math

from edgefed.simulator.records import RoundRecord

#: what a budget can count: client FLOPs, fleet energy (J), simulated seconds, bytes up and down
COSTS = ("client_flops", "energy_j", "sim_time_s", "bytes")


def slot(spent: float, amount: float, evaluations: int) -> int:
    """The evaluation slot a cumulative cost has reached: the largest k <= evaluations with
    k * amount / evaluations <= spent; the run evaluates when it grows."""
    return min(evaluations, math.floor(spent * evaluations / amount))


def nominal_cost(spent: float, amount: float, evaluations: int) -> float:
    """The cost an evaluation taken at ``spent`` stands for: its slot's multiple of the step (the
    budget itself at most), which is where a comparison reads it."""
    k = slot(spent, amount, evaluations)
    return amount if k == evaluations else k * (amount / evaluations)


def spend(spent: float, row: dict, cost: str) -> float:
    """The cumulative ``cost`` after one more round (a record's fields, or its rounds.csv row):
    simulated time is the clock itself, every other cost a sum over the rounds in their order."""
    if cost == "sim_time_s":
        return float(row["sim_time_s"])
    if cost == "bytes":
        return spent + (int(row["bytes_up"]) + int(row["bytes_down"]))
    return spent + float(row[cost])


class CostBudget:
    """The engine's schedule under ``rounds.budget`` (``simulator.schedule.Schedule``)."""

    def __init__(self, cost: str, amount: float, evaluations: int, last_round: int, pause: int | None = None):
        self.cost, self.amount, self.evaluations, self.last_round = cost, amount, evaluations, last_round
        self.pause = pause  # stop at this slot, keeping the checkpoint (None: run to the budget)
        self.spent, self.slot = 0.0, 0

    def evaluate(self, record: RoundRecord) -> bool:
        self.spent = spend(self.spent, vars(record), self.cost)
        reached = slot(self.spent, self.amount, self.evaluations)
        due = reached > self.slot or record.round >= self.last_round
        self.slot = max(reached, self.slot)
        return due

    def stop(self, record: RoundRecord) -> bool:
        return self.slot >= self.evaluations or self.paused or record.round >= self.last_round

    @property
    def paused(self) -> bool:
        """Whether the run stopped at its pause slot, short of the budget."""
        return self.pause is not None and self.pause <= self.slot < self.evaluations

    @classmethod
    def of(cls, rounds, pause: int | None = None) -> CostBudget:
        """The schedule of a scenario's ``rounds`` (its ``budget`` set)."""
        spec = rounds.budget
        return cls(spec.cost, spec.amount, spec.evaluations, rounds.max, pause)

    def state(self) -> dict:
        return {"spent": self.spent, "slot": self.slot}

    def load_state(self, state: dict) -> None:
        self.spent, self.slot = state["spent"], state["slot"]
