"""What a round produces (a rounds.csv row, clients.csv rows) and the observers that watch rounds.

Kept apart from the engine so that writers, the command line and plots read them without
importing the simulator's machinery.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class ClientRecord:
    """One row of clients.csv (slots: a round of a large fleet makes thousands); under asynchronous
    rounds one session's row."""

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
    edge_round: int = 1  # its edge round (K > 1 edge rounds per cloud round: clients.csv's edge_round column)
    # asynchronous rounds only (None otherwise, and then not written): the session's model version
    # at its start and at its end, and its start in simulated seconds
    start_version: int | None = None
    end_version: int | None = None
    start_s: float | None = None

    @property
    def energy_j(self) -> float:
        return self.energy_compute_j + self.energy_radio_j + self.energy_idle_j


@dataclass
class RoundRecord:
    """One row of rounds.csv (round 0: the model before training); under asynchronous rounds one
    model version's."""

    round: int
    sim_time_s: float
    accuracy: float | None
    loss: float | None
    selected: int = 0
    aggregated: int = 0
    dropped: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    energy_j: float = 0.0
    client_flops: float = 0.0
    host_seconds: float = 0.0
    # hierarchical aggregation only (None otherwise, and then not written): the edge tier's bytes
    backhaul_bytes_up: int | None = None  # the cells' partial aggregates, edge -> server
    backhaul_bytes_down: int | None = None  # the distinct downloads each edge received, server -> edge
    # with a topology only (None otherwise): bytes each infrastructure link carried, link index ->
    # [up, down] (simulator.topology.round_links); the run directory writes them as links.csv and
    # their sums per tier in rounds.csv
    links: dict[int, list[int]] | None = None
    # asynchronous rounds only (None otherwise, and then not written): how many versions old the
    # updates this version folded were computed (mean, max), and what the sessions still in flight
    # at its time had spent by then (Sessions.spent_j; their rows come with later versions)
    staleness_mean: float | None = None
    staleness_max: int | None = None
    energy_in_flight_j: float | None = None
    # with task.evaluate_on both only (None otherwise, and then not written): the tuning split's
    # accuracy at the same evaluation, which hyperparameter choices read instead of the test split's
    tuning_accuracy: float | None = None


class RoundObserver:
    """What watches the engine's rounds (writers, trace, checkpoints, progress): hooks get the
    ``Engine`` driving the run and the round's ``simulator.engine.Round`` (``number``, ``plan``,
    ``updates``; once done ``record`` and ``rows``), and never change the run."""

    def round_configured(self, engine, round) -> None:
        """After the server configured ``round``, before any client runs."""

    def round_done(self, engine, round) -> None:
        """After ``round`` (round 0: the initial evaluation, with the excluded devices' rows)."""

    def close(self, engine, status: str) -> None:
        """The run ended: ``done``, ``interrupted`` (KeyboardInterrupt), ``diverged`` or ``failed``
        (any other exception)."""
