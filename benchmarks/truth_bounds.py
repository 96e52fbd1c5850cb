"""How accurate is fluxmap on the demo world, across world seeds? The run the accuracy tests'
tolerances come from (tests/test_predict.py::test_accuracy_against_the_demo_truth).

For each seed: the tiny demo world of the tests (Europe, 1 deg, 2020), the whole pipeline with the
tests' light settings (``fluxmap.testing.small_run_config``, targets sr:8day and nee:8day, no
backward elimination), and against the world's noise-free truth: the nested R2 of the unified and
zone models at the sites, the maps' R2 cell by cell, and the predicted global total over the true
one (ratio and difference). One JSON line per seed, then one with the minimum and maximum of each
figure and the bounds the tests use: the worst value over the seeds widened by half the range.

    python benchmarks/truth_bounds.py [--seeds 20240501,1,2,...,9] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import pandas as pd


def one_seed(seed: int, workdir: Path) -> dict:
    from fluxmap.demo import build_world, demo_sources
    from fluxmap.stages.extract import extract_stage
    from fluxmap.stages.models import model_stage
    from fluxmap.stages.sites import sites_stage
    from fluxmap.testing import predict_and_report, small_run_config, tiny_demo_config

    world = build_world(workdir / f"world-{seed}", tiny_demo_config(seed=seed))
    cfg = small_run_config(
        workdir / f"run-{seed}", world.root, targets=["sr:8day", "nee:8day"], backward_elimination=False
    )
    quiet: list[str] = []
    tables = extract_stage(cfg, sites_stage(cfg, demo_sources(world.root), log=quiet.append), log=quiet.append)
    summary = model_stage(cfg, tables, log=quiet.append).set_index("target")
    err = predict_and_report(cfg, log=quiet.append)["error_vs_truth"]
    row: dict = {"seed": seed}
    for t in ("sr:8day", "nee:8day"):
        v = t.split(":")[0]
        row.update(
            {
                f"{v}_sites_truth_r2_unified": float(summary.loc[t, "truth_r2_unified"]),
                f"{v}_sites_truth_r2_zone": float(summary.loc[t, "truth_r2_zone"]),
                f"{v}_map_r2": float(err.loc[v, "r2"]),
                f"{v}_map_r2_unified": float(err.loc[v, "r2_unified"]),
                f"{v}_total_over_truth": float(
                    err.loc[v, "predicted_total_pg_c_yr"] / err.loc[v, "truth_total_pg_c_yr"]
                ),
                f"{v}_total_minus_truth_pg": float(
                    err.loc[v, "predicted_total_pg_c_yr"] - err.loc[v, "truth_total_pg_c_yr"]
                ),
            }
        )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="20240501,1,2,3,4,5,6,7,8,9")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        rows = []
        for s in (int(x) for x in args.seeds.split(",")):
            rows.append(one_seed(s, work))
            print(json.dumps(rows[-1]), flush=True)
    table = pd.DataFrame(rows).set_index("seed")
    lo, hi = table.min(), table.max()
    half = (hi - lo) / 2
    print(json.dumps({"min": lo.round(3).to_dict(), "max": hi.round(3).to_dict()}))
    print(json.dumps({"lower_bound": (lo - half).round(3).to_dict(), "upper_bound": (hi + half).round(3).to_dict()}))


if __name__ == "__main__":
    main()
