"""The sparse observation operator of the inversion constraint (issue 30): how the error of the
sparse regional estimate against the full regional integral falls as K (points per region) grows,
on the demo truth, so a user can choose ``model.inversion.points_per_region``.

The truth's NEE of a demo world (``--world``, default: a world built here at the command-1 size,
1 degree, 2019-2020), the IPCC AR6 land regions with land on the grid, calendar months. For each K,
``--seeds`` independent draws: the RMS error of the sparse estimate against the full integral over
every region and month, relative to the RMS of the regional fluxes themselves, and the time of one
sparse estimate (the operator's rows and their weighted sum) against the full integral's. Prints one
JSON line.

    python benchmarks/bench_inversion.py                           # K = 10, 30, 100, 300, 1000
    python benchmarks/bench_inversion.py --world fluxmap-output/demo-world
    python benchmarks/bench_inversion.py --tiny                    # a small world, for the tests
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

from fluxmap.demo.inversion import truth_regions
from fluxmap.science.inversion import group_estimates, operator_rows, region_integrals, sample_points


def run(world: str | None = None, ks: tuple[int, ...] = (10, 30, 100, 300, 1000), seeds: int = 5, *, tiny: bool = False) -> dict:  # fmt: skip
    label = world or ("tiny world built here" if tiny else "demo world at command 1's size, built here")
    with tempfile.TemporaryDirectory() as tmp:
        if world is None:
            from fluxmap.config import DemoConfig
            from fluxmap.demo import build_world
            from fluxmap.testing import tiny_demo_config

            world = str(build_world(Path(tmp) / "world", tiny_demo_config() if tiny else DemoConfig()).root)
        t = truth_regions(Path(world))
        codes, area, regions, starts, ends, groups = t.codes, t.area, t.regions, t.starts, t.ends, t.groups
        months = groups.start.unique()
        nee = t.truth["nee"].values.astype(float)
        t0 = time.perf_counter()
        full = region_integrals(nee, codes, area, starts, ends, groups)
        full_s = time.perf_counter() - t0
        scale = float(np.sqrt(np.mean(full**2)))
        rows = []
        for k in ks:
            sq, seconds = [], []
            for seed in range(seeds):
                t0 = time.perf_counter()
                pts = sample_points(codes, area, regions, k, seed=seed)
                op = operator_rows(pts, starts, ends, groups)
                f = np.nan_to_num(nee[op.period.to_numpy(), pts.i.to_numpy()[op.point], pts.j.to_numpy()[op.point]])
                est = group_estimates(f, op.group.to_numpy(), op.coef.to_numpy(), len(groups))
                seconds.append(time.perf_counter() - t0)
                sq.append((est - full) ** 2)
            rmse = float(np.sqrt(np.mean(sq)))
            rows.append({"k": k, "rmse_pg_c": round(rmse, 6), "relative_rmse": round(rmse / scale, 4),
                         "sparse_s": round(float(np.median(seconds)), 4), "sparse_rows": int(len(op))})  # fmt: skip
    return {
        "benchmark": "inversion_sparse_operator",
        "world": label,
        "grid": list(codes.shape),
        "regions": len(regions),
        "months": len(months),
        "seeds": seeds,
        "rms_regional_flux_pg_c": round(scale, 5),
        "full_integral_s": round(full_s, 4),
        "by_k": rows,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", help="a demo world's folder (default: build one)")
    p.add_argument("--k", default="10,30,100,300,1000", help="points per region, comma-separated")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--tiny", action="store_true", help="a small world and K = 10, 30, 100")
    args = p.parse_args()
    ks = (10, 30, 100) if args.tiny else tuple(int(k) for k in args.k.split(","))
    print(json.dumps(run(args.world, ks, args.seeds, tiny=args.tiny)), flush=True)


if __name__ == "__main__":
    main()
