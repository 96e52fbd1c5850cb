"""Any CSV of site fluxes, with a mapping of its columns to fluxmap's and its units named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fluxmap.io.sites.table import SiteTable, _file_check, _finish
from fluxmap.science.products import UMOL_CO2_M2_S_TO_G_C_M2_D

__all__ = ["read_generic_csv"]

# --- generic CSV ----------------------------------------------------------------------------

# Each: (value, days of the record's period, days of the calendar year it starts in) -> g C m-2 d-1.
# A rate per year is per that calendar year (365 or 366 days), as in the SRDB reader.
_UNIT_FACTORS = {
    "g C m-2 d-1": lambda v, days, year: v,
    "g m-2 d-1": lambda v, days, year: v,
    "umol CO2 m-2 s-1": lambda v, days, year: v * UMOL_CO2_M2_S_TO_G_C_M2_D,
    "umol m-2 s-1": lambda v, days, year: v * UMOL_CO2_M2_S_TO_G_C_M2_D,
    "g C m-2 yr-1": lambda v, days, year: v / year,
    "mg C m-2 h-1": lambda v, days, year: v * 24e-3,
    "g C m-2": lambda v, days, year: v / days,  # a total over the record's period
}


def read_generic_csv(path: str | Path, mapping: dict[str, str], *, source: str = "csv") -> SiteTable:
    """Read any CSV with a column mapping from the run config.

    ``mapping`` names the columns for ``site_id``, ``lat``, ``lon``, ``start`` and
    either ``end`` or a fixed ``step`` (pandas offset, e.g. ``"1D"``, ``"30min"``),
    ``variable`` (values in :data:`fluxmap.science.products.TARGETS`) or a fixed
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
    year_days = pd.Series(np.where(start.dt.is_leap_year, 366.0, 365.0), index=df.index)
    value = pd.Series(np.nan, index=df.index)
    reason = pd.Series([None] * len(df), dtype="object")
    for u, idx in units.groupby(units).groups.items():
        if u in _UNIT_FACTORS:
            value[idx] = _UNIT_FACTORS[u](raw[idx], days[idx], year_days[idx])
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
