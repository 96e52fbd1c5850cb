"""Regional fluxes from atmospheric inversions, as the constraint of
:mod:`fluxmap.science.inversion` takes them: per region (a code of a region mask,
:mod:`fluxmap.io.regions`) and period ``[start, end)``, the flux in Pg C over the period
(positive to the atmosphere, the NEE convention) and its spread (Pg C; the inversion ensemble's SD).

Two readers:

- :func:`read_regional_table`, a generic CSV: ``region`` (a mask code, or a region's name or
  abbreviation), ``period_start``, optional ``period_end`` (exclusive; default: the calendar month
  of ``period_start``, which must then be a month's first day), ``flux``, ``units`` and ``spread``
  or ``member`` (several rows per region and period, one per inversion: their mean and SD).
  Units: ``Pg C``, ``Tg C`` (per period), ``Pg C yr-1``, ``Tg C yr-1`` (a rate over the period),
  ``g C m-2 d-1`` (a rate per m2 of the region's land, times the land area fluxmap computes).
  A unit outside these stops the read with the file, row and unit; a row with a value that is not
  a number, an unknown region or a spread <= 0 goes to the quarantine with its reason.
- :func:`read_gridded`, CarbonTracker-style files (CT2022's monthly ``flux1x1``: ``bio_flux_opt``
  in mol m-2 s-1 on a 1 x 1 degree latitude/longitude grid with a monthly ``time``), one file or
  set of files per inversion (ensemble member), integrated by fluxmap over the region mask with
  the spherical cell areas of the totals (the whole cell: an inversion's flux is per m2 of grid
  cell) x 12.011 g C mol-1 x the seconds of the month. Other units or a missing variable stop the
  read naming the file and the variable. The sign is checked: northern land (north of 30 N) takes
  up carbon in June-August in every inversion, so a positive June-August sum there means the file
  counts uptake as positive, and the read stops saying so.

Without an ensemble (one inversion), the spread is ``relative_spread`` x |flux|, at least
``min_spread_pg_c``: stated in the report, never invented silently.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from fluxmap.io.regions import region_mask
from fluxmap.science.grids import cell_area

__all__ = ["CARBON_G_PER_MOL", "expand_files", "read_gridded", "read_regional_table"]

CARBON_G_PER_MOL = 12.011
_RATE_UNITS = {"pg c yr-1": 1.0, "tg c yr-1": 1e-3}
_AMOUNT_UNITS = {"pg c": 1.0, "tg c": 1e-3}
_AREA_RATE_UNITS = {"g c m-2 d-1": 1.0}
_MOL_FLUX_UNITS = {"mol m-2 s-1", "mol m^-2 s^-1", "mol/m2/s", "mol m-2 s-1 "}
_COLUMNS = ("region", "period_start", "flux", "units")


def _norm_unit(u: object) -> str:
    return " ".join(str(u).strip().lower().replace("pgc", "pg c").replace("tgc", "tg c").split())


def read_regional_table(
    path: str | Path,
    names: dict[int, str],
    land_km2: dict[int, float],
    *,
    relative_spread: float = 0.3,
    min_spread_pg_c: float = 0.001,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The regional fluxes of a generic table (module notes) and the quarantined rows (the file's
    columns with ``row`` and ``reason``). ``names``: the mask's codes and names (a region may be
    given by code, full name or the abbreviation before the name's first space); ``land_km2``: the
    regions' land areas, for ``g C m-2 d-1``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"inversion: regional flux table {path} not found")
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in _COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: inversion table lacks the column(s) {missing}; it has {list(raw.columns)}")
    if "spread" not in raw.columns and "member" not in raw.columns:
        raise ValueError(f"{path}: inversion table needs a 'spread' column or a 'member' column (an ensemble)")
    lookup: dict[str, int] = {}
    for code, name in names.items():
        lookup[str(code)] = code
        lookup[name.lower()] = code
        lookup[name.split(" ")[0].lower()] = code
    rows, rejected = [], []
    for n, r in enumerate(raw.to_dict("records"), start=2):  # row 1 is the header
        unit = _norm_unit(r["units"])
        if unit not in {**_RATE_UNITS, **_AMOUNT_UNITS, **_AREA_RATE_UNITS}:
            known = sorted({*_RATE_UNITS, *_AMOUNT_UNITS, *_AREA_RATE_UNITS})
            raise ValueError(f"{path}, row {n}: units {r['units']!r} of variable 'flux' not understood; known: {known}")
        reason = ""
        found = lookup.get(str(r["region"]).strip().lower())
        try:
            start = pd.Timestamp(r["period_start"])
            end = pd.Timestamp(r["period_end"]) if str(r.get("period_end", "")).strip() else None
        except (ValueError, TypeError):
            start = end = None
            reason = "period_start or period_end is not a date"
        flux = pd.to_numeric(pd.Series([r["flux"]]), errors="coerce").iloc[0]
        spread = pd.to_numeric(pd.Series([r.get("spread", "")]), errors="coerce").iloc[0]
        if reason:
            pass
        elif found is None:
            reason = f"region {r['region']!r} is not in the region mask"
        elif not np.isfinite(flux):
            reason = "flux is not a number"
        elif "spread" in raw.columns and "member" not in raw.columns and not (np.isfinite(spread) and spread > 0):
            reason = "spread is not a number > 0"
        elif end is None and (start.day != 1 or start != start.normalize()):
            reason = "without period_end, period_start must be a month's first day"
        if reason:
            rejected.append({**r, "row": n, "reason": reason})
            continue
        assert start is not None and found is not None
        end = end if end is not None else start + pd.offsets.MonthBegin()
        if end <= start:
            rejected.append({**r, "row": n, "reason": "period_end is not after period_start"})
            continue
        days = (end - start) / pd.Timedelta(days=1)
        if unit in _RATE_UNITS:
            scale = _RATE_UNITS[unit] * days / 365.25
        elif unit in _AMOUNT_UNITS:
            scale = _AMOUNT_UNITS[unit]
        else:
            scale = land_km2.get(found, np.nan) * 1e6 * days / 1e15
        rows.append({"region": found, "start": start, "end": end, "member": r.get("member", ""),
                     "flux_pg_c": flux * scale, "spread_pg_c": spread * scale if np.isfinite(spread) else np.nan})  # fmt: skip
    table = pd.DataFrame(rows, columns=["region", "start", "end", "member", "flux_pg_c", "spread_pg_c"])
    return _ensemble(table, relative_spread, min_spread_pg_c), pd.DataFrame(rejected)


def _ensemble(table: pd.DataFrame, relative_spread: float, min_spread_pg_c: float) -> pd.DataFrame:
    """One row per region and period: the members' mean and SD (or the row's own spread), at least
    ``relative_spread`` x |flux| and ``min_spread_pg_c`` where no spread is given."""
    if table.empty:
        return table.drop(columns="member").assign(members=pd.Series(dtype=int), spread_from=pd.Series(dtype=str))
    g = table.groupby(["region", "start", "end"], sort=True)
    out = g.agg(flux_pg_c=("flux_pg_c", "mean"), given=("spread_pg_c", "mean"), members=("flux_pg_c", "size"),
                sd=("flux_pg_c", lambda v: v.std(ddof=1) if len(v) > 1 else np.nan)).reset_index()  # fmt: skip
    fallback = np.maximum(relative_spread * out.flux_pg_c.abs(), min_spread_pg_c)
    out["spread_pg_c"] = out.given.where(out.given > 0, out.sd.where(out.sd > 0, fallback))
    out["spread_from"] = np.where(out.given > 0, "table", np.where(out.sd > 0, "ensemble SD", "relative spread"))
    return out.drop(columns=["given", "sd"])


def expand_files(pattern: str | Path) -> list[Path]:
    """The files a glob pattern matches, sorted (none: an empty list), or the path itself when it is
    not a pattern (whether it exists or not)."""
    text = str(pattern)
    return sorted(Path(p) for p in glob.glob(text)) if glob.has_magic(text) else [Path(text)]


def _month_seconds(time: pd.DatetimeIndex) -> tuple[pd.DatetimeIndex, pd.DatetimeIndex, np.ndarray]:
    start = time.to_period("M").to_timestamp()
    end = start + pd.offsets.MonthBegin()
    return start, end, ((end - start) / pd.Timedelta(seconds=1)).to_numpy()


def read_gridded(
    members: Sequence[Sequence[str | Path]],
    regions: str | Path,
    mask_variable: str = "region",
    *,
    variable: str = "bio_flux_opt",
    relative_spread: float = 0.3,
    min_spread_pg_c: float = 0.001,
) -> tuple[pd.DataFrame, dict[int, str]]:
    """Regional monthly fluxes (Pg C per month) of CarbonTracker-style gridded files: ``members``, one
    list of files (or glob patterns, e.g. ``CT2022.flux1x1.2012*.nc``) per inversion, each integrated over the regions (``regions``: ``ar6`` or a mask
    file with ``mask_variable``) and the members combined (mean, SD). Returns the table and the
    regions' names."""
    per_member = []
    names: dict[int, str] = {}
    for m, patterns in enumerate(members):
        files: list[Path] = []
        for pattern in patterns:
            found = expand_files(pattern)
            if not found:
                raise FileNotFoundError(f"inversion: no gridded flux file matches {pattern}")
            files += found
        for path in files:
            if not path.is_file():
                raise FileNotFoundError(f"inversion: gridded flux file {path} not found")
            ds = xr.open_dataset(path)
            if variable not in ds:
                raise ValueError(f"{path}: inversion flux variable {variable!r} not found; it has {sorted(map(str, ds.data_vars))}")  # fmt: skip
            da = ds[variable]
            da = da.rename({d: c for d, c in (("latitude", "lat"), ("longitude", "lon")) if d in da.dims})
            units = str(da.attrs.get("units", ""))
            if units.strip().lower() not in _MOL_FLUX_UNITS:
                raise ValueError(f"{path}: {variable!r} is in {units!r}; fluxmap reads inversion fluxes in mol m-2 s-1 "
                                 "(CarbonTracker's bio_flux_opt)")  # fmt: skip
            if not {"time", "lat", "lon"} <= set(map(str, da.dims)):
                raise ValueError(f"{path}: {variable!r} must be on time, latitude and longitude; it has {da.dims}")
            lat, lon = da["lat"], da["lon"]
            dlat = float(np.abs(np.diff(lat.values)).mean())
            dlon = float(np.abs(np.diff(lon.values)).mean())
            area = cell_area(lat.values, dlat, dlon)[:, None] * np.ones(lon.size)[None, :]
            codes, names = region_mask(regions, mask_variable, lat, lon)
            codes_v = np.asarray(codes.transpose("lat", "lon").values)
            time = pd.DatetimeIndex(da["time"].values)
            start, end, seconds = _month_seconds(time)
            values = np.nan_to_num(da.transpose("time", "lat", "lon").values.astype(float))
            grams = values * CARBON_G_PER_MOL * area[None] * seconds[:, None, None]  # g C per cell and month
            north = np.asarray(lat.values)[:, None] * np.ones(lon.size)[None, :] > 30
            summer = time.month.isin([6, 7, 8])
            if summer.any() and np.sum(grams[summer][:, north & (codes_v > 0)]) > 0:
                raise ValueError(
                    f"{path}: {variable!r} sums to a source over northern land (north of 30 N, in the regions) in "
                    "June-August; inversions put uptake there, so the file's sign is likely uptake-positive. fluxmap "
                    "takes fluxes positive to the atmosphere: flip the sign of the file"
                )
            for c in names:
                total = grams[:, codes_v == c].sum(axis=1) / 1e15
                per_member.append(pd.DataFrame({"region": c, "start": start, "end": end, "member": str(m),
                                                "flux_pg_c": total, "spread_pg_c": np.nan}))  # fmt: skip
    if not per_member:
        raise ValueError("inversion: no gridded flux file given")
    table = pd.concat(per_member, ignore_index=True)
    return _ensemble(table, relative_spread, min_spread_pg_c), names
