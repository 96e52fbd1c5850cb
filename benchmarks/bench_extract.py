"""Extraction at sites: vectorized pointwise indexing vs a naive per-site ``.sel`` loop.

Both read the same chunked Zarr cube (8-day periods x lat x lon, float32) lazily and
return identical values; the ratio of their wall times is the result. Prints one
JSON line with machine info. Sites are clustered like real networks.

Both sides are bound by decompressing chunks: the vectorized path reads each chunk
holding a site once, the loop reads a site's chunks for every site, so the ratio
grows with the number of sites per chunk, i.e. with the chunk size (``--sweep``).

    python benchmarks/bench_extract.py                 # 1,000 sites x 2 years, 10.6 MB chunks
    python benchmarks/bench_extract.py --sweep         # the same at 2.6, 10.6, 24 and 95 MB chunks
    python benchmarks/bench_extract.py --sites 200 --res 0.5 --chunks 46,120,120
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from fluxmap.science.extract import extract_at_sites, locate_sites
from fluxmap.science.grids import LatLonGrid
from fluxmap.science.periods import period_starts


def make_cube(path: Path, *, res: float, years: tuple[int, ...], chunks: tuple[int, int, int]) -> xr.Dataset:
    grid = LatLonGrid(res)
    t = period_starts(years)
    rng = np.random.default_rng(0)
    # An LST-like field: latitude profile, seasonal cycle, 1 K noise, quantized to the
    # 0.02 K step of MOD11A2 (so it compresses like the real product, not like white noise).
    lat = grid.lat[None, :, None]
    season = np.cos(2 * np.pi * (t.day_of_year.values[:, None, None] - 200) / 365.25) * 0.3 * lat
    field = 300 - 0.0075 * lat**2 + season + rng.normal(0, 1.0, (len(t), *grid.shape))
    data = (np.round(field / 0.02) * 0.02).astype("float32")
    ds = xr.Dataset({"lst_day": (("time", "lat", "lon"), data)}, coords={"time": t.values, **grid.coords()})
    ds["lst_day"].encoding = {"chunks": chunks}
    ds.to_zarr(path, mode="w", zarr_format=2, consolidated=True)
    return xr.open_zarr(path, consolidated=True)


def clustered_sites(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    centers = np.column_stack([rng.uniform(25, 60, max(3, n // 25)), rng.uniform(-120, 140, max(3, n // 25))])
    pick = centers[rng.integers(0, len(centers), n)]
    lat = np.clip(pick[:, 0] + rng.normal(0, 3, n), -89, 89)
    lon = ((pick[:, 1] + rng.normal(0, 5, n)) + 180) % 360 - 180
    return pd.DataFrame({"site_id": [f"s{i}" for i in range(n)], "lat": lat, "lon": lon})


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def run(
    n_sites: int = 1000,
    res: float = 0.25,
    years: tuple[int, ...] = (2019, 2020),
    chunks: tuple[int, int, int] = (46, 120, 120),
    workdir: str | None = None,
    repeats: int = 3,
) -> dict:
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        cube = make_cube(Path(tmp) / "cube.zarr", res=res, years=years, chunks=chunks)
        sites = clustered_sites(n_sites)

        def vectorized() -> xr.DataArray:
            return extract_at_sites(cube, locate_sites(cube, sites.site_id, sites.lat, sites.lon)).lst_day.compute()

        def naive(frame: pd.DataFrame) -> np.ndarray:
            return np.stack(
                [cube.lst_day.sel(lat=la, lon=lo, method="nearest").values for la, lo in zip(frame.lat, frame.lon)],
                axis=1,
            )

        # Steady state for both: one warm-up call each (thread pool, codecs, page cache), then both
        # timed the same way: `repeats` full passes each, alternating, and the median of each.
        vectorized()
        naive(sites.head(5))
        fast_s, slow_s = [], []
        for _ in range(repeats):
            fast, t = _timed(vectorized)
            fast_s.append(t)
            slow, t = _timed(lambda: naive(sites))
            slow_s.append(t)
        t_fast, t_slow = float(np.median(fast_s)), float(np.median(slow_s))
        np.testing.assert_array_equal(fast.transpose("time", "site").values, slow)
    return {
        "benchmark": "extract_vs_naive_loop",
        "sites": n_sites,
        "periods": int(cube.sizes["time"]),
        "grid": [int(cube.sizes["lat"]), int(cube.sizes["lon"])],
        "chunks": list(chunks),
        "vectorized_s": round(t_fast, 4),
        "naive_loop_s": round(t_slow, 4),
        "ratio": round(t_slow / t_fast, 1),
        "repeats": repeats,
        "timing": "median of the repeats for both paths, alternating",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }


SWEEP = [(46, 120, 120), (46, 240, 240), (46, 360, 360), (92, 360, 720)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sites", type=int, default=1000)
    p.add_argument("--res", type=float, default=0.25)
    p.add_argument("--chunks", default="46,240,240", help="time,lat,lon chunk sizes")
    p.add_argument("--sweep", action="store_true", help="run at the chunk sizes of SWEEP")
    args = p.parse_args()
    for chunks in SWEEP if args.sweep else [tuple(int(c) for c in args.chunks.split(","))]:
        print(json.dumps(run(args.sites, args.res, chunks=chunks)), flush=True)


if __name__ == "__main__":
    main()
