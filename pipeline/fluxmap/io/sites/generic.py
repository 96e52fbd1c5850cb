"""Any CSV of site fluxes, with a mapping of its columns to fluxmap's and its units named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fluxmap.io.sites.checks import PlausibleRanges
from fluxmap.io.sites.parse import _dates, _mark, _numeric, _read, _reasons
from fluxmap.io.sites.table import SiteFileError, SiteTable, _finish
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


def read_generic_csv(
    path: str | Path,
    mapping: dict[str, str],
    *,
    source: str = "csv",
    encoding: str = "utf-8",
    plausible: PlausibleRanges | None = None,
) -> SiteTable:
    """Read any CSV with a column mapping from the run config.

    ``mapping`` names the columns for ``site_id``, ``lat``, ``lon``, ``start`` and
    either ``end`` or a fixed ``step`` (pandas offset, e.g. ``"1D"``, ``"30min"``),
    ``variable`` (values in :data:`fluxmap.science.products.TARGETS`) or a fixed
    ``variable_name``, ``value`` and ``units`` (a column, or a fixed ``units_name``).
    Known units: see ``_UNIT_FACTORS``; others are quarantined. A row with a cell that is
    no number (coordinates, value, quality) or date is quarantined with the cell;
    malformed lines with their line.
    """
    if "end" not in mapping and "step" not in mapping:
        raise ValueError(f"{path}: mapping needs 'end' or 'step'")
    if "variable" not in mapping and "variable_name" not in mapping:
        raise ValueError(f"{path}: mapping needs 'variable' or 'variable_name'")
    sf = _read(path, encoding=encoding)
    df = sf.frame
    cols = {
        k: v
        for k, v in mapping.items()
        if k in ("site_id", "lat", "lon", "start", "end", "variable", "value", "units", "quality")
    }
    absent = [v for v in cols.values() if v not in df.columns]
    if absent:
        raise SiteFileError(
            sf.path, f"not this mapping's file: missing mapped column(s) {absent}; it has {list(df.columns)}", line=1
        )
    reason, detail = _reasons(len(df))

    def number(key: str, what: str) -> pd.Series:
        return _numeric(df[cols[key]], column=cols[key], what=what, reason=reason, detail=detail)

    lat, lon = number("lat", "latitude"), number("lon", "longitude")
    raw = number("value", "flux")
    quality = number("quality", "quality flag") if "quality" in cols else np.nan
    start = _dates(df[cols["start"]], column=cols["start"], reason=reason, detail=detail, utc=True).dt.tz_localize(None)
    if "end" in cols:
        end = _dates(df[cols["end"]], column=cols["end"], reason=reason, detail=detail, utc=True).dt.tz_localize(None)
    else:
        end = start + pd.Timedelta(mapping["step"])
    variable = df[cols["variable"]].astype(str) if "variable" in cols else mapping["variable_name"]
    units = (
        df[cols["units"]].astype(str) if "units" in cols else pd.Series(mapping.get("units_name", ""), index=df.index)
    )
    days = (end - start).dt.total_seconds() / 86400.0
    year_days = pd.Series(np.where(start.dt.is_leap_year, 366.0, 365.0), index=df.index)
    value = pd.Series(np.nan, index=df.index)
    for u, idx in units.groupby(units).groups.items():
        if u in _UNIT_FACTORS:
            value[idx] = _UNIT_FACTORS[u](raw[idx], days[idx], year_days[idx])
        else:
            _mark(reason, detail, df.index.isin(idx), "unknown units", units)
    cand = pd.DataFrame(
        {
            "site_id": df[cols["site_id"]].astype(str),
            "lat": lat,
            "lon": lon,
            "start": start,
            "end": end,
            "variable": variable,
            "value": value,
            "quality": quality,
            "ecosystem": mapping.get("ecosystem", ""),
            "method": mapping.get("method", ""),
            "source": source,
            "record_id": sf.path.name + ":" + pd.Series(sf.line).astype(str),
            "reason": reason,
            "detail": detail,
            "row": sf.line,
        }
    )
    return _finish(cand, source=source, file=str(sf.path), rows_in=sf.rows_in, bad_lines=sf.bad, plausible=plausible)
