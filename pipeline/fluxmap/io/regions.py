"""Region masks on a map's lat/lon grid: the IPCC AR6 land regions (built in), the TransCom 3 land
regions (CarbonTracker's ``regions.nc``), or a user's mask file.

Every mask comes back as integer codes (0: no region) on the map's ``lat`` x ``lon`` with the
codes' names, the form :func:`fluxmap.science.aggregate.region_totals` takes.

- **AR6** (``"ar6"``): the 46 land and land-ocean reference regions of Iturbide et al. (2020),
  "An update of IPCC climate reference regions for subcontinental analysis of climate model data",
  Earth Syst. Sci. Data 12, 2959-2970, https://doi.org/10.5194/essd-12-2959-2020, CC BY 4.0.
  The shapefile is the one ``regionmask`` downloads at run time
  (``IPCC-WGI-reference-regions-v4.zip``, sha256 ``c83881a1...1cff``, the same bytes as
  regionmask's registry); fluxmap ships it (``fluxmap/io/data/``) so that a machine without
  internet has the regions, and rasterizes it with ``regionmask`` in row blocks (lazy: a 500 m
  global grid never holds its mask in memory at once). Code = regionmask's number + 1.
- **TransCom 3** land regions (Gurney et al. 2002): no open copy ships with regionmask or with a
  package; CarbonTracker distributes them as ``transcom_regions`` (codes 1-11 land, 12-22 ocean)
  on a 1 x 1 degree grid in its ``regions.nc``. A mask file whose variable is
  ``transcom_regions`` and carries no CF flag names gets the TransCom names and keeps its land
  codes only.
- **A user's mask**: integer codes on lat/lon (``flag_values``/``flag_meanings`` name them), taken
  at the nearest mask cell of every map cell.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["AR6", "TRANSCOM_LAND", "ar6_land_regions", "region_mask"]

AR6 = "ar6"
"""The name that selects the built-in IPCC AR6 land regions."""

TRANSCOM_LAND: dict[int, str] = {
    1: "North American Boreal",
    2: "North American Temperate",
    3: "South American Tropical",
    4: "South American Temperate",
    5: "Northern Africa",
    6: "Southern Africa",
    7: "Eurasia Boreal",
    8: "Eurasia Temperate",
    9: "Tropical Asia",
    10: "Australia",
    11: "Europe",
}
"""The TransCom 3 land regions' codes and names (Gurney et al. 2002, Nature 415, 626-630)."""

_AR6_FILE = "IPCC-WGI-reference-regions-v4.zip"
_ROWS_PER_BLOCK = 512


@cache
def ar6_land_regions() -> Any:
    """The AR6 land regions (land and land-ocean types) as a ``regionmask.Regions``, read from the
    shapefile fluxmap ships; no network."""
    import geopandas as gp
    import regionmask

    path = resources.files("fluxmap.io").joinpath("data", _AR6_FILE)
    df = gp.read_file(f"zip://{path}")
    land = df.loc[df.Type.str.contains("Land")]
    return regionmask.from_geopandas(
        land, names="Name", abbrevs="Acronym", name="AR6 land regions", source="Iturbide et al., 2020 (ESSD)",
        overlap=False,
    )  # fmt: skip


def _ar6_block(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """AR6 codes (number + 1, 0 outside) of the cells ``lat`` x ``lon``."""
    import warnings

    with warnings.catch_warnings():  # regionmask 0.13 multiplies affine transforms with `*` (its own warning)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        m = ar6_land_regions().mask(lon, lat)
    return np.asarray(m.fillna(-1).values + 1, dtype="int16")


def _ar6_mask(lat: xr.DataArray, lon: xr.DataArray) -> tuple[xr.DataArray, dict[int, str]]:
    import dask.array as da

    regions = ar6_land_regions()
    lat_v = np.asarray(lat.values, dtype=float)
    lon_v = np.asarray(lon.values, dtype=float)
    lon_v = np.where(lon_v > 180, lon_v - 360, lon_v)
    n = len(lat_v)
    # Blocks of at least two rows: regionmask rasterizes an equally spaced block; one row would
    # fall back to its slower point-in-polygon path.
    edges = list(range(0, n, _ROWS_PER_BLOCK)) + [n]
    if len(edges) > 2 and edges[-1] - edges[-2] < 2:
        edges.pop(-2)
    blocks = [
        da.from_delayed(_delayed_block(lat_v[a:b], lon_v), shape=(b - a, len(lon_v)), dtype="int16")
        for a, b in zip(edges[:-1], edges[1:])
    ]
    codes = da.concatenate(blocks, axis=0)
    mask = xr.DataArray(codes, dims=("lat", "lon"), coords={"lat": lat.values, "lon": lon.values}, name="region")
    names = {int(n) + 1: f"{a} ({nm})" for n, a, nm in zip(regions.numbers, regions.abbrevs, regions.names)}
    return mask, names


def _delayed_block(lat: np.ndarray, lon: np.ndarray) -> Any:
    import dask

    return dask.delayed(_ar6_block, pure=True)(lat, lon)


def _file_mask(path: Path, variable: str, lat: xr.DataArray, lon: xr.DataArray) -> tuple[xr.DataArray, dict[int, str]]:  # fmt: skip
    if not path.is_file():
        raise FileNotFoundError(f"region mask {path} not found")
    ds = xr.open_dataset(path)
    if variable not in ds:
        raise ValueError(
            f"{path}: region mask variable {variable!r} not found; it has {sorted(map(str, ds.data_vars))}"
        )
    da = ds[variable]
    rename = {d: c for d, c in (("latitude", "lat"), ("longitude", "lon")) if d in da.dims}
    da = da.rename(rename)
    if not {"lat", "lon"} <= set(map(str, da.dims)):
        raise ValueError(f"{path}: {variable!r} must be on lat/lon dimensions, it has {da.dims}")
    lon_q = ((lon + 180) % 360) - 180 if float(da.lon.max()) <= 180 else lon % 360
    mask = da.sel(lat=lat, lon=lon_q.values, method="nearest").assign_coords(lon=lon.values)
    mask = mask.fillna(0).astype("int32")
    values = np.atleast_1d(da.attrs.get("flag_values", []))
    meanings = str(da.attrs.get("flag_meanings", "")).split()
    names = {int(v): m.replace("_", " ") for v, m in zip(values, meanings)} if len(values) == len(meanings) else {}
    codes = sorted(int(c) for c in np.unique(mask.values) if c > 0)
    if not names and variable == "transcom_regions":
        mask = mask.where(mask <= max(TRANSCOM_LAND), 0)
        return mask, {c: TRANSCOM_LAND[c] for c in codes if c in TRANSCOM_LAND}
    return mask, {c: names.get(c, f"region {c}") for c in codes}


def region_mask(source: str | Path, variable: str, lat: xr.DataArray, lon: xr.DataArray) -> tuple[xr.DataArray, dict[int, str]]:  # fmt: skip
    """Region codes on ``lat`` x ``lon`` (1-D coordinates) and their names: ``source`` ``"ar6"`` for
    the built-in IPCC AR6 land regions, else a mask file's ``variable``. Errors name the file and the
    variable."""
    if str(source).lower() == AR6:
        return _ar6_mask(lat, lon)
    return _file_mask(Path(source), variable, lat, lon)
