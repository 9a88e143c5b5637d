"""What the simulator needs to know about a device and its network link.

Every number in the catalog carries a source (``sources`` maps field name -> citation), so a
reader can check where a time or energy figure comes from.
"""
from __future__ import annotations

import platform
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, model_validator

CATALOG_PATH = Path(__file__).with_name("catalog.yaml")
Dtype = Literal["fp32", "fp16", "bf16"]


class ThermalProfile(BaseModel):
    """A fanless device's speed under sustained load: its full (burst) rate for ``burst_s``
    seconds of load from cold, then ``sustained_fraction`` of it until it cools; idling drains the
    heat linearly, from hot to cold in ``cool_s`` seconds (simulator/thermal.py). Throttling lowers
    the clock, and power falls faster than the clock: see ``DeviceProfile.power_throttled_w``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    burst_s: PositiveFloat
    sustained_fraction: float = Field(gt=0.0, le=1.0)
    cool_s: PositiveFloat
    power_exponent: float = Field(2.0, ge=1.0, le=3.0, description="k in: the compute power above idle scales "
                                  "as the clock's share to the power k while throttled (ESTIMATE: 3 is the "
                                  "CMOS core alone, 1 power that follows the work; docs/design.md)")


class DeviceProfile(BaseModel):
    """Compute, memory and power of one device class, as sustained under load (the burst rate
    where ``thermal`` says how the device throttles). A straggler, slowed ``s`` times by other work
    on the device (``fleet.stragglers``), is charged FL's share of the busy device for each of its
    slowed seconds: ``power_idle_w + (power_active_w - power_idle_w) / s``, so its compute costs
    the unslowed work's joules above idle plus the baseline for the longer time (ESTIMATE: power
    linear in utilisation, Fan et al., ISCA 2007, split among the device's programs by their share
    of it, as PowerTutor does, Zhang et al., CODES+ISSS 2010; the whole baseline is billed to FL)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str
    device_class: Literal["phone", "sbc", "jetson", "laptop", "desktop", "server"]
    description: str = ""
    flops: dict[Dtype, PositiveFloat] = Field(description="sustained FLOP/s per dtype")
    mem_bandwidth: PositiveFloat = Field(description="sustained memory bandwidth, bytes/s")
    memory_bytes: PositiveFloat = Field(description="memory usable by the training process, bytes")
    power_active_w: PositiveFloat = Field(description="device power while computing, W")
    power_idle_w: NonNegativeFloat = Field(description="device power while waiting, W")
    battery_wh: PositiveFloat | None = Field(default=None, description="battery capacity, Wh")
    rng_flops: PositiveFloat | None = Field(
        default=None, description="FLOP-equivalent rate of random-number generation (measured by "
        "`edgefed calibrate`); None: the dtype's FLOP/s")
    default_link: str = "wifi"
    thermal: ThermalProfile | None = Field(default=None, description="burst-then-sustained throttling; "
                                           "None: flops hold under any load")
    sources: dict[str, str] = Field(default_factory=dict, description="field -> citation")

    @model_validator(mode="after")
    def _idle_below_active(self) -> "DeviceProfile":
        if self.power_idle_w > self.power_active_w:
            raise ValueError("power_idle_w must not exceed power_active_w")
        return self

    @property
    def power_throttled_w(self) -> float:
        """Device power while computing throttled, at ``sustained_fraction`` f of the burst clock:
        ``power_idle_w + (power_active_w - power_idle_w) * f ** power_exponent``, so a throttled
        FLOP costs less energy than a burst one (f ** (k - 1) of the increment); a device that
        does not throttle draws ``power_active_w``."""
        if self.thermal is None or self.thermal.sustained_fraction == 1.0:
            return self.power_active_w
        share = self.thermal.sustained_fraction ** self.thermal.power_exponent
        return self.power_idle_w + (self.power_active_w - self.power_idle_w) * share

    def peak_flops(self, dtype: str) -> float:
        """Sustained FLOP/s for ``dtype``; falls back to fp32 where the device lists no faster path."""
        return self.flops.get(dtype, self.flops["fp32"])  # type: ignore[arg-type]


class LinkProfile(BaseModel):
    """A network access technology with the radio power model of Huang et al. (MobiSys 2012).

    Power while transferring is ``power_base_w + power_up_w_per_mbps * up_mbps`` (upload) or
    ``power_base_w + power_down_w_per_mbps * down_mbps`` (download), the rate clamped for power (not
    for time) to the range the slope was fitted over (``power_fit_up_mbps``/``power_fit_down_mbps``). The first transfer after idle
    pays a promotion delay at ``promotion_w``; after the last one the radio stays in a tail state
    for ``tail_s`` seconds at ``tail_w``. The connection to the server is apart from the radio: the
    first contact, and any after more than ``keepalive_s`` without a transfer, opens a new one
    (``handshake_rtts`` round trips; simulator/radio.py ``handshakes``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str
    description: str = ""
    cellular: bool = Field(False, description="a metered cellular link (charging_wifi availability "
                           "moves such devices to their group's home_link)")
    up_mbps: PositiveFloat
    down_mbps: PositiveFloat
    latency_s: NonNegativeFloat
    power_base_w: NonNegativeFloat
    power_up_w_per_mbps: NonNegativeFloat
    power_down_w_per_mbps: NonNegativeFloat
    promotion_s: NonNegativeFloat = 0.0
    promotion_w: NonNegativeFloat = 0.0
    tail_s: NonNegativeFloat = 0.0
    tail_w: NonNegativeFloat = 0.0
    idle_w: NonNegativeFloat = 0.0
    loss: float = Field(0.0, ge=0.0, lt=1.0, description="packet loss rate: goodput is (1 - loss) x rate")
    handshake_rtts: NonNegativeInt = Field(2, description="round trips (the path's latency_s each) to open a "
                                           "connection before the first byte: TCP + TLS 1.3 = 2. Paid on first "
                                           "contact and after more than keepalive_s idle, whatever the radio did; "
                                           "bytes_* stay the payload")
    keepalive_s: NonNegativeFloat = Field(7440.0, description="seconds a connection to the server outlives its "
                                          "last transfer (NAT binding and keep-alive), whatever the radio does. "
                                          "Default 7440: RFC 5382 (REQ-5) forbids a NAT to drop an established "
                                          "idle TCP connection sooner than 2 h 4 min; the catalog's cellular links "
                                          "give carrier NATs' shorter timeouts")
    power_fit_up_mbps: tuple[PositiveFloat, PositiveFloat] | None = Field(
        None, description="[low, high] uplink Mbps over which power_up_w_per_mbps was fitted: radio power is "
        "charged at the rate clamped to it (the transfer still runs at its own rate); None: no clamp")
    power_fit_down_mbps: tuple[PositiveFloat, PositiveFloat] | None = Field(
        None, description="[low, high] downlink Mbps over which power_down_w_per_mbps was fitted (as up)")
    sources: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fit_range_ordered(self) -> "LinkProfile":
        for name in ("power_fit_up_mbps", "power_fit_down_mbps"):
            r = getattr(self, name)
            if r is not None and r[0] > r[1]:
                raise ValueError(f"{name}: low {r[0]} above high {r[1]}")
        return self


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    devices: dict[str, DeviceProfile]
    links: dict[str, LinkProfile]


def load_catalog(path: Path | str = CATALOG_PATH) -> Catalog:
    """Read a catalog YAML (``devices:`` and ``links:`` keyed by name; ``aliases:`` maps an old
    link name to the link it now stands for, so scenarios that name it keep working)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(Path(path).read_text())  # yaml.safe_load on libyaml: 10x faster
    try:
        raw = loader.get_single_data()
    finally:
        loader.dispose()
    for section in ("devices", "links"):
        for key, entry in (raw.get(section) or {}).items():
            entry.setdefault("name", key)
    links = raw.get("links") or {}
    for alias, target in (raw.pop("aliases", None) or {}).items():
        if target not in links:
            raise ValueError(f"{path}: aliases.{alias}: unknown link {target!r}")
        links[alias] = {**links[target], "name": alias, "description": f"alias of {target}"}
    return Catalog.model_validate(raw)


@cache
def default_catalog() -> Catalog:
    return load_catalog(CATALOG_PATH)


def host_cpu() -> str:
    """This machine's CPU as /proc/cpuinfo names it (x86 ``model name``, Arm ``Hardware`` or
    ``Model``), else what ``platform`` knows: run records name it, and fp32 results can differ
    between CPUs (the feature store keys on it)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Hardware", "Model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
