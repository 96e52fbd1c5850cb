"""CF-1.10 and ACDD-1.3 metadata of the output stores, and their netCDF export.

Set at the writer, so that every reader gets the store right:

- every variable's attributes are set here from what the variable is (replaced, never merged with
  attributes a computation carried along: ``zone`` once inherited air temperature's);
- the grid mapping is a scalar coordinate ``crs`` (``grid_mapping_name`` and ``crs_wkt``, as CF,
  rioxarray, cf-xarray and GDAL >= 3.9 read it); no dict-valued attributes, so a store converts
  to netCDF as it is;
- coordinates and bounds carry no fill value, ``time_bnds`` no units of its own (CF 7.1);
- ``cell_area`` (m2, on the sphere, per latitude) and ``land_fraction`` travel with the maps
  (``cell_measures``), so anyone recomputes the totals: sum(flux x days x cell_area x land_fraction);
- flags carry ``flag_values`` of the variable's dtype and ``flag_meanings``;
- the ACDD discovery attributes (title, summary, creator, licence, coverage, references).

Zarr keeps attributes as JSON, which has no integer widths: netCDF-C reads ``flag_values``
``[0, 1]`` as int32 (4.10) or byte (4.9) beside a byte variable. :func:`type_attributes` records each numeric
attribute's type in NCZarr's ``_nczarr_attr`` (netCDF-C reads it; xarray hides it).

GDAL before 3.9 does not read CF grid mappings from Zarr (only its own ``_CRS`` dict attribute,
which the netCDF writers refuse): it places the Zarr store's pixels right but knows no CRS, so
GDAL users open the netCDF export (:func:`export_netcdf`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from fluxmap.io.provenance import atomic_path
from fluxmap.science import periods, products
from fluxmap.science.grids import cell_area

__all__ = [
    "STANDARD_NAME_VOCABULARY",
    "DISCOVERY",
    "FLAGS",
    "WGS84_WKT",
    "cf_dataset",
    "complete_cf",
    "export_netcdf",
    "export_groups",
    "landcover_attrs",
    "refresh_discovery",
    "zone_attrs",
    "type_attributes",
]

WGS84_WKT = (
    'GEOGCRS["WGS 84",DATUM["World Geodetic System 1984",ELLIPSOID["WGS 84",6378137,298.257223563,'
    'LENGTHUNIT["metre",1]]],PRIMEM["Greenwich",0,ANGLEUNIT["degree",0.0174532925199433]],CS[ellipsoidal,2],'
    'AXIS["geodetic latitude (Lat)",north,ORDER[1],ANGLEUNIT["degree",0.0174532925199433]],'
    'AXIS["geodetic longitude (Lon)",east,ORDER[2],ANGLEUNIT["degree",0.0174532925199433]],'
    'ID["EPSG",4326]]'
)
STANDARD_NAME_VOCABULARY = "CF Standard Name Table v93"
"""The table the standard names were checked against (the one compliance-checker 6.1 ships)."""

_ENSEMBLE = {
    "sd": "standard deviation of the bootstrap ensemble",
    "p05": "5th percentile of the bootstrap ensemble",
    "p95": "95th percentile of the bootstrap ensemble",
    "mad": "median absolute deviation of the bootstrap ensemble",
    "cv": "coefficient of variation of the bootstrap ensemble",
}
_F32 = {"_FillValue": np.float32(np.nan), "dtype": "float32"}
FLAGS = {"_FillValue": np.int8(-1), "dtype": "int8"}
"""Encoding of the flag variables: signed bytes, so that netCDF-C 4.9 (which reads small JSON
integers as bytes) and 4.10 (which reads ``_nczarr_attr``) both see flags of the variable's type."""
_AXES = {
    "lat": {"standard_name": "latitude", "long_name": "latitude of the cell centre", "units": "degrees_north",
            "axis": "Y", "bounds": "lat_bnds"},
    "lon": {"standard_name": "longitude", "long_name": "longitude of the cell centre", "units": "degrees_east",
            "axis": "X", "bounds": "lon_bnds"},
}  # fmt: skip
_NO_FILL = ("lat", "lon", "time", "lat_bnds", "lon_bnds", "time_bnds", "cell_area", "crs", "member")


def _flag(long_name: str, meanings: str) -> dict[str, Any]:
    return {"long_name": long_name, "units": "1", "flag_values": np.array([0, 1], "int8"), "flag_meanings": meanings}


def _variable(v: str, mean_of: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Attributes and encoding of the store variable ``v`` (None: not one this module names)."""
    ratio = re.fullmatch(r"([a-z]+)_([a-z]+)_ratio(?:_(unified|sd|p05|p95|mad|cv|members))?", v)
    base, _, suffix = v.partition("_")
    if ratio and ratio[1] in products.VARIABLES and ratio[2] in products.VARIABLES:
        which = {None: "zone models", "unified": "unified model", "members": "each bootstrap member"}
        what = which.get(ratio[3]) or _ENSEMBLE[str(ratio[3])]
        return {"long_name": f"ratio {ratio[1]}/{ratio[2]} modelled on records giving both{mean_of}{what}",
                "units": "1", "cell_methods": "time: mean"}, dict(_F32)  # fmt: skip
    if base in products.VARIABLES and suffix in ("", "unified", "members", *_ENSEMBLE):
        spec = products.spec(base)
        a: dict[str, Any] = {"units": spec.units, "cell_methods": "time: mean"}
        if suffix in ("", "unified", "members"):
            if spec.standard_name:
                a["standard_name"] = spec.standard_name
            model = {"": "zone models", "unified": "unified model", "members": "each bootstrap member"}[suffix]
            a["long_name"] = spec.long_name + mean_of + model
        else:
            a["long_name"] = f"{_ENSEMBLE[suffix]} for {base}{mean_of.rstrip(', ')}"
            if suffix == "cv":
                a["units"] = "1"
        a.update({k: val for k, val in spec.extra.items() if k == "comment"})
        return a, dict(_F32)
    if v.endswith("_di"):
        return {"long_name": f"dissimilarity index of {v.removesuffix('_di')}'s predictors to its training data "
                "(Meyer & Pebesma 2021)", "units": "1"}, dict(_F32)  # fmt: skip
    if v.endswith("_aoa"):
        return _flag(f"1 inside the area of applicability of {v.removesuffix('_aoa')}'s unified model, 0 outside "
                     "(dissimilarity index above the training threshold)", "outside inside"), dict(FLAGS)  # fmt: skip
    if v.endswith("_missing_predictors"):
        return _flag(f"1 where a predictor of {v.removesuffix('_missing_predictors')} was missing (model default "
                     "used)", "complete missing"), dict(FLAGS)  # fmt: skip
    return None


def zone_attrs(zones: int) -> dict[str, Any]:
    """The zone variable's attributes: flags 0 (not land) and 1..``zones``."""
    return {
        "long_name": "environmental zone of the cell (PCA + k-means on the zone factors; 0: not land)",
        "units": "1",
        "flag_values": np.arange(0, zones + 1, dtype="int8"),
        "flag_meanings": " ".join(["not_land", *(f"zone_{z}" for z in range(1, zones + 1))]),
    }


def landcover_attrs() -> dict[str, Any]:
    """The majority land-cover class variable's attributes: IGBP flags, 0 for no mapped land."""
    return {
        "long_name": "majority IGBP class of the cell's mapped land (MCD12C1 2019 LC_Type1; 0: none)",
        "units": "1",
        "flag_values": np.arange(0, 18, dtype="int8"),
        "flag_meanings": " ".join(["none", *products.IGBP_CLASSES.values()]),
    }


def _edges(centres: np.ndarray) -> np.ndarray:
    step = np.diff(centres).mean() if centres.size > 1 else 1.0
    return np.stack([centres - step / 2, centres + step / 2], axis=1)


def _iso(t: Any) -> str:
    return pd.Timestamp(t).strftime("%Y-%m-%dT%H:%M:%SZ")


def coverage(ds: xr.Dataset) -> dict[str, Any]:
    """ACDD coverage attributes from the dataset's bounds."""
    lat_b, lon_b = ds["lat_bnds"].values, ds["lon_bnds"].values
    out: dict[str, Any] = {
        "geospatial_lat_min": float(lat_b.min()),
        "geospatial_lat_max": float(lat_b.max()),
        "geospatial_lon_min": float(lon_b.min()),
        "geospatial_lon_max": float(lon_b.max()),
        "geospatial_lat_units": "degrees_north",
        "geospatial_lon_units": "degrees_east",
        "geospatial_lat_resolution": f"{abs(float(np.diff(lat_b[0])[0])):g} degree",
        "geospatial_lon_resolution": f"{abs(float(np.diff(lon_b[0])[0])):g} degree",
    }
    if "time_bnds" in ds and ds.sizes.get("time", 0):
        tb = ds["time_bnds"].values
        out["time_coverage_start"], out["time_coverage_end"] = _iso(tb.min()), _iso(tb.max())
        out["time_coverage_resolution"] = "P1Y" if ds["time"].attrs.get("fluxmap_step") == "year" else "P8D"
    return out


def cf_dataset(
    pred: xr.Dataset,
    *,
    zone: xr.DataArray | None,
    attrs: dict[str, Any],
    step: str = "8day",
    zones: int | None = None,
    land_fraction: xr.DataArray | None = None,
) -> xr.Dataset:
    """The prediction with its CF and ACDD metadata (see the module's docstring).

    ``step``: ``8day`` (MODIS periods) or ``year`` (annual maps: bounds from 1 January to the next,
    the time axis marked ``fluxmap_step: year`` so that totals count the year's days). ``zones``:
    the number of zones (``zone``'s flags; read from ``zone`` when it is in memory).
    ``land_fraction``: the fraction of each cell mapped, the weight of the totals. ``attrs``: the
    global attributes (ACDD's title, summary, creator, licence, references; provenance); the
    coverage is added from the grid."""
    ds = pred.copy()
    mean_of = ", 8-day mean, " if step == "8day" else ", annual mean, "
    for name in list(ds.data_vars):
        named = _variable(str(name), mean_of)
        if named is not None:
            ds[name].attrs, ds[name].encoding = named
    if zone is not None:
        if zones is None:
            if zone.chunks:
                raise ValueError("cf_dataset: pass zones= (the number of zones) with a lazy zone map")
            zones = int(zone.max())
        ds["zone"] = zone.astype("int8")
        ds["zone"].attrs = zone_attrs(zones)  # replaced: a zone map may carry its factors' attributes
        ds["zone"].encoding = dict(FLAGS)
    if land_fraction is not None:
        ds["land_fraction"] = land_fraction.astype("float32")
        ds["land_fraction"].encoding = {"dtype": "float32", "_FillValue": np.float32(np.nan)}
    if "land_fraction" in ds:
        previous = ds["land_fraction"].attrs.get("long_name", "")
        how = re.search(r"\((.*)\)$", previous)
        ds["land_fraction"].attrs = {
            "standard_name": "land_area_fraction",
            "long_name": "fraction of the cell that is mapped land" + (f" ({how[1]})" if how else ""),
            "units": "1",
        }
    starts = pd.DatetimeIndex(ds.time.values)
    if step == "year":
        bounds = np.stack([starts.values, (starts + pd.DateOffset(years=1)).values], axis=1)
    else:
        bounds = periods.period_bounds(starts)
    dlat = float(abs(np.diff(ds.lat.values).mean())) if ds.sizes["lat"] > 1 else 1.0
    dlon = float(abs(np.diff(ds.lon.values).mean())) if ds.sizes["lon"] > 1 else 1.0
    ds = ds.assign_coords(
        time_bnds=(("time", "nv"), bounds),
        lat_bnds=(("lat", "nv"), _edges(ds.lat.values)),
        lon_bnds=(("lon", "nv"), _edges(ds.lon.values)),
    )
    ds["cell_area"] = xr.DataArray(
        cell_area(ds.lat.values, dlat, dlon),
        dims="lat",
        coords={"lat": ds.lat},
        attrs={
            "standard_name": "cell_area",
            "long_name": "area of the grid cell on the sphere (R = 6371007.181 m), the same for every longitude",
            "units": "m2",
        },  # fmt: skip
    )
    first = starts[0].strftime("%Y-%m-%d")
    time_enc = {"units": f"days since {first} 00:00:00", "calendar": "proleptic_gregorian", "dtype": "float64"}
    ds["time"].attrs = {
        "standard_name": "time",
        "long_name": "start of the MODIS 8-day period" if step == "8day" else "start of the year",
        "axis": "T",
        "bounds": "time_bnds",
    }
    ds["time"].encoding = dict(time_enc)
    ds["time_bnds"].encoding = dict(time_enc)
    if step == "year":
        ds["time"].attrs["fluxmap_step"] = "year"
    if "member" in ds.dims:
        ds["member"] = ds["member"] if "member" in ds.coords else np.arange(ds.sizes["member"])
        ds["member"].attrs = {"long_name": "bootstrap ensemble member", "units": "1"}
    ds = ds.assign_coords(
        crs=xr.DataArray(
            np.int32(0),
            attrs={
                "grid_mapping_name": "latitude_longitude",
                "long_name": "WGS 84 geographic coordinates (EPSG:4326)",
                "crs_wkt": WGS84_WKT,
                "semi_major_axis": 6378137.0,
                "inverse_flattening": 298.257223563,
                "longitude_of_prime_meridian": 0.0,
            },
        )
    )
    ds = complete_cf(ds)
    ds.attrs = {
        "Conventions": "CF-1.10, ACDD-1.3",
        "standard_name_vocabulary": STANDARD_NAME_VOCABULARY,
        "cdm_data_type": "Grid",
        **attrs,
        **coverage(ds),
    }
    return ds


def complete_cf(ds: xr.Dataset) -> xr.Dataset:
    """What every gridded variable needs, whatever added it: the grid mapping, the cell measure, no
    dict-valued attributes; the lat/lon axes' attributes; coordinates and bounds without fill
    values. Idempotent."""
    ds = ds.copy()
    for axis, attrs in _AXES.items():
        if axis in ds.coords:  # set here, as variables added later may bring their own bare axes
            ds[axis].attrs = dict(attrs)
    for name in ds.variables:
        var = ds[name]
        var.attrs = {k: v for k, v in var.attrs.items() if not isinstance(v, dict)}  # e.g. GDAL's old _CRS
        if name in ds.data_vars and {"lat", "lon"} <= set(var.dims):
            if "crs" in ds.coords:
                var.attrs["grid_mapping"] = "crs"
            if "cell_area" in ds and name != "cell_area":
                var.attrs["cell_measures"] = "area: cell_area"
            var.attrs.setdefault("coverage_content_type", _content_type(str(name)))
        elif name == "cell_area":
            var.attrs.setdefault("coverage_content_type", "coordinate")
        if name in _NO_FILL or str(name).endswith("_bnds"):
            var.encoding = {k: v for k, v in var.encoding.items() if k not in ("_FillValue", "missing_value")}
            var.encoding["_FillValue"] = None
        ds[name] = var
    return ds


def _content_type(name: str) -> str:
    """ACDD ``coverage_content_type``: model output, its quality flags, or what it is mapped on."""
    if name.endswith(("_missing_predictors", "_aoa", "_di")):
        return "qualityInformation"
    if name in ("zone", "land_fraction", "landcover_majority"):
        return "auxiliaryInformation"
    return "modelResult"


_TYPED = ("flag_values", "flag_masks", "valid_min", "valid_max", "valid_range", "actual_range", "missing_value")


def _nczarr_type(dtype: np.dtype) -> str:
    return np.dtype(dtype).newbyteorder("<").str if np.dtype(dtype).itemsize > 1 else np.dtype(dtype).str


def type_attributes(path: str | Path) -> None:
    """After a Zarr v2 store's metadata is written: record the type of each numeric attribute that
    must match its variable's (``flag_values``, ``valid_*``) in NCZarr's ``_nczarr_attr``, and drop
    the units and calendar xarray copies onto ``time_bnds`` (CF 7.1: bounds inherit them; xarray
    copies them back when it reads). Consolidates the metadata again."""
    import zarr

    group = zarr.open_group(str(path), mode="r+")
    if group.metadata.zarr_format != 2:
        return
    for name, array in group.arrays():
        attrs = dict(array.attrs)
        if name == "time_bnds":
            for k in ("units", "calendar"):
                if k in attrs:
                    del array.attrs[k]
        typed = {k: _nczarr_type(array.dtype) for k in _TYPED if k in attrs}
        if typed and attrs.get("_nczarr_attr") != {"types": typed}:
            array.attrs["_nczarr_attr"] = {"types": typed}
    zarr.consolidate_metadata(str(path))


DISCOVERY = ("title", "summary", "keywords", "license", "references", "creator_name", "creator_email", "creator_url",
             "creator_type", "institution", "acknowledgement")  # fmt: skip
"""The ACDD attributes that describe a store without changing its values (refreshed on a rerun)."""


def refresh_discovery(path: str | Path, attrs: dict[str, Any]) -> bool:
    """Set the store's :data:`DISCOVERY` attributes to those of ``attrs`` (a rerun with a new
    licence or creator keeps the computed maps); True when something changed."""
    import zarr

    group = zarr.open_group(str(path), mode="r+")
    current = dict(group.attrs)
    wanted = {k: attrs[k] for k in DISCOVERY if k in attrs}
    stale = [k for k in DISCOVERY if k in current and k not in attrs]
    if all(current.get(k) == v for k, v in wanted.items()) and not stale:
        return False
    for k in stale:
        del group.attrs[k]
    group.attrs.update(wanted)
    zarr.consolidate_metadata(str(path))
    return True


# --- netCDF export -----------------------------------------------------------------------------------------

_SUFFIXES = ("", "_unified", "_sd", "_p05", "_p95", "_mad", "_cv", "_members", "_di", "_aoa", "_missing_predictors")
_SHARED = ("zone", "land_fraction", "cell_area", "landcover_majority")


def export_groups(ds: xr.Dataset) -> dict[str, list[str]]:
    """The store's variables grouped per exported file: each mapped flux (or modelled ratio) with
    its ensemble, area of applicability and flags, and a ratio of two maps (``rh_over_sr``) with its
    numerator; any other time-varying variable alone."""
    timed = [str(v) for v in ds.data_vars if "time" in ds[v].dims and not str(v).endswith("_bnds")]
    heads = sorted(
        (v for v in timed if v in products.VARIABLES or re.fullmatch(r"[a-z]+_[a-z]+_ratio", v)), key=len, reverse=True
    )
    groups: dict[str, list[str]] = {}
    for v in timed:
        head = next((h for h in heads if v == h or (v.startswith(h + "_") and v[len(h) :] in _SUFFIXES)), None)
        if head is None:  # e.g. rh_over_sr, a ratio of two maps: with its numerator
            numerator = v.split("_over_")[0]
            head = numerator if "_over_" in v and numerator in heads else v
        groups.setdefault(head, []).append(v)
    return {h: sorted(vs, key=lambda x: (x != h, x)) for h, vs in sorted(groups.items())}


def _typed(attrs: dict[str, Any], dtype: np.dtype) -> dict[str, Any]:
    """Numeric attributes that must share their variable's dtype, as arrays of it (JSON gave lists)."""
    return {k: (np.asarray(v, dtype=dtype) if k in _TYPED else v) for k, v in attrs.items()}


def export_netcdf(
    store: str | Path,
    out_dir: str | Path,
    *,
    prefix: str,
    variables: Iterable[str] | None = None,
    complevel: int = 4,
    log: Any = print,
) -> list[Path]:
    """One CF-1.10 netCDF-4 file per exported group (:func:`export_groups`) and year of the store:
    ``{prefix}_{group}_{year}.nc``, zlib-compressed with the shuffle filter, chunked like the store
    (one time chunk per file at most), written chunk by chunk from the lazy store (memory bounded by
    the chunks), atomically. ``variables``: only these groups. Returns the files written."""
    import netCDF4

    src = xr.open_zarr(store, consolidated=True)
    groups = export_groups(src)
    if variables is not None:
        wanted = list(variables)
        unknown = sorted(set(wanted) - set(groups))
        if unknown:
            raise ValueError(f"{store}: no variable(s) {unknown} to export; it holds {sorted(groups)}")
        groups = {k: v for k, v in groups.items() if k in wanted}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    years = pd.DatetimeIndex(src.time.values).year
    for head, names in groups.items():
        for year in sorted(set(years)):
            part = src[[*names, *(s for s in _SHARED if s in src)]].isel(time=np.flatnonzero(years == year))
            part = part.assign_coords({c: src[c] for c in ("lat_bnds", "lon_bnds") if c in src})
            if "time_bnds" in src:
                part = part.assign_coords(time_bnds=src["time_bnds"].isel(time=np.flatnonzero(years == year)))
            part = part.assign_coords(crs=src["crs"]) if "crs" in src else part
            part = part.assign_coords({c: part[c].load() for c in part.coords})  # bounds: small
            encoding: dict[str, dict[str, Any]] = {}
            for v in part.data_vars:
                var = part[v]
                stored = src[v].encoding
                chunks = tuple(min(c[0], n) for c, n in zip(var.chunks or (), var.shape)) if var.chunks else None
                enc: dict[str, Any] = {"zlib": True, "complevel": complevel, "shuffle": True}
                if chunks and all(chunks):
                    enc["chunksizes"] = chunks
                dtype = np.dtype(stored.get("dtype", var.dtype))
                enc["dtype"] = dtype
                if "_FillValue" in stored:
                    enc["_FillValue"] = stored["_FillValue"]
                elif v in _NO_FILL:
                    enc["_FillValue"] = None
                part[v].attrs = _typed(dict(var.attrs), dtype)
                encoding[str(v)] = enc
            time_enc = {k: src.time.encoding[k] for k in ("units", "calendar") if k in src.time.encoding}
            time_enc["dtype"] = np.dtype("float64")
            for c in part.coords:
                encoding[str(c)] = {"_FillValue": None, **(time_enc if c in ("time", "time_bnds") else {})}
            part.attrs = {
                **{k: v for k, v in src.attrs.items() if not k.startswith("fluxmap_regions")},
                **coverage(part),
                "date_created": _iso(pd.Timestamp.now("UTC")),  # the store has none: it stays byte-identical
                "history": (src.attrs.get("history", "") + f"\n{_iso(pd.Timestamp.now('UTC'))} fluxmap export "
                            f"--format netcdf ({head}, {year}) from {Path(store).name}").strip(),
            }  # fmt: skip
            part = part.reset_coords([c for c in ("lat_bnds", "lon_bnds", "time_bnds") if c in part.coords])
            path = out_dir / f"{prefix}_{head}_{year}.nc"
            with atomic_path(path) as tmp:
                part.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=encoding)
                with netCDF4.Dataset(tmp, "a") as nc:  # CF 7.1: bounds take the units of their coordinate
                    if "time_bnds" in nc.variables:
                        for k in ("units", "calendar"):
                            if k in nc["time_bnds"].ncattrs():
                                nc["time_bnds"].delncattr(k)
            written.append(path)
            log(f"export: {path} ({', '.join(names)}; {path.stat().st_size / 2**20:.1f} MiB)")
    (out_dir / f"{prefix}_files.json").write_text(json.dumps([p.name for p in written], indent=1) + "\n")
    return written
