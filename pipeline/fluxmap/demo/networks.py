"""Site observation files of the demo world in the raw formats of SRDB, COSORE and FLUXNET2015.

Called by :func:`fluxmap.demo.build_world` (through :func:`fluxmap.demo.sites._write_sites`);
every value derives from the world's noise-free truth at the site's cell plus seeded
site effects and observation noise, so later stages can measure how well they recover it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fluxmap.config import DemoConfig
from fluxmap.science import products

_UMOL = products.UMOL_CO2_M2_S_TO_G_C_M2_D

# The SRDB v5 column order (srdb-data.csv, github bpbond/srdb, v20200511a).
SRDB_COLUMNS = (
    "Record_number,Entry_date,Study_number,Author,Duplicate_record,Quality_flag,Contributor,Country,"
    "Region,Site_name,Site_ID,Study_midyear,YearsOfData,Latitude,Longitude,Elevation,Manipulation,"
    "Manipulation_level,Age_ecosystem,Age_disturbance,Species,Biome,Ecosystem_type,Ecosystem_state,"
    "Leaf_habit,Stage,Soil_type,Soil_drainage,Soil_BD,Soil_CN,Soil_sand,Soil_silt,Soil_clay,MAT,MAP,PET,"
    "Study_temp,Study_precip,Meas_method,Collar_height,Collar_depth,Chamber_area,Time_of_day,"
    "Meas_interval,Annual_coverage,Partition_method,Rs_annual,Rs_annual_err,Rs_interann_err,"
    "Rlitter_annual,Ra_annual,Rh_annual,RC_annual,Rs_spring,Rs_summer,Rs_autumn,Rs_winter,"
    "Rs_growingseason,Rs_wet,Rs_dry,RC_seasonal,RC_season,GPP,ER,NEP,NPP,ANPP,BNPP,NPP_FR,TBCA,"
    "Litter_flux,Rootlitter_flux,TotDet_flux,Ndep,LAI,BA,C_veg_total,C_AG,C_BG,C_CR,C_FR,C_litter,"
    "C_soilmineral,C_soildepth,Notes"
).split(",")

_ECOSYSTEM = {
    1: "Forest",
    2: "Forest",
    3: "Forest",
    4: "Forest",
    5: "Forest",
    6: "Shrubland",
    7: "Shrubland",
    8: "Savanna",
    9: "Savanna",
    10: "Grassland",
    11: "Wetland",
    12: "Agriculture",
    13: "Urban",
    14: "Agriculture",
    16: "Desert",
}
_BIOME = {1: "Boreal", 2: "Arid", 3: "Temperate", 4: "Tropical"}
_COSORE_IGBP = {
    1: "Evergreen needleleaf forest",
    2: "Evergreen broadleaf forest",
    3: "Deciduous needleleaf forest",
    4: "Deciduous broadleaf forest",
    5: "Mixed forests",
    6: "Closed shrublands",
    7: "Open shrublands",
    8: "Woody savannas",
    9: "Savannas",
    10: "Grasslands",
    11: "Wetland",
    12: "Croplands",
    13: "Urban and built-up lands",
    14: "Cropland/natural vegetation mosaics",
    16: "Barren",
}


@dataclass(frozen=True)
class DailySeries:
    """The sites' daily truth for the chamber and tower writers."""

    table: pd.DataFrame
    """One row per site (``network``, ``site_id``, location, ...)."""
    series: dict[str, np.ndarray]
    """Per flux, the (site, period) truth."""
    days: pd.DatetimeIndex
    """Every day of the world's years."""
    pod: np.ndarray
    """Index of the 8-day period each day falls in."""


def _annual(series: np.ndarray, starts: pd.DatetimeIndex, ndays: np.ndarray, year: int) -> np.ndarray:
    """Annual sum (g C m-2 yr-1) of per-period daily means for every site."""
    sel = np.asarray(starts.year == year)
    return (series[:, sel] * ndays[sel]).sum(axis=1)


# --- SRDB: annual records -----------------------------------------------------------------------

# Records the SRDB selection rules must remove, one reason each, as in the real file:
# (field, value), or a special defect (Rh above Rs, duplicate of another record).
_SRDB_DEFECTS: list[tuple[str, str | None]] = [
    ("Manipulation", "N fertilization"),
    ("Manipulation", "Warming"),
    ("Meas_method", "Alkali absorption"),
    ("Meas_method", "Soda lime"),
    ("Quality_flag", "Q11"),
    ("Quality_flag", "Q13"),
    ("Study_midyear", "1998.5"),
    ("Rh_gt_Rs", None),
    ("Duplicate", None),
    ("Duplicate", None),
]


def _srdb_record(
    table: pd.DataFrame, i: int | np.integer, rec: int, year: int, rs: float, rh: float | None
) -> dict[str, object]:
    """SRDB row number ``rec`` of site ``table.iloc[i]`` for ``year``; ``rh`` None when not partitioned."""
    igbp = int(table.igbp.values[i])
    row: dict[str, object] = dict.fromkeys(SRDB_COLUMNS, "")
    row.update(
        {
            "Record_number": rec,
            "Entry_date": "2020-01-15",
            "Study_number": 9000 + i,
            "Author": "Demo",
            "Contributor": "fluxmap",
            "Country": "Demo",
            "Site_name": f"demo site {table.site_id.values[i]}",
            "Site_ID": table.site_id.values[i],
            "Study_midyear": f"{year}.5",
            "YearsOfData": 1,
            "Latitude": table.lat.values[i],
            "Longitude": table.lon.values[i],
            "Manipulation": "None",
            "Biome": _BIOME[int(table.zone.values[i])],
            "Ecosystem_type": _ECOSYSTEM.get(igbp, "Other"),
            "Ecosystem_state": "Natural",
            "MAT": table.mat_c.values[i],
            "MAP": table.map_mm.values[i],
            "Meas_method": "IRGA",
            "Annual_coverage": 1,
            "Rs_annual": round(float(rs), 1),
        }
    )
    if rh is not None:
        row.update(
            {
                "Rh_annual": round(float(rh), 1),
                "Ra_annual": round(float(rs - rh), 1),
                "Partition_method": "Exclusion",
            }
        )
    return row


def _srdb_records(
    table: pd.DataFrame,
    series: dict[str, np.ndarray],
    starts: pd.DatetimeIndex,
    ndays: np.ndarray,
    rng: np.random.Generator,
) -> list[dict[str, object]]:
    """Valid SRDB records: a random subset of years per site, annual Rs (and Rh for some) with noise."""
    years = sorted(set(starts.year))
    rows: list[dict[str, object]] = []
    for i in np.flatnonzero(table.network.values == "srdb"):
        for year in rng.choice(years, size=rng.integers(1, len(years) + 1), replace=False):
            eff = table.site_effect.values[i]
            rs = _annual(series["sr"][i : i + 1], starts, ndays, int(year))[0] * eff * np.exp(rng.normal(0, 0.12))
            rh = _annual(series["rh"][i : i + 1], starts, ndays, int(year))[0] * eff * np.exp(rng.normal(0, 0.12))
            has_rh = rng.random() < 0.45
            rows.append(_srdb_record(table, i, len(rows) + 1, int(year), rs, rh if has_rh else None))
    return rows


def _srdb_defects(rows: list[dict[str, object]], rng: np.random.Generator) -> list[dict[str, object]]:
    """Copies of up to 10 random ``rows``, each with one :data:`_SRDB_DEFECTS`, numbered after ``rows``."""
    rng_bad = np.random.default_rng(rng.integers(1 << 31))
    n = len(rows)
    picks = rng_bad.choice(n, size=min(n, 10), replace=False)
    extra = []
    for rec, (k, (field, value)) in enumerate(zip(picks, _SRDB_DEFECTS), start=n + 1):
        bad = dict(rows[k])
        bad["Record_number"] = rec
        if field == "Rh_gt_Rs":
            bad["Rh_annual"] = round(float(bad["Rs_annual"]) * 1.3, 1)
            bad["Ra_annual"] = round(float(bad["Rs_annual"]) - bad["Rh_annual"], 1)
        elif field == "Duplicate":
            bad["Duplicate_record"] = rows[k]["Record_number"]
        else:
            bad[field] = value
        extra.append(bad)
    return extra


def _write_srdb(
    out: Path,
    table: pd.DataFrame,
    series: dict[str, np.ndarray],
    starts: pd.DatetimeIndex,
    ndays: np.ndarray,
    rng: np.random.Generator,
    *,
    ids_per_location: int = 1,
) -> None:
    """``srdb-data.csv``: SRDB v5 columns, valid records followed by the defective copies; with
    ``ids_per_location`` n > 1, a record of year y has Site_ID ``<site>-<(y - first year) mod n + 1>``."""
    out.mkdir(parents=True, exist_ok=True)
    rows = _srdb_records(table, series, starts, ndays, rng)
    if ids_per_location > 1:
        first = int(starts.year.min())
        for row in rows:
            year = int(float(str(row["Study_midyear"])))
            row["Site_ID"] = f"{row['Site_ID']}-{(year - first) % ids_per_location + 1}"
    extra = _srdb_defects(rows, rng)
    pd.DataFrame(rows + extra, columns=SRDB_COLUMNS).to_csv(out / "srdb-data.csv", index=False)


# --- COSORE: daily and half-hourly chamber series ------------------------------------------------


def _cosore_coverage(n: int, rng: np.random.Generator) -> np.ndarray:
    """Days a chamber dataset covers: one random span, a 20-day gap in it and 5% lost days."""
    first = int(rng.integers(0, max(1, n // 4)))
    span = int(rng.integers(n // 2, n - first + 1))
    keep = np.zeros(n, bool)
    keep[first : first + span] = True
    gap0 = int(rng.integers(first, first + span))
    keep[gap0 : gap0 + 20] = False
    keep &= rng.random(n) > 0.05
    return keep


def _cosore_summary(
    table: pd.DataFrame,
    i: int | np.integer,
    ds_name: str,
    days: pd.DatetimeIndex,
    keep: np.ndarray,
    variables: list[str],
) -> dict[str, object]:
    """The row of ``cosore_datasets_summary.csv`` describing one dataset."""
    return {
        "dataset": ds_name,
        "site": f"demo site {table.site_id.values[i]}",
        "lat": table.lat.values[i],
        "lon": table.lon.values[i],
        "elev": "",
        "igbp": _COSORE_IGBP.get(int(table.igbp.values[i]), "Other"),
        "network": "",
        "site_id": table.site_id.values[i],
        "tz": "UTC",
        "primary_pub": "",
        "data_present": True,
        "n_records": int(keep.sum()),
        "t0": str(days[keep][0]),
        "t1": str(days[keep][-1]),
        "vars": ";".join(variables),
        "treatments": ";".join(sorted({"None"} | ({"Trenched"} if "Rh" in variables else set()))),
    }


def _cosore_dataset(
    out: Path,
    cfg: DemoConfig,
    table: pd.DataFrame,
    i: int | np.integer,
    series: dict[str, np.ndarray],
    days: pd.DatetimeIndex,
    pod: np.ndarray,
    rng: np.random.Generator,
    *,
    halfhourly: bool,
) -> tuple[list[pd.DataFrame], dict[str, object]]:
    """Daily rows (Rs, and Rh for some datasets) and the summary row of site ``table.iloc[i]``.

    With ``halfhourly``, the Rs series is also written as a half-hourly file under
    ``out/halfhourly`` and its daily rows are that file's daily means.
    """
    ds_name = f"d_demo_{table.site_id.values[i]}"
    n = len(days)
    keep = _cosore_coverage(n, rng)
    eff = table.site_effect.values[i]
    tair = series["tair"][i, pod]
    swc = np.round(0.08 + 0.35 * series["moisture"][i, pod], 4)
    variables = ["Rs"] + (["Rh"] if rng.random() < 0.4 else [])
    frames = []
    for var in variables:
        truth = series["sr" if var == "Rs" else "rh"][i, pod] * eff
        daily = truth * np.exp(rng.normal(0, cfg.obs_noise, n) - cfg.obs_noise**2 / 2)
        if halfhourly and var == "Rs":
            daily = _write_cosore_halfhourly(out / "halfhourly" / f"{ds_name}.csv", days, keep, daily, tair, swc, rng)
        flux = daily / _UMOL
        frames.append(
            pd.DataFrame(
                {
                    "dataset": ds_name,
                    "date": days[keep].strftime("%Y-%m-%d"),
                    "var": var,
                    "trt": "None" if var == "Rs" else "Trenched",
                    "flux_co2_umol_m2_s": np.round(flux[keep], 4),
                    "n_obs": 48 if halfhourly else rng.integers(40, 145, keep.sum()),
                    "n_ports": 1,
                    "tsoil_C": np.round(tair[keep] * 0.8 + 2.0, 2),
                    "swc_m3m3": swc[keep],
                    "tair_C": np.round(tair[keep], 2),
                }
            )
        )
    return frames, _cosore_summary(table, i, ds_name, days, keep, variables)


def _write_cosore(out: Path, cfg: DemoConfig, daily: DailySeries, rng: np.random.Generator) -> None:
    """``cosore_daily_all.csv``, ``cosore_datasets_summary.csv`` and, for the first
    ``cfg.n_halfhourly`` datasets, half-hourly files."""
    table, series, days, pod = daily.table, daily.series, daily.days, daily.pod
    (out / "halfhourly").mkdir(parents=True, exist_ok=True)
    daily_rows: list[pd.DataFrame] = []
    summary = []
    for j, i in enumerate(np.flatnonzero(table.network.values == "cosore")):
        frames, info = _cosore_dataset(out, cfg, table, i, series, days, pod, rng, halfhourly=j < cfg.n_halfhourly)
        daily_rows.extend(frames)
        summary.append(info)
    all_daily, all_summary = pd.concat(daily_rows), pd.DataFrame(summary)
    if cfg.ids_per_location > 1:
        all_daily, all_summary = _campaign_datasets(all_daily, all_summary, cfg.ids_per_location)
    all_daily.to_csv(out / "cosore_daily_all.csv", index=False)
    all_summary.to_csv(out / "cosore_datasets_summary.csv", index=False)


def _campaign_datasets(daily: pd.DataFrame, summary: pd.DataFrame, n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each dataset split into ``n`` campaign datasets ``<dataset>-<k>`` at the same place, k = the
    n-th of the calendar year the day falls in (n = 2: January-June, July-December); the summary
    gains their rows (the whole dataset's row stays, for its half-hourly file)."""
    k = (pd.to_datetime(daily.date).dt.month - 1) * n // 12 + 1
    daily = daily.assign(dataset=daily.dataset + "-" + k.astype(str))
    spans = daily.groupby("dataset").date.agg(["min", "max", "nunique"])
    parent = summary.set_index("dataset").loc[[d.rsplit("-", 1)[0] for d in spans.index]]
    rows = parent.reset_index(drop=True).assign(
        dataset=spans.index,
        t0=spans["min"].to_numpy(),
        t1=spans["max"].to_numpy(),
        n_records=spans["nunique"].to_numpy(),
    )
    return daily, pd.concat([summary, rows[summary.columns]], ignore_index=True)


def _write_cosore_halfhourly(
    path: Path,
    days: pd.DatetimeIndex,
    keep: np.ndarray,
    daily: np.ndarray,
    tair: np.ndarray,
    swc: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """COSORE-format half-hourly chamber fluxes (umol CO2 m-2 s-1, UTC) and their daily means."""
    hours = (np.arange(48) + 0.5) / 2.0
    diurnal = 1.0 + 0.3 * np.cos(2 * np.pi * (hours - 15.0) / 24.0)
    diurnal /= diurnal.mean()
    d = np.flatnonzero(keep)
    values = daily[d, None] * diurnal[None, :] * np.exp(rng.normal(0, 0.05, (len(d), 48)))
    begin = days.values[d, None] + (np.arange(48) * np.timedelta64(30, "m"))[None, :]
    pd.DataFrame(
        {
            "CSR_TIMESTAMP_BEGIN": pd.DatetimeIndex(begin.ravel()).strftime("%Y-%m-%d %H:%M:%S"),
            "CSR_TIMESTAMP_END": pd.DatetimeIndex(begin.ravel() + np.timedelta64(30, "m")).strftime(
                "%Y-%m-%d %H:%M:%S"
            ),
            "CSR_PORT": 1,
            "CSR_FLUX_CO2": np.round(values.ravel() / _UMOL, 4),
            "CSR_T5": np.round(np.repeat(tair[d] * 0.8 + 2.0, 48), 2),
            "CSR_SM30": np.repeat(swc[d], 48),
        }
    ).to_csv(path, index=False)
    out = daily.copy()
    out[d] = np.round(values / _UMOL, 4).mean(axis=1) * _UMOL
    return out


# --- FLUXNET2015: daily and half-hourly tower files ----------------------------------------------


def _write_fluxnet(out: Path, cfg: DemoConfig, daily: DailySeries, rng: np.random.Generator) -> None:
    """FLUXNET2015-like DD files (-9999 gaps), one HH file for the first site, and ``siteinfo_demo.csv``."""
    table, series, days, pod = daily.table, daily.series, daily.days, daily.pod
    out.mkdir(parents=True, exist_ok=True)
    idx = np.flatnonzero(table.network.values == "fluxnet")
    y0, y1 = days[0].year, days[-1].year
    info = []
    for j, i in enumerate(idx):
        site = f"XD-{table.site_id.values[i]}"
        n = len(days)
        eff = table.site_effect.values[i]
        gpp = series["gpp"][i, pod] * eff
        reco = series["reco"][i, pod] * eff
        nee = reco - gpp + rng.normal(0, 1, n) * (0.2 + 0.1 * np.abs(reco - gpp))
        qc = np.round(np.clip(rng.beta(6, 1.5, n), 0, 1), 3)
        missing = rng.random(n) < 0.03
        g0 = int(rng.integers(0, n - 30))
        missing[g0 : g0 + int(rng.integers(5, 30))] = True
        tair = series["tair"][i, pod] + rng.normal(0, 1.5, n)
        precip = np.maximum(0, series["moisture"][i, pod] * 4 * rng.gamma(0.8, 1.25, n))
        if j == 0:
            nee = _write_fluxnet_halfhourly(
                out / f"FLX_{site}_FLUXNET2015_FULLSET_HH_{y0}-{y1}_1-4.csv", days, gpp, reco, nee, tair, missing, rng
            )
        frame = pd.DataFrame(
            {
                "TIMESTAMP": days.strftime("%Y%m%d"),
                "TA_F": np.round(tair, 3),
                "P_F": np.round(precip, 3),
                **_tower_micromet(series["moisture"][i, pod], tair, np.random.default_rng([cfg.seed, 29, j])),
                "NEE_VUT_REF": np.where(missing, -9999, np.round(nee, 5)),
                "NEE_VUT_REF_QC": np.where(missing, -9999, qc),
                "RECO_NT_VUT_REF": np.where(missing, -9999, np.round(reco, 5)),
                "GPP_NT_VUT_REF": np.where(missing, -9999, np.round(gpp, 5)),
            }
        )
        frame.to_csv(out / f"FLX_{site}_FLUXNET2015_FULLSET_DD_{y0}-{y1}_1-4.csv", index=False)
        info.append(
            {
                "sitename": site,
                "lon": table.lon.values[i],
                "lat": table.lat.values[i],
                "elv": "",
                "year_start": y0,
                "year_end": y1,
                "classid": products.IGBP_ABBREV.get(int(table.igbp.values[i]), ""),
            }
        )
    pd.DataFrame(info).to_csv(out / "siteinfo_demo.csv", index=False)


def _tower_micromet(moisture: np.ndarray, tair: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A tower's own daily micrometeorology beside TA_F and P_F, FULLSET-style with QC columns
    (fraction of good data): soil water content (%) from the site's soil moisture, vapour-pressure
    deficit (hPa) from its air temperature (Tetens) and a relative humidity that rises with soil
    moisture. A soil-water sensor gap (-9999) and a few poorly gap-filled days (QC < 0.5) give the
    reader's rules something to reject. Drawn from their own generator (``rng``), so the world's
    other values stay as they were."""
    n = len(tair)
    swc = 100 * (0.08 + 0.35 * moisture) + rng.normal(0, 1.5, n)
    rh = np.clip(0.35 + 0.55 * moisture + rng.normal(0, 0.05, n), 0.1, 1.0)
    vpd = 6.1078 * np.exp(17.27 * tair / (tair + 237.3)) * (1 - rh)
    gap = np.zeros(n, bool)
    g0 = int(rng.integers(0, max(1, n - 25)))
    gap[g0 : g0 + 20] = True
    qc = {k: np.round(np.clip(rng.beta(9, 1, n), 0, 1), 3) for k in ("TA_F", "P_F", "SWC_F_MDS_1", "VPD_F")}
    for k in ("SWC_F_MDS_1", "VPD_F"):
        qc[k][rng.random(n) < 0.02] = 0.2
    return {
        "TA_F_QC": qc["TA_F"],
        "P_F_QC": qc["P_F"],
        "SWC_F_MDS_1": np.where(gap, -9999, np.round(swc, 2)),
        "SWC_F_MDS_1_QC": np.where(gap, -9999, qc["SWC_F_MDS_1"]),
        "VPD_F": np.round(vpd, 3),
        "VPD_F_QC": qc["VPD_F"],
    }


def _write_fluxnet_halfhourly(
    path: Path,
    days: pd.DatetimeIndex,
    gpp: np.ndarray,
    reco: np.ndarray,
    nee: np.ndarray,
    tair: np.ndarray,
    missing: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """FLUXNET2015 HH file (NEE umol m-2 s-1, QC 0-3) consistent with the daily NEE returned."""
    hours = (np.arange(48) + 0.5) / 2.0
    light = np.maximum(0.0, np.sin(np.pi * (hours - 6.0) / 12.0))
    light /= light.mean()
    resp = 1.0 + 0.15 * np.cos(2 * np.pi * (hours - 15.0) / 24.0)
    resp /= resp.mean()
    resid = nee - (reco - gpp)
    hh = (reco[:, None] * resp[None] - gpp[:, None] * light[None] + resid[:, None]) / _UMOL
    qc = rng.choice([0, 1, 2, 3], size=hh.shape, p=[0.55, 0.3, 0.1, 0.05])
    start = days.values[:, None] + (np.arange(48) * np.timedelta64(30, "m"))[None, :]
    hh_out = np.round(hh, 4)
    pd.DataFrame(
        {
            "TIMESTAMP_START": pd.DatetimeIndex(start.ravel()).strftime("%Y%m%d%H%M"),
            "TIMESTAMP_END": pd.DatetimeIndex(start.ravel() + np.timedelta64(30, "m")).strftime("%Y%m%d%H%M"),
            "TA_F": np.round(np.repeat(tair, 48), 3),
            "NEE_VUT_REF": np.where(np.repeat(missing, 48), -9999, hh_out.ravel()),
            "NEE_VUT_REF_QC": np.where(np.repeat(missing, 48), -9999, qc.ravel()),
        }
    ).to_csv(path, index=False)
    return hh_out.mean(axis=1) * _UMOL
