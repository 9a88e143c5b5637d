"""The named random streams of a run, in one list.

Each draw from a stream derives from (scenario seed, stream id, keys...), so one stream's numbers
never depend on how many another one drew, and no two modules share an id by accident. The ids are
part of the reproducibility contract: renumbering one changes every result that uses it.

Two generators take the scenario seed directly instead of through a stream id: the numpy generator
of ``algorithms.data.partition`` (``np.random.default_rng(seed)``: which examples each client
holds), and torch's global generator, set by ``torch.manual_seed(seed)`` in ``edgefed.build``
before the model is built (randomly initialised weights such as LoRA adapters) and again in
``algorithms.models.load_backbone`` (the random-config ``tiny-bert``). Perturbation directions are
drawn by a ``torch.Generator`` from seeds derived from the streams below (``algorithms.zo``).
"""
from __future__ import annotations

from enum import IntEnum

import numpy as np


class Stream(IntEnum):
    BATCHES = 1           # a client's minibatches in a round: (round, client); asynchronous rounds:
                          # (session number, device), the session number 1 + its index in the start order
    ROUND_SEEDS = 2       # DeComFL/FedSPZO: the per-step seeds a round's clients share: (round, step);
                          # async: (version + 1, step), shared by the sessions started at the version
    SELECTION = 3         # the clients a round selects: (round,); asynchronous rounds: one generator per
                          # model version v, keyed (v + 1,) like that round's, its draws continuing in refill order
    SEED_POOL = 4         # FedKSeed's K candidate seeds: (k,)
    CLIENT_DIRECTIONS = 5  # FedZO's client-drawn directions: (round, client, step, perturbation); async: the
                           # session number for round
    PROTOTYPES = 7        # the labelled examples of the prototype head: ()
    LINK_VARIABILITY = 11  # per-device link bandwidth factors: ()
    POPULATION = 12       # a population group's devices: rows, measured users, rates: (group index,)
    DIURNAL_PHASE = 21    # each device's diurnal phase: ()
    BERNOULLI_ON = 22     # per-round Bernoulli availability, one coin per device: (round, attempt);
                          # asynchronous rounds: (version + 1, attempt), an attempt per refill of the version
    FAILURES = 23         # mid-round failures: (client, round); async: (device, session number)
    STRAGGLERS = 24       # straggler slowdowns: (client, round); async: (device, session number)
    DAILY_USERS = 25      # charging_wifi: each device's user and window shift: ()
    TUNING_SPLIT = 31     # the training examples task.tuning_split keeps out, under seed 0 for every seed: ()


# Inside one step's seed (not the scenario seed): DeComFL's perturbation p > 0 uses
# derive_seed(step_seed, p); FedSPZO's block-1 direction u_i derive_seed(step_seed, BLOCK1, i) and
# block-2 direction v_ij derive_seed(step_seed, BLOCK2, i, j).
BLOCK1, BLOCK2 = 1, 2


def rng(seed: int, stream: Stream, *keys: int) -> np.random.Generator:
    """The numpy generator of ``stream`` for ``keys`` under the scenario ``seed``."""
    return np.random.default_rng([seed, int(stream), *keys])
