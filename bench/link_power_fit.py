"""The cellular link numbers re-derived from the SIGCOMM'21 5G measurement artifact; per-technology
linear radio power models (P = beta + a_up * up_mbps + a_down * down_mbps, least squares) for LTE,
low-band 5G NSA and mmWave 5G NSA, their downlink crossover, the low-band NSA throughput and the
carrier-specific RRC tails, printed next to the numbers in devices/catalog.yaml's ``links:``.

Source: Narayanan et al., 'A Variegated Look at 5G in the Wild: Performance, Power, and QoE
Implications', ACM SIGCOMM 2021, artifact github.com/SIGCOMM21-5G/artifact (commit
35aaf2857550c7f4c736fe9b01e894253a777e4e). The power fits use its controlled transfers
(Data-Transfer-Power/MN-Transfer: one phone, RASPBERRY_670, on Verizon, locked to LTE, low-band NSA
or mmWave, iperf at fixed target rates, Monsoon whole-phone power, 1-s samples); the walking traces
of Power-Model/ (Verizon mmWave and low band, T-Mobile NSA, LTE and SA) are fitted the same way as a
cross-check. The catalog's power numbers come from one fit, the paper's binned method (Figure 11:
one mean per iperf target rate) in the catalog's form (one base per technology, a slope per
direction): its slopes, and its bases' differences between technologies; the whole-phone
intercepts include the rest of the phone's draw, so LTE's radio base is anchored at the walking
traces' power above the phone's idle baseline instead. The paper's own per-direction binned fits
reproduce its reported 187 Mbps downlink crossover. Tails come from RRC-Probe (round-trip time after
an idle gap: the first gap after which the reply pays an RRC_IDLE paging wait and promotion),
throughputs from NW-Perf-Speedtest.

The artifact carries no licence, so no copy of its data is committed: with the artifact at hand
(a clone, or a bare mirror) the script re-derives a table of aggregates (least-squares moments,
bin means, medians, tail boundaries) into bench/data/link_power/summary.json, with a PROVENANCE
file naming every file read (repository, commit, path, sha256); without it the fits, crossovers
and proposals are recomputed from that table. Writes bench/results/link_power_fit.json.

    python bench/link_power_fit.py [--artifact PATH] [--require-artifact]
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from edgefed.provenance import write_bench_result

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "bench/data/link_power"
SUMMARY = DATA / "summary.json"
RESULT = REPO / "bench/results/link_power_fit.json"
CATALOG = REPO / "devices/catalog.yaml"
ARTIFACT_REPO = "https://github.com/SIGCOMM21-5G/artifact"
ARTIFACT_COMMIT = "35aaf2857550c7f4c736fe9b01e894253a777e4e"
DEFAULT_ARTIFACT = Path(os.environ.get("EDGEFED_5G_ARTIFACT", "/work/.mirror/SIGCOMM21-5G+artifact/repo"))

CONTROLLED = "Data-Transfer-Power/MN-Transfer/data-processed/MN-Transfer_combined.csv"
WILD_VERIZON = {  # name -> path (Power-Model/MI-Wild's merged traces: Ann Arbor "mi", Minneapolis "mn")
    "Verizon mmWave, Ann Arbor (walking)": "Power-Model/MI-Wild/data-processed/mi-vz-hb_combined.csv",
    "Verizon mmWave, Minneapolis (walking)": "Power-Model/MI-Wild/data-processed/mn-vz-hb_combined.csv",
    "Verizon low-band NSA, Minneapolis (walking)": "Power-Model/MI-Wild/data-processed/mn-vz-lb_combined.csv",
}
WILD_TMOBILE = {"nsa": "Power-Model/MN-Wild/data-processed/cleaned-logs/s20_t-mobile_nsa_all.csv",
                "sa": "Power-Model/MN-Wild/data-processed/cleaned-logs/s20_t-mobile_sa_all.csv"}
PROBES = {  # carrier, technology -> RRC-Probe file
    "Verizon LTE": "RRC-Probe/data/S20US_162_Verizon_4G.csv",
    "Verizon low-band NSA (phone A)": "RRC-Probe/data/RASPBERRY_670_Verizon_NSAlow.csv",
    "Verizon low-band NSA (phone B)": "RRC-Probe/data/SALMONBERRY_299_Verizon_NSAlow.csv",
    "Verizon mmWave NSA": "RRC-Probe/data/SALMONBERRY_299_Verizon_NSAmmwave.csv",
    "T-Mobile LTE": "RRC-Probe/data/SALMONBERRY_299_TMobile_4G.csv",
    "T-Mobile low-band NSA": "RRC-Probe/data/RASPBERRY_670_TMobile_NSA.csv",
    "T-Mobile low-band SA": "RRC-Probe/data/S20US_TMobile_SA.csv",
}
SPEEDTEST = "NW-Perf-Speedtest/dataset_speedtest_ookla_full.csv"

TECHS = {"LTE": "LTE", "NSALow": "low-band NSA", "mmwave": "mmWave NSA"}  # artifact label -> ours
# The paper's Figure 11 method, re-implemented: per direction, the mean of the 1-s samples whose
# throughput lies within +-half-width of an iperf target rate, one point per target, a line through
# the points (targets and half-widths as the artifact's plotting script chose them; LTE downlink
# only up to 50 Mbps, where the cell still delivered the target).
PAPER_BINS = {
    ("LTE", "downlink"): ([1, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50], lambda t: 1.5),
    ("LTE", "uplink"): ([1, 5, 10, 15, 20, 25, 30, 35, 40], lambda t: 1.0),
    ("NSALow", "downlink"): ([1, 10, 30, 50, 100, 150, 200, 250], lambda t: 1.0),
    ("NSALow", "uplink"): ([1, 10, 20, 30, 40], lambda t: 0.5),
    ("mmwave", "downlink"): ([1, 50, 100, 130, 200, 400, 600, 800, 1000, 1200, 1400, 1600, 1800, 2000, 2200,
                              2400], lambda t: 4.0 if t <= 200 else 20.0),
    ("mmwave", "uplink"): (list(range(10, 200, 10)) + [1], lambda t: 1.0),
}
IDLE_RTT_MS = 450.0  # above the connected-state DRX round trip (<= ~410 ms in every probe)
PAGING_CYCLE_S = 1.28  # the RRC_IDLE paging cycle that the idle round trips saw-tooth over
HUANG_LTE_BETA_W = 1.28804  # Huang et al. MobiSys 2012, Table 3: LTE beta = 1288.04 mW (the catalog's until issue 40)
LTE_ANCHOR = "T-Mobile LTE, Minneapolis (walking)"  # the one LTE walking fit: LTE's base above idle
SA_WILD = "T-Mobile low-band SA, Minneapolis (walking)"
MMWAVE_SPEEDTEST = "Verizon 5G-NSA-mmWave single"  # one TCP connection, as an FL client's transfer
REPORTED_CROSSOVER_MBPS = 187.0  # Narayanan et al. 2021, Figure 11 (mmWave vs LTE downlink)


# --- reading the artifact ------------------------------------------------------------------------

class Artifact:
    """The artifact's files at ARTIFACT_COMMIT, from a bare mirror or a clone (``git show``), or
    from a plain copy of its tree; each file's sha256 is kept for PROVENANCE."""

    def __init__(self, root: Path):
        self.root, self.read_files = root, {}
        self.git = (root / "HEAD").is_file() and (root / "objects").is_dir() or (root / ".git").exists()

    def available(self) -> bool:
        if not self.root.exists():
            return False
        return self._blob(CONTROLLED) is not None if self.git else (self.root / CONTROLLED).is_file()

    def _blob(self, path: str) -> bytes | None:
        flag = "--git-dir" if (self.root / "HEAD").is_file() else "-C"
        done = subprocess.run(["git", flag, str(self.root), "show", f"{ARTIFACT_COMMIT}:{path}"],
                              capture_output=True, timeout=120)
        return done.stdout if done.returncode == 0 else None

    def csv(self, path: str) -> pd.DataFrame:
        raw = self._blob(path) if self.git else (self.root / path).read_bytes()
        if raw is None:
            sys.exit(f"link_power_fit: {path} at commit {ARTIFACT_COMMIT} not found under {self.root}")
        self.read_files[path] = {"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}
        return pd.read_csv(io.BytesIO(raw))


# --- least squares from moments ------------------------------------------------------------------

def moments(*columns) -> list[list[float]]:
    """Z'Z for Z = [1, columns...]: every linear fit of one column on a subset of the others (and
    its residuals) follows from it, so the committed table holds no sample."""
    z = np.column_stack([np.ones(len(columns[0]))] + [np.asarray(c, dtype=float) for c in columns])
    return (z.T @ z).tolist()


def solve(m, regressors: list[int], target: int) -> dict:
    """Least squares of column ``target`` on ``regressors`` (0 = the intercept) from moments ``m``:
    coefficients, RMSE and R^2 (the normal equations; SSE = y'y - b'X'y)."""
    m = np.asarray(m)
    xx, xy = m[np.ix_(regressors, regressors)], m[regressors, target]
    coef = np.linalg.solve(xx, xy)
    n, sy, syy = m[0, 0], m[0, target], m[target, target]
    sse = max(syy - coef @ xy, 0.0)
    return {"coef": coef.tolist(), "rmse_w": float(np.sqrt(sse / n)), "r2": float(1 - sse / (syy - sy * sy / n)),
            "n": int(round(n))}


def model(fit: dict, names: list[str]) -> dict:
    """One fit as a flat record: beta in W, slopes in W per Mbps."""
    out = {"beta_w": round(fit["coef"][0], 4)}
    out.update({name: round(c, 6) for name, c in zip(names, fit["coef"][1:])})
    out.update({"rmse_w": round(fit["rmse_w"], 4), "r2": round(fit["r2"], 3), "n": fit["n"]})
    return out


# --- extraction: artifact -> derived table -------------------------------------------------------

def controlled_table(art: Artifact) -> dict:
    """Per technology and direction: moments of [up, down, power_W], the absolute residuals of the
    joint fit, and the paper-method bin means."""
    d = art.csv(CONTROLLED)
    d = d[d["provider"] == "Verizon"]
    d = d.assign(P=d["avg_power"] / 1000.0, up=np.where(d["direction"] == "uplink", d["throughput"], 0.0),
                 down=np.where(d["direction"] == "downlink", d["throughput"], 0.0))
    out = {}
    for tech in TECHS:
        t = d[d["network type"] == tech]
        joint = solve(moments(t["up"], t["down"], t["P"]), [0, 1, 2], 3)
        resid = np.abs(t["P"] - np.column_stack([np.ones(len(t)), t["up"], t["down"]]) @ joint["coef"])
        groups = {}
        for direction in ("downlink", "uplink"):
            g = t[t["direction"] == direction]
            groups[direction] = {"moments": moments(g["up"], g["down"], g["P"]),
                                 "paper_bins": paper_bins(g, *PAPER_BINS[(tech, direction)])}
        out[tech] = {"by_direction": groups, "joint_abs_residual_w": {
            "p50": float(np.percentile(resid, 50)), "p90": float(np.percentile(resid, 90))}}
    return out


def paper_bins(g: pd.DataFrame, targets: list[float], half_width) -> list[dict]:
    """Mean throughput and power of the samples in (target - w, target + w] (the lowest bin
    closed), one point per non-empty bin, in target order."""
    points = []
    for i, target in enumerate(sorted(targets)):
        w = half_width(target)
        low = g["throughput"] >= target - w if i == 0 else g["throughput"] > target - w
        s = g[low & (g["throughput"] <= target + w)]
        if len(s):
            points.append({"target_mbps": target, "mbps": float(s["throughput"].mean()),
                           "power_w": float(s["P"].mean()), "n": int(len(s))})
    return points


def wild_table(art: Artifact) -> dict:
    """Walking traces: moments of [up, down, whole-phone W, W above the run's idle baseline]."""
    out = {}
    for name, path in WILD_VERIZON.items():
        w = art.csv(path)
        w = w[w["nrStatus"] == "CONNECTED"]  # the NR leg up (a handful of LTE-only seconds left out)
        out[name] = moments(w["uplink_Mbps"], w["downlink_Mbps"], w["hardware_power_full"] / 1000,
                            w["hardware_power"] / 1000)
    for kind, path in WILD_TMOBILE.items():
        w = art.csv(path)
        for status, label in (("CONNECTED", "NSA" if kind == "nsa" else "SA"), ("NOT_RESTRICTED", "LTE")):
            s = w[w["nrStatus"] == status]
            if len(s) > 10:
                out[f"T-Mobile low-band {label}, Minneapolis (walking)" if label != "LTE"
                    else "T-Mobile LTE, Minneapolis (walking)"] = moments(
                    s["uplink_mbps"], s["downlink_mbps"], s["avg_power"] / 1000, s["avg_power_baseline"] / 1000)
    return out


def probe_table(art: Artifact) -> dict:
    """Per probe: the median round trip at each idle gap (kept probes only), summarised."""
    out = {}
    for name, path in PROBES.items():
        p = art.csv(path)
        p = p[p["KeepOrDrop"] == "YEP"].assign(rtt=lambda f: (f["RTT1"] + f["RTT2"]) / 2)
        out[name] = probe_summary(p)
    return out


def probe_summary(p: pd.DataFrame) -> dict:
    """The first idle gap whose median round trip shows the RRC_IDLE paging wait (> IDLE_RTT_MS),
    the gap before it, the share of gaps that look idle over the two paging cycles after it (below
    1: some replies still came fast, a mixed demotion), the connected round trip (gap 0) and the
    fastest reply once settled idle (promotion + round trip, the paging wait near 0)."""
    med = p.groupby("interval")["rtt"].median().sort_index()
    gaps, idle = med.index.to_numpy(), (med > IDLE_RTT_MS).to_numpy()
    if not idle.any():
        return {"first_idle_s": None, "n": int(len(p))}
    first = int(np.argmax(idle))
    after = idle[(gaps >= gaps[first]) & (gaps < gaps[first] + 2 * PAGING_CYCLE_S)]
    settled = p[p["interval"] >= gaps[first] + PAGING_CYCLE_S]
    return {"first_idle_s": round(float(gaps[first]), 2), "last_connected_s": round(float(gaps[first - 1]), 2),
            "idle_fraction_2_cycles": round(float(after.mean()), 2), "connected_rtt_ms": float(med.iloc[0]),
            "settled_min_rtt_ms": float(settled["rtt"].min()), "n": int(len(p))}


def speedtest_table(art: Artifact) -> dict:
    """Median throughputs per carrier, radio type and connection mode."""
    s = art.csv(SPEEDTEST)
    out = {}
    for (carrier, radio, mode), g in s.groupby(["carrier", "radio_type", "connection_mode"]):
        out[f"{carrier} {radio} {mode}"] = {
            "carrier": carrier, "radio_type": radio, "connection_mode": mode, "n": int(len(g)),
            "down_median_mbps": float(g["downlink_Mbps"].median()), "up_median_mbps": float(g["uplink_Mbps"].median())}
    for radio, g in s[s["connection_mode"] == "multi"].groupby("radio_type"):
        out[f"all carriers {radio} multi"] = {
            "carrier": "all", "radio_type": radio, "connection_mode": "multi", "n": int(len(g)),
            "down_median_mbps": float(g["downlink_Mbps"].median()), "up_median_mbps": float(g["uplink_Mbps"].median())}
    return out


def extract(art: Artifact) -> dict:
    table = {"artifact": {"repo": ARTIFACT_REPO, "commit": ARTIFACT_COMMIT},
             "controlled": controlled_table(art), "wild": wild_table(art), "probes": probe_table(art),
             "speedtest": speedtest_table(art)}
    table["artifact"]["files"] = dict(sorted(art.read_files.items()))
    return table


def write_table(table: dict) -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    SUMMARY.write_text(json.dumps(table, indent=1) + "\n")
    lines = ["# bench/data/link_power: provenance", "",
             "summary.json is a table of aggregates derived by bench/link_power_fit.py from the files",
             "below (least-squares moments Z'Z of [1, up Mbps, down Mbps, power W], bin means, medians,",
             "RRC tail boundaries). It holds no sample of the artifact's data.", "",
             f"- repository: {ARTIFACT_REPO}", f"- commit: {ARTIFACT_COMMIT}",
             "- paper: A. Narayanan, X. Zhang, R. Zhu, A. Hassan, S. Jin, X. Zhu, X. Zhang, D. Rybkin, "
             "Z. Yang, Z. M. Mao, F. Qian, Z.-L. Zhang, 'A Variegated Look at 5G in the Wild: Performance, "
             "Power, and QoE Implications', ACM SIGCOMM 2021, doi:10.1145/3452296.3472923", "",
             "## Licence", "",
             "The artifact repository has no LICENSE file (none at its root or beside these data; the",
             "MIT LICENSE files under Video-Streaming/ cover third-party player code only). With no",
             "licence granted, no copy of its data files is committed here: only the derived figures",
             "in summary.json, each traceable to the files below, with the paper cited.", "",
             "## Files read (path at the commit above, sha256 of its bytes, size)", ""]
    lines += [f"- {path}  sha256 {f['sha256']}  {f['bytes']} bytes" for path, f in table["artifact"]["files"].items()]
    (DATA / "PROVENANCE").write_text("\n".join(lines) + "\n")


# --- figures from the table ----------------------------------------------------------------------

def controlled_fits(table: dict) -> tuple[dict, dict, dict, dict]:
    """The joint fit over all 1-s samples (one beta for both directions, the catalog's form), the
    per-direction fits (each its own intercept), the paper-method binned fits per direction, and the
    binned means of both directions in the catalog's form (the catalog's numbers), per technology."""
    joint, per_direction, binned, binned_joint = {}, {}, {}, {}
    for tech, label in TECHS.items():
        rec = table["controlled"][tech]
        m = np.add(rec["by_direction"]["downlink"]["moments"], rec["by_direction"]["uplink"]["moments"])
        joint[label] = model(solve(m, [0, 1, 2], 3), ["a_up_w_per_mbps", "a_down_w_per_mbps"])
        joint[label].update({f"abs_residual_{k}_w": round(v, 4) for k, v in rec["joint_abs_residual_w"].items()})
        for direction, col in (("downlink", 2), ("uplink", 1)):
            group = rec["by_direction"][direction]
            per_direction[f"{label} {direction}"] = model(solve(group["moments"], [0, col], 3), ["a_w_per_mbps"])
            pts = group["paper_bins"]
            slope, beta = np.polyfit([p["mbps"] for p in pts], [p["power_w"] for p in pts], 1)
            binned[f"{label} {direction}"] = {"beta_w": round(float(beta), 4), "a_w_per_mbps": round(float(slope), 6),
                                              "bins": len(pts), "n": sum(p["n"] for p in pts)}
        binned_joint[label] = binned_catalog_form(rec["by_direction"])
    return joint, per_direction, binned, binned_joint


def binned_catalog_form(by_direction: dict) -> dict:
    """Least squares of the bin mean powers on [1, up, down] over both directions' bins (an
    uplink bin's point has down = 0 and vice versa): one base, a slope per direction."""
    rows, power, n = [], [], 0
    for direction in ("uplink", "downlink"):
        for p in by_direction[direction]["paper_bins"]:
            rows.append([1.0, p["mbps"], 0.0] if direction == "uplink" else [1.0, 0.0, p["mbps"]])
            power.append(p["power_w"])
            n += p["n"]
    coef = np.linalg.lstsq(np.array(rows), np.array(power), rcond=None)[0]
    return {"beta_w": round(float(coef[0]), 4), "a_up_w_per_mbps": round(float(coef[1]), 6),
            "a_down_w_per_mbps": round(float(coef[2]), 6), "bins": len(rows), "n": n}


def crossover(beta_hi: float, a_hi: float, beta_lo: float, a_lo: float) -> float | None:
    """The throughput above which the high-base, low-slope technology draws less power (and so
    spends less energy per bit at the same rate)."""
    return round((beta_hi - beta_lo) / (a_lo - a_hi), 1) if a_lo > a_hi else None


def crossovers(joint: dict, per_direction: dict, binned: dict, binned_joint: dict) -> dict:
    def pair(fits, hi, lo, a="a_w_per_mbps"):
        return crossover(fits[hi]["beta_w"], fits[hi][a], fits[lo]["beta_w"], fits[lo][a])
    out = {"paper's method (binned means, per direction)": pair(binned, "mmWave NSA downlink", "LTE downlink"),
           "paper's method, catalog form (one base)": pair(binned_joint, "mmWave NSA", "LTE", "a_down_w_per_mbps"),
           "all 1-s samples, per direction": pair(per_direction, "mmWave NSA downlink", "LTE downlink"),
           "all 1-s samples, joint (catalog form)": pair(joint, "mmWave NSA", "LTE", "a_down_w_per_mbps"),
           "reported by the paper": REPORTED_CROSSOVER_MBPS}
    out["uplink, paper's method"] = pair(binned, "mmWave NSA uplink", "LTE uplink")
    out["uplink, paper's method, catalog form"] = pair(binned_joint, "mmWave NSA", "LTE", "a_up_w_per_mbps")
    out["uplink, joint (catalog form)"] = pair(joint, "mmWave NSA", "LTE", "a_up_w_per_mbps")
    return out


def wild_fits(table: dict) -> dict:
    out = {}
    for name, m in table["wild"].items():
        whole = solve(m, [0, 1, 2], 3)
        above = solve(m, [0, 1, 2], 4)
        out[name] = {"beta_whole_phone_w": round(whole["coef"][0], 3),
                     "beta_above_idle_w": round(above["coef"][0], 3),
                     "a_up_w_per_mbps": round(above["coef"][1], 5), "a_down_w_per_mbps": round(above["coef"][2], 5),
                     "rmse_w": round(above["rmse_w"], 3), "r2": round(above["r2"], 3), "n": above["n"]}
    return out


def tails(table: dict) -> dict:
    """Tail = the midpoint of the last connected and the first idle gap (0.1 s apart); promotion =
    the fastest settled-idle reply less the connected round trip, only where the demotion is clean
    (at least 80% of gaps idle-looking over two paging cycles)."""
    out = {}
    for name, p in table["probes"].items():
        if p.get("first_idle_s") is None:
            out[name] = {"tail_s": None, "n": p["n"]}
            continue
        clean = p["idle_fraction_2_cycles"] >= 0.8
        out[name] = {"tail_s": round((p["last_connected_s"] + p["first_idle_s"]) / 2, 2),
                     "last_connected_s": p["last_connected_s"], "first_idle_s": p["first_idle_s"],
                     "idle_fraction_2_cycles": p["idle_fraction_2_cycles"],
                     "promotion_s": (round((p["settled_min_rtt_ms"] - p["connected_rtt_ms"]) / 1000, 3)
                                     if clean else None),
                     "n": p["n"]}
    return out


def lowband_throughput(table: dict, lte_down: float, lte_up: float) -> dict:
    """Low-band NSA against LTE in the same campaign (Minneapolis, Jan 2021, multi-connection
    Speedtest; LTE measured on Verizon only), and that ratio applied to the catalog's LTE medians."""
    s = table["speedtest"]
    lte = s["Verizon 4G-LTE multi"]
    out = {}
    for key in ("all carriers 5G-NSA-Low-Band multi", "Verizon 5G-NSA-Low-Band multi", "TMobile 5G-NSA-Low-Band multi",
                "TMobile 5G-SA-Low-Band multi", "Verizon 4G-LTE multi"):
        r = s[key]
        rd, ru = r["down_median_mbps"] / lte["down_median_mbps"], r["up_median_mbps"] / lte["up_median_mbps"]
        out[key] = {"n": r["n"], "down_median_mbps": round(r["down_median_mbps"], 1),
                    "up_median_mbps": round(r["up_median_mbps"], 1), "ratio_to_lte_down": round(rd, 3),
                    "ratio_to_lte_up": round(ru, 3), "scaled_down_mbps": round(lte_down * rd, 1),
                    "scaled_up_mbps": round(lte_up * ru, 1)}
    return out


# --- proposals for devices/catalog.yaml ----------------------------------------------------------

ARTIFACT_CITE = "Narayanan et al., SIGCOMM 2021 (artifact github.com/SIGCOMM21-5G/artifact"


def lte_base_candidates(fit: dict, wild: dict) -> dict:
    """LTE's radio base (W above the phone's idle draw) by each source: Huang et al. 2012; the LTE
    walking trace's fit above idle (the catalog's); and each NSA walking trace's fit above idle less
    the NSA - LTE base difference of the catalog's fit (a cross-check from other phones and carriers)."""
    out = {"Huang et al. MobiSys 2012 (2012 phone)": HUANG_LTE_BETA_W,
           f"{LTE_ANCHOR}, above idle": wild[LTE_ANCHOR]["beta_above_idle_w"]}
    for name, w in wild.items():
        label = "mmWave NSA" if "mmWave" in name else "low-band NSA" if "NSA" in name else None
        if label:
            out[f"{name}, above idle, less {label} - LTE"] = round(
                w["beta_above_idle_w"] - (fit[label]["beta_w"] - fit["LTE"]["beta_w"]), 3)
    return out


def proposals(fit: dict, wild: dict, tail: dict, lowband: dict, speedtest: dict, links: dict) -> dict:
    """Field -> current catalog value, proposed value, its source, and whether the change is
    optional. Every power number comes from ``fit`` (the paper's binned method in the catalog's
    form), its bases anchored at LTE's walking-trace base above idle."""
    lte, nsa, mmw = fit["LTE"], fit["low-band NSA"], fit["mmWave NSA"]
    anchor = wild[LTE_ANCHOR]["beta_above_idle_w"]
    fit_src = (f"{ARTIFACT_CITE}, Data-Transfer-Power/MN-Transfer: phone RASPBERRY_670 on Verizon, {{}}; the paper's "
               "binned method (one mean per iperf target rate) fitted in the catalog's form, one base and a slope "
               "per direction, bench/link_power_fit.py)")
    anchor_src = (f"{ARTIFACT_CITE}, Power-Model/MN-Wild, Galaxy S20 on T-Mobile, walking: the intercept of power "
                  "above the phone's idle baseline against up and down Mbps over the {} seconds, "
                  "bench/link_power_fit.py)")
    base_src = (f"LTE's base {anchor:.3f} W (the artifact's LTE walking fit above idle, see lte) plus the {{}} base "
                "above LTE's on the same phone, {:+.3f} W (Narayanan et al., SIGCOMM 2021 artifact, "
                "Data-Transfer-Power/MN-Transfer, the paper's binned method in the catalog's form, "
                "bench/link_power_fit.py)")
    tail_src = (f"{ARTIFACT_CITE}, RRC-Probe {{}}): midpoint of the last gap answered connected and the first whose "
                "reply pays the RRC_IDLE paging wait (median RTT > 450 ms), bench/link_power_fit.py")
    mmw_rates = speedtest[MMWAVE_SPEEDTEST]
    rate_src = (f"{ARTIFACT_CITE}, NW-Perf-Speedtest): median {{}} of {mmw_rates['n']} single-connection Speedtest "
                "runs on Verizon mmWave NSA (multi-connection: {} Mbps)")
    multi = speedtest[MMWAVE_SPEEDTEST.replace("single", "multi")]
    scaled = lowband["all carriers 5G-NSA-Low-Band multi"]
    nsa_tail = float(np.median([tail[k]["tail_s"] for k in tail if "low-band NSA" in k]))
    rows = [
        ("lte", "power_base_w", anchor, anchor_src.format(f"{wild[LTE_ANCHOR]['n']} LTE"), False),
        ("lte", "tail_s", tail["Verizon LTE"]["tail_s"], tail_src.format("S20US_162_Verizon_4G.csv"), False),
        ("lte-tmobile", "tail_s", tail["T-Mobile LTE"]["tail_s"], tail_src.format("SALMONBERRY_299_TMobile_4G.csv")
         + "; a new link, every other field as `lte`", False),
        ("5g-nsa-lowband", "power_base_w", anchor + nsa["beta_w"] - lte["beta_w"],
         base_src.format("low-band NSA", nsa["beta_w"] - lte["beta_w"]), False),
        ("5g-nsa-lowband", "down_mbps", scaled["scaled_down_mbps"], lowband_source("down", scaled), False),
        ("5g-nsa-lowband", "up_mbps", scaled["scaled_up_mbps"], lowband_source("up", scaled), False),
        ("5g-nsa-lowband", "tail_s", nsa_tail, tail_src.format("Verizon (2 phones) and T-Mobile low-band NSA, median"),
         False),
        ("5g-mmwave", "power_base_w", anchor + mmw["beta_w"] - lte["beta_w"],
         base_src.format("mmWave NSA", mmw["beta_w"] - lte["beta_w"]), False),
        ("5g-mmwave", "down_mbps", mmw_rates["down_median_mbps"],
         rate_src.format("download", f"{multi['down_median_mbps']:.0f}"), False),
        ("5g-mmwave", "up_mbps", mmw_rates["up_median_mbps"],
         rate_src.format("upload", f"{multi['up_median_mbps']:.0f}"), False),
        ("5g-mmwave", "tail_s", tail["Verizon mmWave NSA"]["tail_s"],
         tail_src.format("SALMONBERRY_299_Verizon_NSAmmwave.csv"), False),
        ("5g-sa", "power_base_w", wild[SA_WILD]["beta_above_idle_w"],
         anchor_src.format(f"{wild[SA_WILD]['n']} low-band SA"), False),
        ("5g-sa", "tail_s", tail["T-Mobile low-band SA"]["tail_s"], tail_src.format("S20US_TMobile_SA.csv"), True),
    ]
    for link, label, f in (("lte", "LTE", lte), ("5g-nsa-lowband", "low-band NSA", nsa),
                           ("5g-mmwave", "mmWave NSA", mmw)):
        rows += [(link, "power_up_w_per_mbps", f["a_up_w_per_mbps"], fit_src.format(label), False),
                 (link, "power_down_w_per_mbps", f["a_down_w_per_mbps"], fit_src.format(label), False)]
    out = {}
    for link, field, value, source, optional in rows:
        current = (links.get(link) or {}).get(field)
        out[f"{link}.{field}"] = {"current": current, "proposed": round(float(value), 4), "optional": optional,
                                  "source": source}
    return out


def fitted_ranges(table: dict) -> dict:
    """Per technology and direction, the lowest and highest binned mean throughput (Mbps, to 0.1)
    that its power line is fitted through: the rates where the link power model is measured. The
    simulator charges radio power at a rate clamped to this range (``LinkProfile.power_fit_*_mbps``)."""
    out = {}
    for tech, ours in TECHS.items():
        groups = table["controlled"][tech]["by_direction"]
        out[ours] = {}
        for short, d in (("up", "uplink"), ("down", "downlink")):
            rates = [p["mbps"] for p in groups[d]["paper_bins"]]
            out[ours][short] = [round(min(rates), 1), round(max(rates), 1)]
    return out


def lowband_source(direction: str, r: dict) -> str:
    word = "download" if direction == "down" else "upload"
    return (f"ESTIMATE: the catalog's LTE median {word} (Ookla US mobile Q2 2020) x the low-band NSA / LTE ratio of "
            f"median {word}s, {r[f'ratio_to_lte_{direction}']:.3f}, in {ARTIFACT_CITE}, NW-Perf-Speedtest: "
            "Minneapolis Jan 2021, multi-connection tests, low-band NSA on Verizon and T-Mobile, LTE on Verizon; "
            f"low-band NSA median {r[f'{direction}_median_mbps']:.0f} Mbps there, a best case near the servers)")


def proposed_crossover(props: dict) -> float | None:
    """The downlink crossover the catalog gives with the proposed bases and slopes."""
    def get(key):
        return props[key]["proposed"]
    return crossover(get("5g-mmwave.power_base_w"), get("5g-mmwave.power_down_w_per_mbps"),
                     get("lte.power_base_w"), get("lte.power_down_w_per_mbps"))


# --- run -----------------------------------------------------------------------------------------

def load_table(args) -> tuple[dict, str]:
    art = Artifact(Path(args.artifact))
    if art.available():
        table = extract(art)
        if SUMMARY.is_file():
            old = json.loads(SUMMARY.read_text())["artifact"].get("files", {})
            changed = [p for p, f in table["artifact"]["files"].items() if old.get(p, f) != f]
            if changed:
                print(f"note: {len(changed)} artifact files differ from the committed summary's: {changed}")
        write_table(table)
        return table, f"artifact at {art.root} (commit {ARTIFACT_COMMIT[:12]}); table rewritten"
    if args.require_artifact or not SUMMARY.is_file():
        what = "" if args.require_artifact else f", nor the derived table {SUMMARY.relative_to(REPO)}"
        print(f"link_power_fit: the SIGCOMM'21 5G artifact is not at {art.root}{what}; clone {ARTIFACT_REPO}, check "
              f"out {ARTIFACT_COMMIT} and pass --artifact PATH (or set EDGEFED_5G_ARTIFACT)", file=sys.stderr)
        sys.exit(2)
    return json.loads(SUMMARY.read_text()), f"derived table {SUMMARY.relative_to(REPO)} (artifact not found)"


def show(title: str, rows: dict, columns: list[str]) -> None:
    print(f"\n{title}")
    width = max(len(k) for k in rows) + 2
    print(" " * width + "".join(f"{c[:18]:>20}" for c in columns))
    for name, r in rows.items():
        cells = [r.get(c) for c in columns]
        print(f"{name:<{width}}" + "".join(f"{'-' if v is None else (f'{v:.6g}' if isinstance(v, float) else v):>20}"
                                         for v in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", default=str(DEFAULT_ARTIFACT),
                        help="a clone or bare mirror of the artifact, or a copy of its tree")
    parser.add_argument("--require-artifact", action="store_true", help="exit 2 when the artifact is not found")
    args = parser.parse_args()
    table, source = load_table(args)
    print(f"source: {source}")
    links = yaml.safe_load(CATALOG.read_text()).get("links", {})
    joint, per_direction, binned, binned_joint = controlled_fits(table)
    cross = crossovers(joint, per_direction, binned, binned_joint)
    tail = tails(table)
    wild = wild_fits(table)
    lowband = lowband_throughput(table, links["lte"]["down_mbps"], links["lte"]["up_mbps"])
    props = proposals(binned_joint, wild, tail, lowband, table["speedtest"], links)
    anchors = lte_base_candidates(binned_joint, wild)
    cross["proposed catalog numbers"] = proposed_crossover(props)
    cross["current catalog numbers"] = crossover(
        links["5g-mmwave"]["power_base_w"], links["5g-mmwave"]["power_down_w_per_mbps"],
        links["lte"]["power_base_w"], links["lte"]["power_down_w_per_mbps"])
    show("Joint fits, controlled transfers (W; W per Mbps)", joint,
         ["beta_w", "a_up_w_per_mbps", "a_down_w_per_mbps", "rmse_w", "abs_residual_p50_w", "r2", "n"])
    show("Per-direction fits, all 1-s samples", per_direction, ["beta_w", "a_w_per_mbps", "rmse_w", "r2", "n"])
    show("Paper's method: binned means per target rate", binned, ["beta_w", "a_w_per_mbps", "bins", "n"])
    show("Paper's method in the catalog's form (one base; the catalog's numbers)", binned_joint,
         ["beta_w", "a_up_w_per_mbps", "a_down_w_per_mbps", "bins", "n"])
    show("Walking traces (cross-check; beta above the run's idle baseline)", wild,
         ["beta_whole_phone_w", "beta_above_idle_w", "a_up_w_per_mbps", "a_down_w_per_mbps", "r2", "n"])
    print("\nmmWave vs LTE crossover (Mbps):")
    for k, v in cross.items():
        print(f"  {k:<48}{v}")
    print("\nLTE's radio base above idle (W), by source:")
    for k, v in anchors.items():
        print(f"  {k:<80}{v}")
    show("RRC tails (s) from RRC-Probe", tail,
         ["tail_s", "last_connected_s", "first_idle_s", "idle_fraction_2_cycles", "promotion_s", "n"])
    show("Speedtest medians (Mbps) and the LTE-ratio scaling", lowband,
         ["n", "down_median_mbps", "up_median_mbps", "scaled_down_mbps", "scaled_up_mbps"])
    print("\nProposed catalog numbers:")
    for key, p in props.items():
        flag = "(optional) " if p["optional"] else ""
        print(f"  {key:<38}{str(p['current']):>10} -> {p['proposed']:<10} {flag}{p['source'][:100]}")
    ranges = fitted_ranges(table)
    print("\nFitted rate ranges of the power lines (Mbps; power is charged at rates clamped to them):")
    for k, v in ranges.items():
        print(f"  {k:<16} up {v['up']}  down {v['down']}")
    write_bench_result(RESULT, {
        "source": source, "artifact": {"repo": ARTIFACT_REPO, "commit": ARTIFACT_COMMIT},
        "fits_joint": joint, "fits_per_direction": per_direction, "fits_paper_binned": binned,
        "fits_paper_binned_catalog_form": binned_joint, "fits_walking": wild, "lte_base_candidates_w": anchors,
        "crossover_mbps": cross, "tails": tail, "lowband_throughput": lowband, "proposed": props,
        "fitted_range_mbps": ranges}, __file__)
    print(f"\nwrote {RESULT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
