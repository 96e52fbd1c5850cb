"""Annual maps (issue 24, part 2): regridding by the declared method, sub-grid land-cover
weighting in the block kernel, and the Lu et al. 2021 example config run on the real SRDB data at
a coarse setting (structure and physical sanity, never the published numbers)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from fluxmap.science.predict import ModelSet, predict_block
from fluxmap.science.regrid import fill_nearest, to_grid, to_points

ROOT = Path(__file__).resolve().parents[1]


def _field() -> xr.Dataset:
    lat = np.array([-2.5, 2.5])
    lon = np.arange(-177.5, 180.0, 5.0)
    v = np.add.outer(lat * 10.0, np.arange(lon.size, dtype=float))
    return xr.Dataset({"t2m": (("lat", "lon"), v)}, coords={"lat": lat, "lon": lon})


def test_bilinear_matches_hand_values_and_wraps_the_dateline():
    ds = _field()
    got = to_points(ds, np.array([0.0, 0.0]), np.array([-175.0, 180.0]), "bilinear")["t2m"].values
    # lat 0 is halfway between the rows (-25 and +25 offsets): the row mean; lon -175 halfway
    # between columns 0 and 1; lon 180 halfway between the last column (71) and the first (0).
    assert got[0] == pytest.approx(0.5)
    assert got[1] == pytest.approx((71 + 0) / 2)
    grid = to_grid(ds, np.array([0.0]), np.array([-175.0, 2.5]), "bilinear")["t2m"].values
    assert grid[0, 0] == pytest.approx(0.5) and grid[0, 1] == pytest.approx(36.0)
    near = to_points(ds, np.array([2.0]), np.array([-176.0]), "nearest")["t2m"].values
    assert near[0] == pytest.approx(25.0)


def test_ocean_cells_take_the_nearest_valid_cell():
    ds = _field()
    v = ds["t2m"].values.copy()
    v[1, 10:20] = np.nan  # "ocean" on the coarse grid
    filled = fill_nearest(ds.assign(t2m=(("lat", "lon"), v)))["t2m"].values
    assert np.isfinite(filled).all()
    assert filled[1, 10] == v[1, 9] and filled[1, 19] == v[1, 20]  # nearest along the row, not the other row
    assert filled[1, 15] in (v[0, 15], v[1, 9], v[1, 20])


class _ByClass:
    """A model whose prediction is twice the land-cover class of the row (to check the weighting)."""

    features = ["t2m", "landcover"]

    def predict(self, x: np.ndarray) -> np.ndarray:
        return 2.0 * x[:, 1]


def test_sub_grid_land_cover_weights_each_class_prediction():
    lat, lon = np.array([10.0, 11.0]), np.array([20.0, 21.0])
    fr = np.zeros((17, 2, 2), dtype="float32")
    fr[0, 0, 0], fr[9, 0, 0] = 0.25, 0.75  # class 1 and class 10
    fr[3, 0, 1] = 0.5  # half class 4, the rest water (not given)
    block = xr.Dataset(
        {
            "t2m": (("time", "lat", "lon"), np.ones((1, 2, 2), "float32")),
            "landcover": (("lat", "lon"), np.array([[10.0, 4.0], [np.nan, np.nan]])),
            "zone": (("lat", "lon"), np.array([[1, 1], [0, 0]], "uint8")),
            "class_fraction": (("igbp", "lat", "lon"), fr),
        },
        coords={"time": pd.DatetimeIndex(["2001-01-01"]), "lat": lat, "lon": lon, "igbp": np.arange(1, 18)},
    )
    m = _ByClass()
    out = predict_block(block, ModelSet("sr", {}, m))  # type: ignore[arg-type]
    got = out["sr"].values[0]
    assert got[0, 0] == pytest.approx(2 * (0.25 * 1 + 0.75 * 10))
    assert got[0, 1] == pytest.approx(2 * 4)  # per m2 of the mapped classes
    assert np.isnan(got[1]).all()


def test_lu2021_example_on_real_srdb_at_a_coarse_setting(shared_data, tmp_path):
    """The shipped example config, coarsened (3 deg, small forests, 3 outer and 2 inner folds for its
    complete-combination search, 3 bootstrap members), run
    through the CLI on the real SRDB v5 file with CRU/CMAP and MCD12C1: the annual maps and tables
    exist, fluxes are positive and finite, AR = SR - HR, the components match the totals."""
    cfg = yaml.safe_load((ROOT / "examples" / "lu2021.yaml").read_text())
    cfg["workdir"] = str(tmp_path / "run")
    cfg["predict"].update(resolution=3.0, annual_chunk=25)
    cfg["model"].update(
        params={"n_estimators": 30},
        selection_params={"n_estimators": 10},
        bootstrap_members=3,
        outer_folds=3,
        inner_folds=2,
    )
    path = tmp_path / "lu.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = subprocess.run(
        [sys.executable, "-m", "fluxmap.cli", "run", "--config", str(path), "--param", f"SHARED_DATA={shared_data}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = tmp_path / "run" / "predict" / "annual"
    ds = xr.open_zarr(out / "annual.zarr", consolidated=True)
    assert ds.sizes["time"] == 1 and ds.attrs["fluxmap_climatological_year"] == "true"
    assert ds["time"].attrs["fluxmap_step"] == "year"
    land = ds["land_fraction"].values > 0
    for v in ("sr", "rh", "ra", "sr_sd", "rh_sd", "sr_di", "rh_aoa"):
        assert v in ds, v
    sr, rh, ra = (ds[v].values[0] for v in ("sr", "rh", "ra"))
    assert np.isfinite(sr[land]).all() and (sr[land] > 0).all() and (rh[land] > 0).all()
    assert np.isnan(sr[~land]).all()
    np.testing.assert_allclose(ra[land], (sr - rh)[land], rtol=1e-5, atol=1e-5)
    totals = pd.read_csv(out / "totals.csv").set_index("target")
    assert np.isfinite(totals.total_pg_c_yr).all() and (totals.total_pg_c_yr > 0).all()
    comp = pd.read_csv(out / "components.csv")
    g = comp[comp.scope == "global"].iloc[0]
    assert g.sr_pg_c_yr == pytest.approx(totals.loc["sr", "total_pg_c_yr"])
    assert g.ar_pg_c_yr == pytest.approx(g.sr_pg_c_yr - g.rh_pg_c_yr)
    bands = comp[~comp.scope.str.startswith(("global", "biome"))]
    # Every scope's spread from the paired members (SR, HR, AR, HR/SR).
    assert np.isfinite(comp[["sr_sd_pg_c_yr", "rh_sd_pg_c_yr", "ar_sd_pg_c_yr"]].to_numpy()).all()
    assert (comp.ar_over_sr - (1 - comp.rh_over_sr)).abs().max() < 1e-9
    assert bands.sr_pg_c_yr.sum() == pytest.approx(g.sr_pg_c_yr, rel=1e-6)  # the bands tile the globe
    assert 0.0 <= g.land_share_hr_ge_sr <= 1.0
    # Each member's own map summed: a spread of the totals; AR's from the two ensembles.
    assert (totals.ensemble_members == 3).all() and (totals.ensemble_sd_pg_c_yr > 0).all()
    assert (totals.ensemble_p05_pg_c_yr <= totals.ensemble_p95_pg_c_yr).all()
    members = ds["sr_members"].isel(time=0).values
    assert members.shape[0] == 3
    np.testing.assert_allclose(
        np.nanstd(members, axis=0, ddof=1)[land], ds["sr_sd"].values[0][land], rtol=1e-4, atol=1e-5
    )
    # HR is mapped as SR x HR/SR (the example's model.ratios): below SR wherever mapped.
    assert (rh[land] < sr[land]).mean() > 0.95 and g.land_share_hr_ge_sr < 0.05
    assert "rh_sr_ratio" in ds and np.nanmax(ds["rh_sr_ratio"].values) < 1.0
    assert "rh_sr_ratio" not in set(totals.index)  # a ratio has no total
    composed = pd.read_csv(tmp_path / "run" / "models" / "rh_annual" / "composed.csv")
    assert set(composed.way) == {"independent", "composed"} and (composed.n > 500).all()
    # AR's spread from the paired members (member i of HR is SR's member i times the ratio's).
    sr_m, rh_m = (aggregate_members(ds, v, land) for v in ("sr", "rh"))
    assert g.ar_sd_pg_c_yr == pytest.approx(float(np.std(sr_m - rh_m, ddof=1)), rel=1e-3)
    # Where the run stands against the published figures: by band, biome and zone, from the held-out sites.
    where = pd.read_csv(out / "where.csv")
    assert {"latitude band", "biome", "zone"} <= set(where.scope)
    bands = where[(where.target == "sr") & (where.scope == "latitude band")]
    assert bands.total_pg_c_yr.sum() == pytest.approx(totals.loc["sr", "total_pg_c_yr"], rel=1e-6)
    sr_rows = pd.read_parquet(tmp_path / "run" / "models" / "sr_annual" / "loso_predictions.parquet")
    assert bands.sites_records.sum() == sr_rows.pred_zone.notna().sum()  # every held-out record in one band
    text = (out / "report.md").read_text()
    assert "Beside the published figures (Lu et al. 2021" in text and "By latitude band" in text
    assert "rh is mapped as sr x rh_sr_ratio" in text
    # New records scored as the maps are made: HR as SR x HR/SR, so below SR at the same site and year.
    sites = tmp_path / "new_sites.yaml"
    sites.write_text(yaml.safe_dump({"sources": [{"kind": "srdb", "path": f"{shared_data}/srdb/srdb-data.csv"}]}))
    scored = subprocess.run(
        [sys.executable, "-m", "fluxmap.cli", "score", "--config", str(path), "--sites", str(sites),
         "--param", f"SHARED_DATA={shared_data}"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert scored.returncode == 0, scored.stdout[-3000:] + scored.stderr[-3000:]
    p = pd.read_parquet(tmp_path / "run" / "score" / "predictions.parquet")
    key = ["location", "start", "end"]  # the same place and years: the same predictors
    pairs = p[p.target == "rh:annual"].merge(p[p.target == "sr:annual"], on=key, suffixes=("_rh", "_sr"))
    assert len(pairs) > 300 and (pairs.pred_unified_rh < pairs.pred_unified_sr).all()
    biomes = pd.read_csv(out / "totals_by_biome.csv")
    sr_biomes = biomes[biomes.target == "sr"]
    assert sr_biomes.total_pg_c_yr.sum() == pytest.approx(totals.loc["sr", "total_pg_c_yr"], rel=1e-6)
    assert not sr_biomes.name.isin(["water", "permanent_snow_and_ice"]).any()
    # The real-data script only reads these outputs back (benchmarks/skill_real_data.py).
    import importlib.util

    spec = importlib.util.spec_from_file_location("skill_real_data", ROOT / "benchmarks" / "skill_real_data.py")
    skill = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(skill)  # type: ignore[union-attr]
    fig = skill.figures(tmp_path / "run")
    assert fig["sr:annual"]["physical_sites"] > 600 and fig["rh:annual"]["physical_sites"] > 150
    assert fig["sr:annual"]["total_pg_c_yr_2001"] == pytest.approx(totals.loc["sr", "total_pg_c_yr"], abs=0.01)
    assert fig["components"]["global"]["ar"] == pytest.approx(g.ar_pg_c_yr, abs=0.01)
    # The annual store and its netCDF export are CF-1.10 (members, ratios, components, land cover flags).
    from fluxmap.testing import cf_errors

    assert [e for e in cf_errors(out / "annual.zarr", tmp_path) if "crs" not in e and "§2.1" not in e] == []
    export = subprocess.run(
        [sys.executable, "-m", "fluxmap.cli", "export", "--config", str(path), "--out", str(tmp_path / "nc"),
         "--param", f"SHARED_DATA={shared_data}"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert export.returncode == 0, export.stdout[-3000:] + export.stderr[-3000:]
    files = sorted(p.name for p in (tmp_path / "nc").glob("*.nc"))
    assert {"fluxmap_annual_sr_2001.nc", "fluxmap_annual_rh_2001.nc", "fluxmap_annual_rh_sr_ratio_2001.nc",
            "fluxmap_annual_ra_2001.nc"} <= set(files)  # fmt: skip
    for name in files:
        assert cf_errors(tmp_path / "nc" / name, tmp_path) == [], name
    rh = xr.open_dataset(tmp_path / "nc" / "fluxmap_annual_rh_2001.nc")
    assert rh.rh.attrs["standard_name"].endswith("due_to_heterotrophic_respiration") and "rh_members" in rh
    assert rh.landcover_majority.attrs["flag_meanings"].split()[1] == "evergreen_needleleaf_forest"
    _evaluate_own_map_as_a_model(path, shared_data, tmp_path, totals)


def _evaluate_own_map_as_a_model(config: Path, shared_data: str, tmp_path: Path, totals: pd.DataFrame) -> None:
    """The run's own annual map rewritten as a model writes it (6 deg, noleap climatology with CF
    ``climatology`` bounds, kg m-2 s-1, longitudes 0..360, ``sftlf``), evaluated as an external
    product through the CLI: scored at the real sites beside fluxmap's nested predictions, its
    totals within 1 % of the map's, inside the members' band, AR/SR and per-biome totals given, the
    ILAMB export of the annual map readable as a product too."""
    from fluxmap.testing import as_model_output

    store = tmp_path / "run" / "predict" / "annual" / "annual.zarr"
    product = as_model_output(store, tmp_path / "model.nc", {"sr": "rs", "rh": "rh"}, factor=2)
    ilamb = subprocess.run(
        [sys.executable, "-m", "fluxmap.cli", "export", "--config", str(config), "--format", "ilamb",
         "--out", str(tmp_path / "ilamb"), "--param", f"SHARED_DATA={shared_data}"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert ilamb.returncode == 0, ilamb.stdout[-3000:] + ilamb.stderr[-3000:]
    exported = tmp_path / "ilamb" / "sr" / "fluxmap_sr_annual.nc"
    assert exported.is_file() and (tmp_path / "ilamb" / "sr" / "fluxmap_sr_annual_sites.nc").is_file()
    run = subprocess.run(
        [sys.executable, "-m", "fluxmap.cli", "evaluate", "--config", str(config), "--param",
         f"SHARED_DATA={shared_data}", "--product", f"model6deg={product}:sr=rs,rh=rh",
         "--product", f"ilamb_export={exported}:sr=sr"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = tmp_path / "run" / "evaluate"
    scores = pd.read_csv(out / "scores.csv")
    overall = scores[scores.by == "all"].set_index(["target", "product"])
    assert overall.loc[("sr:annual", "model6deg"), "n"] > 1000 and overall.loc[("rh:annual", "model6deg"), "n"] > 200
    assert overall.loc[("sr:annual", "fluxmap (nested)"), "n"] > 1000
    got = pd.read_csv(out / "totals.csv")
    for var in ("sr", "rh"):
        row = got[(got.variable == var) & (got["product"] == "model6deg")].iloc[0]
        assert row.total_pg_c_yr == pytest.approx(totals.loc[var, "total_pg_c_yr"], rel=0.01)
        assert row.fluxmap_low_pg_c_yr == pytest.approx(totals.loc[var, "ensemble_p05_pg_c_yr"])
    exported_total = got[(got.variable == "sr") & (got["product"] == "ilamb_export")].total_pg_c_yr.iloc[0]
    assert exported_total > totals.loc["sr", "total_pg_c_yr"]  # no land fraction: whole coastal cells count
    part = pd.read_csv(out / "partition.csv").set_index("product")
    assert part.loc["model6deg", "rh_over_sr"] == pytest.approx(part.loc["fluxmap map", "rh_over_sr"], rel=0.02)
    assert (out / "totals_by_biome.csv").is_file() and (out / "difference_sr_model6deg.png").is_file()
    assert (
        "## Gridded products against the sites and this map"
        in (out.parent / "predict" / "annual" / "report.md").read_text()
    )


def aggregate_members(ds: xr.Dataset, v: str, land: np.ndarray) -> np.ndarray:
    """Each member's global total (Pg C yr-1) by hand: cell areas on the sphere times the mapped
    land fraction, 365 days."""
    lat = np.deg2rad(ds.lat.values)
    half = np.deg2rad(abs(float(ds.lat[1] - ds.lat[0]))) / 2
    dlon = np.deg2rad(abs(float(ds.lon[1] - ds.lon[0])))
    area = 6371.0072e3**2 * dlon * (np.sin(lat + half) - np.sin(lat - half))  # m2 per cell
    w = area[:, None] * ds["land_fraction"].values
    m = np.nan_to_num(ds[f"{v}_members"].isel(time=0).values)
    return (m * w).sum(axis=(1, 2)) * 365 / 1e15


def test_mapped_land_of_mcd12c1_without_ice_and_water(tmp_path):
    """Sub-grid land: the mapped fraction of a 5 deg grid from MCD12C1 2019 adds up to the ice-free,
    water-free land (Earth's land 149 Mkm2, less ~16 of ice sheets and ~3 of inland water)."""
    import dataclasses

    from fluxmap.config import ExtractConfig, PredictConfig, RunConfig
    from fluxmap.science.grids import LatLonGrid, cell_area
    from fluxmap.stages.grid import with_land as _land

    cfg = dataclasses.replace(RunConfig(), extract=ExtractConfig(landcover="mcd12c1"), predict=PredictConfig())
    g = LatLonGrid(5.0)
    cube = xr.Dataset(coords={"lat": g.lat, "lon": g.lon})
    cube, land, _ = _land(cfg, cube, g, 36)
    area = float((land.values * cell_area(g.lat, 5.0)[:, None]).sum()) / 1e12
    assert 125 < area < 136
    frac = cube["class_fraction"].values
    assert frac[14].sum() == 0 and frac[16].sum() == 0  # snow/ice and water carry no weight
    np.testing.assert_allclose(frac.sum(axis=0), land.values, rtol=1e-6)


def test_conservative_regridding_keeps_the_area_weighted_mean():
    """Conservative: a 1 deg field onto 2 deg cells is the area-weighted mean of the four
    source cells under each target cell (the spherical weights differ between the two rows)."""
    lat = np.array([0.5, 1.5, 2.5, 3.5])
    lon = np.array([10.5, 11.5, 12.5, 13.5])
    v = np.arange(16, dtype=float).reshape(4, 4)
    ds = xr.Dataset({"t2m": (("lat", "lon"), v)}, coords={"lat": lat, "lon": lon})
    got = to_grid(ds, np.array([1.0, 3.0]), np.array([11.0, 13.0]), "conservative")["t2m"].values
    w = np.diff(np.sin(np.deg2rad(np.arange(0.0, 5.0))))  # row areas on the sphere, per unit longitude
    for i in range(2):
        for j in range(2):
            block = v[2 * i : 2 * i + 2, 2 * j : 2 * j + 2]
            expect = (block * w[2 * i : 2 * i + 2, None]).sum() / (2 * w[2 * i : 2 * i + 2].sum())
            assert got[i, j] == pytest.approx(expect, rel=1e-4)


def test_region_totals_match_annual_totals_per_region_and_aoa():
    """Per region code: the same totals as annual_totals restricted to the region, and the flux and
    land area-days outside the area of applicability."""
    from fluxmap.science.aggregate import annual_totals, region_totals

    rng = np.random.default_rng(3)
    lat, lon = np.arange(-60, 90, 30.0) + 15, np.arange(-180, 180, 30.0) + 15
    time = pd.DatetimeIndex(["2001-01-01"])
    flux = xr.DataArray(rng.uniform(0, 3, (1, lat.size, lon.size)), dims=("time", "lat", "lon"),
                        coords={"time": time, "lat": lat, "lon": lon})  # fmt: skip
    flux["time"].attrs["fluxmap_step"] = "year"
    flux[0, 0, :3] = np.nan
    land = xr.DataArray(rng.uniform(0, 1, (lat.size, lon.size)), dims=("lat", "lon"), coords=flux.isel(time=0).coords)
    codes = xr.DataArray(rng.integers(1, 4, (lat.size, lon.size)), dims=("lat", "lon"), coords=land.coords)
    aoa = xr.DataArray(rng.integers(0, 2, flux.shape).astype("uint8"), dims=flux.dims, coords=flux.coords)
    t = region_totals(flux, land, codes, {1: "a", 2: "b", 3: "c"}, aoa=aoa).set_index("name")
    for c, name in ((1, "a"), (2, "b"), (3, "c")):
        ref = annual_totals(flux, land, region=codes == c).iloc[0]
        assert t.loc[name, "total_pg_c_yr"] == pytest.approx(ref.total_pg_c_yr)
        out = annual_totals(flux.where(aoa == 0), land, region=codes == c).iloc[0]
        assert t.loc[name, "from_outside_aoa_pg_c_yr"] == pytest.approx(out.total_pg_c_yr)
        # Outside share of the area-days with a value: out's covered area over ref's covered area.
        assert t.loc[name, "outside_aoa_area_fraction"] == pytest.approx(
            out.covered_fraction / ref.covered_fraction, rel=1e-9
        )
    assert t.total_pg_c_yr.sum() == pytest.approx(annual_totals(flux, land).total_pg_c_yr.iloc[0])


def test_scores_by_region_by_hand():
    from fluxmap.science.validate import scores_by_region

    obs = pd.Series([1.0, 2.0, 3.0, 4.0, 5.0])
    pred = pd.Series([1.5, 2.5, 2.0, 4.0, np.nan])
    region = pd.Series(["n", "n", "s", "s", "s"])
    site = pd.Series(["P1", "P2", "P3", "P3", "P4"])
    t = scores_by_region(obs, pred, region, site).set_index("region")
    assert t.loc["n", "bias"] == pytest.approx(0.5) and t.loc["n", "records"] == 2 and t.loc["n", "sites"] == 2
    assert t.loc["s", "records"] == 2 and t.loc["s", "sites"] == 1  # the row without a prediction left out
    assert t.loc["s", "rmse"] == pytest.approx(np.sqrt(0.5))


def _exact_cell_means(field: xr.DataArray, lat: np.ndarray, lon: np.ndarray, step: float, fine: int = 20) -> np.ndarray:
    """The exact area-weighted mean of a piecewise-constant source field (each source cell one value)
    over each target cell, by sampling every target cell on a ``fine`` x ``fine`` sub-grid weighted by
    cos(latitude): independent of the regridding code."""
    src_lat, src_lon = field["lat"].values, field["lon"].values
    sub = (np.arange(fine) + 0.5) / fine - 0.5
    out = np.empty((lat.size, lon.size))
    for i, la in enumerate(lat):
        plat = la + sub * step
        iy = np.abs(src_lat[:, None] - plat[None]).argmin(axis=0)  # the source cell holding each point
        w = np.cos(np.deg2rad(plat))
        for j, lo in enumerate(lon):
            plon = lo + sub * step
            ix = np.abs((src_lon[:, None] - plon[None] + 180) % 360 - 180).argmin(axis=0)  # across the 0/360 seam
            vals = field.values[np.ix_(iy, ix)]
            out[i, j] = (vals * w[:, None]).sum() / (w.sum() * fine)
    return out


def test_era5_reaches_larger_cells_as_their_mean(tiny_world, demo_catalog):
    """ERA5 (0.5 deg here) onto the demo's 1 deg cells: the regridding chooses conservative (the
    target cells are larger), and its annual precipitation matches the exact cell mean, where the
    centre sample (nearest) misses it."""
    from fluxmap.science.features import regrid_nearest
    from fluxmap.science.regrid import method_for, regrid_to

    era = demo_catalog.open("era5")
    grid = demo_catalog.open("mod11a2")
    lat, lon = grid["lat"].values, grid["lon"].values
    tp = era[["tp"]].mean("time").load()
    assert (
        method_for(tp, lat, lon) == "conservative"
        and method_for(grid, era["lat"].values, era["lon"].values) == "nearest"
    )
    exact = _exact_cell_means(tp["tp"], lat, lon, 1.0)
    got = regrid_to(tp, lat, lon)["tp"].values
    near = regrid_nearest(tp["tp"], lat, lon).values
    rms = lambda a: float(np.sqrt(np.mean((a - exact) ** 2)))  # noqa: E731
    assert rms(got) < 1e-3 * float(exact.mean())  # the same numbers up to float32
    assert rms(near) > 0.05 * float(exact.mean())  # the centre sample: 11 % RMS here
