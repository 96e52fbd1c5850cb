"""fluxmap's maps and site observations as ILAMB reference data (``fluxmap export --format ilamb``).

ILAMB (Collier et al. 2018) reads one variable per netCDF file, CF conventions, with ``units`` and a
``calendar`` on the time axis and time bounds (ILAMB v2 ``ilamblib.GetTime`` refuses a time without
them; ``doc/format_data.rst``). Each mapped flux is written as ``<var>/fluxmap_<var>.nc``: the 8-day
mean map (an annual map: ``<var>/fluxmap_<var>_annual.nc``) in kg m-2 s-1 (CMIP's units, which ILAMB converts from), ``time_bnds``, ``lat_bnds``,
``lon_bnds``. The site observations of the same flux are written as ILAMB's site data,
``<var>/fluxmap_<var>_sites.nc``: the variable on ``(time, data)``, one ``data`` entry per place
with ``lat(data)`` and ``lon(data)``, the periods (8-day or years) the observations were aligned to as time
and time bounds, missing values as ``_FillValue``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from fluxmap.io.provenance import atomic_path

__all__ = ["KG_M2_S_PER_G_M2_D", "ilamb_map", "ilamb_sites", "write_ilamb"]

KG_M2_S_PER_G_M2_D = 1.0 / 86400.0e3
"""1 g m-2 d-1 in kg m-2 s-1."""

_TIME = {"units": "days since 1850-01-01 00:00:00", "calendar": "standard", "dtype": "float64"}


def _time_attrs() -> dict[str, str]:
    return {"standard_name": "time", "axis": "T", "bounds": "time_bnds"}


def ilamb_map(store: xr.Dataset, var: str, title: str, what: str = "8-day means") -> xr.Dataset:
    """The map of ``var`` (g m-2 d-1, 8-day periods or years with ``time_bnds``) as an ILAMB reference
    (lazy); an annual map from climatologies keeps ``fluxmap_climatological_year`` (its year label is
    arbitrary: ``fluxmap evaluate`` compares it with the same days of any year)."""
    da = (store[var] * np.float32(KG_M2_S_PER_G_M2_D)).astype("float32")
    keep = {k: v for k, v in store[var].attrs.items() if k in ("standard_name", "long_name", "cell_methods")}
    da.attrs = {**keep, "units": "kg m-2 s-1"}
    ds = xr.Dataset({var: da, **{b: store[b] for b in ("time_bnds", "lat_bnds", "lon_bnds") if b in store}})
    ds["time"].attrs = _time_attrs()
    for c in ("lat", "lon"):
        ds[c].attrs = {k: v for k, v in store[c].attrs.items() if k in ("standard_name", "units", "axis", "bounds")}
    ds.attrs = {"title": title, "Conventions": "CF-1.10", "source": "fluxmap", "comment": f"{what} of the map"}
    if "fluxmap_climatological_year" in store.attrs:
        ds.attrs["fluxmap_climatological_year"] = store.attrs["fluxmap_climatological_year"]
    return ds


def ilamb_sites(obs: pd.DataFrame, var: str, title: str, what: str = "8-day means") -> xr.Dataset:
    """Site observations (rows: ``location``, ``lat``, ``lon``, ``start``, ``end``, ``value`` in
    g m-2 d-1) as ILAMB site data: ``var(time, data)`` in kg m-2 s-1, several records of one place
    and period averaged."""
    g = obs.groupby(["start", "location"], as_index=False).agg(value=("value", "mean"), end=("end", "first"))
    places = obs.groupby("location")[["lat", "lon"]].first()
    times = pd.DatetimeIndex(sorted(g.start.unique()))
    ends = g.groupby("start").end.first().reindex(times).to_numpy()
    table = g.pivot(index="start", columns="location", values="value").reindex(index=times, columns=places.index)
    values = (table.to_numpy(dtype="float64") * KG_M2_S_PER_G_M2_D).astype("float32")
    ds = xr.Dataset(
        {
            var: (
                ("time", "data"),
                values,
                {
                    "units": "kg m-2 s-1",
                    "coordinates": "lat lon",
                    "long_name": f"{var} observed at the sites, {what}",
                },
            ),  # fmt: skip
            "lat": (
                ("data",),
                places.lat.to_numpy(dtype="float64"),
                {"units": "degrees_north", "standard_name": "latitude"},
            ),
            "lon": (
                ("data",),
                places.lon.to_numpy(dtype="float64"),
                {"units": "degrees_east", "standard_name": "longitude"},
            ),
            "site": (("data",), places.index.astype(str).to_numpy(), {"long_name": "fluxmap location id"}),
            "time_bnds": (("time", "nb"), np.stack([times.values, ends.astype("datetime64[ns]")], axis=1)),
        },
        coords={"time": ("time", times.values, _time_attrs())},
    )
    ds.attrs = {"title": title, "Conventions": "CF-1.10", "source": "fluxmap", "featureType": "timeSeries"}
    return ds


def write_ilamb(ds: xr.Dataset, path: str | Path) -> Path:
    """Write ``ds`` as netCDF-4 (times in days since 1850 on the standard calendar, NaN as the fill
    value), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    enc: dict[str, dict] = {
        "time": dict(_TIME),
        "time_bnds": {"units": _TIME["units"], "calendar": "standard", "dtype": "float64"},
    }
    for v in map(str, ds.data_vars):
        if v not in enc and ds[v].dtype.kind == "f":
            enc[v] = {"_FillValue": np.float32(1.0e20) if ds[v].dtype == np.float32 else 1.0e20, "zlib": True}
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", encoding=enc, format="NETCDF4")
    return path
