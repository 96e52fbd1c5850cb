"""The embedded demo world: deterministic, real encodings, real land cover, known truth, raw site formats."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from fluxmap import demo
from fluxmap.demo import SRDB_COLUMNS, ZONES, demo_sources
from fluxmap.demo.physics import _PeriodState
from fluxmap.io.landcover import read_mcd12c1
from fluxmap.science import periods, products
from fluxmap.science.grids import LatLonGrid, cell_area, landcover_on_grid
from fluxmap.testing import tiny_demo_config


def test_same_seed_gives_identical_files(tiny_world, tmp_path):
    again = demo.build_world(tmp_path / "again", tiny_demo_config())
    assert again.files == tiny_world.files
    other = demo.build_world(tmp_path / "other", tiny_demo_config(seed=7))
    assert other.files["truth/truth.zarr/sr/0.0.0"] != tiny_world.files["truth/truth.zarr/sr/0.0.0"]
    assert demo.world_is_current(tiny_world.root, tiny_demo_config())
    assert not demo.world_is_current(tiny_world.root, tiny_demo_config(seed=7))
    # A world written by another version of the generator is rebuilt, not reused.
    meta = json.loads((again.root / "world.json").read_text())
    assert meta["format"] == demo.WORLD_FORMAT
    (again.root / "world.json").write_text(json.dumps({**meta, "format": demo.WORLD_FORMAT + 1}))
    assert not demo.world_is_current(again.root, tiny_demo_config())
    (again.root / "world.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "format"}))
    assert not demo.world_is_current(again.root, tiny_demo_config())


def test_stores_hold_real_encodings_and_8day_axis(demo_catalog):
    lst = demo_catalog.open_raw("mod11a2")
    assert lst.LST_Day_1km.dtype == np.uint16 and lst.QC_Day.dtype == np.uint8
    refl = demo_catalog.open_raw("mod09a1")
    assert refl.sur_refl_b01.dtype == np.int16 and refl.sur_refl_state_500m.dtype == np.uint16
    assert int((refl.sur_refl_b01 == -28672).sum()) > 0  # ocean fill
    lai = demo_catalog.open_raw("mod15a2h")
    assert lai.Lai_500m.dtype == np.uint8 and int((lai.Lai_500m >= 249).sum()) > 0
    # Real period starts: DOY 1, 9, ..., 361 of each year.
    assert (pd.DatetimeIndex(lst.time.values) == periods.period_starts([2020])).all()
    # Cloud gaps flagged in QC where LST is fill, on land.
    qc = lst.QC_Day.values
    dn = lst.LST_Day_1km.values
    land = demo_catalog.open("static").land_fraction.values > 0.5
    cloudy = ((qc & 3) == 2) & land[None]
    assert 0.03 < cloudy.sum() / np.broadcast_to(land, qc.shape).sum() < 0.6
    assert (dn[cloudy] == 0).all()
    state_cloud = (refl.sur_refl_state_500m.values & 3) == 1
    assert state_cloud[:, land].mean() > 0.03


def test_era5_on_its_own_grid(demo_catalog, tiny_world):
    raw = demo_catalog.open_raw("era5")
    lat, lon = raw.latitude.values, raw.longitude.values
    assert (np.diff(lat) < 0).all(), "ERA5 latitude runs north to south"
    assert lon.min() >= 0 and lon.max() < 360, "ERA5 longitude is 0..360"
    step = tiny_world.config.era5_resolution
    np.testing.assert_allclose(lat % step, 0, atol=1e-9)
    static = demo_catalog.open("static")
    assert (static.lon.values < 0).any(), "the MODIS-like grid runs -180..180, ERA5 0..360"
    assert raw.sizes["latitude"] != static.sizes["lat"], "a different spacing from the MODIS-like grid"
    assert raw.sizes["time"] == 366  # daily, leap year


def test_landcover_is_the_real_mcd12c1():
    lc = read_mcd12c1()
    assert lc.shape == (3600, 7200)
    g = LatLonGrid(1.0)
    frac, major = landcover_on_grid(lc, g)
    np.testing.assert_allclose(frac.sum(axis=0), 1.0, atol=1e-6)

    def at(lat, lon):
        r, c = g.index_of(np.array([lat]), np.array([lon]))
        return int(major[r[0], c[0]])

    assert at(23.5, 10.5) == 16  # central Sahara: barren
    assert at(-3.5, -62.5) == 2  # central Amazon: evergreen broadleaf forest
    assert at(0.5, -30.5) == 17  # Atlantic: water
    assert at(62.5, 100.5) in (1, 3, 5, 8)  # central Siberia: needleleaf/mixed forest or woody savanna


def test_world_physics_is_plausible(demo_catalog):
    st = demo_catalog.open("static").load()
    land = st.land_fraction > 0.5
    assert float(st.elevation.where(~land).max()) == 0.0
    lst = demo_catalog.open("mod11a2").lst_day
    jan, jul = (lst.sel(time=t, method="nearest").where(land).mean() for t in ("2020-01-05", "2020-07-05"))
    assert float(jul) - float(jan) > 10, "northern summer warmer than winter"
    ndvi = demo_catalog.open("mod09a1").ndvi
    assert float(ndvi.sel(time="2020-07-03").where(land).mean()) > float(ndvi.sel(time="2020-01-01").where(land).mean())


def test_truth_differs_between_zones(demo_catalog):
    tr = demo_catalog.open("truth").load()
    zones = np.unique(tr.zone.values[tr.land_fraction.values > 0.5])
    assert len(zones) >= 2
    assert set(tr.attrs) >= {"title"}
    assert float(tr.sr.min()) > 0 and np.isfinite(tr.nee.where(tr.land_fraction > 0.5)).any()
    np.testing.assert_allclose(tr.ra.values, (tr.sr - tr.rh).values, rtol=1e-5, equal_nan=True)
    # The zones are named in CF flag attributes, so readers need not import fluxmap.demo.
    assert tr.zone.attrs["flag_meanings"].split() == ["cold", "arid", "temperate", "tropical_humid"]
    assert list(tr.zone.attrs["flag_values"]) == sorted(ZONES) and tr.zone.attrs["long_name"]


def test_truth_function_has_zone_specific_drivers():
    st = _PeriodState(
        *(np.full(2, v) for v in (15.0, 2.0, 0.6, 0.7, 0.6, 0.2, 3.0, 0.7, 5.0, 2.0, 300.0, 285.0)),
        snow=np.zeros(2, bool),
        refl={},
    )
    cold, warm = demo.truth_fluxes(st, np.array([1, 3]), np.array([20.0, 20.0])), None
    hot = _PeriodState(**{**st.__dict__, "tair": np.full(2, 25.0)})
    warm = demo.truth_fluxes(hot, np.array([1, 3]), np.array([20.0, 20.0]))
    # Temperature sensitivity (Q10 over 10 K) is higher in the cold zone than the temperate one.
    q_cold, q_temp = warm["sr"] / cold["sr"]
    assert q_cold > q_temp > 1


def test_site_files_in_raw_formats(tiny_world, shared_data):
    sites = pd.read_csv(tiny_world.root / "sites" / "sites.csv")
    cfg = tiny_world.config
    assert len(sites) == cfg.n_srdb_sites + cfg.n_cosore_sites + cfg.n_fluxnet_sites
    # SRDB: the upstream header, "None" as a literal string, injected rule violations.
    srdb = pd.read_csv(
        tiny_world.root / "sites" / "srdb" / "srdb-data.csv", keep_default_na=False, na_values=["NA", ""]
    )
    real_header = (shared_data / "srdb" / "srdb-data.csv").open().readline().strip().split(",")
    assert list(srdb.columns) == real_header == SRDB_COLUMNS
    assert (srdb.Manipulation == "None").mean() > 0.8
    assert srdb.Quality_flag.astype(str).str.match(r"Q1[0-4]").sum() >= 1
    assert srdb.Duplicate_record.notna().sum() >= 1
    # COSORE daily: the same columns as the real derived daily file.
    cos = pd.read_csv(tiny_world.root / "sites" / "cosore" / "cosore_daily_all.csv")
    real_cos = pd.read_csv(shared_data / "cosore" / "cosore_daily_all.csv.gz", nrows=2)
    assert list(cos.columns) == list(real_cos.columns)
    hh = list((tiny_world.root / "sites" / "cosore" / "halfhourly").glob("*.csv"))
    assert len(hh) == cfg.n_halfhourly
    hh0 = pd.read_csv(hh[0])
    assert {"CSR_TIMESTAMP_BEGIN", "CSR_FLUX_CO2"} <= set(hh0.columns)
    # FLUXNET: DD and HH files with -9999 gaps.
    dd = sorted((tiny_world.root / "sites" / "fluxnet").glob("FLX_*_FULLSET_DD_*.csv"))
    assert len(dd) == cfg.n_fluxnet_sites
    frame = pd.read_csv(dd[0])
    assert (frame.NEE_VUT_REF == -9999).any() and {"TIMESTAMP", "NEE_VUT_REF_QC"} <= set(frame.columns)
    assert list((tiny_world.root / "sites" / "fluxnet").glob("FLX_*_FULLSET_HH_*.csv"))
    # The stage inputs name files that exist (a glob matching the DD files for FLUXNET).
    srcs = {s.kind: s for s in demo_sources(tiny_world.root)}
    assert set(srcs) == {"srdb", "cosore_daily", "fluxnet"}
    for spec in srcs.values():
        assert glob.glob(spec.path), spec.path
        assert all(Path(path).is_file() for key, path in spec.options if key != "micromet")
    assert len(glob.glob(srcs["fluxnet"].path)) == cfg.n_fluxnet_sites


def test_site_observations_follow_the_truth(tiny_world, demo_catalog):
    """COSORE-like daily fluxes averaged over 8-day periods recover truth x site effect."""
    sites = pd.read_csv(tiny_world.root / "sites" / "sites.csv").set_index("site_id")
    cos = pd.read_csv(tiny_world.root / "sites" / "cosore" / "cosore_daily_all.csv")
    cos = cos[cos["var"] == "Rs"]
    truth = demo_catalog.open("truth").sr.load()
    ratios = []
    for ds_name, g in cos.groupby("dataset"):
        s = sites.loc[ds_name.removeprefix("d_demo_")]
        t = pd.to_datetime(g.date)
        p = periods.period_start_of(t)
        mean8 = g.flux_co2_umol_m2_s.values * products.UMOL_CO2_M2_S_TO_G_C_M2_D
        obs = pd.Series(mean8, index=p).groupby(level=0).mean()
        tv = truth.isel(lat=int(s.row), lon=int(s.col)).sel(time=obs.index.values).values * s.site_effect
        ratios.append(np.median(obs.values / tv))
    assert np.allclose(ratios, 1.0, atol=0.08)


def test_srdb_annual_matches_truth_integral(tiny_world, demo_catalog):
    sites = pd.read_csv(tiny_world.root / "sites" / "sites.csv").set_index("site_id")
    srdb = pd.read_csv(
        tiny_world.root / "sites" / "srdb" / "srdb-data.csv", keep_default_na=False, na_values=["NA", ""]
    )
    srdb = srdb[(srdb.Quality_flag.isna()) & (srdb.Duplicate_record.isna()) & (srdb.Manipulation == "None")]
    truth = demo_catalog.open("truth").sr.load()
    days = xr.DataArray(periods.period_days(truth.time.values), dims="time")
    ratio = []
    for _, r in srdb[srdb.Study_midyear == 2020.5].iterrows():
        s = sites.loc[r.Site_ID]
        annual = float((truth.isel(lat=int(s.row), lon=int(s.col)) * days).sum()) * s.site_effect
        ratio.append(r.Rs_annual / annual)
    assert len(ratio) > 5
    assert 0.85 < np.median(ratio) < 1.15 and np.std(np.log(ratio)) < 0.25


def test_sites_biased_to_northern_midlatitudes_on_land(tmp_path):
    world = demo.build_world(
        tmp_path / "g",
        tiny_demo_config(bbox=(-180.0, -60.0, 180.0, 80.0), resolution=2.0, era5_resolution=2.0, space_chunk=64),
    )
    s = pd.read_csv(world.root / "sites" / "sites.csv")
    assert ((s.lat > 25) & (s.lat < 65)).mean() > 0.5
    static = xr.open_zarr(world.root / "static" / "static.zarr", consolidated=True)
    assert (static.land_fraction.values[s.row, s.col] > 0.5).all()
    meta = json.loads((world.root / "world.json").read_text())
    assert meta["sites"] == len(s)


def test_area_of_the_sphere():
    g = LatLonGrid(1.0)
    total = cell_area(g.lat, 1.0).sum() * g.shape[1]
    assert total == pytest.approx(4 * np.pi * 6_371_007.181**2, rel=1e-9)
