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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from fluxmap.io.catalog_schema import DATATYPES, READERS, STAC_READER, CatalogError, Source, parse_catalog
from fluxmap.io.decoders import DECODERS
from fluxmap.io.stac import open_stac
from fluxmap.science import products

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
