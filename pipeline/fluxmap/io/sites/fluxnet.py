"""FLUXNET2015 (Pastorello et al. 2020, Sci. Data 7:225): files
``FLX_<SITE>_FLUXNET2015_<SET>_<RES>_<Y0>-<Y1>_<VER>.csv``, -9999 missing, NEE in umol m-2 s-1 at
HH/HR, g C m-2 d-1 at DD/WW/MM, g C m-2 yr-1 at YY; ``*_QC`` is 0-3 at HH/HR and the fraction of
good data at DD and coarser; timestamps in local standard time. NEE is negative for uptake."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from fluxmap.io.sites.table import SiteTable, _file_check, _finish
from fluxmap.science.products import UMOL_CO2_M2_S_TO_G_C_M2_D

__all__ = ["read_fluxnet", "read_fluxnet_monthly_table"]

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


def _flux_and_reason(
    raw: pd.Series, qc: pd.Series, col: str, res: str, length: pd.Series, *, min_qc: float, max_qc_hh: int
) -> tuple[pd.Series, pd.Series]:
    """Flux in g C m-2 d-1 at resolution ``res`` (periods of ``length``) and each row's reason to be
    rejected (None: kept): the -9999 gap first, then the QC rule of the resolution."""
    if res in ("HH", "HR"):
        value = raw * UMOL_CO2_M2_S_TO_G_C_M2_D
        bad_qc = qc > max_qc_hh
        qc_rule = f"failed filter: {col}_QC > {max_qc_hh}"
    elif res == "YY":
        value = raw / length.dt.days
        bad_qc = qc < min_qc
        qc_rule = f"failed filter: {col}_QC < {min_qc}"
    else:
        value = raw
        bad_qc = qc < min_qc
        qc_rule = f"failed filter: {col}_QC < {min_qc}"
    reason = pd.Series([None] * len(raw), dtype="object")
    reason[(raw == -9999).to_numpy()] = "missing value (-9999)"
    reason[(reason.isna() & bad_qc.fillna(False)).to_numpy()] = qc_rule
    return value, reason


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
    local standard time; HH/HR/DD/WW periods are shifted to UTC, MM and YY records keep their
    calendar month or year). ``min_qc`` is the minimum fraction of measured or good
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
    if res not in ("MM", "YY"):
        # Half-hours and days are local standard time: shifted to UTC. Months and years stay
        # calendar periods: shifted, a UTC+1 site's year would start on 31 December of the year before.
        start, end = start - pd.Timedelta(hours=offset), end - pd.Timedelta(hours=offset)
    frames = []
    for col in variables:
        if col not in df:
            raise ValueError(f"{path.name}: no column {col}")
        raw = pd.to_numeric(df[col], errors="coerce")
        qc = pd.to_numeric(df.get(f"{col}_QC", pd.Series(np.nan, index=df.index)), errors="coerce")
        value, reason = _flux_and_reason(raw, qc, col, res, end - start, min_qc=min_qc, max_qc_hh=max_qc_hh)
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


