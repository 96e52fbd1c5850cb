"""Vectorized extraction at sites, ERA5 to 8-day periods, derived features, and the sites/extract stages."""

from __future__ import annotations

import dataclasses
import json

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from fluxmap.config import run_config_from_mapping
from fluxmap.demo import demo_sources
from fluxmap.science import periods
from fluxmap.science.extract import extract_at_sites, locate_sites, to_periods
from fluxmap.science.features import annual_stats, doy_features, growing_season_mean, long_term_means
from fluxmap.stages.extract import extract_stage
from fluxmap.stages.sites import sites_stage
from fluxmap.testing import raise_if_dask_computes


@pytest.fixture(scope="module")
def site_table(tiny_world):
    return pd.read_csv(tiny_world.root / "sites" / "sites.csv")


def test_sites_land_in_the_generators_cells(demo_catalog, site_table):
    ds = demo_catalog.open("mod11a2")
    where = locate_sites(ds, site_table.site_id, site_table.lat, site_table.lon)
    assert where.inside.all()
    assert (where.row == site_table.row).all() and (where.col == site_table.col).all()


def test_extracted_predictors_equal_generator_values(demo_catalog, site_table):
    for entry in ("mod11a2", "mod09a1", "mod15a2h", "mod17a2h", "mod16a2", "static"):
        ds = demo_catalog.open(entry)
        with raise_if_dask_computes():
            got = extract_at_sites(ds, locate_sites(ds, site_table.site_id, site_table.lat, site_table.lon))
        got = got.compute()
        full = ds.load()
        for v in got.data_vars:
            if "lat" not in full[v].dims:
                continue
            expect = full[v].isel(
                lat=xr.DataArray(site_table.row.values, dims="site"),
                lon=xr.DataArray(site_table.col.values, dims="site"),
            )
            np.testing.assert_array_equal(got[v].transpose(*expect.dims).values, expect.values, err_msg=f"{entry}.{v}")


def test_window_mean_skips_masked_cells():
    data = np.arange(25, dtype="float32").reshape(5, 5)
    data[1, 1] = np.nan
    ds = xr.Dataset(
        {"v": (("lat", "lon"), data)}, coords={"lat": [2.0, 1.0, 0.0, -1.0, -2.0], "lon": [0.0, 1.0, 2.0, 3.0, 4.0]}
    )
    where = locate_sites(ds, ["a", "corner"], [1.0, 2.0], [1.0, 0.0])
    out = extract_at_sites(ds, where, window=3)
    block = data[0:3, 0:3]
    assert float(out.v.sel(site="a")) == pytest.approx(np.nanmean(block))
    assert float(out.v.sel(site="corner")) == pytest.approx(np.nanmean(data[0:2, 0:2]))
    with pytest.raises(ValueError, match="odd"):
        extract_at_sites(ds, where, window=2)


def test_class_maps_take_the_sites_own_cell():
    """Class maps (unsigned ints: land cover, zones) are never averaged, also when they are a
    cube's only variables."""
    zone = np.arange(25, dtype="uint8").reshape(5, 5)
    coords = {"lat": [2.0, 1.0, 0.0, -1.0, -2.0], "lon": [0.0, 1.0, 2.0, 3.0, 4.0]}
    only = xr.Dataset({"zone": (("lat", "lon"), zone)}, coords=coords)
    where = locate_sites(only, ["a", "b"], [1.0, -2.0], [1.0, 3.0])
    for window in (1, 3):
        out = extract_at_sites(only, where, window=window)
        assert out.zone.dtype == np.uint8 and out.zone.values.tolist() == [zone[1, 1], zone[4, 3]]
    mixed = only.assign(v=(("lat", "lon"), zone.astype("float32")))
    out = extract_at_sites(mixed, where, window=3)
    assert out.zone.values.tolist() == [6, 23] and float(out.v.sel(site="a")) == pytest.approx(6.0)


def test_outside_sites_are_flagged_and_nan():
    ds = xr.Dataset({"v": (("lat", "lon"), np.ones((2, 2)))}, coords={"lat": [1.0, 0.0], "lon": [0.0, 1.0]})
    where = locate_sites(ds, ["in", "out"], [0.2, 40.0], [0.9, 0.0])
    assert where.inside.tolist() == [True, False]
    out = extract_at_sites(ds, where)
    assert np.isnan(float(out.v.sel(site="out"))) and float(out.v.sel(site="in")) == 1.0


def test_era5_periods_by_hand(demo_catalog, site_table):
    era = demo_catalog.open("era5")
    where = locate_sites(era, site_table.site_id, site_table.lat, site_table.lon)
    got = to_periods(extract_at_sites(era, where)).compute()
    assert (pd.DatetimeIndex(got.time.values) == periods.period_starts([2020])).all()
    daily = era.tp.load()
    for i in (0, 7):
        lat, lon = float(site_table.lat[i]), float(site_table.lon[i]) % 360
        cell = daily.sel(lat=lat, lon=lon, method="nearest")
        last = cell.sel(time=slice("2020-12-26", "2020-12-31")).mean()
        assert float(got.tp.isel(site=i, time=-1)) == pytest.approx(float(last), rel=1e-5)
        assert float(got.tp.isel(site=i, time=1)) == pytest.approx(
            float(cell.sel(time=slice("2020-01-09", "2020-01-16")).mean()), rel=1e-5
        )


def test_extraction_and_periods_are_lazy(demo_catalog, site_table):
    with raise_if_dask_computes():
        era = demo_catalog.open("era5")
        out = to_periods(extract_at_sites(era, locate_sites(era, site_table.site_id, site_table.lat, site_table.lon)))
    assert out.t2m.chunks is not None


def _cube(lazy: bool) -> xr.Dataset:
    rng = np.random.default_rng(1)
    t = periods.period_starts([2019, 2020])
    v = rng.normal(size=(len(t), 3)).astype("float64")
    v[5, 1] = np.nan
    t2m = 270 + 20 * rng.random((len(t), 3))
    data = {
        "ndvi": (("time", "site"), da.from_array(v, chunks=(23, 3)) if lazy else v),
        "t2m": (("time", "site"), da.from_array(t2m, chunks=(23, 3)) if lazy else t2m),
    }
    return xr.Dataset(data, coords={"time": t.values, "site": ["a", "b", "c"]})


def test_features_eager_equals_lazy():
    eager = _cube(False)
    with raise_if_dask_computes():
        lazy = _cube(True)
        a_l = annual_stats(lazy)
        g_l = growing_season_mean(lazy.ndvi, lazy.t2m)
        m_l = long_term_means(lazy)
    xr.testing.assert_allclose(annual_stats(eager), a_l.compute())
    xr.testing.assert_allclose(growing_season_mean(eager.ndvi, eager.t2m), g_l.compute())
    xr.testing.assert_allclose(long_term_means(eager), m_l.compute())
    a = annual_stats(eager)
    y2019 = eager.ndvi.sel(time="2019")
    np.testing.assert_allclose(a.ndvi_ann_max.sel(time="2019").values, np.broadcast_to(y2019.max("time"), y2019.shape))
    np.testing.assert_allclose(
        a.ndvi_ann_min.sel(time="2020-06-01", method="nearest"), eager.ndvi.sel(time="2020").min("time")
    )


def test_means_over_time_weight_each_period_by_its_days():
    """2019 has 45 periods of 8 days and a last one of 5: a mean over the year counts the last for
    5/365 of it, not 1/46, whatever the time step's label (issue 22: one year length everywhere)."""
    eager = _cube(False)
    year = eager.sel(time="2019")
    days = periods.period_days(year.time.values).astype(float)
    assert days[-1] == 5 and days.sum() == 365
    v = year.ndvi.values[:, 0]
    expect = (v * days).sum() / days.sum()
    a = annual_stats(eager)
    assert float(a.ndvi_ann_mean.sel(time="2019").isel(time=0, site=0)) == pytest.approx(expect)
    assert expect != pytest.approx(v.mean())  # the unweighted mean differs: the test can tell them apart
    # A missing period drops its days from the weights too.
    b = year.ndvi.values[:, 1]
    ok = np.isfinite(b)
    assert float(a.ndvi_ann_mean.sel(time="2019").isel(time=0, site=1)) == pytest.approx(
        (b[ok] * days[ok]).sum() / days[ok].sum()
    )
    both = eager.ndvi.values[:, 0]
    w = periods.period_days(eager.time.values)
    assert float(long_term_means(eager).ndvi_mean.sel(site="a")) == pytest.approx((both * w).sum() / w.sum())


def test_doy_transform_wraps_the_year():
    f = doy_features(periods.period_starts([2019]))
    first, last = f.isel(time=0), f.isel(time=-1)
    dist = np.hypot(float(first.doy_sin - last.doy_sin), float(first.doy_cos - last.doy_cos))
    mid = f.isel(time=23)
    assert dist < np.hypot(float(first.doy_sin - mid.doy_sin), float(first.doy_cos - mid.doy_cos)) / 5
    np.testing.assert_allclose(f.doy_sin**2 + f.doy_cos**2, 1.0)


def test_sites_and_extract_stages_on_the_demo(tiny_world, tmp_path):
    cfg = run_config_from_mapping(
        {"workdir": str(tmp_path), "demo": None, "extract": {"catalog_params": {"DEMO_ROOT": str(tiny_world.root)}}}
    )
    logs: list[str] = []
    table = sites_stage(cfg, demo_sources(tiny_world.root), log=logs.append)
    r = table.report
    assert sum(v["candidates"] for v in r.values()) == len(table.observations) + len(table.quarantine)
    out = extract_stage(cfg, table, log=logs.append)
    eight, annual, q = out["training_8day"], out["training_annual"], out["quarantine"]
    assert {"sr", "rh", "nee"} <= set(eight.variable) and {"sr"} <= set(annual.variable)
    for col in ("lst_day", "ndvi", "t2m", "tp", "gpp", "elevation", "soc", "landcover", "doy_sin", "ndvi_ann_max"):
        assert col in eight.columns, col
    assert (eight.coverage >= 0.5).all() and (eight.start.isin(periods.period_starts([2020]))).all()
    assert "t2m_ann_mean" in annual.columns and annual.t2m_ann_mean.notna().all()
    prov = json.loads((tmp_path / "extract" / "provenance.json").read_text())
    assert prov["counts"]["training_8day"] == len(eight) and "xarray" in prov["versions"]
    assert (q.reason.str.len() > 0).all()
    # Re-running with the same inputs reuses the cached tables.
    logs.clear()
    sites_stage(cfg, demo_sources(tiny_world.root), log=logs.append)
    extract_stage(cfg, table, log=logs.append)
    assert any("sites: cached" in m for m in logs) and any("extract: cached" in m for m in logs)


def test_sites_outside_the_grid_or_on_masked_cells_are_quarantined(tiny_world, tmp_path):
    from fluxmap.config import RunConfig
    from fluxmap.io.sites import read_generic_csv

    csv = tmp_path / "obs.csv"
    rows = ["site,lat,lon,t,flux"]
    for d in range(1, 20):
        rows += [
            f"INSIDE,{47.3},{8.5},2020-03-{d:02d},2.0",
            f"OUTSIDE,{-30.0},{140.0},2020-03-{d:02d},2.0",
            f"SEA,{38.0},{5.0},2020-03-{d:02d},2.0",
        ]
    csv.write_text("\n".join(rows) + "\n")
    mapping = {
        "site_id": "site",
        "lat": "lat",
        "lon": "lon",
        "start": "t",
        "step": "1D",
        "value": "flux",
        "units_name": "g C m-2 d-1",
        "variable_name": "sr",
    }
    table = read_generic_csv(csv, mapping)
    cfg = RunConfig(workdir=str(tmp_path / "w"), demo=None)
    cfg = dataclasses.replace(
        cfg, extract=dataclasses.replace(cfg.extract, catalog_params=(("DEMO_ROOT", str(tiny_world.root)),))
    )
    out = extract_stage(cfg, table, log=lambda m: None)
    q = out["quarantine"]
    reasons = q.groupby("site_id").reason.first().to_dict()
    assert reasons["OUTSIDE"].startswith("outside the predictor grid")
    assert reasons["SEA"].startswith("masked cell")
    assert set(out["training_8day"].site_id) == {"INSIDE"}
