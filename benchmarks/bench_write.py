"""Zarr write throughput: fluxmap's resumable CF writer (template + region batches + done list)
vs a raw zarr write of the same float32 chunks with the same codec and the same number of
threads. Best of ``repeat`` rounds each, after a warm-up round. Prints one JSON line; the
result is the throughput ratio fluxmap / raw (1.0 = no overhead).

    python benchmarks/bench_write.py                  # 46 x 720 x 1440 float32 (191 MB), 23 x 180 x 180 chunks
    python benchmarks/bench_write.py --shape 46,360,720
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
import zarr

from fluxmap.io.cf import cf_dataset
from fluxmap.io.store import create_store, fill_regions, region_slices
from fluxmap.science.periods import period_starts


def run(
    shape: tuple[int, int, int] = (46, 720, 1440),
    chunks: tuple[int, int, int] = (23, 180, 180),
    workdir: str | None = None,
    repeat: int = 5,
) -> dict:
    rng = np.random.default_rng(0)
    values = (np.round(rng.normal(2.0, 1.0, shape) / 0.001) * 0.001).astype("float32")
    t = (
        period_starts([2020])[: shape[0]]
        if shape[0] <= 46
        else pd.date_range("2020-01-01", periods=shape[0], freq="8D")
    )
    lat = 90 - (np.arange(shape[1]) + 0.5) * 180 / shape[1]
    lon = -180 + (np.arange(shape[2]) + 0.5) * 360 / shape[2]
    sr = xr.DataArray(
        da.from_array(values, chunks=chunks), dims=("time", "lat", "lon"), coords={"time": t, "lat": lat, "lon": lon}
    )
    ds = cf_dataset(xr.Dataset({"sr": sr}), zone=None, attrs={"title": "write benchmark"})
    sizes = dict(zip(("time", "lat", "lon"), shape))
    ch = dict(zip(("time", "lat", "lon"), chunks))
    regions = region_slices(sizes, ch)
    threads = os.cpu_count() or 1

    def fluxmap_write(root: Path) -> float:
        t0 = time.perf_counter()
        create_store(root / "fluxmap.zarr", ds, zarr_format=2, chunks=ch)
        fill_regions(root / "fluxmap.zarr", ds, regions, batch=8)
        return time.perf_counter() - t0

    def raw_write(root: Path, codec) -> float:
        # The same chunks with the same codec and the same number of threads, straight into zarr.
        t0 = time.perf_counter()
        raw = zarr.create_array(
            str(root / "raw.zarr"),
            shape=shape,
            chunks=chunks,
            dtype="float32",
            zarr_format=2,
            compressors=codec,
            fill_value=np.nan,
        )

        def put(r):
            raw[r["time"], r["lat"], r["lon"]] = values[r["time"], r["lat"], r["lon"]]

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(put, regions))
        return time.perf_counter() - t0

    t_fluxmap, t_raw = [], []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp, dask.config.set(scheduler="threads", num_workers=threads):
        for i in range(repeat + 1):  # the first round warms imports and caches and is not counted
            root = Path(tmp) / str(i)
            tf = fluxmap_write(root)
            codec = zarr.open_array(str(root / "fluxmap.zarr" / "sr"), mode="r").compressors
            tr = raw_write(root, codec)
            if i:
                t_fluxmap.append(tf)
                t_raw.append(tr)
            shutil.rmtree(root)
    t_fluxmap, t_raw = min(t_fluxmap), min(t_raw)
    mb = values.nbytes / 1e6
    return {
        "benchmark": "zarr_write",
        "shape": list(shape),
        "chunks": list(chunks),
        "regions": len(regions),
        "threads": threads,
        "repeat_best_of": repeat,
        "mb": round(mb, 1),
        "fluxmap_mb_s": round(mb / t_fluxmap, 1),
        "raw_zarr_mb_s": round(mb / t_raw, 1),
        "fluxmap_over_raw": round(t_raw / t_fluxmap, 3),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="46,720,1440")
    p.add_argument("--chunks", default="23,180,180")
    a = p.parse_args()
    print(json.dumps(run(tuple(int(v) for v in a.shape.split(",")), tuple(int(v) for v in a.chunks.split(",")))))


if __name__ == "__main__":
    main()
