"""FLUXNET2015 (Pastorello et al. 2020, Sci. Data 7:225): files
``FLX_<SITE>_FLUXNET2015_<SET>_<RES>_<Y0>-<Y1>_<VER>.csv``, -9999 missing, NEE in umol m-2 s-1 at
HH/HR, g C m-2 d-1 at DD/WW/MM, g C m-2 yr-1 at YY; ``*_QC`` is 0-3 at HH/HR and the fraction of
good data at DD and coarser; timestamps in local standard time. NEE is negative for uptake."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from fluxmap.io.sites.checks import PlausibleRanges
from fluxmap.io.sites.parse import _dates, _mark, _numeric, _read, _reasons
from fluxmap.io.sites.table import SiteFileError, SiteTable, _file_check, _finish
from fluxmap.science.products import UMOL_CO2_M2_S_TO_G_C_M2_D

__all__ = ["MICROMET_UNITS", "read_fluxnet", "read_fluxnet_monthly_table", "read_fluxnet_site_info", "tower_column"]

# --- FLUXNET2015 -------------------------------------------------------------------------

_FLX_NAME = re.compile(
    r"FLX_(?P<site>[A-Za-z0-9]+-[A-Za-z0-9]+)_FLUXNET2015_(?P<set>[A-Z]+)_(?P<res>HH|HR|DD|WW|MM|YY)_"
    r"(?P<y0>\d{4})-(?P<y1>\d{4})_(?P<ver>[\d-]+)\.csv$"
)
_FLX_VARS = {"NEE_VUT_REF": "nee", "GPP_NT_VUT_REF": "gpp", "RECO_NT_VUT_REF": "reco"}

MICROMET_UNITS = {
    "TA_F": "degC",
    "SW_IN_F": "W m-2",
    "LW_IN_F": "W m-2",
    "VPD_F": "hPa",
    "P_F": "mm d-1",
    "WS_F": "m s-1",
    "PA_F": "kPa",
    "NETRAD": "W m-2",
    "G_F_MDS": "W m-2",
    "LE_F_MDS": "W m-2",
    "H_F_MDS": "W m-2",
    "SWC_F_MDS_1": "%",
    "TS_F_MDS_1": "degC",
}
"""The FULLSET micrometeorological variables issue 29 names, with the units fluxmap keeps them in:
FLUXNET2015's own (Pastorello et al. 2020, table 3 / the FULLSET variable list), each a mean over the
record, except precipitation, a sum per record in the files (mm per half-hour, hour, day; mm d-1 at
WW/MM; mm yr-1 at YY), made a rate in mm d-1 so that records of any step average alike."""

_PRECIPITATION = ("P", "P_F", "P_ERA")


def tower_column(name: str) -> str:
    """The observation-table column of the FULLSET variable ``name`` (``TA_F`` -> ``tower_ta_f``)."""
    return "tower_" + name.lower()


def _micromet(
    df: pd.DataFrame,
    name: str,
    res: str,
    length: pd.Series,
    ids: pd.Series,
    site: str,
    lines: pd.Series,
    *,
    min_qc: float,
    max_qc_hh: int,
) -> tuple[pd.Series, pd.DataFrame]:
    """One micrometeorological variable of every row (NaN where rejected) and its rejected values,
    each with the reason (the flux's rules: a cell that is no number, -9999, the QC rule of the
    resolution), for the quarantine. A rejected value leaves the row's flux as it is."""
    reason, detail = _reasons(len(df))
    raw = _numeric(df[name], column=name, what="micrometeorological value", reason=reason, detail=detail)
    qc = _numeric(df[f"{name}_QC"], column=f"{name}_QC", what="quality flag", reason=reason, detail=detail)
    reason[((raw == -9999) & reason.isna()).to_numpy()] = "missing value (-9999)"
    reason[(raw.isna() & reason.isna()).to_numpy()] = "missing value (empty cell)"
    if res in ("HH", "HR"):
        bad, rule = qc > max_qc_hh, f"failed filter: {name}_QC > {max_qc_hh}"
    else:
        bad, rule = qc < min_qc, f"failed filter: {name}_QC < {min_qc}"
    hit = reason.isna() & bad.fillna(False)
    reason[hit.to_numpy()] = rule
    detail[hit.to_numpy()] = (f"{name}_QC=" + qc[hit].astype(str)).to_numpy()
    value = raw.where(reason.isna())
    if name in _PRECIPITATION:  # a sum per record -> mm d-1
        per_day = {"HH": 48.0, "HR": 24.0}.get(res)
        value = value * per_day if per_day else (value / length.dt.days if res == "YY" else value)
    rejected = reason.notna()
    quarantine = pd.DataFrame(
        {
            "row": lines[rejected],
            "record_id": ids[rejected] + f"/{name}",
            "site_id": f"FLX-{site}",
            "variable": name,
            "reason": reason[rejected],
            "detail": detail[rejected],
        }
    )
    return value, quarantine


def _flx_periods(df: pd.DataFrame, res: str, reason: pd.Series, detail: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Start and end (exclusive) of each record; a stamp that does not parse quarantines its row."""

    def stamp(col: str, fmt: str) -> pd.Series:
        return _dates(df[col], column=col, format=fmt, reason=reason, detail=detail)

    if res in ("HH", "HR"):
        return stamp("TIMESTAMP_START", "%Y%m%d%H%M"), stamp("TIMESTAMP_END", "%Y%m%d%H%M")
    if res == "WW":
        return stamp("TIMESTAMP_START", "%Y%m%d"), stamp("TIMESTAMP_END", "%Y%m%d") + pd.Timedelta(days=1)
    fmt = {"DD": "%Y%m%d", "MM": "%Y%m", "YY": "%Y"}[res]
    s = stamp("TIMESTAMP", fmt)
    step = {"DD": pd.DateOffset(days=1), "MM": pd.DateOffset(months=1), "YY": pd.DateOffset(years=1)}[res]
    return s, s + step


def _flux_and_reason(
    raw: pd.Series,
    qc: pd.Series,
    col: str,
    res: str,
    length: pd.Series,
    row_reason: pd.Series,
    *,
    min_qc: float,
    max_qc_hh: int,
) -> tuple[pd.Series, pd.Series]:
    """Flux in g C m-2 d-1 at resolution ``res`` (periods of ``length``) and each row's reason to be
    rejected (None: kept): the row's own (``row_reason``: a cell that does not parse) first, then
    the -9999 gap, then the QC rule of the resolution."""
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
    reason = row_reason.copy()
    reason[((raw == -9999) & reason.isna()).to_numpy()] = "missing value (-9999)"
    reason[(reason.isna() & bad_qc.fillna(False)).to_numpy()] = qc_rule
    return value, reason


def read_fluxnet_site_info(path: str | Path, *, encoding: str = "utf-8") -> pd.DataFrame:
    """Read a FLUXNET site table (``sitename``, ``lat``, ``lon``; optional ``classid``, ``utc_offset``)
    strictly: a malformed line or missing columns raise :class:`SiteFileError`."""
    need = ("sitename", "lat", "lon")
    sf = _read(path, required=need, what="a FLUXNET site table", encoding=encoding, strict=True)
    return sf.frame


def read_fluxnet(
    path: str | Path,
    *,
    site_info: pd.DataFrame,
    min_qc: float = 0.5,
    max_qc_hh: int = 1,
    utc_offset_hours: float | None = None,
    variables: tuple[str, ...] = ("NEE_VUT_REF",),
    micromet: tuple[str, ...] = (),
    encoding: str = "utf-8",
    plausible: PlausibleRanges | None = None,
) -> SiteTable:
    """Read one FLUXNET2015 FULLSET/SUBSET file (any resolution) into observations.

    ``micromet`` names the tower's micrometeorological variables to carry beside each flux record
    (``TA_F``, ``SW_IN_F``, ``VPD_F``, ``LE_F_MDS``, ...: :data:`MICROMET_UNITS`), as columns
    ``tower_<name>`` (:func:`tower_column`). Each needs its ``_QC`` column and goes through the
    flux's rules; a value that fails them is quarantined on its own (variable = its name) and is
    NaN in the table, and the flux record stays. A requested variable or QC column the file lacks
    raises :class:`SiteFileError` naming both.

    ``site_info`` gives each site's location: columns ``sitename``, ``lat``, ``lon``,
    optional ``classid`` (IGBP) and ``utc_offset`` (hours; FLUXNET timestamps are
    local standard time; HH/HR/DD/WW periods are shifted to UTC, MM and YY records keep their
    calendar month or year). ``min_qc`` is the minimum fraction of measured or good
    gap-filled data at DD and coarser; ``max_qc_hh`` the highest 0-3 QC flag kept at
    HH/HR. Units become g C m-2 d-1 (HH: x 1.03775 from umol m-2 s-1; YY: / days). A row
    whose timestamp, flux, QC or ``TA_F`` cell does not parse is quarantined with the cell
    (every variable of the row); malformed lines with their line.
    """
    path = _file_check(path)
    m = _FLX_NAME.search(path.name)
    if not m:
        raise SiteFileError(
            path, "not a FLUXNET2015 file name (FLX_<SITE>_FLUXNET2015_<SET>_<RES>_<Y0>-<Y1>_<VER>.csv)"
        )
    site, res = m["site"], m["res"]
    if not {"sitename", "lat", "lon"} <= set(site_info.columns):
        raise ValueError(
            f"{path.name}: the site table needs columns sitename, lat, lon; it has {list(site_info.columns)}"
        )
    rows = site_info[site_info.sitename.astype(str) == site]
    if len(rows) != 1:
        raise ValueError(f"{path.name}: site {site} is {'not' if rows.empty else 'more than once'} in the site table")
    si = rows.iloc[0]
    stamps = ("TIMESTAMP_START", "TIMESTAMP_END") if res in ("HH", "HR", "WW") else ("TIMESTAMP",)
    wanted = {*stamps, *variables, *(f"{c}_QC" for c in (*variables, *micromet)), *micromet, "TA_F"}
    _check_micromet_columns(path, micromet, encoding)
    sf = _read(
        path,
        required=(*stamps, *variables),
        what=f"a FLUXNET2015 {res} file",
        encoding=encoding,
        usecols=lambda c: c in wanted,
    )
    df = sf.frame
    row_reason, row_detail = _reasons(len(df))
    start, end = _flx_periods(df, res, row_reason, row_detail)
    tair = (
        _numeric(df.TA_F, column="TA_F", what="air temperature", reason=row_reason, detail=row_detail)
        if "TA_F" in df
        else pd.Series(np.nan, index=df.index)
    )
    raws, qcs = {}, {}
    for col in variables:
        raws[col] = _numeric(df[col], column=col, what="flux", reason=row_reason, detail=row_detail)
        qcs[col] = (
            _numeric(df[f"{col}_QC"], column=f"{col}_QC", what="quality flag", reason=row_reason, detail=row_detail)
            if f"{col}_QC" in df
            else pd.Series(np.nan, index=df.index)
        )
    lat_lon = {}
    for key, what in (("lat", "latitude"), ("lon", "longitude")):
        v = pd.to_numeric(pd.Series([si[key]]), errors="coerce").iloc[0]
        if pd.isna(v) and pd.notna(si[key]):
            _mark(
                row_reason,
                row_detail,
                np.ones(len(df), bool),
                f"non-numeric {what}",
                pd.Series(f"site table {key}={si[key]!r}", index=df.index),
            )
        lat_lon[key] = v
    offset = utc_offset_hours
    if offset is None:
        raw_offset = si.get("utc_offset", 0.0)
        offset = float(pd.to_numeric(pd.Series([raw_offset]), errors="coerce").fillna(0.0).iloc[0])
        if pd.notna(raw_offset) and (pd.isna(pd.to_numeric(raw_offset, errors="coerce")) or not np.isfinite(offset)):
            offset = 0.0
            if res not in ("MM", "YY"):
                _mark(
                    row_reason,
                    row_detail,
                    np.ones(len(df), bool),
                    "non-numeric UTC offset",
                    pd.Series(f"site table utc_offset={raw_offset!r}", index=df.index),
                )
    if res not in ("MM", "YY"):
        # Half-hours and days are local standard time: shifted to UTC. Months and years stay
        # calendar periods: shifted, a UTC+1 site's year would start on 31 December of the year before.
        start, end = start - pd.Timedelta(hours=offset), end - pd.Timedelta(hours=offset)
    record = f"{site}/{res}/" + start.astype(str)
    tower, tower_quarantine, tower_report = {}, [], {}
    for name in micromet:
        value, q = _micromet(df, name, res, end - start, record, site, sf.line, min_qc=min_qc, max_qc_hh=max_qc_hh)
        tower[tower_column(name)] = value
        tower_quarantine.append(q)
        tower_report[name] = {
            "units": MICROMET_UNITS.get(name, "as in the file"),
            "kept": int(value.notna().sum()),
            "quarantined_by_reason": {str(k): int(v) for k, v in q.reason.value_counts().items()},
        }
    frames = []
    for col in variables:
        raw, qc = raws[col], qcs[col]
        value, reason = _flux_and_reason(raw, qc, col, res, end - start, row_reason, min_qc=min_qc, max_qc_hh=max_qc_hh)
        frames.append(
            pd.DataFrame(
                {
                    "site_id": f"FLX-{site}",
                    "lat": lat_lon["lat"],
                    "lon": lat_lon["lon"],
                    "start": start,
                    "end": end,
                    "variable": _FLX_VARS.get(col, col),
                    "value": value.where(raw != -9999),
                    "quality": qc.where(qc != -9999),
                    "ecosystem": si.get("classid", ""),
                    "method": f"eddy covariance {col}",
                    "source": f"fluxnet_{res}",
                    "record_id": record + f"/{col}",
                    "tair_c": tair.where(tair != -9999),
                    **tower,
                    "reason": reason,
                    "detail": row_detail,
                    "row": sf.line,
                }
            )
        )
    cand = pd.concat(frames, ignore_index=True)
    table = _finish(
        cand,
        source=f"fluxnet:{site}:{res}",
        file=str(sf.path),
        rows_in=sf.rows_in,
        bad_lines=sf.bad,
        extra_quarantine=pd.concat(tower_quarantine, ignore_index=True) if tower_quarantine else None,
        filters={"min_qc": min_qc, "max_qc_hh": max_qc_hh, "utc_offset_hours": offset},
        plausible=plausible,
    )
    if micromet:
        table.report[f"fluxnet:{site}:{res}"]["micromet"] = tower_report
    return table


def _check_micromet_columns(path: Path, micromet: tuple[str, ...], encoding: str) -> None:
    """Every requested micrometeorological variable and its QC column in the file's header."""
    if not micromet:
        return
    with open(path, encoding=encoding, errors="replace", newline="") as f:
        header = f.readline().replace("\r", "\n").split("\n")[0]
    columns = {c.strip() for c in header.split(",")}
    for name in micromet:
        if name not in columns:
            raise SiteFileError(path, f"micrometeorological variable {name!r} was requested but is not in the file")
        if f"{name}_QC" not in columns:
            raise SiteFileError(
                path, f"quality column {name + '_QC'!r} of the requested variable {name!r} is not in the file"
            )


def read_fluxnet_monthly_table(
    path: str | Path,
    *,
    variables: tuple[str, ...] = ("NEE", "GPP"),
    micromet: tuple[str, ...] = (),
    encoding: str = "utf-8",
    plausible: PlausibleRanges | None = None,
) -> SiteTable:
    """Read the 204-site FLUXNET2015 monthly table (``site, Date=YYYYMM, GPP, NEE, ET, igbp, lat, lon``).

    A row with a cell that is no number or month (``Date``, coordinates, the fluxes) is
    quarantined with the cell; malformed lines with their line. ``micromet`` names columns carried
    beside each flux as tower covariates (``ET``, mm d-1, the table's latent-heat proxy: column
    ``tower_et``); the table has no QC columns, so a value that is no number or missing is quarantined
    on its own (variable = its name) and the flux stays; a named column the table lacks raises."""
    need = ("site", "Date", "lat", "lon", *variables)
    sf = _read(path, required=(*need, *micromet), what="a FLUXNET2015 monthly table", encoding=encoding)
    df = sf.frame
    reason, detail = _reasons(len(df))
    start = _dates(df.Date, column="Date", format="%Y%m", reason=reason, detail=detail)
    lat = _numeric(df.lat, column="lat", what="latitude", reason=reason, detail=detail)
    lon = _numeric(df.lon, column="lon", what="longitude", reason=reason, detail=detail)
    values = {v: _numeric(df[v], column=v, what="flux", reason=reason, detail=detail) for v in variables}
    tower, tower_quarantine = {}, []
    for name in micromet:
        r, d = _reasons(len(df))
        raw = _numeric(df[name], column=name, what="micrometeorological value", reason=r, detail=d)
        r[(raw.isna() & r.isna()).to_numpy()] = "missing value"
        tower[tower_column(name)] = raw.where(r.isna())
        bad = r.notna()
        tower_quarantine.append(pd.DataFrame({"row": sf.line[bad], "record_id": df.site.astype(str)[bad] + "/"
                                              + df.Date.astype(str)[bad] + f"/{name}", "site_id": "FLX-"
                                              + df.site.astype(str)[bad], "variable": name, "reason": r[bad],
                                              "detail": d[bad]}))  # fmt: skip
    frames = [
        pd.DataFrame(
            {
                "site_id": "FLX-" + df.site.astype(str),
                "lat": lat,
                "lon": lon,
                "start": start,
                "end": start + pd.DateOffset(months=1),
                "variable": v.lower(),
                "value": values[v],
                "quality": np.nan,
                "ecosystem": df.get("igbp", ""),
                "method": "eddy covariance (monthly mean)",
                "source": "fluxnet_monthly",
                "record_id": df.site.astype(str) + "/" + df.Date.astype(str) + "/" + v,
                **tower,
                "reason": reason,
                "detail": detail,
                "row": sf.line,
            }
        )
        for v in variables
    ]
    return _finish(
        pd.concat(frames, ignore_index=True),
        source="fluxnet_monthly",
        file=str(sf.path),
        rows_in=sf.rows_in,
        bad_lines=sf.bad,
        extra_quarantine=pd.concat(tower_quarantine, ignore_index=True) if tower_quarantine else None,
        plausible=plausible,
    )
