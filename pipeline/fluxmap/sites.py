"""Site observations from SRDB, COSORE, FLUXNET2015 and generic CSV into one tidy schema.

Every reader returns a :class:`SiteTable`: the kept observations (one row each, in
g C m-2 d-1 averaged over ``[start, end)`` in UTC) and a quarantine of every
rejected candidate with its reason. Nothing is dropped silently:
``candidates == kept + quarantined`` for every reader, and every input row is
either the source of a candidate or quarantined itself (counted in ``report``).

Formats as published:

- SRDB v5 (Jian et al. 2021, ESSD 13:255; github bpbond/srdb ``srdb-data.csv``):
  annual ``Rs_annual``/``Rh_annual``/``Ra_annual`` in g C m-2 yr-1. Read with
  ``keep_default_na=False`` so the literal ``None`` of ``Manipulation`` survives.
- COSORE (Bond-Lamberty et al. 2020, GCB 26:7268): fluxes in umol CO2 m-2 s-1;
  per-dataset files with ``CSR_TIMESTAMP_BEGIN``/``CSR_FLUX_CO2`` at any step, and
  the daily aggregate (``dataset,date,var,trt,flux_co2_umol_m2_s,...``).
- FLUXNET2015 (Pastorello et al. 2020, Sci. Data 7:225): files
  ``FLX_<SITE>_FLUXNET2015_<SET>_<RES>_<Y0>-<Y1>_<VER>.csv``, -9999 missing, NEE in
  umol m-2 s-1 at HH/HR, g C m-2 d-1 at DD/WW/MM, g C m-2 yr-1 at YY; ``*_QC`` is
  0-3 at HH/HR and the fraction of good data at DD and coarser; timestamps in local
  standard time. NEE is negative for uptake.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fluxmap.products import TARGETS, UMOL_CO2_M2_S_TO_G_C_M2_D

__all__ = [
    "OBS_COLUMNS",
    "QUARANTINE_COLUMNS",
    "SiteTable",
    "SrdbRules",
    "concat",
    "read_cosore_daily",
    "read_cosore_halfhourly",
    "read_fluxnet",
    "read_fluxnet_monthly_table",
    "read_generic_csv",
    "read_srdb",
]

OBS_COLUMNS = [
    "site_id",
    "lat",
    "lon",
    "start",
    "end",
    "variable",
    "value",
    "quality",
    "ecosystem",
    "method",
    "source",
    "record_id",
    "tsoil_c",
    "swc",
    "tair_c",
]
"""Columns of the tidy observation table (value in g C m-2 d-1, start/end UTC, end exclusive)."""

QUARANTINE_COLUMNS = ["source", "file", "row", "record_id", "site_id", "variable", "reason", "detail"]
"""Columns of the quarantine table: one row per rejected candidate, with the reason."""

_COSORE_IGBP = {
    "evergreen needleleaf forest": "ENF",
    "evergreen broadleaf forest": "EBF",
    "deciduous needleleaf forest": "DNF",
    "deciduous broadleaf forest": "DBF",
    "mixed forests": "MF",
    "mixed forest": "MF",
    "closed shrublands": "CSH",
    "open shrublands": "OSH",
    "woody savannas": "WSA",
    "savannas": "SAV",
    "grasslands": "GRA",
    "grassland": "GRA",
    "wetland": "WET",
    "permanent wetlands": "WET",
    "croplands": "CRO",
    "cropland": "CRO",
    "urban and built-up lands": "URB",
    "cropland/natural vegetation mosaics": "CVM",
    "barren": "BSV",
    "snow and ice": "SNO",
}


@dataclass
class SiteTable:
    """Kept observations, their quarantine, and the counts of the reading."""

    observations: pd.DataFrame
    """Tidy observations, columns :data:`OBS_COLUMNS`."""
    quarantine: pd.DataFrame
    """Rejected candidates, columns :data:`QUARANTINE_COLUMNS`."""
    report: dict[str, Any] = field(default_factory=dict)
    """Counts: rows read, candidates, kept, quarantined by reason, per source."""


def concat(tables: list[SiteTable]) -> SiteTable:
    """Join several readers' results into one table (reports merged by source)."""
    obs = pd.concat([t.observations for t in tables], ignore_index=True) if tables else _empty_obs()
    qua = pd.concat([t.quarantine for t in tables], ignore_index=True) if tables else _empty_quarantine()
    report: dict[str, Any] = {}
    for t in tables:
        report.update(t.report)
    return SiteTable(obs, qua, report)


def _empty_obs() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=_OBS_DTYPES.get(c, "object")) for c in OBS_COLUMNS})


def _empty_quarantine() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in QUARANTINE_COLUMNS})


_OBS_DTYPES = {
    "lat": "float64",
    "lon": "float64",
    "value": "float64",
    "quality": "float64",
    "start": "datetime64[ns]",
    "end": "datetime64[ns]",
    "tsoil_c": "float64",
    "swc": "float64",
    "tair_c": "float64",
}


def _finish(
    cand: pd.DataFrame,
    *,
    source: str,
    file: str,
    rows_in: int,
    extra_quarantine: pd.DataFrame | None = None,
    filters: dict[str, Any] | None = None,
    duplicate_keys: tuple[str, ...] = ("site_id", "variable", "start", "end", "source", "method"),
) -> SiteTable:
    """Split candidates (with a ``reason`` column, None = keep) into kept and quarantine.

    Common checks run on every candidate not already rejected: variable known,
    coordinates in range, value finite, period well formed, no duplicates.
    """
    cand = cand.copy()
    for c in OBS_COLUMNS:
        if c not in cand:
            cand[c] = np.nan
    if "reason" not in cand:
        cand["reason"] = None
    if "detail" not in cand:
        cand["detail"] = ""
    ok = cand["reason"].isna()

    def reject(mask: pd.Series, reason: str, detail: pd.Series | str = "") -> None:
        nonlocal ok
        m = ok & mask
        cand.loc[m, "reason"] = reason
        cand.loc[m, "detail"] = detail[m] if isinstance(detail, pd.Series) else detail
        ok = ok & ~m

    lat = pd.to_numeric(cand["lat"], errors="coerce")
    lon = pd.to_numeric(cand["lon"], errors="coerce")
    reject(~cand["variable"].isin(TARGETS), "unknown variable", cand["variable"].astype(str))
    reject(lat.isna() | lon.isna(), "missing coordinates")
    reject(
        (lat.abs() > 90) | (lon < -180) | (lon > 360),
        "coordinates out of range",
        "lat=" + lat.astype(str) + " lon=" + lon.astype(str),
    )
    reject(cand["start"].isna() | cand["end"].isna() | (cand["end"] <= cand["start"]), "bad time period")
    value = pd.to_numeric(cand["value"], errors="coerce")
    reject(~np.isfinite(value), "non-finite value", cand["value"].astype(str))
    # Soil CO2 efflux is a source by definition; a negative SR or RH is an entry error.
    reject(cand["variable"].isin(["sr", "rh"]) & (value < 0), "non-physical negative soil flux", value.astype(str))
    dup = cand.duplicated(list(duplicate_keys), keep="first") & ok
    reject(dup, "duplicate", "same site, variable, method and period as an earlier row")

    cand["lat"], cand["lon"], cand["value"] = lat, np.where(lon > 180, lon - 360, lon), value
    kept = cand.loc[ok, OBS_COLUMNS].astype({k: v for k, v in _OBS_DTYPES.items()}).reset_index(drop=True)
    q = cand.loc[~ok].copy()
    q["source"], q["file"] = source, file
    quarantine = q.reindex(columns=QUARANTINE_COLUMNS)
    if extra_quarantine is not None and len(extra_quarantine):
        quarantine = pd.concat([quarantine, extra_quarantine.reindex(columns=QUARANTINE_COLUMNS)], ignore_index=True)
    quarantine = quarantine.astype({"row": "Int64"}).reset_index(drop=True)
    reasons = quarantine["reason"].value_counts().to_dict()
    report = {
        source: {
            "file": file,
            "rows_in": int(rows_in),
            "candidates": int(len(cand) + (len(extra_quarantine) if extra_quarantine is not None else 0)),
            "kept": int(len(kept)),
            "quarantined": int(len(quarantine)),
            "quarantined_by_reason": {str(k): int(v) for k, v in reasons.items()},
            "kept_by_variable": {str(k): int(v) for k, v in kept["variable"].value_counts().items()},
            **({"filters": filters} if filters else {}),
        }
    }
    return SiteTable(kept, quarantine, report)


def _file_check(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"site file not found: {path}")
    return path


# --- SRDB -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SrdbRules:
    """Selection rules for SRDB records, each switchable (None/False turns it off)."""

    no_manipulation: bool = True
    """Keep only ``Manipulation == "None"`` (unmanipulated control sites)."""
    methods: tuple[str, ...] | None = ("IRGA", "Gas chromatography")
    """Allowed ``Meas_method`` values (alkali absorption and soda lime underestimate)."""
    exclude_quality: tuple[str, ...] | None = ("Q10", "Q11", "Q12", "Q13", "Q14")
    """``Quality_flag`` codes marking suspected or known problems."""
    exclude_duplicates: bool = True
    """Drop records whose ``Duplicate_record`` names an earlier record."""
    sr_greater_than_hr: bool = True
    """Drop records reporting Rh_annual > Rs_annual."""
    min_year: float | None = 2000
    """Earliest ``Study_midyear`` (satellite era); None keeps all."""


_SRDB_VARS = {"Rs_annual": "sr", "Rh_annual": "rh", "Ra_annual": "ra"}


def read_srdb(path: str | Path, rules: SrdbRules | None = None) -> SiteTable:
    """Read SRDB v5 ``srdb-data.csv`` into annual site-year observations.

    Each record gives one observation per reported flux (sr, rh, ra), with the
    annual value (g C m-2 yr-1) converted to the mean daily flux over the study
    years. Rules are applied in the order of :class:`SrdbRules`; each rejected
    record is quarantined with the first rule it fails.
    """
    rules = rules or SrdbRules()
    path = _file_check(path)
    df = pd.read_csv(path, keep_default_na=False, na_values=["NA", ""], low_memory=False)
    missing = [
        c
        for c in ("Record_number", "Latitude", "Longitude", "Study_midyear", "Manipulation", "Meas_method", "Rs_annual")
        if c not in df.columns
    ]
    if missing:
        raise ValueError(f"{path}: not an SRDB file, missing column(s) {missing}")
    n = len(df)
    reason = pd.Series([None] * n, dtype="object")

    def rule(mask: pd.Series, why: str) -> None:
        reason[(reason.isna()) & mask.fillna(False).to_numpy()] = why

    rule(df.Latitude.isna() | df.Longitude.isna(), "missing coordinates")
    if rules.no_manipulation:
        rule(df.Manipulation.astype(str) != "None", "failed filter: manipulation")
    if rules.methods:
        rule(~df.Meas_method.isin(rules.methods), "failed filter: measurement method")
    if rules.exclude_quality:
        flags = df.get("Quality_flag", pd.Series("", index=df.index)).astype("object").fillna("").astype(str)
        codes = flags.str.replace(" ", "").str.split(",")
        bad = codes.apply(lambda cs: any(c in rules.exclude_quality for c in cs))
        rule(bad, "failed filter: quality flag")
    if rules.exclude_duplicates and "Duplicate_record" in df:
        rule(df.Duplicate_record.notna(), "duplicate")
    has_any = df[list(_SRDB_VARS)].notna().any(axis=1)
    rule(~has_any, "no annual flux value")
    if rules.sr_greater_than_hr:
        rule(df.Rh_annual > df.Rs_annual, "failed filter: Rh_annual > Rs_annual")
    if rules.min_year is not None:
        rule(df.Study_midyear < rules.min_year, f"failed filter: study year < {rules.min_year:g}")

    years = df.YearsOfData.fillna(1.0).clip(lower=1.0).round().astype(int) if "YearsOfData" in df else 1
    first = np.floor(df.Study_midyear.fillna(2000) - years / 2.0 + 0.5).astype(int)
    start = pd.to_datetime({"year": first.clip(1900, 2200), "month": 1, "day": 1}).where(df.Study_midyear.notna())
    end = pd.to_datetime({"year": (first + years).clip(1900, 2201), "month": 1, "day": 1}).where(
        df.Study_midyear.notna()
    )
    days_per_year = (end - start).dt.days / years
    record = df.Record_number.map(lambda v: f"{v:g}" if isinstance(v, float) else str(v))
    site_name = df.get("Site_ID", pd.Series(pd.NA, index=df.index)).astype("object")
    site_name = site_name.where(site_name.notna(), df.get("Site_name", record).astype("object"))
    frames = []
    row_no = pd.Series(np.arange(n) + 2)  # line in the file (1 = header)
    for col, var in _SRDB_VARS.items():
        present = df[col].notna()
        frames.append(
            pd.DataFrame(
                {
                    "site_id": "SRDB-" + site_name.astype(str),
                    "lat": df.Latitude,
                    "lon": df.Longitude,
                    "start": start,
                    "end": end,
                    "variable": var,
                    "value": df[col] / days_per_year,
                    "quality": np.nan,
                    "ecosystem": df.Ecosystem_type.astype("object") if "Ecosystem_type" in df else "",
                    "method": df.Meas_method,
                    "source": "srdb",
                    "record_id": record,
                    "reason": reason,
                    "row": row_no,
                }
            )[present]
        )
    cand = pd.concat(frames, ignore_index=True)
    no_value = df.index[~has_any]
    extra = pd.DataFrame(
        {
            "row": row_no[no_value].values,
            "record_id": record[no_value].values,
            "site_id": site_name[no_value].astype(str).values,
            "variable": "",
            "reason": reason[no_value].values,
            "detail": "",
            "source": "srdb",
            "file": str(path),
        }
    )
    filters = {k: v for k, v in rules.__dict__.items()}
    # Distinct SRDB records at one site and year are distinct plots or studies; SRDB marks
    # true duplicates itself (Duplicate_record).
    table = _finish(
        cand,
        source="srdb",
        file=str(path),
        rows_in=n,
        extra_quarantine=extra,
        filters=filters,
        duplicate_keys=("record_id", "variable"),
    )
    # Record-level counts per rule, as the literature reports them.
    table.report["srdb"]["records_rejected_by_rule"] = {str(k): int(v) for k, v in reason.value_counts().items()}
    table.report["srdb"]["records_kept"] = int(reason.isna().sum())
    return table


# --- COSORE -----------------------------------------------------------------------------

_COSORE_VARS = {"Rs": "sr", "Rh": "rh", "NEE": "nee", "Reco": "reco"}
_COSORE_KEEP_TRT = {
    "sr": {"None"},
    "rh": {"None", "Trenched", "Girdled", "Root exclusion"},
    "nee": {"None"},
    "reco": {"None"},
}


def _cosore_meta(summary: str | Path) -> pd.DataFrame:
    meta = pd.read_csv(_file_check(summary))
    need = {"dataset", "lat", "lon"}
    if not need <= set(meta.columns):
        raise ValueError(f"{summary}: COSORE dataset summary needs columns {sorted(need)}")
    meta["ecosystem"] = (
        meta.get("igbp", pd.Series("", index=meta.index))
        .fillna("")
        .str.lower()
        .map(_COSORE_IGBP)
        .fillna(meta.get("igbp", ""))
    )
    meta["tz"] = meta.get("tz", pd.Series("UTC", index=meta.index)).fillna("UTC")
    return meta.set_index("dataset")


def _local_to_utc(local: pd.Series, tz: pd.Series) -> pd.Series:
    """Naive local timestamps to naive UTC, per-row time zone names (Etc/GMT+8, UTC, ...)."""
    out = pd.Series(pd.NaT, index=local.index, dtype="datetime64[ns]")
    for name, idx in local.groupby(tz.fillna("UTC")).groups.items():
        out[idx] = (
            local[idx]
            .dt.tz_localize(name, ambiguous="NaT", nonexistent="NaT")
            .dt.tz_convert("UTC")
            .dt.tz_localize(None)
        )
    return out


def read_cosore_daily(
    path: str | Path, summary: str | Path, *, keep_treatments: dict[str, set[str]] | None = None
) -> SiteTable:
    """Read the COSORE daily table (umol CO2 m-2 s-1) into daily observations.

    Dates are local days of each dataset's time zone (``tz`` in the summary) and
    become UTC periods. Control plots only for Rs, NEE and Reco; Rh also from
    trenched, girdled and root-exclusion plots (how Rh is measured). Site soil
    temperature, moisture and air temperature travel along as covariates.
    """
    path = _file_check(path)
    df = pd.read_csv(path)
    need = {"dataset", "date", "var", "trt", "flux_co2_umol_m2_s"}
    if not need <= set(df.columns):
        raise ValueError(f"{path}: not a COSORE daily file, missing {sorted(need - set(df.columns))}")
    meta = _cosore_meta(summary)
    keep_trt = keep_treatments or _COSORE_KEEP_TRT
    var = df["var"].map(_COSORE_VARS).fillna(df["var"].astype(str))
    m = meta.reindex(df.dataset)
    local = pd.to_datetime(df.date, errors="coerce")
    start = _local_to_utc(local, pd.Series(m.tz.values, index=df.index))
    trt = df.trt.fillna("None").astype(str)
    reason = pd.Series([None] * len(df), dtype="object")
    reason[m.lat.isna().to_numpy()] = "unknown dataset (not in the summary)"
    bad_trt = ~pd.Series([t in keep_trt.get(v, set()) for v, t in zip(var, trt)], index=df.index)
    reason[(reason.isna() & bad_trt).to_numpy()] = "failed filter: treatment"
    cand = pd.DataFrame(
        {
            "site_id": "COSORE-" + df.dataset.astype(str),
            "lat": m.lat.values,
            "lon": m.lon.values,
            "start": start,
            "end": start + pd.Timedelta(days=1),
            "variable": var,
            "value": df.flux_co2_umol_m2_s * UMOL_CO2_M2_S_TO_G_C_M2_D,
            "quality": np.nan,
            "ecosystem": m.ecosystem.values,
            "method": "chamber (" + trt + ")",
            "source": "cosore",
            "record_id": df.dataset.astype(str) + "/" + df.date.astype(str) + "/" + df["var"].astype(str) + "/" + trt,
            "tsoil_c": df.get("tsoil_C"),
            "swc": df.get("swc_m3m3"),
            "tair_c": df.get("tair_C"),
            "reason": reason,
            "row": np.arange(len(df)) + 2,
        }
    )
    return _finish(cand, source="cosore_daily", file=str(path), rows_in=len(df))


def read_cosore_halfhourly(path: str | Path, *, dataset: str, summary: str | Path, variable: str = "sr") -> SiteTable:
    """Read one COSORE dataset file (``CSR_TIMESTAMP_BEGIN``, ``CSR_FLUX_CO2``; any step).

    Timestamps are in the dataset's time zone (summary ``tz``); each record covers
    ``[begin, end)`` (``CSR_TIMESTAMP_END`` when present, else the median step).
    """
    path = _file_check(path)
    df = pd.read_csv(path)
    if not {"CSR_TIMESTAMP_BEGIN", "CSR_FLUX_CO2"} <= set(df.columns):
        raise ValueError(f"{path}: not a COSORE data file (needs CSR_TIMESTAMP_BEGIN, CSR_FLUX_CO2)")
    meta = _cosore_meta(summary)
    if dataset not in meta.index:
        raise ValueError(f"{path}: dataset {dataset!r} not in the summary {summary}")
    m = meta.loc[dataset]
    tz = pd.Series(m.tz, index=df.index)
    begin = _local_to_utc(pd.to_datetime(df.CSR_TIMESTAMP_BEGIN, errors="coerce"), tz)
    if "CSR_TIMESTAMP_END" in df:
        end = _local_to_utc(pd.to_datetime(df.CSR_TIMESTAMP_END, errors="coerce"), tz)
    else:
        end = begin + begin.sort_values().diff().median()
    cand = pd.DataFrame(
        {
            "site_id": f"COSORE-{dataset}",
            "lat": m.lat,
            "lon": m.lon,
            "start": begin,
            "end": end,
            "variable": variable,
            "value": pd.to_numeric(df.CSR_FLUX_CO2, errors="coerce") * UMOL_CO2_M2_S_TO_G_C_M2_D,
            "quality": np.nan,
            "ecosystem": m.ecosystem,
            "method": "chamber",
            "source": "cosore",
            "record_id": dataset
            + "/"
            + df.CSR_TIMESTAMP_BEGIN.astype(str)
            + "/port"
            + df.get("CSR_PORT", pd.Series(0, index=df.index)).astype(str),
            "tsoil_c": df.get("CSR_T5"),
            "swc": df.get("CSR_SM30"),
            "row": np.arange(len(df)) + 2,
        }
    )
    # Several chamber ports measure at once: average the ports to one site series first.
    if "CSR_PORT" in df and df.CSR_PORT.nunique() > 1:
        cand = cand.groupby(["start", "end"], as_index=False).agg(
            {
                **{c: "first" for c in cand.columns if c not in ("value", "tsoil_c", "swc", "start", "end")},
                "value": "mean",
                "tsoil_c": "mean",
                "swc": "mean",
            }
        )
    return _finish(cand, source=f"cosore:{dataset}", file=str(path), rows_in=len(df))


# --- FLUXNET2015 -------------------------------------------------------------------------

_FLX_NAME = re.compile(
    r"FLX_(?P<site>[A-Za-z0-9]+-[A-Za-z0-9]+)_FLUXNET2015_(?P<set>[A-Z]+)_(?P<res>HH|HR|DD|WW|MM|YY)_"
    r"(?P<y0>\d{4})-(?P<y1>\d{4})_(?P<ver>[\d-]+)\.csv$"
)
_FLX_VARS = {"NEE_VUT_REF": "nee", "GPP_NT_VUT_REF": "gpp", "RECO_NT_VUT_REF": "reco"}


def _flx_periods(df: pd.DataFrame, res: str) -> tuple[pd.Series, pd.Series]:
    if res in ("HH", "HR"):
        return (
            pd.to_datetime(df.TIMESTAMP_START.astype(str), format="%Y%m%d%H%M"),
            pd.to_datetime(df.TIMESTAMP_END.astype(str), format="%Y%m%d%H%M"),
        )
    if res == "WW":
        s = pd.to_datetime(df.TIMESTAMP_START.astype(str), format="%Y%m%d")
        return s, pd.to_datetime(df.TIMESTAMP_END.astype(str), format="%Y%m%d") + pd.Timedelta(days=1)
    fmt = {"DD": "%Y%m%d", "MM": "%Y%m", "YY": "%Y"}[res]
    s = pd.to_datetime(df.TIMESTAMP.astype(str), format=fmt)
    step = {"DD": pd.DateOffset(days=1), "MM": pd.DateOffset(months=1), "YY": pd.DateOffset(years=1)}[res]
    return s, s + step


def read_fluxnet(
    path: str | Path,
    *,
    site_info: pd.DataFrame,
    min_qc: float = 0.5,
    max_qc_hh: int = 1,
    utc_offset_hours: float | None = None,
    variables: tuple[str, ...] = ("NEE_VUT_REF",),
) -> SiteTable:
    """Read one FLUXNET2015 FULLSET/SUBSET file (any resolution) into observations.

    ``site_info`` gives each site's location: columns ``sitename``, ``lat``, ``lon``,
    optional ``classid`` (IGBP) and ``utc_offset`` (hours; FLUXNET timestamps are
    local standard time). ``min_qc`` is the minimum fraction of measured or good
    gap-filled data at DD and coarser; ``max_qc_hh`` the highest 0-3 QC flag kept at
    HH/HR. Units become g C m-2 d-1 (HH: x 1.03775 from umol m-2 s-1; YY: / days).
    """
    path = _file_check(path)
    m = _FLX_NAME.search(path.name)
    if not m:
        raise ValueError(
            f"{path.name}: not a FLUXNET2015 file name (FLX_<SITE>_FLUXNET2015_<SET>_<RES>_<Y0>-<Y1>_<VER>.csv)"
        )
    site, res = m["site"], m["res"]
    info = site_info.set_index("sitename")
    if site not in info.index:
        raise ValueError(f"{path.name}: site {site} not in the site table (columns sitename, lat, lon)")
    si = info.loc[site]
    # The YY files ship with CR line endings; universal newlines read them.
    with open(path, newline=None) as f:
        df = pd.read_csv(f)
    start, end = _flx_periods(df, res)
    offset = utc_offset_hours if utc_offset_hours is not None else float(si.get("utc_offset", 0.0) or 0.0)
    start, end = start - pd.Timedelta(hours=offset), end - pd.Timedelta(hours=offset)
    frames = []
    for col in variables:
        if col not in df:
            raise ValueError(f"{path.name}: no column {col}")
        raw = pd.to_numeric(df[col], errors="coerce")
        qc = pd.to_numeric(df.get(f"{col}_QC", pd.Series(np.nan, index=df.index)), errors="coerce")
        if res in ("HH", "HR"):
            value = raw * UMOL_CO2_M2_S_TO_G_C_M2_D
            bad_qc = qc > max_qc_hh
            qc_rule = f"failed filter: {col}_QC > {max_qc_hh}"
        elif res == "YY":
            value = raw / (end - start).dt.days
            bad_qc = qc < min_qc
            qc_rule = f"failed filter: {col}_QC < {min_qc}"
        else:
            value = raw
            bad_qc = qc < min_qc
            qc_rule = f"failed filter: {col}_QC < {min_qc}"
        reason = pd.Series([None] * len(df), dtype="object")
        reason[(raw == -9999).to_numpy()] = "missing value (-9999)"
        reason[(reason.isna() & bad_qc.fillna(False)).to_numpy()] = qc_rule
        frames.append(
            pd.DataFrame(
                {
                    "site_id": f"FLX-{site}",
                    "lat": si.lat,
                    "lon": si.lon,
                    "start": start,
                    "end": end,
                    "variable": _FLX_VARS.get(col, col),
                    "value": value.where(raw != -9999),
                    "quality": qc.where(qc != -9999),
                    "ecosystem": si.get("classid", ""),
                    "method": f"eddy covariance {col}",
                    "source": f"fluxnet_{res}",
                    "record_id": f"{site}/{res}/" + start.astype(str) + f"/{col}",
                    "tair_c": pd.to_numeric(df.get("TA_F"), errors="coerce") if "TA_F" in df else np.nan,
                    "reason": reason,
                    "row": np.arange(len(df)) + 2,
                }
            )
        )
    cand = pd.concat(frames, ignore_index=True)
    cand["tair_c"] = cand["tair_c"].where(cand["tair_c"] != -9999)
    return _finish(
        cand,
        source=f"fluxnet:{site}:{res}",
        file=str(path),
        rows_in=len(df),
        filters={"min_qc": min_qc, "max_qc_hh": max_qc_hh, "utc_offset_hours": offset},
    )


def read_fluxnet_monthly_table(path: str | Path, *, variables: tuple[str, ...] = ("NEE", "GPP")) -> SiteTable:
    """Read the 204-site FLUXNET2015 monthly table (``site, Date=YYYYMM, GPP, NEE, ET, igbp, lat, lon``)."""
    path = _file_check(path)
    df = pd.read_csv(path)
    need = {"site", "Date", "lat", "lon", *variables}
    if not need <= set(df.columns):
        raise ValueError(f"{path}: missing column(s) {sorted(need - set(df.columns))}")
    start = pd.to_datetime(df.Date.astype(str), format="%Y%m", errors="coerce")
    frames = [
        pd.DataFrame(
            {
                "site_id": "FLX-" + df.site.astype(str),
                "lat": df.lat,
                "lon": df.lon,
                "start": start,
                "end": start + pd.DateOffset(months=1),
                "variable": v.lower(),
                "value": df[v],
                "quality": np.nan,
                "ecosystem": df.get("igbp", ""),
                "method": "eddy covariance (monthly mean)",
                "source": "fluxnet_monthly",
                "record_id": df.site.astype(str) + "/" + df.Date.astype(str) + "/" + v,
                "row": np.arange(len(df)) + 2,
            }
        )
        for v in variables
    ]
    return _finish(pd.concat(frames, ignore_index=True), source="fluxnet_monthly", file=str(path), rows_in=len(df))


# --- generic CSV ----------------------------------------------------------------------------

_UNIT_FACTORS = {
    "g C m-2 d-1": lambda v, days: v,
    "g m-2 d-1": lambda v, days: v,
    "umol CO2 m-2 s-1": lambda v, days: v * UMOL_CO2_M2_S_TO_G_C_M2_D,
    "umol m-2 s-1": lambda v, days: v * UMOL_CO2_M2_S_TO_G_C_M2_D,
    "g C m-2 yr-1": lambda v, days: v / 365.25,
    "mg C m-2 h-1": lambda v, days: v * 24e-3,
    "g C m-2": lambda v, days: v / days,  # a total over the record's period
}


def read_generic_csv(path: str | Path, mapping: dict[str, str], *, source: str = "csv") -> SiteTable:
    """Read any CSV with a column mapping from the run config.

    ``mapping`` names the columns for ``site_id``, ``lat``, ``lon``, ``start`` and
    either ``end`` or a fixed ``step`` (pandas offset, e.g. ``"1D"``, ``"30min"``),
    ``variable`` (values in :data:`fluxmap.products.TARGETS`) or a fixed
    ``variable_name``, ``value`` and ``units`` (a column, or a fixed ``units_name``).
    Known units: see ``_UNIT_FACTORS``; others are quarantined.
    """
    path = _file_check(path)
    df = pd.read_csv(path)
    cols = {
        k: v
        for k, v in mapping.items()
        if k in ("site_id", "lat", "lon", "start", "end", "variable", "value", "units", "quality")
    }
    absent = [v for v in cols.values() if v not in df.columns]
    if absent:
        raise ValueError(f"{path}: mapped column(s) {absent} not in the file; it has {list(df.columns)}")
    start = pd.to_datetime(df[cols["start"]], errors="coerce", utc=True).dt.tz_localize(None)
    if "end" in cols:
        end = pd.to_datetime(df[cols["end"]], errors="coerce", utc=True).dt.tz_localize(None)
    elif "step" in mapping:
        end = start + pd.Timedelta(mapping["step"])
    else:
        raise ValueError(f"{path}: mapping needs 'end' or 'step'")
    variable = df[cols["variable"]].astype(str) if "variable" in cols else mapping.get("variable_name")
    if variable is None:
        raise ValueError(f"{path}: mapping needs 'variable' or 'variable_name'")
    units = (
        df[cols["units"]].astype(str) if "units" in cols else pd.Series(mapping.get("units_name", ""), index=df.index)
    )
    raw = pd.to_numeric(df[cols["value"]], errors="coerce")
    days = (end - start).dt.total_seconds() / 86400.0
    value = pd.Series(np.nan, index=df.index)
    reason = pd.Series([None] * len(df), dtype="object")
    for u, idx in units.groupby(units).groups.items():
        if u in _UNIT_FACTORS:
            value[idx] = _UNIT_FACTORS[u](raw[idx], days[idx])
        else:
            reason[idx] = "unknown units"
    cand = pd.DataFrame(
        {
            "site_id": df[cols["site_id"]].astype(str),
            "lat": df[cols["lat"]],
            "lon": df[cols["lon"]],
            "start": start,
            "end": end,
            "variable": variable,
            "value": value,
            "quality": df[cols["quality"]] if "quality" in cols else np.nan,
            "ecosystem": mapping.get("ecosystem", ""),
            "method": mapping.get("method", ""),
            "source": source,
            "record_id": path.name + ":" + (df.index + 2).astype(str),
            "reason": reason,
            "detail": units.where(reason.notna(), ""),
            "row": df.index + 2,
        }
    )
    return _finish(cand, source=source, file=str(path), rows_in=len(df))
