"""COSORE (Bond-Lamberty et al. 2020, GCB 26:7268): fluxes in umol CO2 m-2 s-1; per-dataset files
with ``CSR_TIMESTAMP_BEGIN``/``CSR_FLUX_CO2`` at any step, and the daily aggregate
(``dataset,date,var,trt,flux_co2_umol_m2_s,...``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fluxmap.io.sites.table import SiteTable, _file_check, _finish
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


