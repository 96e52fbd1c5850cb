"""Real-data figures: the example studies of ``examples/`` run through ``fluxmap run`` on the
real files in ../shared/data, and their figures printed, one JSON line per case. No pipeline code
of its own: site reading, grid climate, land-cover weighting, models, maps and totals are the
product's (tested there); this script only runs the configs and reads their outputs.

Cases:

- ``lu2021``: ``examples/lu2021.yaml``, SRDB v5 annual SR and HR (Lu et al. 2021's selection), random
  forest, CRU/CMAP climatologies + MCD12C1 class, global annual maps at 0.5 deg with sub-grid land
  cover: nested LOSO R2, totals with the ensemble's spread, AR, HR/SR, next to the published figures.
- ``cosore``: ``examples/cosore_zones.yaml``, COSORE 8-day Rs and Rh, zone vs unified models, with
  and without the sites' soil temperature and moisture.
- ``fluxnet_nee``: ``examples/fluxnet_nee.yaml``, FLUXNET2015 monthly NEE at 204 sites, zone vs unified.

No MODIS or ERA5 predictors: those are remote sources this machine cannot reach, so these numbers
measure what climate and land cover explain.

    python benchmarks/skill_real_data.py [--data ../shared/data] [--cases lu2021,cosore] [--out DIR]
        [--set predict.resolution=2.0 --set model.bootstrap_members=3 ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
CASES = {"lu2021": "lu2021.yaml", "cosore": "cosore_zones.yaml", "fluxnet_nee": "fluxnet_nee.yaml"}


def _set(cfg: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        cfg = cfg.setdefault(k, {})
    cfg[keys[-1]] = value


def config(case: str, workdir: Path, overrides: dict[str, Any] | None = None) -> dict:
    """The example config of ``case`` writing to ``workdir``, with ``overrides`` (dotted keys)."""
    cfg = yaml.safe_load((ROOT / "examples" / CASES[case]).read_text())
    cfg["workdir"] = str(workdir)
    for k, v in (overrides or {}).items():
        _set(cfg, k, v)
    return cfg


def run_case(case: str, data: Path, out: Path, overrides: dict[str, Any] | None = None) -> dict:
    """``fluxmap run`` on the case's config (its console output in ``out/<case>.log``), then its figures."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{case}.yaml"
    cfg = config(case, out / case, overrides)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    t0 = time.perf_counter()
    with (out / f"{case}.log").open("w") as log:
        subprocess.run(
            [sys.executable, "-m", "fluxmap.cli", "run", "--config", str(path), "--param", f"SHARED_DATA={data}"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=True,
        )  # fmt: skip
    published = (cfg.get("predict") or {}).get("published") or {}
    return {"case": case, **figures(out / case, published), "seconds": round(time.perf_counter() - t0, 1)}


def _interval(r: pd.Series, value: str, lo: str, hi: str) -> str:
    return f"{r[value]:+.3f} [{r[lo]:+.3f}, {r[hi]:+.3f}]"


def figures(workdir: Path, published: dict[str, float] | None = None) -> dict[str, Any]:
    """The figures of a finished run: per target the nested LOSO R2 of zone and unified models, their
    difference with its site-bootstrap interval, the best reference and the skill over it, the site
    meteorology experiment where run; and for annual maps the totals, their ensemble spread, the area
    outside the area of applicability, AR and HR/SR, beside the config's ``published`` figures; for
    8-day maps their totals."""
    published = published or {}
    summary = pd.read_csv(workdir / "models" / "summary.csv")
    out: dict[str, Any] = {}
    for _, r in summary.iterrows():
        f: dict[str, Any] = {
            "rows": int(r.rows),
            "site_ids": int(r.sites),
            "physical_sites": int(r.physical_sites),
            "zones": r.zones,
            "r2_zone": round(float(r.r2_zone), 3),
            "r2_unified": round(float(r.r2_unified), 3),
            "delta_r2_zone_minus_unified": _interval(
                r, "delta_r2_zone_minus_unified", "delta_r2_lo_zone_minus_unified", "delta_r2_hi_zone_minus_unified"
            ),
            "best_reference": r.best_reference,
            f"r2_reference_{r.best_reference}": round(float(r[f"r2_ref_{r.best_reference}"]), 3),
            "skill_unified_over_reference": _interval(r, "skill_unified", "skill_lo_unified", "skill_hi_unified"),
        }
        if "r2_rs_only" in r and pd.notna(r.r2_rs_only):
            f["site_meteorology"] = {
                "physical_sites": int(r.meteo_sites),
                "r2_without": round(float(r.r2_rs_only), 3),
                "r2_with": round(float(r.r2_rs_plus_meteo), 3),
            }
        out[str(r.target)] = f
    annual = workdir / "predict" / "annual"
    if (annual / "totals.csv").is_file():
        totals = pd.read_csv(annual / "totals.csv")
        for _, t in totals.iterrows():
            key = f"{t.target}:annual"
            out.setdefault(key, {})[f"total_pg_c_yr_{int(t.year)}"] = round(float(t.total_pg_c_yr), 2)
            if "ensemble_sd_pg_c_yr" in t:
                out[key]["ensemble_sd_pg_c_yr"] = round(float(t.ensemble_sd_pg_c_yr), 2)
            out[key]["unified_total_pg_c_yr"] = round(float(t.unified_total_pg_c_yr), 2)
            out[key]["land_outside_aoa"] = round(float(t.outside_aoa_area_fraction), 3)
            out[key]["published"] = published.get(str(t.target), "")
    if (annual / "components.csv").is_file():
        c = pd.read_csv(annual / "components.csv")
        out["components"] = {
            str(r.scope): {
                "sr": round(float(r.sr_pg_c_yr), 2),
                "rh": round(float(r.rh_pg_c_yr), 2),
                "ar": round(float(r.ar_pg_c_yr), 2),
                "rh_over_sr": round(float(r.rh_over_sr), 3),
            }
            for _, r in c.iterrows()
            if not str(r.scope).startswith("biome")
        }
        g = c[c.scope == "global"].iloc[0]
        out["components"]["global"]["land_share_hr_ge_sr"] = round(float(g.land_share_hr_ge_sr), 3)
        out["published_rh_over_sr"] = published.get("rh_over_sr", "")
    if (workdir / "predict" / "totals.csv").is_file():
        eight = pd.read_csv(workdir / "predict" / "totals.csv", index_col=0)
        for v in [c for c in eight.columns if c in ("sr", "rh", "nee", "gpp", "reco", "ra")]:
            out.setdefault(f"{v}:8day", {})["map_total_pg_c_yr"] = round(float(eight[v].mean()), 2)
    for key, f in out.items():
        mapping = workdir / "models" / key.replace(":", "_") / "mapping.json"
        if isinstance(f, dict) and mapping.is_file():
            f["mapped_as"] = json.loads(mapping.read_text())["mapped_as"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--out", default="real-data-runs", help="folder of the runs (one workdir per case)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value (YAML)")
    args = p.parse_args()
    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    for case in args.cases.split(","):
        print(json.dumps(run_case(case, Path(args.data).resolve(), Path(args.out).resolve(), overrides)), flush=True)


if __name__ == "__main__":
    main()
