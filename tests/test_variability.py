"""Year-to-year variability (issue 29, part 3): regional anomalies that sum to zero over the years,
the members' band of the anomaly, the sites' held-out anomalies, user region masks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from fluxmap.config import run_config_from_mapping
from fluxmap.io.regions import region_mask as read_region_mask
from fluxmap.science.periods import period_starts
from fluxmap.science.variability import anomalies, member_anomaly_band, site_anomalies, site_anomaly_scores
from fluxmap.stages.variability import variability_stage


def _store(tmp_path, years=(2019, 2020, 2021)):
    """A small 8-day store: SR growing 10 % a year in the south half, with three members."""
    time = pd.DatetimeIndex([t for y in years for t in period_starts([y])])
    lat, lon = np.array([10.5, 5.5, -5.5, -10.5]), np.arange(5) + 0.5
    grow = 1.0 + 0.1 * (time.year.to_numpy() - years[0])
    base = np.ones((len(time), 4, 5)) * 2.0
    base[:, 2:, :] *= grow[:, None, None]
    members = np.stack([base * f for f in (0.9, 1.0, 1.1)])
    ds = xr.Dataset(
        {
            "sr": (("time", "lat", "lon"), base.astype("float32")),
            "sr_members": (("member", "time", "lat", "lon"), members.astype("float32")),
            "zone": (("lat", "lon"), np.array([[1] * 5, [1] * 5, [2] * 5, [2] * 5], dtype="int8")),
            "land_fraction": (("lat", "lon"), np.ones((4, 5))),
        },
        coords={"time": time, "lat": lat, "lon": lon, "member": [0, 1, 2]},
    )
    store = tmp_path / "predict" / "fluxmap.zarr"
    ds.to_zarr(store, consolidated=True)
    (tmp_path / "predict" / "report.md").write_text("# maps\n")
    return store


def test_regional_anomalies_sum_to_zero_and_follow_the_growth(tmp_path):
    store = _store(tmp_path)
    rng = np.random.default_rng(0)
    starts = [t for y in (2019, 2020, 2021) for t in period_starts([y])]
    rows = pd.DataFrame({"site_group": np.repeat(["a", "b"], len(starts)), "start": starts * 2})
    rows["value"] = np.where(pd.DatetimeIndex(rows.start).year == 2020, 2.0, 1.0) + rng.normal(0, 0.1, len(rows))
    rows["pred_zone"] = rows.value + rng.normal(0, 0.1, len(rows))
    folder = tmp_path / "models" / "sr_8day"
    folder.mkdir(parents=True)
    rows.to_parquet(folder / "loso_predictions.parquet")
    cfg = run_config_from_mapping({"workdir": str(tmp_path)})
    out = variability_stage(cfg, {"store": store, "targets": ["sr:8day"]}, log=lambda m: None)
    r = out["regional"]
    sums = r.groupby(["variable", "scope", "name"]).anomaly_pg_c_yr.sum()
    np.testing.assert_allclose(sums, 0.0, atol=1e-9)
    south = r[(r.scope == "zone") & (r.name == "zone 2")].set_index("year").anomaly_pg_c_yr
    assert south[2019] < 0 < south[2021] and south[2021] == pytest.approx(-south[2019], rel=0.05)  # 2020 has a leap day
    north = r[(r.scope == "zone") & (r.name == "zone 1")]
    # No change there but 2020's leap day: its annual total is 366/365 of the others'.
    leap = north.set_index("year").total_pg_c_yr
    assert leap[2020] / leap[2019] == pytest.approx(366 / 365) and leap[2021] == pytest.approx(leap[2019])
    g = r[r.scope == "global"].set_index("year")
    assert (g.anomaly_p05_pg_c_yr <= g.anomaly_pg_c_yr + 1e-9).all() and (
        g.anomaly_pg_c_yr <= g.anomaly_p95_pg_c_yr + 1e-9
    ).all()
    s = out["scores"].set_index("target").loc["sr:8day"]
    assert s.sites == 2 and s.site_years == 6 and s.anomaly_r > 0.9
    assert "## Year-to-year variability" in (tmp_path / "predict" / "report.md").read_text()
    assert (tmp_path / "variability" / "anomalies.png").is_file()
    # A run without maps (site tables and models only): the sites' anomalies alone.
    cfg = run_config_from_mapping({"workdir": str(tmp_path), "model": {"targets": ["sr:8day"]}})
    alone = variability_stage(cfg, {}, log=lambda m: None)
    assert alone["regional"].empty and alone["scores"].equals(out["scores"])
    assert "No maps" in (tmp_path / "variability" / "report.md").read_text()


def test_one_year_of_maps_is_skipped_with_a_reason(tmp_path):
    store = _store(tmp_path, years=(2020,))
    log = []
    cfg = run_config_from_mapping({"workdir": str(tmp_path)})
    assert variability_stage(cfg, {"store": store, "targets": ["sr:8day"]}, log=log.append) is None
    assert "an anomaly needs two or more" in log[0]


def test_member_band_is_the_spread_of_each_members_own_anomaly():
    idx = pd.MultiIndex.from_product([[2019, 2020], ["r"]], names=["year", "name"])
    members = pd.DataFrame([[1.0, 10.0, 5.0], [3.0, 10.0, 7.0]], index=idx)  # anomalies -1/+1, 0/0, -1/+1
    band = member_anomaly_band(members)
    assert band.loc[(2020, "r"), "anomaly_p95_pg_c_yr"] == pytest.approx(1.0)
    assert band.loc[(2019, "r"), "anomaly_p05_pg_c_yr"] == pytest.approx(-1.0)
    t = anomalies(pd.DataFrame({"name": ["r", "r", "q"], "total_pg_c_yr": [1.0, 3.0, 5.0]}), by=["name"])
    assert list(t.anomaly_pg_c_yr) == [-1.0, 1.0, 0.0] and list(t.years) == [2, 2, 1]


def test_site_years_need_half_the_periods_and_sites_two_years():
    starts = list(period_starts([2019])) + list(period_starts([2020]))[:10]
    rows = pd.DataFrame({"site_group": "a", "start": starts, "value": 1.0, "pred_zone": 1.0})
    assert site_anomalies(rows, pred="pred_zone").empty  # 2020 has 10 periods: one year left, no anomaly
    assert site_anomaly_scores(site_anomalies(rows, pred="pred_zone")) == {"site_years": 0, "sites": 0}


def test_a_user_region_mask_is_read_by_name_or_refused_by_name(tmp_path):
    mask = xr.Dataset(
        {
            "region": (
                ("lat", "lon"),
                np.array([[1, 2], [2, 0]]),
                {"flag_values": [1, 2], "flag_meanings": "North_Europe West"},
            )
        },
        coords={"lat": [50.0, 40.0], "lon": [0.0, 10.0]},
    )
    path = tmp_path / "mask.nc"
    mask.to_netcdf(path)
    codes, names = read_region_mask(
        path, "region", xr.DataArray([49.0, 41.0], dims="lat"), xr.DataArray([1.0, 9.0], dims="lon")
    )
    assert names == {1: "North Europe", 2: "West"} and codes.values.tolist() == [[1, 2], [2, 0]]
    with pytest.raises(ValueError, match="region mask variable 'regions' not found"):
        read_region_mask(path, "regions", codes.lat, codes.lon)
    with pytest.raises(FileNotFoundError, match="nowhere.nc"):
        read_region_mask(tmp_path / "nowhere.nc", "region", codes.lat, codes.lon)


def test_the_ar6_land_regions_come_built_in_lazy_and_right_at_known_places():
    """The IPCC AR6 land regions (shipped, no network) rasterized on a 1-degree grid: known places fall
    in their regions, the ocean in none; the mask is lazy (row blocks) and a grid in 0-360 longitudes
    gets the same codes."""
    from fluxmap.io.regions import ar6_land_regions

    lat = xr.DataArray(np.arange(89.5, -90, -1.0), dims="lat")
    lon = xr.DataArray(np.arange(-179.5, 180, 1.0), dims="lon")
    codes, names = read_region_mask("ar6", "", lat, lon)
    assert len(names) == 46 == len(ar6_land_regions().numbers)
    assert codes.chunks is not None  # dask-backed: nothing rasterized until read
    places = {
        (48.5, 2.5): "WCE",
        (23.5, 10.5): "SAH",
        (-3.5, -60.5): "NSA",
        (-25.5, 134.5): "CAU",
        (61.5, -45.5): "GIC",
    }
    for (la, lo), abbrev in places.items():
        assert names[int(codes.sel(lat=la, lon=lo))].startswith(abbrev + " ")
    assert int(codes.sel(lat=0.5, lon=-30.5)) == 0  # mid-Atlantic
    east = xr.DataArray(np.arange(0.5, 360, 1.0), dims="lon")
    shifted, _ = read_region_mask("ar6", "", lat, east)
    np.testing.assert_array_equal(shifted.sel(lon=2.5).values, codes.sel(lon=2.5).values)
    np.testing.assert_array_equal(shifted.sel(lon=300.5).values, codes.sel(lon=-59.5).values)


def test_carbontracker_transcom_regions_get_their_land_names_and_lose_the_ocean(tmp_path):
    """CarbonTracker's ``regions.nc`` layout (``transcom_regions`` on latitude/longitude, 1 x 1 degree,
    codes 1-11 land and 12-22 ocean, no CF flag names): the land codes are named after TransCom 3 and
    the ocean codes are no region."""
    from fluxmap.io.regions import TRANSCOM_LAND

    lat, lon = np.arange(-89.5, 90, 1.0), np.arange(-179.5, 180, 1.0)
    codes = (np.arange(lat.size)[:, None] // 8 + np.arange(lon.size)[None, :] // 17) % 23
    ds = xr.Dataset({"transcom_regions": (("latitude", "longitude"), codes.astype("float32"))},
                    coords={"latitude": lat, "longitude": lon})  # fmt: skip
    path = tmp_path / "regions.nc"
    ds.to_netcdf(path)
    mask, names = read_region_mask(
        path, "transcom_regions", xr.DataArray(lat, dims="lat"), xr.DataArray(lon, dims="lon")
    )
    assert names == TRANSCOM_LAND
    assert int(mask.max()) == 11 and set(np.unique(mask.values)) == set(range(12))
    land = (codes >= 1) & (codes <= 11)
    np.testing.assert_array_equal(mask.values, np.where(land, codes, 0))


def test_two_years_of_demo_maps_give_regional_anomalies_and_their_drivers(tmp_path):
    """The whole pipeline on a two-year tiny world: regional anomalies that sum to zero, and each
    region's anomaly split by driver (SHAP of the anomaly), the drivers adding up to the unified
    model's anomaly at the sampled cells."""
    from fluxmap.demo import build_world, demo_sources
    from fluxmap.stages.extract import extract_stage
    from fluxmap.stages.models import model_stage
    from fluxmap.stages.predict import predict_stage
    from fluxmap.stages.sites import sites_stage
    from fluxmap.testing import small_run_config, tiny_demo_config

    world = build_world(tmp_path / "world", tiny_demo_config(years=(2019, 2020)))
    cfg = small_run_config(str(tmp_path / "work"), str(world.root), targets=["nee:8day"], backward_elimination=False,
                           bootstrap_members=0, params={"n_estimators": 40})  # fmt: skip
    quiet = lambda m: None  # noqa: E731
    model_stage(cfg, extract_stage(cfg, sites_stage(cfg, demo_sources(world.root), log=quiet), log=quiet), log=quiet)
    out = variability_stage(cfg, predict_stage(cfg, log=quiet), log=quiet)
    r = out["regional"]
    np.testing.assert_allclose(r.groupby(["scope", "name"]).anomaly_pg_c_yr.sum(), 0.0, atol=1e-9)
    ar6 = r[r.scope == "regions"]  # the default regions: the IPCC AR6 land regions with land on the map
    assert len(ar6) and (ar6.land_km2 > 0).all() and ar6.name.str.match(r"^[A-Z\-]+ \(").all()
    drivers = pd.read_csv(tmp_path / "work" / "variability" / "anomaly_drivers.csv")
    by = drivers.groupby(["scope", "region", "year"])
    np.testing.assert_allclose(by.anomaly_pg_c_yr.sum(), by.model_anomaly_pg_c_yr.first(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(drivers.groupby(["scope", "region", "driver"]).anomaly.sum(), 0.0, atol=1e-9)
    assert {"temperature", "season"} <= set(drivers.driver) and (drivers.cells > 100).all()
    assert "## What drives the anomalies" in (tmp_path / "work" / "variability" / "report.md").read_text()
