"""COSORE (Bond-Lamberty et al. 2020, GCB 26:7268): fluxes in umol CO2 m-2 s-1; per-dataset files
with ``CSR_TIMESTAMP_BEGIN``/``CSR_FLUX_CO2`` at any step, and the daily aggregate
(``dataset,date,var,trt,flux_co2_umol_m2_s,...``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fluxmap.io.sites.checks import PlausibleRanges
from fluxmap.io.sites.parse import _dates, _mark, _numeric, _read, _reasons, _shown
from fluxmap.io.sites.table import SiteFileError, SiteTable, _finish
from fluxmap.science.products import UMOL_CO2_M2_S_TO_G_C_M2_D

__all__ = ["read_cosore_daily", "read_cosore_halfhourly"]

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


# --- COSORE -----------------------------------------------------------------------------

_COSORE_VARS = {"Rs": "sr", "Rh": "rh", "NEE": "nee", "Reco": "reco"}
_COSORE_KEEP_TRT = {
    "sr": {"None"},
    "rh": {"None", "Trenched", "Girdled", "Root exclusion"},
    "nee": {"None"},
    "reco": {"None"},
}


def _cosore_meta(summary: str | Path, encoding: str = "utf-8") -> pd.DataFrame:
    """The dataset summary, one row per dataset (index), strict: a malformed line, a dataset listed
    twice or missing columns raise :class:`SiteFileError`. ``lat``/``lon`` are numbers (NaN where a
    cell is not one: ``bad_coordinates`` then names the summary's line and cell, else None), ``line``
    the file line."""
    sf = _read(
        summary, required=("dataset", "lat", "lon"), what="a COSORE dataset summary", encoding=encoding, strict=True
    )
    meta = sf.frame.copy()
    meta["line"] = sf.line
    twice = meta.dataset.duplicated()
    if twice.any():
        i = int(np.flatnonzero(twice.to_numpy())[0])
        raise SiteFileError(sf.path, f"dataset {meta.dataset.iloc[i]!r} is listed twice", line=int(sf.line[i]))
    reason, detail = _reasons(len(meta))
    for col, what in (("lat", "latitude"), ("lon", "longitude")):
        meta[col] = _numeric(meta[col], column=col, what=what, reason=reason, detail=detail)
    meta["bad_coordinates"] = [
        None if r is None else f"{sf.path.name} line {line}: {d}" for r, d, line in zip(reason, detail, sf.line)
    ]
    meta["ecosystem"] = (
        meta.get("igbp", pd.Series("", index=meta.index))
        .astype("object")
        .fillna("")
        .astype(str)
        .str.lower()
        .map(_COSORE_IGBP)
        .fillna(meta.get("igbp", ""))
    )
    meta["tz"] = meta.get("tz", pd.Series("UTC", index=meta.index)).astype("object").fillna("UTC").astype(str)
    return meta.set_index("dataset")


def _local_to_utc(local: pd.Series, tz: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Naive local timestamps to naive UTC, per-row time zone names (Etc/GMT+8, UTC, ...), and
    which rows have a time zone name that is not one (their timestamps are NaT)."""
    out = pd.Series(pd.NaT, index=local.index, dtype="datetime64[ns]")
    unknown = pd.Series(False, index=local.index)
    for name, idx in local.groupby(tz.fillna("UTC")).groups.items():
        try:
            out[idx] = (
                local[idx]
                .dt.tz_localize(name, ambiguous="NaT", nonexistent="NaT")
                .dt.tz_convert("UTC")
                .dt.tz_localize(None)
            )
        except (KeyError, ValueError, TypeError):  # zoneinfo: ZoneInfoNotFoundError is a KeyError
            unknown[idx] = True
    return out, unknown


def read_cosore_daily(
    path: str | Path,
    summary: str | Path,
    *,
    keep_treatments: dict[str, set[str]] | None = None,
    encoding: str = "utf-8",
    plausible: PlausibleRanges | None = None,
) -> SiteTable:
    """Read the COSORE daily table (umol CO2 m-2 s-1) into daily observations.

    Dates are local days of each dataset's time zone (``tz`` in the summary) and
    become UTC periods. Control plots only for Rs, NEE and Reco; Rh also from
    trenched, girdled and root-exclusion plots (how Rh is measured). Site soil
    temperature, moisture and air temperature travel along as covariates. A row with a
    cell that is no number or date, of a dataset the summary lacks, with non-numeric
    summary coordinates or an unknown time zone is quarantined with the cell; malformed
    lines with their line. ``encoding`` applies to the file and the summary.
    """
    need = ("dataset", "date", "var", "trt", "flux_co2_umol_m2_s")
    sf = _read(path, required=need, what="a COSORE daily file", encoding=encoding)
    df = sf.frame
    meta = _cosore_meta(summary, encoding)
    keep_trt = keep_treatments or _COSORE_KEEP_TRT
    reason, detail = _reasons(len(df))
    flux = _numeric(df.flux_co2_umol_m2_s, column="flux_co2_umol_m2_s", what="flux", reason=reason, detail=detail)
    covariates = {
        name: _numeric(df[col], column=col, what=what, reason=reason, detail=detail)
        if col in df
        else pd.Series(np.nan, index=df.index)
        for name, col, what in (
            ("tsoil_c", "tsoil_C", "soil temperature"),
            ("swc", "swc_m3m3", "soil moisture"),
            ("tair_c", "tair_C", "air temperature"),
        )
    }
    local = _dates(df.date, column="date", reason=reason, detail=detail)
    known = df.dataset.isin(meta.index).to_numpy()
    _mark(reason, detail, ~known, "unknown dataset (not in the summary)", _shown("dataset", df.dataset))
    m = meta.reindex(df.dataset.astype("object"))
    bad_meta = m.bad_coordinates.notna().to_numpy()
    _mark(reason, detail, bad_meta, "non-numeric coordinates in the summary", pd.Series(m.bad_coordinates.to_numpy()))
    start, unknown_tz = _local_to_utc(local, pd.Series(m.tz.to_numpy(), index=df.index))
    _mark(reason, detail, unknown_tz & known, "unknown time zone", "tz=" + pd.Series(m.tz.to_numpy()).astype(str))
    var = df["var"].map(_COSORE_VARS).fillna(df["var"].astype(str))
    trt = df.trt.astype("object").fillna("None").astype(str)
    bad_trt = ~pd.Series([t in keep_trt.get(v, set()) for v, t in zip(var, trt)], index=df.index)
    _mark(reason, detail, bad_trt, "failed filter: treatment", "trt=" + trt)
    cand = pd.DataFrame(
        {
            "site_id": "COSORE-" + df.dataset.astype(str),
            "lat": m.lat.values,
            "lon": m.lon.values,
            "start": start,
            "end": start + pd.Timedelta(days=1),
            "variable": var,
            "value": flux * UMOL_CO2_M2_S_TO_G_C_M2_D,
            "quality": np.nan,
            "ecosystem": m.ecosystem.values,
            "method": "chamber (" + trt + ")",
            "source": "cosore",
            "record_id": df.dataset.astype(str) + "/" + df.date.astype(str) + "/" + df["var"].astype(str) + "/" + trt,
            **covariates,
            "reason": reason,
            "detail": detail,
            "row": sf.line,
        }
    )
    return _finish(
        cand, source="cosore_daily", file=str(sf.path), rows_in=sf.rows_in, bad_lines=sf.bad, plausible=plausible
    )


def read_cosore_halfhourly(
    path: str | Path,
    *,
    dataset: str,
    summary: str | Path,
    variable: str = "sr",
    encoding: str = "utf-8",
    plausible: PlausibleRanges | None = None,
) -> SiteTable:
    """Read one COSORE dataset file (``CSR_TIMESTAMP_BEGIN``, ``CSR_FLUX_CO2``; any step).

    Timestamps are in the dataset's time zone (summary ``tz``); each record covers
    ``[begin, end)`` (``CSR_TIMESTAMP_END`` when present, else the median step). Rows of
    several chamber ports at one time are averaged into one candidate; rows rejected before
    (a cell that is no number or date) are quarantined one by one with their line.
    """
    need = ("CSR_TIMESTAMP_BEGIN", "CSR_FLUX_CO2")
    sf = _read(path, required=need, what="a COSORE data file", encoding=encoding)
    df = sf.frame
    meta = _cosore_meta(summary, encoding)
    if dataset not in meta.index:
        raise SiteFileError(summary, f"dataset {dataset!r} (of {sf.path.name}) is not in the summary")
    m = meta.loc[dataset]
    reason, detail = _reasons(len(df))
    flux = _numeric(df.CSR_FLUX_CO2, column="CSR_FLUX_CO2", what="flux", reason=reason, detail=detail)
    tsoil = (
        _numeric(df.CSR_T5, column="CSR_T5", what="soil temperature", reason=reason, detail=detail)
        if "CSR_T5" in df
        else np.nan
    )
    swc = (
        _numeric(df.CSR_SM30, column="CSR_SM30", what="soil moisture", reason=reason, detail=detail)
        if "CSR_SM30" in df
        else np.nan
    )
    if isinstance(m.bad_coordinates, str):
        _mark(
            reason,
            detail,
            np.ones(len(df), bool),
            "non-numeric coordinates in the summary",
            pd.Series(m.bad_coordinates, index=df.index),
        )
    tz = pd.Series(m.tz, index=df.index)
    begin, unknown_tz = _local_to_utc(
        _dates(df.CSR_TIMESTAMP_BEGIN, column="CSR_TIMESTAMP_BEGIN", reason=reason, detail=detail), tz
    )
    if "CSR_TIMESTAMP_END" in df:
        end, _ = _local_to_utc(
            _dates(df.CSR_TIMESTAMP_END, column="CSR_TIMESTAMP_END", reason=reason, detail=detail), tz
        )
    else:
        end = begin + begin.sort_values().diff().median()
    _mark(reason, detail, unknown_tz, "unknown time zone", "tz=" + tz)
    port = df.CSR_PORT if "CSR_PORT" in df else pd.Series(0, index=df.index)
    cand = pd.DataFrame(
        {
            "site_id": f"COSORE-{dataset}",
            "lat": m.lat,
            "lon": m.lon,
            "start": begin,
            "end": end,
            "variable": variable,
            "value": flux * UMOL_CO2_M2_S_TO_G_C_M2_D,
            "quality": np.nan,
            "ecosystem": m.ecosystem,
            "method": "chamber",
            "source": "cosore",
            "record_id": dataset + "/" + df.CSR_TIMESTAMP_BEGIN.astype(str) + "/port" + port.astype(str),
            "tsoil_c": tsoil,
            "swc": swc,
            "reason": reason,
            "detail": detail,
            "row": sf.line,
        }
    )
    # Several chamber ports measure at once: average the ports to one site series first. Rows
    # already rejected stay single, so each is quarantined with its own line and reason.
    if "CSR_PORT" in df and df.CSR_PORT.nunique() > 1:
        good = cand.reason.isna()
        merged = (
            cand[good]
            .groupby(["start", "end"], as_index=False, dropna=False)
            .agg(
                {
                    **{c: "first" for c in cand.columns if c not in ("value", "tsoil_c", "swc", "start", "end")},
                    "value": "mean",
                    "tsoil_c": "mean",
                    "swc": "mean",
                }
            )
        )
        cand = pd.concat([merged, cand[~good]], ignore_index=True)
    return _finish(
        cand, source=f"cosore:{dataset}", file=str(sf.path), rows_in=sf.rows_in, bad_lines=sf.bad, plausible=plausible
    )
