"""The server-side history of a seed-based method (DeComFL, FedSPZO, FedKSeed): per round, the
records a client that pulls the model must replay, and the task head as the server initialised it
(the only weights such a client cannot rebuild from seeds)."""
from __future__ import annotations

import numpy as np


class History:
    def __init__(self, names: list[str], params):
        self.head = {n: p.detach().cpu().numpy().copy() for n, p in zip(names, params) if n.startswith("head.")}
        self.rounds: list[int] = []
        self.records: list[dict[str, np.ndarray]] = []

    def add(self, round: int, **arrays: np.ndarray) -> None:
        self.rounds.append(round)
        self.records.append({k: np.array(v, copy=True) for k, v in arrays.items()})

    def since(self, last_round: int | None) -> list[dict[str, np.ndarray]]:
        """Records of the rounds after ``last_round`` (all of them when the client never synced)."""
        return [rec for r, rec in zip(self.rounds, self.records) if last_round is None or r > last_round]

    def state(self) -> dict[str, np.ndarray]:
        """As stacked arrays (every round's records share their shapes)."""
        state = {"history_rounds": np.array(self.rounds, dtype=np.int64)}
        if self.records:
            state.update({f"history_{k}": np.stack([rec[k] for rec in self.records]) for k in self.records[0]})
        return state

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.rounds = [int(r) for r in state["history_rounds"]]
        names = [k.removeprefix("history_") for k in state if k != "history_rounds"]
        self.records = [{k: state[f"history_{k}"][i].copy() for k in names} for i in range(len(self.rounds))]
