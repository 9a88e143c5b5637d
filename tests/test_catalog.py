"""The device catalog loads, every number in it is cited, and the numbers are physically plausible."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from edgefed.devices.profile import CATALOG_PATH, DeviceProfile, LinkProfile, load_catalog
from tests.conftest import bench_script

CATALOG = load_catalog()
DEVICES = sorted(CATALOG.devices.items())
LINKS = sorted(CATALOG.links.items())


def _numeric_fields(model) -> list[str]:
    """Names of the fields of ``model`` that hold a number (or a dict of numbers), set or defaulted."""
    names = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (int, float)) or (
            isinstance(value, dict) and value and all(isinstance(v, (int, float)) for v in value.values())
        ):
            names.append(name)
    return names


def test_catalog_size_and_diversity():
    assert len(CATALOG.devices) >= 6
    assert len({d.device_class for d in CATALOG.devices.values()}) >= 4
    assert len(CATALOG.links) >= 3
    for name in ("wifi", "lte", "lte-2012", "5g-nsa-lowband", "5g-mmwave", "5g-sa", "5g", "ethernet"):
        assert name in CATALOG.links


def test_5g_is_an_alias_of_low_band_nsa_and_lte_is_the_2021_model():
    alias, target = CATALOG.links["5g"], CATALOG.links["5g-nsa-lowband"]
    assert alias.model_dump(exclude={"name", "description"}) == target.model_dump(exclude={"name", "description"})
    lte, old = CATALOG.links["lte"], CATALOG.links["lte-2012"]
    # 0.43839 / 0.0818 = 5.36 and 0.05197 / 0.0141 = 3.69: a 2012 phone's LTE per bit against a 2020 one's
    assert old.power_up_w_per_mbps / lte.power_up_w_per_mbps == pytest.approx(5.36, rel=0.01)
    assert old.power_down_w_per_mbps / lte.power_down_w_per_mbps == pytest.approx(3.69, rel=0.01)
    assert CATALOG.links["5g-sa"].promotion_s < lte.promotion_s  # RRC_INACTIVE resumes quickly
    assert not CATALOG.links["wifi"].cellular and all(CATALOG.links[n].cellular for n in ("lte", "5g-mmwave"))


def test_alias_of_an_unknown_link_is_refused(tmp_path):
    raw = _raw_catalog()
    raw["aliases"] = {"4g": "lte-2009"}
    with pytest.raises(ValueError, match="aliases.4g: unknown link 'lte-2009'"):
        load_catalog(_write(tmp_path, raw))


def test_names_match_keys():
    for key, dev in DEVICES:
        assert dev.name == key
    for key, link in LINKS:
        assert link.name == key


@pytest.mark.parametrize(("key", "dev"), DEVICES, ids=[k for k, _ in DEVICES])
def test_every_device_number_is_cited(key, dev):
    fields = _numeric_fields(dev)
    assert {"flops", "mem_bandwidth", "memory_bytes", "power_active_w", "power_idle_w"} <= set(fields)
    for field in fields:
        assert dev.sources.get(field, "").strip(), f"{key}.{field} has no citation"
    assert set(dev.sources) <= set(type(dev).model_fields), f"{key}: citation for an unknown field"


@pytest.mark.parametrize(("key", "link"), LINKS, ids=[k for k, _ in LINKS])
def test_every_link_number_is_cited(key, link):
    for field in _numeric_fields(link):  # zeros and defaults included
        assert link.sources.get(field, "").strip(), f"{key}.{field} has no citation"
    assert set(link.sources) <= set(type(link).model_fields), f"{key}: citation for an unknown field"


@pytest.mark.parametrize(("key", "dev"), DEVICES, ids=[k for k, _ in DEVICES])
def test_device_default_link_exists(key, dev):
    assert dev.default_link in CATALOG.links


@pytest.mark.parametrize(("key", "dev"), DEVICES, ids=[k for k, _ in DEVICES])
def test_device_numbers_plausible(key, dev):
    assert "fp32" in dev.flops
    assert 1e9 <= dev.flops["fp32"] <= 1e14, "fp32 FLOP/s out of range: unit mistake?"
    for dtype, rate in dev.flops.items():
        assert 1e9 <= rate <= 1e15, dtype
        # a listed half-precision path must be at least as fast as fp32, and not absurdly faster
        assert dev.flops["fp32"] <= rate <= 16 * dev.flops["fp32"], dtype
    assert dev.peak_flops("bf16") > 0
    assert 0.5e9 <= dev.memory_bytes <= 64e9, "memory in bytes expected"
    assert 1e9 <= dev.mem_bandwidth <= 1e12, "bandwidth in bytes/s expected"
    assert 0.01 <= dev.power_idle_w < dev.power_active_w <= 100
    if dev.device_class in ("phone", "laptop"):
        assert dev.battery_wh is not None
    if dev.battery_wh is not None:
        assert 1 <= dev.battery_wh <= 100
    if dev.device_class == "phone":
        assert dev.power_active_w <= 12, "a phone cannot sustain more than ~12 W"
        assert CATALOG.links[dev.default_link].cellular or dev.default_link == "wifi"
        assert dev.thermal is not None, "phones throttle: burst rate plus a thermal profile"
        assert 0.3 <= dev.thermal.sustained_fraction < 1.0 and dev.thermal.burst_s <= 1800
        assert dev.sources.get("thermal", "").strip(), f"{key}.thermal has no citation"
    if dev.thermal is not None:  # throttled, a FLOP costs less energy than at the burst clock
        assert dev.power_idle_w < dev.power_throttled_w / dev.thermal.sustained_fraction < dev.power_active_w


@pytest.mark.parametrize(("key", "link"), LINKS, ids=[k for k, _ in LINKS])
def test_link_numbers_plausible(key, link):
    for rate in (link.up_mbps, link.down_mbps):
        assert 0.05 <= rate <= 10_000, "Mbps expected"
    assert link.latency_s < 1.0, "seconds expected, not ms"
    assert link.tail_s <= 60 and link.promotion_s <= 5
    assert link.power_up_w_per_mbps <= 1.0 and link.power_down_w_per_mbps <= 1.0, "W per Mbps expected"
    for watts in (link.power_base_w, link.promotion_w, link.tail_w, link.idle_w):
        assert watts <= 10
    # total radio power at the link's own nominal rate stays within what a phone radio can draw
    assert link.power_base_w + link.power_up_w_per_mbps * link.up_mbps <= 8
    assert link.power_base_w + link.power_down_w_per_mbps * link.down_mbps <= 8
    assert link.idle_w <= max(link.tail_w, link.power_base_w) or link.idle_w == 0


def _raw_catalog() -> dict:
    return yaml.safe_load(Path(CATALOG_PATH).read_text())


def _write(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_negative_bandwidth_rejected(tmp_path):
    raw = _raw_catalog()
    key = next(iter(raw["devices"]))
    raw["devices"][key]["mem_bandwidth"] = -1.0
    with pytest.raises(ValidationError):
        load_catalog(_write(tmp_path, raw))


def test_unknown_device_key_rejected(tmp_path):
    raw = _raw_catalog()
    key = next(iter(raw["devices"]))
    raw["devices"][key]["tflops"] = 1.0
    with pytest.raises(ValidationError):
        load_catalog(_write(tmp_path, raw))


def test_unknown_link_key_and_negative_rate_rejected():
    entry = copy.deepcopy(_raw_catalog()["links"]["lte"])
    entry["name"] = "lte"
    LinkProfile.model_validate(entry)  # the unmodified entry is valid
    with pytest.raises(ValidationError):
        LinkProfile.model_validate({**entry, "uplink_mbps": 5.0})
    with pytest.raises(ValidationError):
        LinkProfile.model_validate({**entry, "up_mbps": -5.0})


def test_bad_dtype_and_idle_above_active_rejected():
    entry = copy.deepcopy(_raw_catalog()["devices"]["rpi5"])
    entry["name"] = "rpi5"
    DeviceProfile.model_validate(entry)
    with pytest.raises(ValidationError):
        DeviceProfile.model_validate({**entry, "flops": {"int8": 1e12}})
    with pytest.raises(ValidationError):
        DeviceProfile.model_validate({**entry, "power_idle_w": entry["power_active_w"] + 1})


def test_mmwave_costs_less_per_bit_than_lte_only_above_the_fitted_crossover():
    """Per downloaded bit a link draws (base + alpha x rate) / rate, so mmWave beats LTE above
    (base_mmwave - base_lte) / (alpha_lte - alpha_mmwave): (4.508 - 1.929) / (0.0141 - 0.0017)
    = 2.579 / 0.0124 = 208.0 Mbps, bases and slopes all from bench/link_power_fit.py's binned fit
    in the catalog's form (the paper's per-direction binned fits: 187)."""
    lte, mmwave = CATALOG.links["lte"], CATALOG.links["5g-mmwave"]
    crossover = (mmwave.power_base_w - lte.power_base_w) / (lte.power_down_w_per_mbps - mmwave.power_down_w_per_mbps)
    assert crossover == pytest.approx(208.0, abs=0.05)
    per_bit = lambda link, mbps: (link.power_base_w + link.power_down_w_per_mbps * mbps) / mbps  # noqa: E731
    assert per_bit(mmwave, 200.0) > per_bit(lte, 200.0) and per_bit(mmwave, 216.0) < per_bit(lte, 216.0)
    # at its own median rates mmWave costs less per bit than LTE does at LTE's: 4.508/494.4 + 0.0017
    # = 0.01082 J per Mbit against 1.929/29.0 + 0.0141 = 0.08062
    assert mmwave.down_mbps == 494.4 and mmwave.up_mbps == 71.0
    assert per_bit(mmwave, mmwave.down_mbps) == pytest.approx(0.01082, abs=1e-5)
    assert per_bit(lte, lte.down_mbps) == pytest.approx(0.08062, abs=1e-5)


def test_link_power_fit_reproduces_the_papers_crossover_and_gives_the_catalogs_numbers():
    """From the committed table (bench/data/link_power/summary.json): the paper's method, a line
    through the binned means per direction, gives its reported 187.0 Mbps; the same bins fitted with
    one base per technology give every catalog power number (its bases' differences anchored at
    LTE's walking-trace base above idle), so every proposal equals the catalog's value."""
    fit = bench_script("link_power_fit")
    table = json.loads(fit.SUMMARY.read_text())
    joint, per_direction, binned, catalog_form = fit.controlled_fits(table)
    cross = fit.crossovers(joint, per_direction, binned, catalog_form)
    assert cross["paper's method (binned means, per direction)"] == fit.REPORTED_CROSSOVER_MBPS == 187.0
    # (5.3488 - 2.7702) / (0.014078 - 0.001666) = 2.5786 / 0.012412 = 207.8
    assert cross["paper's method, catalog form (one base)"] == pytest.approx(207.8, abs=0.05)
    wild = fit.wild_fits(table)
    links = yaml.safe_load(fit.CATALOG.read_text())["links"]
    lowband = fit.lowband_throughput(table, links["lte"]["down_mbps"], links["lte"]["up_mbps"])
    props = fit.proposals(catalog_form, wild, fit.tails(table), lowband, table["speedtest"], links)
    for key, p in props.items():  # the catalog rounds rates to 0.1 Mbps, watts and slopes to the 4th decimal
        rate = key.split(".")[1] in ("up_mbps", "down_mbps")
        assert p["proposed"] == pytest.approx(p["current"], abs=0.05 if rate else 6e-4), key
    assert props["lte.power_base_w"]["proposed"] == wild[fit.LTE_ANCHOR]["beta_above_idle_w"] == 1.929


def test_lte_tmobile_is_lte_with_the_carriers_short_tail():
    lte, tmobile = CATALOG.links["lte"], CATALOG.links["lte-tmobile"]
    differ = {f for f in type(lte).model_fields if getattr(lte, f) != getattr(tmobile, f)}
    assert differ == {"name", "description", "tail_s", "sources"}
    assert tmobile.tail_s == 5.05 and lte.tail_s == 9.85
