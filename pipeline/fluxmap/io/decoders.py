"""Decoders: a catalog entry's raw source (lazy, still encoded) to canonical variables, units and CF
attributes, one per product a catalog may declare (``metadata.fluxmap.product``). The bit and scale
rules are :mod:`fluxmap.science.products`'; here the sources' names, units and time axes are
checked and mapped, with errors that name the entry and the variable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from fluxmap.io.catalog_schema import CatalogError
from fluxmap.science import periods, products

__all__ = ["DECODERS", "to_units"]


_UNIT_ALIASES: dict[str, dict[str, Callable[[xr.DataArray], xr.DataArray]]] = {
    "K": {
        "K": lambda x: x,
        "kelvin": lambda x: x,
        "degK": lambda x: x,
        "Kelvin": lambda x: x,
        "celsius": lambda x: x + 273.15,
        "degC": lambda x: x + 273.15,
        "deg C": lambda x: x + 273.15,
        "C": lambda x: x + 273.15,
        "degrees_Celsius": lambda x: x + 273.15,
    },
    "mm d-1": {
        "mm d-1": lambda x: x,
        "mm/day": lambda x: x,
        "mm day-1": lambda x: x,
        "kg m-2 d-1": lambda x: x,
        "kg m-2 s-1": lambda x: x * 86400.0,
        "m d-1": lambda x: x * 1000.0,
    },
    # Carbon fluxes (g C m-2 d-1; CF "g m-2 d-1"): CMIP/TRENDY kg m-2 s-1 of carbon, FLUXCOM's
    # g C m-2 d-1, annual sums per year (365.25 days), eddy-covariance umol CO2 m-2 s-1.
    products.FLUX_UNITS: {
        **{
            u: lambda x: x
            for u in (
                "g m-2 d-1",
                "g C m-2 d-1",
                "gC m-2 d-1",
                "g m-2 day-1",
                "gC m-2 day-1",
                "g C m-2 day-1",
                "gC/m2/day",
                "g/m2/d",
            )  # fmt: skip
        },
        **{u: lambda x: x * 86400.0e3 for u in ("kg m-2 s-1", "kg C m-2 s-1", "kgC m-2 s-1", "kg/m2/s")},
        **{u: lambda x: x * 86400.0 for u in ("g m-2 s-1", "g C m-2 s-1")},
        **{u: lambda x: x * 1.0e3 for u in ("kg m-2 d-1", "kg C m-2 d-1")},
        **{u: lambda x: x / 365.25 for u in ("g m-2 yr-1", "g C m-2 yr-1", "gC m-2 yr-1", "g m-2 a-1")},
        **{u: lambda x: x * products.UMOL_CO2_M2_S_TO_G_C_M2_D for u in ("umol m-2 s-1", "micromol m-2 s-1")},
    },
    "m": {"m": lambda x: x, "metres": lambda x: x, "meters": lambda x: x},
    "kg m-2": {"kg m-2": lambda x: x, "kg C m-2": lambda x: x},
    "1": {"1": lambda x: x, "": lambda x: x},
}


def _source_var(raw: xr.Dataset, meta: dict, role: str, where: str) -> xr.DataArray:
    """The source variable playing ``role`` (renamed by ``meta['variables']``), checked."""
    name = (meta.get("variables") or {}).get(role, role)
    if name not in raw.variables:
        raise CatalogError(
            f"{where}: variable {name!r} (role {role!r}) not in the source; it has {sorted(map(str, raw.data_vars))}"
        )
    return raw[name]


def _expect_units(da: xr.DataArray, accepted: set[str], where: str) -> None:
    units = da.attrs.get("units")
    if units is not None and units not in accepted:
        raise CatalogError(f"{where}: variable {da.name!r} has units {units!r}; expected one of {sorted(accepted)}")


def to_units(
    da: xr.DataArray,
    target: str,
    where: str,
    *,
    declared: str | None = None,
    name: str | None = None,
    setting: tuple[str, str] = ("the catalog", "the catalog's metadata.fluxmap.units"),
) -> xr.DataArray:
    """``da`` converted to ``target`` units from the units the file gives or ``declared`` by the
    ``setting`` (who declares, and the setting's name).

    Both given and different: refused (the setting contradicts the file). Neither: refused. Units
    fluxmap has no conversion for: refused, naming them and what it accepts.
    """
    label = f"variable {name!r} (source {da.name!r})" if name and name != da.name else f"variable {da.name!r}"
    file_units = da.attrs.get("units")
    if declared is not None and file_units is not None and declared != file_units:
        raise CatalogError(
            f"{where}: {label}: {setting[0]} says {declared!r} but the file says {file_units!r}; "
            f"correct {setting[1]} or the file"
        )
    units = declared if declared is not None else file_units
    table = _UNIT_ALIASES.get(target, {target: lambda x: x})
    if units is None:
        raise CatalogError(
            f"{where}: {label} has no units attribute; declare them in {setting[1]} "
            f"({target!r} or one of {sorted(table)})"
        )
    if units not in table:
        raise CatalogError(
            f"{where}: {label} has units {units!r}, which fluxmap cannot convert to {target!r}; accepted: {sorted(table)}"
        )
    return table[units](da.astype("float32"))


def _geographic(raw: xr.Dataset, meta: dict) -> xr.Dataset:
    """A raster's ``x``/``y`` named ``lon``/``lat`` when its CRS (the file's, else the catalog's) is
    geographic (a GeoTIFF in EPSG:4326); a single ``band`` dropped."""
    if "band" in raw.dims and raw.sizes["band"] == 1:
        raw = raw.squeeze("band", drop=True)
    if not ({"x", "y"} <= set(raw.dims)):
        return raw
    crs = meta.get("crs")
    if crs is None and "spatial_ref" in raw.coords:
        crs = raw["spatial_ref"].attrs.get("crs_wkt")
    if crs is None:
        return raw
    from pyproj import CRS

    if not CRS.from_user_input(crs).is_geographic:
        return raw
    return raw.rename({"x": "lon", "y": "lat"}).drop_vars("spatial_ref", errors="ignore")


def _geo_dims(ds: xr.Dataset) -> xr.Dataset:
    """Canonical geographic dimension names ``lat``/``lon`` (ERA5 says latitude/longitude)."""
    ren = {k: v for k, v in (("latitude", "lat"), ("longitude", "lon")) if k in ds.dims or k in ds.coords}
    return ds.rename(ren) if ren else ds


def _with_coords(raw: xr.Dataset, data: dict[str, xr.DataArray]) -> xr.Dataset:
    return _geo_dims(xr.Dataset(data, attrs=dict(raw.attrs)))


def _period_days(raw: xr.Dataset, where: str) -> xr.DataArray:
    if "time" not in raw.coords:
        raise CatalogError(f"{where}: 8-day period sums need a time coordinate")
    starts = raw["time"].values
    bad = np.asarray(periods.period_start_of(starts).values != starts)
    if bad.any():
        raise CatalogError(f"{where}: time {starts[bad][0]} is not the start of a MODIS 8-day period")
    return xr.DataArray(periods.period_days(starts), dims="time", coords={"time": raw["time"]})


def _decode_mod11a2(raw: xr.Dataset, meta: dict, where: str, **opt: Any) -> xr.Dataset:
    out = {}
    for name, lst_role, qc_role in (("lst_day", "LST_Day_1km", "QC_Day"), ("lst_night", "LST_Night_1km", "QC_Night")):
        lst = _source_var(raw, meta, lst_role, where)
        _expect_units(lst, {"K", "Kelvin", "kelvin"}, where)
        out[name] = products.decode_mod11a2(lst, _source_var(raw, meta, qc_role, where), name=name, **opt)
    return _with_coords(raw, out)


def _decode_mod09a1(raw: xr.Dataset, meta: dict, where: str, **opt: Any) -> xr.Dataset:
    bands = meta.get("bands", ["b01", "b02", "b03", "b04", "b05", "b06", "b07"])
    state = _source_var(raw, meta, "sur_refl_state_500m", where) if meta.get("state_qa", True) else None
    clear = True if state is None else products.state_clear(state, **opt)  # one mask for every band
    out = {}
    for b in bands:
        out[f"refl_{b}"] = products.decode_reflectance(_source_var(raw, meta, f"sur_refl_{b}", where), clear, band=b)
    if {"b01", "b02"} <= set(bands):
        out["ndvi"] = products.ndvi(out["refl_b01"], out["refl_b02"])
        if "b03" in bands:
            out["evi"] = products.evi(out["refl_b01"], out["refl_b02"], out["refl_b03"])
        if "b06" in bands:
            out["lswi"] = products.lswi(out["refl_b02"], out["refl_b06"])
    ds = _with_coords(raw, out)
    crs = meta.get("crs")
    if crs:
        import rioxarray  # noqa: F401  (the .rio accessor)

        ds = ds.rio.write_crs(crs)
    return ds


def _decode_mod15a2h(raw: xr.Dataset, meta: dict, where: str, **opt: Any) -> xr.Dataset:
    qc = _source_var(raw, meta, "FparLai_QC", where)
    return _with_coords(
        raw,
        {
            "lai": products.decode_mod15a2h(_source_var(raw, meta, "Lai_500m", where), qc, name="lai", **opt),
            "fpar": products.decode_mod15a2h(_source_var(raw, meta, "Fpar_500m", where), qc, name="fpar", **opt),
        },
    )


def _decode_mod17a2h(raw: xr.Dataset, meta: dict, where: str, **opt: Any) -> xr.Dataset:
    return _with_coords(
        raw, {"gpp": products.decode_mod17a2h(_source_var(raw, meta, "Gpp_500m", where), _period_days(raw, where))}
    )


def _decode_mod16a2(raw: xr.Dataset, meta: dict, where: str, **opt: Any) -> xr.Dataset:
    return _with_coords(
        raw, {"et": products.decode_mod16a2(_source_var(raw, meta, "ET_500m", where), _period_days(raw, where))}
    )


def _decode_landcover(raw: xr.Dataset, meta: dict, where: str, **opt: Any) -> xr.Dataset:
    lc = _source_var(raw, meta, "LC_Type1", where)
    if "band" in lc.dims:
        lc = lc.squeeze("band", drop=True)
    return _with_coords(raw, {"landcover": products.decode_mcd12(lc, product=meta["product"])})


def _time_step_hours(raw: xr.Dataset, meta: dict, where: str) -> float:
    if "step_hours" in meta:
        return float(meta["step_hours"])
    t = raw["time"].values
    if len(t) < 2:
        raise CatalogError(f"{where}: give metadata.fluxmap.step_hours; one time step cannot tell it")
    steps = np.unique(np.diff(t).astype("timedelta64[s]").astype(float) / 3600.0)
    if len(steps) != 1:
        raise CatalogError(f"{where}: irregular time steps {steps[:5]} h; give metadata.fluxmap.step_hours")
    return float(steps[0])


def _valid_times(raw: xr.Dataset) -> xr.Dataset:
    """ARCO-ERA5's store runs on past the last step written, unfilled; its attributes
    ``valid_time_start``/``valid_time_stop`` say where the data are."""
    t0, t1 = raw.attrs.get("valid_time_start"), raw.attrs.get("valid_time_stop")
    if (t0 or t1) and "time" in raw.dims:
        return raw.sel(time=slice(pd.Timestamp(t0) if t0 else None, pd.Timestamp(t1) if t1 else None))
    return raw


def _decode_era5(raw: xr.Dataset, meta: dict, where: str, **opt: Any) -> xr.Dataset:
    raw = _valid_times(raw)
    t2m = _source_var(raw, meta, "2m_temperature", where)
    tp = _source_var(raw, meta, "total_precipitation", where)
    _expect_units(t2m, {"K", "kelvin"}, where)
    _expect_units(tp, {"m", "m of water equivalent"}, where)
    out = {
        "t2m": products.decode_era5_temperature(t2m),
        "tp": products.decode_era5_precipitation(tp, step_hours=_time_step_hours(raw, meta, where)),
    }
    return _with_coords(raw, {k: v.assign_attrs(source=f"ERA5 ({where})") for k, v in out.items()})


def _decode_era5_invariant(raw: xr.Dataset, meta: dict, where: str, **opt: Any) -> xr.Dataset:
    """ERA5's invariant fields as static layers: ``land_sea_mask`` (0-1) as ``land_fraction`` and
    ``geopotential_at_surface`` (m2 s-2) / g as ``elevation`` (m). ARCO-ERA5 stores them hourly like
    every single-level field; the first valid step is taken."""
    raw = _valid_times(raw)
    lsm = _source_var(raw, meta, "land_sea_mask", where)
    z = _source_var(raw, meta, "geopotential_at_surface", where)
    _expect_units(lsm, {"(0 - 1)", "1", "0-1"}, where)
    _expect_units(z, {"m**2 s**-2", "m2 s-2", "m^2 s^-2"}, where)
    if "time" in lsm.dims:
        lsm, z = lsm.isel(time=0, drop=True), z.isel(time=0, drop=True)
    out = {
        "land_fraction": products.apply_cf(lsm.astype("float32").clip(0.0, 1.0), "land_fraction"),
        "elevation": products.apply_cf((z / np.float32(products.STANDARD_GRAVITY)).astype("float32"), "elevation"),
    }
    ds = _with_coords(raw, {k: v.assign_attrs(source=f"ERA5 ({where})") for k, v in out.items()})
    return ds.drop_vars("time", errors="ignore").assign_attrs(fluxmap_time="static")


def _decode_canonical(raw: xr.Dataset, meta: dict, where: str, **opt: Any) -> xr.Dataset:
    """Sources already in physical units: rename by role, convert known units, attribute."""
    roles = meta.get("variables") or {}
    if not roles:
        raise CatalogError(f"{where}: a 'canonical' entry must map canonical names in metadata.fluxmap.variables")
    raw = _geographic(raw, meta)
    declared = dict(meta.get("units") or {})
    unknown = sorted(set(declared) - set(roles))
    if unknown:
        raise CatalogError(f"{where}: metadata.fluxmap.units names {unknown}, which the entry does not map")
    out = {}
    for canon in roles:
        spec = products.spec(canon)
        da = _source_var(raw, meta, canon, where)
        if canon == "landcover":
            out[canon] = products.apply_cf(da, canon)
            continue
        if canon == "land_fraction" and meta.get("land_codes"):
            out[canon] = products.apply_cf(da.isin(meta["land_codes"]).astype("float32"), canon)
            continue
        converted = to_units(da, spec.units, where, declared=declared.get(canon), name=canon)
        # The label names the real source and the units it came in, not a product it is not.
        out[canon] = products.apply_cf(converted, canon).assign_attrs(
            source=f"{where} ({da.name})", fluxmap_source_units=declared.get(canon) or da.attrs.get("units")
        )
    ds = _with_coords(raw, out)
    extra = [v for v in raw.data_vars if v not in set(roles.values())]
    ds = ds.assign({v: raw[v] for v in extra if v in meta.get("keep", [])})
    kind = meta.get("time") or ("series" if "time" in ds.dims else "static")
    if kind == "climatology" and ds.sizes.get("time") != 12:
        raise CatalogError(
            f"{where}: a climatology has 12 calendar months on its time axis, this one {ds.sizes.get('time')}"
        )
    regrid = {"fluxmap_regrid": meta["regrid"]} if "regrid" in meta else {}
    if meta.get("fill_coast"):
        regrid["fluxmap_fill_coast"] = 1
    return ds.assign_attrs(fluxmap_time=kind, **regrid)


DECODERS: dict[str, Callable[..., xr.Dataset]] = {
    "MOD11A2": _decode_mod11a2,
    "MOD09A1": _decode_mod09a1,
    "MOD15A2H": _decode_mod15a2h,
    "MOD17A2H": _decode_mod17a2h,
    "MOD16A2": _decode_mod16a2,
    "MCD12Q1": _decode_landcover,
    "MCD12C1": _decode_landcover,
    "ERA5": _decode_era5,
    "ERA5_INVARIANT": _decode_era5_invariant,
    "canonical": _decode_canonical,
}
"""Decoder of each product name a catalog entry may declare."""
