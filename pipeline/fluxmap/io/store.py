"""CF-compliant, resumable Zarr output.

The store is created from a lazy template (``to_zarr(compute=False)``: metadata only),
then filled region by region. Each finished region is recorded in the store's
``fluxmap_regions_done`` attribute list only after its chunks are written, so a rerun
after an interruption writes only the unfinished regions; chunks are deterministic,
so the final store is byte-identical to an uninterrupted run. Regions without land
are never computed or written: readers see the fill value (NaN) there.

Zarr format 2 is the default because GDAL 3.6 and netCDF-C 4.9 (Debian 12) read it;
both fail on format 3 (GDAL: "not recognized as a supported file format"; ncdump
shows an empty dataset). Consolidated metadata is written in both formats. The CF metadata
is set by :mod:`fluxmap.io.cf`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
import xarray as xr

from fluxmap.io.cf import complete_cf, type_attributes
from fluxmap.io.provenance import atomic_path, cache_key, data_fingerprint, write_json
from fluxmap.science.extract import to_periods
from fluxmap.science.grids import LatLonGrid

__all__ = [
    "SMALL_STORE_BYTES",
    "open_for_tables",
    "block_counts",
    "block_index",
    "create_store",
    "done_regions",
    "fill_regions",
    "land_regions",
    "region_graphs",
    "period_mean_stores",
    "region_slices",
    "stored_key",
    "write_keyed",
]

_DONE = "fluxmap_regions_done"


def region_slices(sizes: dict[str, int], chunks: dict[str, int]) -> list[dict[str, slice]]:
    """Every chunk-aligned region of the (time, lat, lon) cube."""
    axes = [
        [slice(a, min(a + chunks[d], sizes[d])) for a in range(0, sizes[d], chunks[d])] for d in ("time", "lat", "lon")
    ]
    return [dict(zip(("time", "lat", "lon"), combo)) for combo in itertools.product(*axes)]


def block_counts(mask: xr.DataArray, chunks: dict[str, int]) -> np.ndarray:
    """How many cells of a boolean mask are True in each block of ``chunks``: a small array with
    one value per block along each of the mask's dimensions (in ``time, lat, lon`` order), computed
    chunk by chunk (a 500 m global mask is never held in memory; on a cluster only the counts come
    back)."""
    import dask.array as da

    dims = [d for d in ("time", "lat", "lon") if d in mask.dims]
    data = mask.transpose(*dims).data
    data = data if isinstance(data, da.Array) else da.from_array(np.asarray(data))
    data = data.rechunk(tuple(chunks[d] for d in dims))
    ones = tuple((1,) * len(c) for c in data.chunks)
    return data.map_blocks(_count_block, chunks=ones, dtype="int64").compute()


def _count_block(b: np.ndarray) -> np.ndarray:
    return np.full((1,) * b.ndim, np.count_nonzero(b), dtype="int64")


def block_index(region: dict[str, slice], chunks: dict[str, int]) -> tuple[int, int]:
    """The (lat, lon) block of :func:`block_counts` a region lies in."""
    return region["lat"].start // chunks["lat"], region["lon"].start // chunks["lon"]


def land_regions(
    regions: list[dict[str, slice]], land_cells: np.ndarray, chunks: dict[str, int]
) -> list[dict[str, slice]]:
    """Regions whose (lat, lon) block holds any land cell (``land_cells`` from :func:`block_counts`)."""
    return [r for r in regions if land_cells[block_index(r, chunks)] > 0]


def _key(region: dict[str, slice]) -> str:
    return ",".join(f"{d}={s.start}:{s.stop}" for d, s in region.items())


def create_store(path: str | Path, template: xr.Dataset, *, zarr_format: int = 2, chunks: dict[str, int]) -> None:
    """Write the store's metadata (and the small static variables) from a lazy template."""
    enc = {}
    template = complete_cf(template)  # a copy: the caller's encodings stay as they are
    for v in template.data_vars:
        e = dict(template[v].encoding)
        e["chunks"] = tuple(chunks.get(str(d), template.sizes[d]) for d in template[v].dims)
        enc[v] = e
        template[v].encoding = {}
    template = template.assign_attrs({_DONE: "[]"})
    template.to_zarr(path, mode="w", compute=False, zarr_format=zarr_format, consolidated=True, encoding=enc)
    # Variables without a time axis (zone) and the coordinates are small: write them now.
    small = template[[v for v in template.data_vars if "time" not in template[v].dims]]
    if small.data_vars:
        small.drop_vars([c for c in small.coords if c in ("time", "time_bnds")], errors="ignore").to_zarr(
            path, mode="a", zarr_format=zarr_format, consolidated=True
        )
    type_attributes(path)


def done_regions(path: str | Path) -> set[str]:
    """Regions already complete in the store."""
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        return set()
    return set(json.loads(cast(str, group.attrs.get(_DONE, "[]"))))  # a JSON string, see _mark_done


def _mark_done(path: str | Path, keys: list[str]) -> None:
    import zarr

    group = zarr.open_group(str(path), mode="r+")
    done = sorted(set(json.loads(cast(str, group.attrs.get(_DONE, "[]")))) | set(keys))
    group.attrs[_DONE] = json.dumps(done)
    zarr.consolidate_metadata(str(path))


class _RegionGraph:
    """One region's part of the optimized write graph and the keys that write its chunks.

    A plain object, so the scheduler ships it to a worker as one opaque argument instead of
    reading the tasks inside as dependencies of the region's task."""

    __slots__ = ("graph", "keys")

    def __init__(self, graph: dict, keys: list) -> None:
        self.graph, self.keys = graph, keys


def _write_region(region: _RegionGraph) -> bool:
    """Compute and write one region inside one worker task (dask's synchronous scheduler)."""
    from dask.local import get_sync

    get_sync(region.graph, region.keys)
    return True


def _open_targets(path: str | Path, result: xr.Dataset, region_dims: set[str]) -> dict[str, tuple]:
    """Per time-varying variable of ``result``: its CF-encoded dask array, the store's array, dims."""
    import dask.array as da
    import zarr

    group = zarr.open_group(str(path), mode="r+")
    targets: dict[str, tuple] = {}
    for v in (str(n) for n in result.data_vars if "time" in result[n].dims):
        # The same CF encoding xarray's writer applies (fill values, scale/offset, dtype).
        data = xr.conventions.encode_cf_variable(result[v].variable, name=v).data
        target = cast(zarr.Array, group[v])  # a variable of the store: an array, not a group
        if not isinstance(data, da.Array):
            continue  # in memory: written with the store's metadata by create_store
        dims = result[v].dims
        if not region_dims <= set(dims) or any(
            target.chunks[k] != target.shape[k] for k, d in enumerate(dims) if d not in region_dims
        ):
            raise ValueError(
                f"{path}: variable {v!r} {dims} cannot be written by regions {sorted(region_dims)}: it needs those "
                "dimensions, and one chunk along any other"
            )
        if data.dtype != target.dtype:
            data = data.astype(target.dtype)
        if data.shape != target.shape:
            raise ValueError(f"{path}: variable {v!r} has shape {data.shape}, the store {target.shape}")
        targets[v] = (data, target, dims)
    return targets


def _region_sources(targets: dict[str, tuple], r: dict[str, slice]) -> tuple[list, list, list]:
    """The region's slice of every variable (one chunk each), the store arrays, where it goes."""
    sources, stores, where = [], [], []
    for data, target, dims in targets.values():
        idx = tuple(r.get(d, slice(None)) for d in dims)
        sources.append(data[idx].rechunk(-1))  # one task, one chunk
        stores.append(target)
        where.append(idx)
    return sources, stores, where


def region_graphs(path: str | Path, result: xr.Dataset, regions: list[dict[str, slice]]) -> list[_RegionGraph]:
    """One self-contained graph per region, what a distributed fill submits as that region's task.

    Every region's store graph is optimized together first (the decoding's elementwise steps
    fused, a block's prediction computed once for all the variables it fills), then cut into one
    sub-graph per region. Computes nothing.
    """
    import dask.array as da
    from dask.base import collections_to_expr
    from dask.core import flatten
    from dask.optimization import cull

    if not regions:
        return []
    targets = _open_targets(path, result, set(regions[0]))
    stored = []
    for r in regions:
        sources, stores, where = _region_sources(targets, r)
        s = da.store(sources, stores, regions=where, lock=False, compute=False)
        stored.append(s if isinstance(s, tuple) else (s,))
    graph = dict(collections_to_expr([a for s in stored for a in s], optimize_graph=True).optimize().__dask_graph__())
    out = []
    for s in stored:
        keys = [k for a in s for k in flatten(a.__dask_keys__())]
        out.append(_RegionGraph(cull(graph, keys)[0], keys))
    return out


def fill_regions(
    path: str | Path,
    result: xr.Dataset,
    regions: list[dict[str, slice]],
    *,
    batch: int = 4,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Compute and write the regions not yet done; return how many were written.

    The store's arrays are opened once; a region is a ``dask.array.store`` graph of whole chunks
    (one task per region and variable writes exactly one Zarr chunk, so no two tasks touch the
    same chunk and no lock is needed). On the local schedulers ``batch`` regions are computed
    together and then recorded as done; on a distributed cluster each region is one task (its
    reads, prediction and writes run together on one worker, see :func:`region_graphs`), all are
    submitted together and recorded as done ``batch`` at a time as they finish.
    """
    import dask.array as da

    done = done_regions(path)
    todo = [r for r in regions if _key(r) not in done]
    if not todo:
        return 0
    written = 0

    def record(part: list[dict[str, slice]]) -> None:
        """Regions whose chunks are all written: mark them done, count them, report progress."""
        nonlocal written
        _mark_done(path, [_key(r) for r in part])
        written += len(part)
        if progress:
            progress(written + (len(regions) - len(todo)), len(regions))

    client = _distributed_client()
    if client is not None:
        _fill_streaming(client, todo, region_graphs(path, result, todo), batch, record)
        return written
    threads = _local_threads()
    if threads:
        _fill_threads(threads, todo, region_graphs(path, result, todo), batch, record)
        return written
    targets = _open_targets(path, result, set(todo[0]))
    for i in range(0, len(todo), batch):
        part = todo[i : i + batch]
        sources, stores, where = [], [], []
        for r in part:
            a, b, c = _region_sources(targets, r)
            sources += a
            stores += b
            where += c
        da.store(sources, stores, regions=where, lock=False)
        record(part)
    return written


def _distributed_client():
    """The distributed Client dask computes on now, or None (threads, processes, synchronous)."""
    from dask.base import get_scheduler

    try:
        from distributed import Client
    except ImportError:
        return None
    owner = getattr(get_scheduler(), "__self__", None)
    return owner if isinstance(owner, Client) else None


def _local_threads() -> int:
    """Threads of the local scheduler dask computes on now (the threaded scheduler's
    ``num_workers``, else the CPUs; 1 for the synchronous one), or 0 for another (processes)."""
    import os

    import dask
    import dask.local
    import dask.threaded
    from dask.base import get_scheduler

    scheduler = get_scheduler()
    if scheduler is dask.local.get_sync:
        return 1
    if scheduler is dask.threaded.get:
        return int(dask.config.get("num_workers", None) or os.cpu_count() or 1)
    return 0


def _fill_threads(threads: int, todo, graphs: list[_RegionGraph], batch, record) -> None:
    """On the local threaded (or synchronous) scheduler: each region's graph run by one of
    ``threads`` threads (:func:`_write_region`), in the order given (largest first), recorded as
    done as regions finish (in groups of ``batch``). The graph is optimized once for all regions
    (:func:`region_graphs`) instead of once per batch of regions: on 48 regions that was ~3 s of a
    60 s stage. An input two regions share is read by both."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="fluxmap-region")
    try:
        futures = {pool.submit(_write_region, g): r for g, r in zip(graphs, todo)}
        pending, finished = set(futures), []
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                future.result()  # a failed region raises here, before anything more is marked done
                finished.append(futures[future])
            if len(finished) >= batch or (finished and not pending):
                record(finished)
                finished = []
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _fill_streaming(client, todo, graphs: list[_RegionGraph], batch, record) -> None:
    """On a distributed cluster: one task per region, in the order given (largest first), each
    recorded as done as soon as it is written (in groups of ``batch``), so no worker waits at a
    batch boundary for the slowest region of a batch.

    A region's inputs are read where it is predicted. With the region's ~100 read/decode tasks
    scheduled one by one, the scheduler put the reads on one worker and the predictions on the
    other and moved the decoded inputs between them (each of 2 workers was busy 55-90 % of the
    time), and the scheduler and client spent 1.1-1.3 CPU-seconds of an 8 s phase on ~1,100
    tasks. An input two regions share (an ERA5 chunk) is read by both.
    """
    from distributed import as_completed

    futures = [client.submit(_write_region, g, pure=False) for g in graphs]
    region_of = {f.key: r for f, r in zip(futures, todo)}
    finished, left = [], len(futures)
    for future in as_completed(futures):
        future.result()  # a failed region raises here, before anything more is marked done
        finished.append(region_of[future.key])
        left -= 1
        if len(finished) >= batch or not left:
            record(finished)
            finished = []


SMALL_STORE_BYTES = 256 * 2**20
"""A store at most this large (decoded) is read whole before its tables are computed."""


def open_for_tables(path: str | Path) -> xr.Dataset:
    """A written store opened for the many small reductions of the tables (totals per region, band,
    biome and member): read whole into memory when it is small (a coarse annual map: one read
    instead of a few hundred graphs over the same chunks), lazy otherwise (a 500 m map stays chunked,
    memory bounded by the chunk)."""
    ds = xr.open_zarr(path, consolidated=True)
    return ds.load() if ds.nbytes <= SMALL_STORE_BYTES else ds


def grid_of(ds: xr.Dataset) -> LatLonGrid:
    """The regular grid of a Dataset with cell-centre ``lat``/``lon`` (north to south)."""
    res = float(abs(ds.lat[0] - ds.lat[1]))
    return LatLonGrid(
        res,
        west=float(ds.lon[0]) - res / 2,
        south=float(ds.lat[-1]) - res / 2,
        east=float(ds.lon[-1]) + res / 2,
        north=float(ds.lat[0]) + res / 2,
    )


# --- small keyed stores (intermediate products a rerun may reuse) ------------------------------

KEY_ATTR = "fluxmap_key"


def _record_file(path: Path) -> Path:
    return path.with_name(path.name + ".fluxmap.json")


def write_keyed(ds: xr.Dataset, path: str | Path, key: str, *, key_attr: str = KEY_ATTR) -> None:
    """Write ``ds`` (lazy: computed chunk by chunk) as a Zarr v2 store that carries ``key``.

    Written under a temporary name and renamed when complete, then recorded beside it
    (``<store>.fluxmap.json``: the key and a fingerprint of the store's files), so a killed
    write leaves no store and :func:`stored_key` knows the store it reads is the one written.
    """
    path = Path(path)
    _record_file(path).unlink(missing_ok=True)
    with atomic_path(path) as tmp:
        ds.assign_attrs({key_attr: key}).to_zarr(tmp, mode="w", zarr_format=2, consolidated=True)
    write_json(_record_file(path), {"key": key, "fingerprint": data_fingerprint(path)})


def stored_key(path: str | Path, *, key_attr: str = KEY_ATTR) -> str | None:
    """The key a store was written with, when its files are still those written (None: no store,
    unreadable, no record, or changed since: a damaged, added or removed chunk)."""
    path = Path(path)
    try:
        record = json.loads(_record_file(path).read_text())
        if record.get("fingerprint") != data_fingerprint(path):
            return None
        key = xr.open_zarr(path, consolidated=True).attrs.get(key_attr)
    except (OSError, ValueError, KeyError):
        return None
    return key if key == record.get("key") else None


def period_mean_stores(cubes: dict[str, xr.Dataset], out: Path, inputs: dict[str, str]) -> bool:
    """Sub-period sources (ERA5) averaged to the 8-day periods once, on their own grid (small next
    to the MODIS grid), written to ``out/<entry>_8day.zarr`` and put in ``cubes`` in place of the
    daily cube. Written, not persisted: a worker lost later loses nothing that cannot be reread.
    Reused by a rerun with the same inputs when the stores are unchanged (:func:`stored_key`);
    returns whether they were."""
    sub = [
        e
        for e, c in cubes.items()
        if "time" in c.dims
        and c.attrs.get("fluxmap_time", "series") == "series"  # not a climatology's 12 months
        and np.issubdtype(c["time"].dtype, np.datetime64)
        and pd.Series(c.time.values).diff().median() < pd.Timedelta(days=8)
    ]
    prep_key = cache_key({"sub_period": sub}, inputs)
    prepared = [out / f"{e}_8day.zarr" for e in sub]
    reuse = all(stored_key(p) == prep_key for p in prepared)
    if not reuse:
        for e in sub:
            means = to_periods(cubes[e])
            means = means.chunk({"time": max(means.chunksizes["time"])})  # Zarr wants regular chunks
            for v in means.variables.values():
                v.encoding = {}
            write_keyed(means, out / f"{e}_8day.zarr", prep_key)
    for e in sub:
        cubes[e] = xr.open_zarr(out / f"{e}_8day.zarr", consolidated=True)
    return reuse
