"""Model skill on the real site data in ../shared/data: zone models vs one unified model,
leave-one-site-out, with climate predictors from the real gridded climatologies.

Cases (each prints one JSON line):

- ``srdb_sr`` / ``srdb_hr``: SRDB v5 annual Rs / Rh (unmanipulated, IRGA or GC, quality and
  duplicate rules; all study years). Predictors: the record's own MAT and MAP, and the same
  climate from the grids (CRU 1961-1990 temperature climatology, CMAP 1981-2010 precipitation:
  annual mean, seasonal range), plus the MCD12C1 2019 IGBP class at the site.
- ``cosore_rs`` / ``cosore_rh``: COSORE daily chamber fluxes aggregated to MODIS 8-day periods.
  Predictors: grid climate of the period's month and the year, day-of-year transform, land cover;
  compared with the same plus the site's own soil temperature and moisture.
- ``fluxnet_nee``: FLUXNET2015 monthly NEE at 204 sites, predictors from the grid climate of the
  month, the year, land cover and the month transform.

No MODIS or ERA5 predictors: those are remote sources this machine cannot reach, so these
numbers measure what climate alone explains and are lower than remote-sensing models report.

    python benchmarks/skill_real_data.py [--data ../shared/data] [--cases srdb_sr,fluxnet_nee]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fluxmap import sites as S
from fluxmap.catalog import builtin_catalog, load_catalog
from fluxmap.demo import read_mcd12c1
from fluxmap.extract import extract_at_sites, locate_sites
from fluxmap.periods import aggregate_to_periods
from fluxmap.validate import compare, loso_predict, metrics, metrics_table
from fluxmap.zones import fit_zones, zone_array

ZONE_FACTORS = ["t_mean", "p_mean", "t_range", "p_range"]
MONTHLY_CLIMATE = ["t_month", "p_month", "t_mean", "p_mean", "t_range", "p_range"]
"""Grid climate of the observation's calendar month, and the site's annual climate."""


def grid_climate(data: Path, lat: np.ndarray, lon: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Site climate from the real grids: annual statistics and each calendar month (12 rows per site)."""
    cat = load_catalog(builtin_catalog("reference"), SHARED_DATA=str(data))
    ids = np.arange(len(lat))
    out = {}
    for entry, var, name in (("cru_tem", "t2m", "t"), ("cmap_precip", "tp", "p")):
        ds = cat.open(entry)
        # A 3 x 3 window fills coastal sites whose own cell is ocean in the coarse grid.
        got = extract_at_sites(ds, locate_sites(ds, ids, lat, lon), window=1)[var].compute()
        wide = extract_at_sites(ds, locate_sites(ds, ids, lat, lon), window=3)[var].compute()
        out[name] = got.fillna(wide).transpose("site", "time").values  # (site, 12 months)
    t, p = out["t"], out["p"]
    annual = pd.DataFrame(
        {
            "t_mean": np.nanmean(t, 1),
            "t_range": np.nanmax(t, 1) - np.nanmin(t, 1),
            "p_mean": np.nanmean(p, 1),
            "p_range": np.nanmax(p, 1) - np.nanmin(p, 1),
        }
    )
    monthly = pd.DataFrame(
        {
            "site": np.repeat(ids, 12),
            "month": np.tile(np.arange(1, 13), len(ids)),
            "t_month": t.ravel(),
            "p_month": p.ravel(),
        }
    )
    return annual, monthly


def with_site_climate(data: Path, frame: pd.DataFrame, *, month: pd.Series) -> pd.DataFrame:
    """Join each row's site climate (annual and of its calendar month), land cover and year."""
    locs = frame[["lat", "lon"]].drop_duplicates().reset_index(drop=True)
    clim, monthly = grid_climate(data, locs.lat.to_numpy(), locs.lon.to_numpy())
    locs = pd.concat([locs, clim], axis=1).assign(site=np.arange(len(locs)))
    out = frame.assign(month=month.to_numpy()).merge(locs, on=["lat", "lon"]).merge(monthly, on=["site", "month"])
    out["landcover"] = landcover_at(out.lat.to_numpy(), out.lon.to_numpy())
    out["year"] = out.start.dt.year
    return out.dropna(subset=ZONE_FACTORS)


def landcover_at(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    lc = read_mcd12c1()
    row = np.clip(np.floor((90 - lat) / 0.05).astype(int), 0, 3599)
    col = np.clip(np.floor((((lon + 180) % 360) - 180 + 180) / 0.05).astype(int), 0, 7199)
    return lc[row, col].astype(float)


def compare_models(
    df: pd.DataFrame,
    features: list[str],
    *,
    min_sites: int,
    params: dict,
    restarts: int = 50,
    extra: dict[str, list[str]] | None = None,
) -> dict:
    """Zones on site-level climate, then LOSO zone vs unified models (XGBoost)."""
    site_f = df.groupby("site_id")[ZONE_FACTORS].first()
    counts = df.groupby("site_id").size()
    try:
        zm, cand = fit_zones(
            site_f,
            factors=ZONE_FACTORS,
            k_candidates=range(2, 7),
            min_sites=min_sites,
            obs_per_site=counts,
            min_obs=20,
            restarts=restarts,
        )
    except ValueError as e:  # too few sites to zone: report the unified model alone
        unified = loso_predict(df, features=features, params=params, n_jobs=2)
        m = metrics(df.value.values, unified.values)
        return {
            "rows": int(len(df)),
            "sites": int(df.site_id.nunique()),
            "zones": f"not fitted: {str(e).splitlines()[0]}",
            "r2_unified": round(m["r2"], 3),
            "rmse_unified": round(m["rmse"], 3),
        }
    zone = pd.Series(zone_array(zm, site_f.to_numpy()), index=site_f.index)
    d = df.assign(zone=df.site_id.map(zone))
    d["unified"] = loso_predict(d, features=features, params=params, n_jobs=2)
    d["zoned"] = loso_predict(d, features=features, by="zone", params=params, n_jobs=2)
    table = metrics_table(d, {"zone": "zoned", "unified": "unified"})
    cmp = compare(table, "zone", "unified").set_index("group")
    result = {
        "rows": int(len(d)),
        "sites": int(d.site_id.nunique()),
        "k": zm.k,
        "silhouette": round(float(cand[cand.chosen].silhouette.item()), 3),
        "r2_zone": round(float(cmp.loc["all", "r2_zone"]), 3),
        "r2_unified": round(float(cmp.loc["all", "r2_unified"]), 3),
        "rmse_zone": round(float(cmp.loc["all", "rmse_zone"]), 3),
        "rmse_unified": round(float(cmp.loc["all", "rmse_unified"]), 3),
        "zones_where_zone_models_win": [
            f"{g} ({int(r.sites)} sites)" for g, r in cmp.drop("all").iterrows() if r.better == "zone"
        ],
        "zones_where_unified_wins": [
            f"{g} ({int(r.sites)} sites)" for g, r in cmp.drop("all").iterrows() if r.better == "unified"
        ],
    }
    for label, feats in (extra or {}).items():
        rows = d.dropna(subset=[f for f in feats if f not in features])
        base = loso_predict(rows, features=features, params=params, n_jobs=2)
        more = loso_predict(rows, features=feats, params=params, n_jobs=2)
        result[label] = {
            "rows": int(len(rows)),
            "sites": int(rows.site_id.nunique()),
            "r2_without": round(metrics(rows.value.values, base.values)["r2"], 3),
            "r2_with": round(metrics(rows.value.values, more.values)["r2"], 3),
        }
    return result


def srdb_case(data: Path, variable: str, params: dict) -> dict:
    rules = S.SrdbRules(min_year=None)
    t = S.read_srdb(data / "srdb" / "srdb-data.csv", rules)
    raw = pd.read_csv(data / "srdb" / "srdb-data.csv", keep_default_na=False, na_values=["NA", ""], low_memory=False)
    raw["record_id"] = raw.Record_number.map(lambda v: f"{v:g}" if isinstance(v, float) else str(v))
    obs = t.observations[t.observations.variable == variable].merge(raw[["record_id", "MAT", "MAP"]], on="record_id")
    obs["value"] = obs.value * 365.0  # back to g C m-2 yr-1 for reporting
    clim, _ = grid_climate(data, obs.lat.to_numpy(), obs.lon.to_numpy())
    obs = pd.concat([obs.reset_index(drop=True), clim], axis=1)
    obs["landcover"] = landcover_at(obs.lat.to_numpy(), obs.lon.to_numpy())
    obs["site_id"] = obs.lat.round(2).astype(str) + "," + obs.lon.round(2).astype(str)  # SRDB site ids are sparse
    obs = obs.dropna(subset=ZONE_FACTORS)
    features = ["MAT", "MAP", "t_mean", "t_range", "p_mean", "p_range", "landcover"]
    return compare_models(obs, features, min_sites=10, params=params)


def cosore_case(data: Path, variable: str, params: dict) -> dict:
    t = S.read_cosore_daily(
        data / "cosore" / "cosore_daily_all.csv.gz", data / "cosore" / "cosore_datasets_summary.csv"
    )
    o = t.observations[t.observations.variable == variable]
    keys = ["site_id", "lat", "lon", "variable", "method"]
    per, _ = aggregate_to_periods(o, keys=keys, value_cols=["value", "tsoil_c", "swc"], min_coverage=0.5)
    per = with_site_climate(data, per, month=(per.start + pd.Timedelta(days=4)).dt.month)
    doy = (per.start + pd.Timedelta(days=4)).dt.day_of_year
    per["doy_sin"], per["doy_cos"] = np.sin(2 * np.pi * doy / 365.25), np.cos(2 * np.pi * doy / 365.25)
    features = [*MONTHLY_CLIMATE, "doy_sin", "doy_cos", "landcover", "year"]
    return compare_models(
        per,
        features,
        min_sites=3,
        params=params,
        extra={"site_soil_temperature_and_moisture": features + ["tsoil_c", "swc"]},
    )


def fluxnet_case(data: Path, params: dict) -> dict:
    t = S.read_fluxnet_monthly_table(
        data / "fluxnet" / "fluxnet2015_monthly_GPP_NEE_ET_204sites.csv", variables=("NEE",)
    )
    o = t.observations.copy()
    o = with_site_climate(data, o, month=o.start.dt.month)
    o["m_sin"], o["m_cos"] = np.sin(2 * np.pi * o.month / 12), np.cos(2 * np.pi * o.month / 12)
    features = [*MONTHLY_CLIMATE, "m_sin", "m_cos", "landcover", "year", "lat"]
    return compare_models(o, features, min_sites=8, params=params)


CASES = {
    "srdb_sr": lambda d, p: srdb_case(d, "sr", p),
    "srdb_hr": lambda d, p: srdb_case(d, "rh", p),
    "cosore_rs": lambda d, p: cosore_case(d, "sr", p),
    "cosore_rh": lambda d, p: cosore_case(d, "rh", p),
    "fluxnet_nee": lambda d, p: fluxnet_case(d, p),
}


def run(data: Path, cases: list[str], params: dict | None = None) -> list[dict]:
    params = params or {"n_estimators": 200, "max_depth": 4}
    out = []
    for name in cases:
        t0 = time.perf_counter()
        res = {"case": name, **CASES[name](data, params), "seconds": round(time.perf_counter() - t0, 1)}
        out.append(res)
        print(json.dumps(res), flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--cases", default=",".join(CASES))
    args = p.parse_args()
    run(Path(args.data), args.cases.split(","))


if __name__ == "__main__":
    main()
