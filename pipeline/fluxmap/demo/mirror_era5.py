"""The offline mirror's ERA5: a Zarr store laid out like ARCO-ERA5 (google-research/arco-era5,
"0.25 deg Pressure and Surface Level Data"), holding the mirror's analytic fields
(:mod:`fluxmap.demo.mirror`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fluxmap.demo.mirror import MirrorConfig, fields, mirror_periods, truth, water

__all__ = ["ARCO_STORE", "ARCO_URL", "write_arco_era5"]


ARCO_STORE = "full_37-1h-0p25deg-chunk-1.zarr-v3"
"""The ARCO-ERA5 store's name (gs://gcp-public-data-arco-era5/ar/<this>)."""
ARCO_URL = f"gs://gcp-public-data-arco-era5/ar/{ARCO_STORE}"
"""The real store (google-research/arco-era5 README, "0.25 deg Pressure and Surface Level Data")."""


def write_arco_era5(root: Path, cfg: MirrorConfig) -> Path:
    """The ARCO-ERA5-shaped Zarr store (Zarr format 2, consolidated, as ARCO publishes it)."""
    import shutil

    import dask.array
    import numcodecs
    import xarray as xr
    import zarr

    lat = np.linspace(90.0, -90.0, 721)
    lon = np.arange(1440) * 0.25
    starts = mirror_periods(cfg)
    valid_start = starts[0] - pd.Timedelta(days=1)
    valid_stop = starts[-1] + pd.Timedelta(days=8, hours=23)  # a day past the last period
    times = pd.date_range(valid_start, valid_stop + pd.Timedelta(hours=24), freq="h")  # + a day not yet valid
    w, s, e, n = cfg.box
    lon180 = np.where(lon > 180, lon - 360, lon)
    # The fields vary in longitude only in the box (padded by 2 deg); elsewhere with latitude alone.
    rows = np.nonzero((lat >= s - 2) & (lat <= n + 2))[0]
    cols = np.nonzero((lon180 >= w - 2) & (lon180 <= e + 2))[0]
    where = np.ix_(rows, cols)
    blat, blon = lat[rows][:, None], lon180[cols][None, :]
    lsm = np.zeros((721, 1440))
    # Land in the box but for the lake's share of each 0.25 deg cell (5 x 5 points per cell).
    sub = (np.arange(5) - 2) * 0.05
    lsm[where] = [[1.0 - water(x + sub[None, :], y + sub[:, None]).mean() for x in blon[0]] for y in blat[:, 0]]
    relief = np.full((721, 1440), 300.0)
    relief[where] = fields(blon.astype("float32"), blat.astype("float32"), 180.0)["elevation"]
    attrs_t = {"long_name": "2 metre temperature", "short_name": "t2m", "units": "K"}
    attrs_p = {"long_name": "Total precipitation", "short_name": "tp", "units": "m"}
    out = root / ARCO_STORE
    ds = xr.Dataset(
        coords={
            "time": ("time", times.values, {"long_name": "time"}),
            "latitude": ("latitude", lat.astype("float32"), {"long_name": "latitude", "units": "degrees_north"}),
            "longitude": ("longitude", lon.astype("float32"), {"long_name": "longitude", "units": "degrees_east"}),
        },
        attrs={
            "valid_time_start": str(valid_start.date()),
            "valid_time_stop": str(valid_stop),
            "last_updated": "2026-12-01 00:00:00",
        },  # fmt: skip
    )
    shape = (len(times), 721, 1440)
    chunks = {"time": 1, "latitude": 721, "longitude": 1440}
    variables = {
        "2m_temperature": attrs_t,
        "total_precipitation": attrs_p,
        "land_sea_mask": {"long_name": "Land-sea mask", "short_name": "lsm", "units": "(0 - 1)"},
        "geopotential_at_surface": {"long_name": "Geopotential", "short_name": "z", "units": "m**2 s**-2"},
    }
    lazy = dask.array.zeros(shape, chunks=(1, 721, 1440), dtype="float32")
    template = ds.assign({name: (("time", "latitude", "longitude"), lazy, a) for name, a in variables.items()})
    blosc = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)
    encoding = {v: {"chunks": tuple(chunks.values()), "compressors": (blosc,)} for v in variables}
    template.to_zarr(out, mode="w", compute=False, zarr_format=2, consolidated=True, encoding=encoding)
    group = zarr.open_group(str(out), mode="r+", zarr_format=2)
    arrays: dict[str, Any] = {name: group[name] for name in variables}
    t_arr, p_arr = arrays["2m_temperature"], arrays["total_precipitation"]
    l_arr, z_arr = arrays["land_sea_mask"], arrays["geopotential_at_surface"]
    zonal_t = np.broadcast_to((300.0 - 0.5 * np.abs(lat))[:, None], (721, 1440)).astype("float32")
    nan = np.full((721, 1440), np.nan, "float32")
    l_arr[0], z_arr[0] = lsm.astype("float32"), (relief * 9.80665).astype("float32")
    batch = 24  # hours written together (zarr encodes a batch's chunks concurrently)
    for i0 in range(0, len(times), batch):
        hours = times[i0 : i0 + batch]
        t_block = np.repeat(zonal_t[None], len(hours), axis=0)
        p_block = np.zeros((len(hours), 721, 1440), "float32")
        for k, t in enumerate(hours):
            if t > valid_stop:  # ARCO's store runs on past valid_time_stop, unfilled
                t_block[k], p_block[k] = nan, nan
                continue
            day = t.day_of_year + t.hour / 24.0
            t_block[k][where] = truth("t2m", blon, blat, day)
            p_block[k][where] = truth("tp", blon, blat, day) / 1000.0 / 24.0  # mm d-1 -> m per hour
        t_arr[i0 : i0 + len(hours)], p_arr[i0 : i0 + len(hours)] = t_block, p_block
        for i, t in enumerate(hours, start=i0):
            if t > valid_stop:
                l_arr[i], z_arr[i] = nan, nan
            elif i:  # the invariant fields, hourly as ARCO stores them: the same compressed chunk each hour
                for arr in (l_arr, z_arr):
                    shutil.copyfile(out / arr.path / "0.0.0", out / arr.path / f"{i}.0.0")
    zarr.consolidate_metadata(str(out))
    return out
