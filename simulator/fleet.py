"""The fleet: every device of a run as a few array entries, so a million devices fit in tens of MB.

A device is its group (device class, link class, cell), its own link bandwidth (the group's, or
scaled by per-device variability) and whether it may take part; the engine makes a ``Client``
object only for a device it selected.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgefed.devices.profile import DeviceProfile, LinkProfile


@dataclass
class Client:
    id: int
    device_name: str
    device: DeviceProfile
    link: LinkProfile
    eligible: bool = True
    note: str = ""
    cell: str | None = None


@dataclass
class Group:
    """Devices of one class on one link class (and cell)."""

    device_name: str
    device: DeviceProfile
    link: LinkProfile
    cell: str | None = None
    note: str = ""  # why its devices cannot take part (empty: they can)


class Fleet:
    """Devices by id: ``group[i]`` indexes ``groups``; ``up_mbps``/``down_mbps`` hold each device's
    own link rates; ``eligible`` is false for devices that can never take part."""

    def __init__(self, groups: list[Group], group: np.ndarray, up_mbps: np.ndarray, down_mbps: np.ndarray):
        self.groups, self.group = groups, group
        self.up_mbps, self.down_mbps = up_mbps, down_mbps
        self.eligible = np.ones(len(group), dtype=bool)

    @classmethod
    def from_clients(cls, clients: list[Client]) -> Fleet:
        """A fleet of hand-made clients (ids 0..n-1 in order), as tests and small setups build them."""
        index: dict[tuple, int] = {}
        groups = []
        for c in clients:
            key = (c.device_name, id(c.device), id(c.link), c.cell, c.note)
            if key not in index:
                index[key] = len(groups)
                groups.append(Group(c.device_name, c.device, c.link, c.cell, c.note))
        fleet = cls(groups,
                    np.array([index[(c.device_name, id(c.device), id(c.link), c.cell, c.note)] for c in clients],
                             dtype=np.int32),
                    np.array([c.link.up_mbps for c in clients], dtype=float),
                    np.array([c.link.down_mbps for c in clients], dtype=float))
        fleet.eligible[:] = [c.eligible for c in clients]
        return fleet

    def __len__(self) -> int:
        return len(self.group)

    def __getitem__(self, cid: int) -> Client:
        g = self.groups[self.group[cid]]
        return Client(int(cid), g.device_name, g.device, self.link(cid), bool(self.eligible[cid]), g.note, g.cell)

    def __iter__(self):
        return (self[cid] for cid in range(len(self)))

    def link(self, cid: int) -> LinkProfile:
        """The device's link: its group's, with its own rates where they differ."""
        link = self.groups[self.group[cid]].link
        up, down = float(self.up_mbps[cid]), float(self.down_mbps[cid])
        if (up, down) == (link.up_mbps, link.down_mbps):
            return link
        return link.model_copy(update={"up_mbps": up, "down_mbps": down})

    def access(self, cid: int) -> tuple[LinkProfile, str | None]:
        """What the network needs of a device: its link and the node it attaches to."""
        return self.link(cid), self.groups[self.group[cid]].cell

    def attached(self, cid: int) -> str | None:
        """The node (cell or topology node) a device attaches to (None: straight to the server)."""
        return self.groups[self.group[cid]].cell

    def exclude(self, g: int, note: str) -> None:
        """Mark a group's devices as never taking part, and why."""
        self.groups[g].note = note
        self.eligible[self.group == g] = False
