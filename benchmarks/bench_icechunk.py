"""Resumable region writes: fluxmap's store (Zarr + an atomic done-region record, one writer per
workdir) vs an Icechunk repository (a transactional Zarr store: each batch of regions is one
commit, so a killed batch leaves nothing). Same data, same chunks, same batches, best of
``repeat`` rounds after a warm-up. Prints one JSON line; ``ratio`` = Icechunk time / fluxmap time.

Icechunk is not a fluxmap dependency; ``pip install icechunk`` to run this (issue 23 asked to
decide with a measurement whether it would make resumable writes simpler and safer).

    python benchmarks/bench_icechunk.py                  # 46 x 720 x 1440 float32, 23 x 180 x 180 chunks
    python benchmarks/bench_icechunk.py --shape 46,360,720
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr

from fluxmap.io.cf import cf_dataset
from fluxmap.io.store import create_store, done_regions, fill_regions, region_slices
from fluxmap.science.periods import period_starts


def _dataset(shape: tuple[int, int, int], chunks: tuple[int, int, int]) -> xr.Dataset:
    rng = np.random.default_rng(0)
    values = (np.round(rng.normal(2.0, 1.0, shape) / 0.001) * 0.001).astype("float32")
    lat = 90 - (np.arange(shape[1]) + 0.5) * 180 / shape[1]
    lon = -180 + (np.arange(shape[2]) + 0.5) * 360 / shape[2]
    sr = xr.DataArray(
        da.from_array(values, chunks=chunks),
        dims=("time", "lat", "lon"),
        coords={"time": period_starts([2020])[: shape[0]], "lat": lat, "lon": lon},
    )
    return cf_dataset(xr.Dataset({"sr": sr, "sr_sd": sr * 0.1}), zone=None, attrs={"title": "icechunk benchmark"})


def run(
    shape: tuple[int, int, int] = (46, 720, 1440),
    chunks: tuple[int, int, int] = (23, 180, 180),
    batch: int = 8,
    repeat: int = 3,
) -> dict:
    import icechunk

    ds = _dataset(shape, chunks)
    ch = dict(zip(("time", "lat", "lon"), chunks))
    regions = region_slices(dict(zip(("time", "lat", "lon"), shape)), ch)
    batches = [regions[i : i + batch] for i in range(0, len(regions), batch)]
    timed = ds[[v for v in ds.data_vars if "time" in ds[v].dims]]

    def fluxmap_write(root: Path) -> float:
        t0 = time.perf_counter()
        create_store(root / "f.zarr", ds, zarr_format=2, chunks=ch)
        fill_regions(root / "f.zarr", ds, regions, batch=batch)
        elapsed = time.perf_counter() - t0
        assert len(done_regions(root / "f.zarr")) == len(regions)
        return elapsed

    def icechunk_write(root: Path) -> float:
        t0 = time.perf_counter()
        repo = icechunk.Repository.create(icechunk.local_filesystem_storage(str(root / "ic")))
        session = repo.writable_session("main")
        enc = {v: {"chunks": tuple(ch.get(str(d), ds.sizes[d]) for d in ds[v].dims)} for v in ds.data_vars}
        ds.to_zarr(session.store, mode="w", compute=False, consolidated=False, encoding=enc, zarr_format=3)
        small = ds[[v for v in ds.data_vars if "time" not in ds[v].dims]]
        small.drop_vars(["time", "time_bnds"], errors="ignore").to_zarr(
            session.store, mode="a", consolidated=False, zarr_format=3
        )
        session.commit("template")

        # Regions one after another inside a batch (each computed with dask's threads): writing the
        # regions of one session from several Python threads at once deadlocked here (icechunk 1.1.21).
        for part in batches:
            session = repo.writable_session("main")
            for r in part:
                timed.isel(r).drop_vars(["lat", "lon", "time"]).compute().to_zarr(
                    session.store, region=r, consolidated=False, mode="r+"
                )
            session.commit(f"{len(part)} regions")
        elapsed = time.perf_counter() - t0
        check = xr.open_zarr(repo.readonly_session("main").store, consolidated=False)
        np.testing.assert_array_equal(check.sr.values, ds.sr.values)
        return elapsed

    times: dict[str, list[float]] = {"fluxmap": [], "icechunk": []}
    for i in range(repeat + 1):
        for name, write in (("fluxmap", fluxmap_write), ("icechunk", icechunk_write)):
            root = Path(tempfile.mkdtemp(prefix=f"bench_{name}_"))
            try:
                t = write(root)
            finally:
                shutil.rmtree(root, ignore_errors=True)
            if i:  # the first round warms caches and imports
                times[name].append(t)
    best = {k: min(v) for k, v in times.items()}
    mb = sum(ds[v].nbytes for v in timed.data_vars) / 1e6
    return {
        "benchmark": "icechunk_vs_done_record",
        "shape": list(shape),
        "chunks": list(chunks),
        "regions": len(regions),
        "batches": len(batches),
        "megabytes": round(mb, 1),
        "fluxmap_s": round(best["fluxmap"], 3),
        "icechunk_s": round(best["icechunk"], 3),
        "ratio": round(best["icechunk"] / best["fluxmap"], 3),
        "icechunk": icechunk.__version__,
        "machine": platform.machine(),
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="46,720,1440")
    p.add_argument("--chunks", default="23,180,180")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    shape = tuple(int(v) for v in a.shape.split(","))
    chunks = tuple(int(v) for v in a.chunks.split(","))
    print(json.dumps(run(shape, chunks, a.batch, a.repeat)))  # type: ignore[arg-type]
