"""Build the whole prediction graph for one year on the global 500 m grid (86,400 x 43,200 cells,
46 periods), computing nothing: prints the build time, task count and peak Python memory; then
create the CF Zarr store's metadata and cut the write graph into the one-task-per-region graphs
a distributed cluster runs (``fluxmap.io.store.region_graphs``): their build time, task counts and
pickled size (what the client sends the scheduler).

    python benchmarks/bench_graph500.py            # 500 m (1/240 deg), 2400 x 2400 blocks like MODIS tiles
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import tracemalloc

import dask.array as da
import xarray as xr

from fluxmap.io.cf import cf_dataset
from fluxmap.io.store import create_store, region_graphs, region_slices
from fluxmap.science.grids import LatLonGrid, era5_grid
from fluxmap.science.periods import period_starts
from fluxmap.science.predict import ModelSet, predict_cube, predictor_cube
from fluxmap.testing import raise_if_dask_computes


class _FeaturesOnly:
    """Stands in for a fitted model: graph building only needs its feature names."""

    features = ["lst_day", "ndvi", "lswi", "gpp", "t2m", "tp", "t2m_ann_mean", "ndvi_ann_max", "doy_sin", "elevation"]


def lazy_cubes(resolution: float, block: int, year: int = 2020) -> dict[str, xr.Dataset]:
    """Decoded-like lazy cubes of the global grid (dask zeros: no data behind them)."""
    g = LatLonGrid(resolution)
    t = period_starts([year])
    chunks = (len(t), block, block)

    def cube(names):
        return xr.Dataset(
            {n: (("time", "lat", "lon"), da.zeros((len(t), *g.shape), "float32", chunks=chunks)) for n in names},
            coords={"time": t.values, **g.coords()},
        )

    e = era5_grid(0.25)
    era = xr.Dataset(
        {
            n: (("time", "lat", "lon"), da.zeros((len(t), 721, 1440), "float32", chunks=(len(t), 721, 1440)))
            for n in ("t2m", "tp")
        },
        coords={"time": t.values, "lat": e["latitude"], "lon": e["longitude"]},
    )
    static = xr.Dataset(
        {
            n: (("lat", "lon"), da.zeros(g.shape, "float32", chunks=chunks[1:]))
            for n in ("elevation", "soc", "land_fraction")
        },
        coords=g.coords(),
    )
    return {
        "mod11a2": cube(["lst_day", "lst_night"]),
        "mod09a1": cube(["ndvi", "evi", "lswi"]),
        "mod15a2h": cube(["lai", "fpar"]),
        "mod17a2h": cube(["gpp"]),
        "mod16a2": cube(["et"]),
        "era5": era,
        "static": static,
    }


def _region_cut(out: xr.Dataset, block: int) -> dict:
    """The store's metadata, then the write graph cut into one graph per region (computes nothing)."""
    from distributed.protocol.pickle import dumps

    chunks = {"time": out.sizes["time"], "lat": block, "lon": block}
    with tempfile.TemporaryDirectory() as tmp, raise_if_dask_computes():
        ds = cf_dataset(out, zone=None, attrs={"title": "graph benchmark"})
        t0 = time.perf_counter()
        create_store(f"{tmp}/g.zarr", ds, zarr_format=2, chunks=chunks)
        store_s = time.perf_counter() - t0
        regions = region_slices(dict(ds.sizes), chunks)
        t0 = time.perf_counter()
        graphs = region_graphs(f"{tmp}/g.zarr", ds, regions)
        cut_s = time.perf_counter() - t0
        sizes = [len(dumps(g)) for g in graphs]
    return {
        "store_metadata_s": round(store_s, 2),
        "regions": len(graphs),
        "region_graphs_s": round(cut_s, 2),
        "tasks_per_region": [min(len(g.graph) for g in graphs), max(len(g.graph) for g in graphs)],
        "region_task_kb": [round(min(sizes) / 1e3, 1), round(max(sizes) / 1e3, 1)],
        "submitted_mb": round(sum(sizes) / 1e6, 1),
    }


def run(resolution: float = 1 / 240, block: int = 2400) -> dict:
    tracemalloc.start()
    t0 = time.perf_counter()
    with raise_if_dask_computes():
        cubes = lazy_cubes(resolution, block)
        pc = predictor_cube(cubes)
        zone = xr.DataArray(
            da.ones((pc.sizes["lat"], pc.sizes["lon"]), "uint8", chunks=(block, block)),
            dims=("lat", "lon"),
            coords={"lat": pc.lat, "lon": pc.lon},
        )
        out = predict_cube(pc, zone, ModelSet("sr", {}, _FeaturesOnly(), []))
        tasks = len(out.__dask_graph__())
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    cut = _region_cut(out, block)
    return {
        "benchmark": "graph_500m_one_year",
        "cells": [int(pc.sizes["lon"]), int(pc.sizes["lat"])],
        "periods": int(pc.sizes["time"]),
        "blocks": int(out.sr.data.npartitions),
        "tasks": int(tasks),
        "build_s": round(seconds, 2),
        "peak_python_mb": round(peak / 1e6, 1),
        **cut,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=float, default=1 / 240)
    p.add_argument("--block", type=int, default=2400)
    a = p.parse_args()
    print(json.dumps(run(a.resolution, a.block)))


if __name__ == "__main__":
    main()
