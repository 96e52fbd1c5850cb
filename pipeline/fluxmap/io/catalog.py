"""Catalogs of the predictor sources, opened as lazy cubes in canonical names and units.

A fluxmap catalog is a YAML file in Intake 2's format (``version: 2``; Intake can read
it too). fluxmap loads it without Intake: :func:`load_catalog` checks the file against
an allow-list (:mod:`fluxmap.io.catalog_schema`: known keys and plain values only, no
YAML tags, no templates but ``{PARAM}`` and ``{data(NAME)}``, local paths inside the
catalog's folder or an explicitly passed parameter) and opens each entry with a
reader built here from literal options. Nothing in a catalog is imported, evaluated
or expanded.

Each entry's ``metadata.fluxmap`` block says which product it holds (the decoder
in :mod:`fluxmap.science.products` to apply), which source variable plays which role when
the names differ from the product's own, the source's CRS where the file has none,
and the time step. :meth:`FluxCatalog.open` reads the entry lazily with the entry's
chunks, decodes it and returns a Dataset with canonical variables, units and CF
attributes. Opening computes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from fluxmap.io.catalog_schema import DATATYPES, READERS, STAC_READER, CatalogError, Source, parse_catalog
from fluxmap.io.stac import open_stac
from fluxmap.science import periods, products

__all__ = [
    "CatalogError",
    "FluxCatalog",
    "Source",
    "builtin_catalog",
    "describe",
    "load_catalog",
]

ALLOWED_READERS = READERS
"""Reader labels a fluxmap catalog may name (all return lazy xarray Datasets)."""

ALLOWED_DATATYPES = frozenset(DATATYPES)
"""Data-type labels a fluxmap catalog may name."""


# --- STAC (MODIS on the Planetary Computer; fluxmap.io.stac) --------------------------------


def _stac_reader_base() -> type:
    from intake.readers.readers import BaseReader

    return BaseReader


class StacCubeReader(_stac_reader_base()):  # type: ignore[misc]
    """The Intake reader behind the ``fluxmap.io.catalog:StacCubeReader`` label, for users who open
    fluxmap's catalogs with Intake itself; fluxmap calls :func:`open_stac` directly."""

    output_instance = "xarray:Dataset"
    imports = {"pystac_client", "odc.stac"}

    def _read(self, data, **kw: Any) -> xr.Dataset:
        return open_stac(data.url, local="://" not in data.url, **kw)


# --- opening one source ---------------------------------------------------------------------

_DEFAULT_ENGINE = {"zarr": "zarr", "netcdf": "netcdf4", "tiff": "rasterio"}


def _open_xarray(src: Source) -> xr.Dataset:
    """Open a file or store with xarray from the entry's literal options (lazy)."""
    opts = {k: v for k, v in src.options.items() if k != "open_local"}
    engine = opts.pop("engine", _DEFAULT_ENGINE[src.kind])
    opts.setdefault("chunks", {})
    if src.group:
        opts["group"] = src.group
    if src.local is not None:
        if not src.local.exists():
            raise FileNotFoundError(str(src.local))
        target: Any = str(src.local)
    elif engine == "zarr":
        target = src.url
        opts["storage_options"] = src.storage_options
    else:
        import fsspec

        target = fsspec.open(src.url, mode="rb", **src.storage_options).open()
    return xr.open_dataset(target, engine=engine, **opts)


def _open(src: Source) -> xr.Dataset:
    if src.reader == STAC_READER:
        url = str(src.local) if src.local is not None else src.url
        fills = products.ASSET_FILL.get(src.meta["product"], {})
        return open_stac(url, **src.options, nodata=fills, local=src.local is not None)
    return _open_xarray(src)


# --- loading --------------------------------------------------------------------------------


def check_catalog(path: str | Path, **params: Any) -> dict[str, Source]:
    """Check a catalog file against the allow-list; its resolved sources (nothing opened)."""
    return parse_catalog(Path(path), set(DECODERS), params)[1]


def _catalog_dirs() -> list[Path]:
    package = Path(__file__).resolve().parents[1]  # fluxmap/
    dirs = [Path(d) for d in os.environ.get("FLUXMAP_CATALOGS", "").split(os.pathsep) if d]
    # A wheel holds them as fluxmap/catalogs; a source checkout as catalogs/ beside pipeline/.
    return [*dirs, package / "catalogs", package.parents[1] / "catalogs"]


def builtin_catalog(name: str) -> Path:
    """Path of a catalog shipped with fluxmap (``demo``, ``cloud``, ``reference``).

    Looked up in ``$FLUXMAP_CATALOGS`` (a path list), then the installed package,
    then the source checkout's ``catalogs/``.
    """
    known: set[str] = set()
    for d in _catalog_dirs():
        path = d / f"{name}.yaml"
        if path.is_file():
            return path
        if d.is_dir():
            known |= {p.stem for p in d.glob("*.yaml")}
    raise CatalogError(f"no built-in catalog {name!r}; known: {sorted(known)}")


def load_catalog(path: str | Path, **params: Any) -> FluxCatalog:
    """Check and load a catalog file; ``params`` set its user parameters (e.g. ``DEMO_ROOT``).

    Parameters passed here are explicit: local paths may lie inside their values.
    Everything else must lie inside the catalog's own folder.
    """
    path = Path(path)
    doc, sources = parse_catalog(path, set(DECODERS), params)
    return FluxCatalog(path=path, doc=doc, sources=sources)


@dataclass
class FluxCatalog:
    """A checked catalog whose entries open as canonical, lazy Datasets."""

    path: Path
    """Where it was read from."""
    doc: dict
    """Its YAML document (plain values only)."""
    sources: dict[str, Source]
    """Each entry resolved: reader, address, options, ``metadata.fluxmap``."""

    @property
    def entries(self) -> list[str]:
        """Entry names, in file order."""
        return list(self.sources)

    def meta(self, name: str) -> dict:
        """The ``metadata.fluxmap`` block of an entry."""
        return dict(self.source(name).meta)

    def source(self, name: str) -> Source:
        """The resolved source of an entry."""
        if name not in self.sources:
            raise CatalogError(f"{self.path}: no entry {name!r}; entries: {self.entries}")
        return self.sources[name]

    def open_raw(self, name: str) -> xr.Dataset:
        """The entry as stored: lazy, chunked, still encoded."""
        src = self.source(name)
        try:
            return _open(src)
        except FileNotFoundError as e:
            raise CatalogError(f"{self.path}: entry {name!r}: source not found ({e})") from e
        except ImportError as e:
            raise CatalogError(f"{self.path}: entry {name!r} needs a package that is not installed: {e}") from e
        except CatalogError:
            raise
        except Exception as e:  # network, credentials, corrupt files: say which entry
            raise CatalogError(f"{self.path}: entry {name!r} cannot be read: {type(e).__name__}: {e}") from e

    def chunk_problems(self, name: str, *, decode: bool = True, variables: list[str] | None = None) -> list[dict]:
        """Every chunk of a local Zarr entry that is absent or (``decode``) cannot be decoded.

        One row per problem: entry, canonical and stored variable, chunk index, the chunk's
        index ranges per dimension, its file, and the problem. ``variables`` are canonical
        names (default: every array). Reads every chunk when ``decode``: meant for the moment
        a computation failed, to say which chunk made it fail. Other sources: no rows.
        """
        import itertools

        import zarr

        src = self.source(name)
        if src.kind != "zarr" or src.local is None or not src.local.exists():
            return []
        roles = dict(src.meta.get("variables") or {})
        group = zarr.open_group(str(src.local), mode="r")
        wanted = {roles.get(v, v): v for v in variables} if variables is not None else None
        rows = []
        for stored, arr in group.arrays():
            if wanted is not None and stored not in wanted:
                continue
            names = (
                arr.metadata.dimension_names if arr.metadata.zarr_format == 3 else arr.attrs.get("_ARRAY_DIMENSIONS")
            )
            dims = (
                [str(d) for d in names] if isinstance(names, (list, tuple)) else [f"dim_{i}" for i in range(arr.ndim)]
            )
            for idx in itertools.product(*(range(n) for n in arr.cdata_shape)):
                key = arr.metadata.encode_chunk_key(idx)
                file = src.local / arr.path / key
                problem = None
                if not file.exists():
                    problem = "absent (read as the fill value)"
                elif decode:
                    try:
                        arr.blocks[idx]
                    except Exception as e:  # whatever the codec raises: the point is to name the chunk
                        problem = f"cannot be decoded: {type(e).__name__}: {e}"
                if problem:
                    ranges = {
                        d: f"{i * c}:{min((i + 1) * c, n)}" for d, i, c, n in zip(dims, idx, arr.chunks, arr.shape)
                    }
                    rows.append(
                        {
                            "entry": name,
                            "variable": (wanted or {}).get(stored, stored),
                            "array": stored,
                            "chunk": ".".join(map(str, idx)),
                            "ranges": ranges,
                            "file": str(file),
                            "problem": problem,
                        }
                    )
        return rows

    def open(self, name: str, *, period: tuple[Any, Any] | None = None, **options: Any) -> xr.Dataset:
        """Open an entry decoded to canonical names, units and CF attributes (lazy).

        ``period`` (first, last instant) limits a dated time axis before anything is decoded, so an
        hourly reanalysis of 85 years costs the graph of the weeks a run needs. ``options`` go to the
        product's decoder (e.g. ``max_error_class`` for MOD11A2).
        """
        meta = self.meta(name)
        raw = self.open_raw(name)
        where = f"{self.path.name}:{name}"
        if period is not None and "time" in raw.dims and np.issubdtype(raw["time"].dtype, np.datetime64):
            if meta.get("time", "series") == "series" and meta["product"] != "ERA5_INVARIANT":
                t = raw["time"].values
                # A step longer than a day (monthly, 8-day) that begins before the period still covers its start.
                step = pd.Timedelta(t[1] - t[0]) if len(t) > 1 else pd.Timedelta(0)
                lead = step if step > pd.Timedelta(days=1) else pd.Timedelta(0)
                cut = raw.sel(time=slice(pd.Timestamp(period[0]) - lead, pd.Timestamp(period[1])))
                if cut.sizes["time"] == 0:
                    raise CatalogError(
                        f"{where}: entry {name!r}: its time axis {pd.Timestamp(t[0]):%Y-%m-%d} to "
                        f"{pd.Timestamp(t[-1]):%Y-%m-%d} covers none of "
                        f"the run's period {pd.Timestamp(period[0]):%Y-%m-%d} to {pd.Timestamp(period[1]):%Y-%m-%d}"
                    )
                raw = cut
        ds = DECODERS[meta["product"]](raw, meta, where, **options)
        ds.attrs.update({"fluxmap_entry": name, "fluxmap_product": meta["product"], "fluxmap_catalog": str(self.path)})
        return ds

    def check(self, sites: pd.DataFrame | None = None) -> list[tuple[str, str | None]]:
        """Check every entry before anything runs: ``(line, problem)`` per entry, problem None if fine.

        Each entry must open (source present, variables mapped, units known and consistent, CRS
        readable), have geographic or MODIS sinusoidal axes, and a time axis that increases without
        repeats. With ``sites`` (columns ``lat``, ``lon``, optional ``site``/``site_id``, ``start``,
        ``end``): every site must fall on the entry's grid, and a dated series must cover the sites'
        periods. Opens lazily; computes nothing but the coordinates.
        """
        from fluxmap.science.extract import locate_sites

        out: list[tuple[str, str | None]] = []
        for name in self.entries:
            try:
                ds = self.open(name)
            except (CatalogError, ValueError, KeyError) as e:
                out.append((name, f"{name}: {e}"))
                continue
            if not ({"lat", "lon"} <= set(ds.dims) or {"x", "y"} <= set(ds.dims)):
                out.append((name, f"{name}: axes {tuple(ds.dims)} are neither lat/lon nor a projected y/x grid"))
                continue
            kind = ds.attrs.get("fluxmap_time", "series" if "time" in ds.dims else "static")
            if "time" in ds.dims and kind == "series":
                t = pd.Index(ds["time"].values)
                if not t.is_monotonic_increasing or t.has_duplicates:
                    out.append((name, f"{name}: its time axis is not increasing without repeats"))
                    continue
            problem = None
            if sites is not None and len(sites):
                ids = (
                    sites[[c for c in ("site", "site_id") if c in sites][0]]
                    if {"site", "site_id"} & set(sites)
                    else sites.index
                )
                where = locate_sites(ds, np.asarray(ids), sites["lat"].to_numpy(float), sites["lon"].to_numpy(float))
                off = ~where.inside
                if off.any():
                    first = sites[off].iloc[0]
                    problem = (
                        f"{name}: {int(off.sum())} of {len(sites)} sites fall outside its grid (e.g. "
                        f"{np.asarray(ids)[off][0]} at {first['lat']:.2f}, {first['lon']:.2f})"
                    )
                elif "time" in ds.dims and kind == "series" and {"start", "end"} <= set(sites):
                    t0, t1 = pd.Timestamp(ds["time"].values[0]), pd.Timestamp(ds["time"].values[-1])
                    late = (pd.to_datetime(sites["start"]) < t0) | (
                        pd.to_datetime(sites["end"]) > t1 + pd.Timedelta(days=31)
                    )
                    if late.any():
                        problem = f"{name}: {int(late.sum())} of {len(sites)} site periods lie outside its time axis {t0.date()} to {t1.date()}"
            dims = ", ".join(f"{d}={n}" for d, n in ds.sizes.items())
            line = f"{name}: {kind}, {dims}; " + ", ".join(
                f"{v} [{ds[v].attrs.get('units', '?')}]" for v in ds.data_vars
            )
            out.append((line, problem))
        return out

    def describe(self) -> str:
        """One block per entry: product, description (opening nothing)."""
        lines = [f"catalog {self.path}"]
        for name in self.entries:
            e = self.doc["entries"][name]
            lines.append(f"  {name}: {self.sources[name].meta['product']} - {e['metadata'].get('description', '')}")
        return "\n".join(lines)


# --- decoding per product ------------------------------------------------------------------

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


def _to_units(
    da: xr.DataArray, target: str, where: str, *, declared: str | None = None, name: str | None = None
) -> xr.DataArray:
    """``da`` converted to ``target`` units from the units the file gives or the catalog ``declared``.

    Both given and different: refused (the catalog contradicts the file). Neither: refused. Units
    fluxmap has no conversion for: refused, naming them and what it accepts.
    """
    label = f"variable {name!r} (source {da.name!r})" if name and name != da.name else f"variable {da.name!r}"
    file_units = da.attrs.get("units")
    if declared is not None and file_units is not None and declared != file_units:
        raise CatalogError(
            f"{where}: {label}: the catalog says {declared!r} but the file says {file_units!r}; "
            "correct the catalog's metadata.fluxmap.units or the file"
        )
    units = declared if declared is not None else file_units
    table = _UNIT_ALIASES.get(target, {target: lambda x: x})
    if units is None:
        raise CatalogError(
            f"{where}: {label} has no units attribute; declare them in metadata.fluxmap.units "
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
        converted = _to_units(da, spec.units, where, declared=declared.get(canon), name=canon)
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


# --- summaries ------------------------------------------------------------------------------


def describe(ds: xr.Dataset, *, name: str = "") -> str:
    """A short, compute-free summary of a lazy cube: dims, chunks, variables, units, size."""
    import dask

    dims = ", ".join(f"{d}={n}" for d, n in ds.sizes.items())
    lines = [f"{name or ds.attrs.get('fluxmap_entry', 'dataset')}: {dims}"]
    for v, da in ds.data_vars.items():
        chunks = "x".join(str(max(c)) for c in da.chunks) if da.chunks else "in memory"
        lazy = "lazy" if dask.is_dask_collection(da) else "eager"
        lines.append(
            f"    {v:<12} {str(da.dtype):<8} [{da.attrs.get('units', '?')}] "
            f"chunks {chunks} ({lazy}, {da.nbytes / 2**20:,.1f} MiB)"
        )
    return "\n".join(lines)
