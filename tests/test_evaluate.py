"""Flux products as modellers write them, sampled at the sites and scored (issue 28)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from fluxmap.io.flux_products import ProductError, open_product
from fluxmap.science.evaluate import pair_scores, sample_at_rows, scores_by

KG_M2_S_PER_G_M2_D = 1.0 / 86400.0e3


def _cmip_file(
    path: Path,
    *,
    calendar: str = "noleap",
    months: int = 14,
    units: str | None = "kg m-2 s-1",
    bounds: bool = True,
    step_days: float | None = None,
    since: str = "2019-01-01",
) -> Path:
    """A CMIP-like monthly ``rh`` on a 1.5 deg grid with longitudes 0..360: the value at a cell is
    (1 + latitude index / 100 + month index) g C m-2 d-1, written in ``units``."""
    lat = np.arange(-89.25, 90, 1.5)
    lon = np.arange(0.75, 360, 1.5)
    month_starts = pd.date_range(since, periods=months + 1, freq="MS")
    if calendar == "360_day":
        edges = [m * 30 for m in range(months + 1)]
    elif calendar == "noleap":
        cum = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334]
        edges = [(m // 12) * 365 + cum[m % 12] for m in range(months + 1)]
    else:
        edges = list((month_starts - month_starts[0]).days)
    edges_a = np.asarray(edges, dtype="float64")
    mid = (edges_a[:-1] + edges_a[1:]) / 2 if step_days is None else np.arange(months) * step_days
    g = 1.0 + np.arange(lat.size)[None, :, None] / 100.0 + np.arange(months)[:, None, None] + 0.0 * lon[None, None, :]
    scale = {"kg m-2 s-1": KG_M2_S_PER_G_M2_D, "g m-2 d-1": 1.0, None: 1.0, "furlongs": 1.0}[units]
    rh = xr.Variable(("time", "lat", "lon"), (g * scale).astype("float32"), {"units": units} if units else {})
    time_attrs = {"units": f"days since {since} 00:00:00", "calendar": calendar}
    data = {"rh": rh}
    if bounds:
        time_attrs["bounds"] = "time_bnds"
        data["time_bnds"] = xr.Variable(("time", "bnds"), np.stack([edges_a[:-1], edges_a[1:]], axis=1))
    ds = xr.Dataset(
        data,
        coords={
            "time": xr.Variable("time", mid, time_attrs),
            "lat": ("lat", lat, {"units": "degrees_north"}),
            "lon": ("lon", lon, {"units": "degrees_east"}),
        },
    )
    ds.to_netcdf(path)
    return path


def _spec(path: Path, **kw) -> dict:
    """:func:`open_product`'s arguments for the CMIP-like file's ``rh``."""
    return {"label": "cmip", "path": str(path), "variables": (("rh", "rh"),), **kw}


@pytest.mark.parametrize("calendar", ["noleap", "360_day", "proleptic_gregorian"])
def test_a_cmip_file_opens_in_fluxmaps_units_grid_and_real_months(tmp_path, calendar):
    ds = open_product(**_spec(_cmip_file(tmp_path / "rh.nc", calendar=calendar)))
    assert ds.rh.attrs["units"] == "g m-2 d-1" and ds.rh.attrs["source_units"] == "kg m-2 s-1"
    assert ds.lon.min() < 0 < ds.lon.max() <= 180 and np.all(np.diff(ds.lon) > 0)
    # kg m-2 s-1 back to g C m-2 d-1: the value written, whatever the calendar.
    expect = 1.0 + np.arange(120)[None, :] / 100.0 + np.arange(14)[:, None]
    np.testing.assert_allclose(ds.rh.isel(lon=7).values, expect, rtol=1e-6)
    # Every model month is the real month of the same name; February 2020 is February 2020.
    assert pd.Timestamp(ds.start.values[13]) == pd.Timestamp("2020-02-01")
    assert pd.Timestamp(ds.end.values[13]) == pd.Timestamp("2020-03-01")
    assert pd.Timestamp(ds.end.values[1]) == pd.Timestamp("2019-03-01")


def test_a_file_without_bounds_gets_its_months_from_the_times(tmp_path):
    ds = open_product(**_spec(_cmip_file(tmp_path / "rh.nc", bounds=False)))
    assert pd.Timestamp(ds.start.values[0]) == pd.Timestamp("2019-01-01")
    assert pd.Timestamp(ds.end.values[11]) == pd.Timestamp("2020-01-01")


@pytest.mark.parametrize(
    "make, spec_kw, words",
    [
        (dict(units=None), {}, ["rh", "no units"]),
        (dict(units="furlongs"), {}, ["rh", "furlongs"]),
        (dict(calendar="martian"), {}, ["time", "martian"]),
        (dict(bounds=False, step_days=3.0), {}, ["neither monthly", "bounds"]),
    ],
)
def test_bad_products_are_refused_naming_the_file_and_variable(tmp_path, make, spec_kw, words):
    if make.get("calendar") == "martian":
        path = _cmip_file(tmp_path / "rh.nc")
        with xr.open_dataset(path, decode_times=False) as ds:
            ds = ds.load()
        ds["time"].attrs["calendar"] = "martian"
        path = tmp_path / "martian.nc"
        ds.to_netcdf(path)
    else:
        path = _cmip_file(tmp_path / "rh.nc", **make)
    with pytest.raises(ProductError) as e:
        open_product(**_spec(path, **spec_kw))
    msg = str(e.value)
    assert "cmip" in msg and str(path) in msg
    for w in words:
        assert w in msg


def test_declared_units_a_missing_variable_and_a_missing_file(tmp_path):
    path = _cmip_file(tmp_path / "rh.nc", units=None)
    ds = open_product(**_spec(path, units=(("rh", "g m-2 d-1"),)))
    assert float(ds.rh.isel(time=0, lat=0, lon=0)) == pytest.approx(1.0)
    with pytest.raises(ProductError, match="'resp'.*not in the file"):
        open_product("cmip", str(path), (("rh", "resp"),))
    with pytest.raises(ProductError, match="no such file"):
        open_product(**_spec(tmp_path / "absent.nc"))


def test_nbp_is_turned_into_nee_by_its_sign(tmp_path):
    path = _cmip_file(tmp_path / "nbp.nc")
    ds = open_product("m", str(path), (("nee", "rh"),), signs=(("nee", -1.0),))
    assert float(ds.nee.isel(time=0, lat=0, lon=0)) == pytest.approx(-1.0, rel=1e-6)


def test_each_observation_gets_the_overlap_weighted_mean_of_its_own_days():
    starts = pd.to_datetime(["2019-01-01", "2019-02-01", "2019-03-01"]).values
    ends = pd.to_datetime(["2019-02-01", "2019-03-01", "2019-04-01"]).values
    values = np.array([[1.0, 2.0, np.nan], [10.0, 20.0, 30.0]])
    obs_start = pd.to_datetime(["2019-01-28", "2019-01-28", "2019-02-25", "2019-03-10", "2019-06-01"]).values
    obs_end = pd.to_datetime(["2019-02-05", "2019-02-05", "2019-03-05", "2019-03-18", "2019-06-09"]).values
    site = np.array([0, 1, 0, 0, 1])
    mean, cover = sample_at_rows(values, starts, ends, site, obs_start, obs_end)
    # 4 days of January and 4 of February.
    assert mean[0] == pytest.approx(1.5) and mean[1] == pytest.approx(15.0)
    # 4 days of February with a value, 4 of March without: the mean of what is there, half covered.
    assert mean[2] == pytest.approx(2.0) and cover[2] == pytest.approx(0.5)
    # No value in March at site 0; June is outside the product.
    assert np.isnan(mean[3]) and cover[3] == 0 and np.isnan(mean[4]) and cover[4] == 0
    strict, _ = sample_at_rows(values, starts, ends, site, obs_start, obs_end, min_coverage=0.6)
    assert np.isnan(strict[2])


def test_pair_scores_follow_their_definitions():
    rng = np.random.default_rng(0)
    obs = rng.normal(3.0, 1.0, 500)
    perfect = pair_scores(obs, obs)
    assert perfect["r"] == pytest.approx(1) and perfect["rmse"] == 0 and perfect["score_overall"] == pytest.approx(1)
    shifted = pair_scores(obs, obs + 0.5)
    assert shifted["bias"] == pytest.approx(0.5) and shifted["crmse"] == pytest.approx(0, abs=1e-12)
    assert shifted["score_bias"] == pytest.approx(np.exp(-0.5 / obs.std()))
    scaled = pair_scores(obs, 2 * obs)
    assert scaled["sd_ratio"] == pytest.approx(2)
    noisy = pair_scores(obs, obs + rng.normal(0, 1.0, 500))
    assert noisy["score_rmse"] < shifted["score_rmse"] and noisy["r"] < 0.8
    with_gaps = pair_scores(np.r_[obs, np.nan], np.r_[obs, 1.0])
    assert with_gaps["n"] == 500
    assert np.isnan(pair_scores(obs[:2], obs[:2])["r"])


def test_ilamb_scores_are_per_site_then_averaged():
    rng = np.random.default_rng(1)
    site = np.repeat(np.arange(20), 12)
    level = rng.uniform(1, 6, 20)[site]
    obs = level + rng.normal(0, 0.5, site.size)
    # Each site's mean right but its series shuffled: bias score 1, RMSE score below 1; the sites'
    # means right: spatial score 1.
    shuffled = np.concatenate([rng.permutation(obs[site == k]) for k in range(20)])
    t = pair_scores(obs, shuffled, site)
    assert t["score_bias"] == pytest.approx(1) and t["score_spatial"] == pytest.approx(1) and t["score_rmse"] < 0.6
    # Per site: exp(-|bias| / the site's own sd over time), averaged.
    shifted = pair_scores(obs, obs + 0.3, site)
    sd = pd.Series(obs).groupby(site).std(ddof=0)
    assert shifted["score_bias"] == pytest.approx(np.mean(np.exp(-0.3 / sd)))
    assert shifted["score_overall"] == pytest.approx((shifted["score_bias"] + 2 + 1) / 4)
    # The sites' means scaled by 2 about their mean: spatial score 2 * 2 / (2 + 1/2)^2.
    mean = pd.Series(obs).groupby(site).transform("mean").to_numpy()
    spread = obs + (mean - mean.mean())
    assert pair_scores(obs, spread, site)["score_spatial"] == pytest.approx(2 * 2 / 2.5**2)
    # One value per site (annual records): the bias is normalized by the site's mean.
    one = pair_scores(np.array([1.0, 2.0, 4.0]), np.array([1.5, 2.0, 4.0]), np.arange(3))
    assert one["score_bias"] == pytest.approx((np.exp(-0.5) + 2) / 3) and np.isnan(one["score_rmse"])


def test_scores_by_group():
    d = pd.DataFrame({"value": np.arange(12.0), "igbp": ["ENF", "GRA"] * 6, "site_group": np.arange(12) // 3})
    d["good"] = d.value + 0.1
    d["bad"] = d.value[::-1].to_numpy()
    t = scores_by(d, {"good": "good", "bad": "bad"}, by=("igbp",))
    assert set(t.group) == {"all", "ENF", "GRA"} and len(t) == 6
    overall = t[t.by == "all"].set_index("product")
    assert overall.loc["good", "score_overall"] > overall.loc["bad", "score_overall"]


@pytest.fixture(scope="module")
def trainable_world(tmp_path_factory):
    """The tiny world with enough chamber sites (12) for SR and HR models."""
    from fluxmap.demo import build_world
    from fluxmap.testing import tiny_trainable_config

    return build_world(tmp_path_factory.mktemp("world"), tiny_trainable_config())


@pytest.fixture(scope="module")
def evaluated(trainable_world, tmp_path_factory):
    """The world's sites, training tables, SR and HR models and 8-day maps (the members' maps kept),
    then its three ecosystem models with known faults evaluated against the observations and the
    maps."""
    from fluxmap.demo import demo_sources
    from fluxmap.demo.ecosystem_models import write_ecosystem_models
    from fluxmap.stages.evaluate import evaluate_stage
    from fluxmap.stages.extract import extract_stage
    from fluxmap.stages.models import model_stage
    from fluxmap.stages.sites import sites_stage
    from fluxmap.testing import predict_and_report, small_run_config

    work = tmp_path_factory.mktemp("evaluate")
    root = trainable_world.root
    cfg = small_run_config(work, root, targets=["sr:8day", "rh:8day"], backward_elimination=False)
    cfg = dataclasses.replace(cfg, predict=dataclasses.replace(cfg.predict, member_maps=True))
    log: list[str] = []
    tables = extract_stage(cfg, sites_stage(cfg, demo_sources(root), log=log.append), log=log.append)
    model_stage(cfg, tables, log=log.append)
    predict_and_report(cfg, log=log.append)
    products = write_ecosystem_models(root, work / "products")
    scores = evaluate_stage(cfg, products, log=log.append)
    return cfg, scores, products, log


def test_the_demo_ecosystem_models_rank_as_their_faults_imply(evaluated):
    """Scored against the noisy site observations, the three faulty models come in the order their
    errors against the noise-free truth at the same rows give: every pair whose truth RMSEs differ
    by more than 10 % (closer pairs the observation noise may swap) is ordered the same, for SR and
    for HR; the HR-share fault shows as HR biased high with SR nearly unbiased."""
    _, scores, _, _ = evaluated
    overall = scores[scores.by == "all"].set_index(["target", "product"])
    checked = 0
    for target in ("sr:8day", "rh:8day"):
        part = overall.loc[target].drop(index="fluxmap (nested)")
        for a in part.index:
            for b in part.index:
                t_a, t_b = part.loc[a, "rmse_vs_truth"], part.loc[b, "rmse_vs_truth"]
                if t_a < t_b / 1.1:
                    assert part.loc[a, "rmse"] < part.loc[b, "rmse"], (target, a, b, part)
                    checked += 1
    assert checked >= 3  # q10_high is clearly worst for SR; coarse_noleap clearly best for HR
    rh, sr = overall.loc["rh:8day"], overall.loc["sr:8day"]
    assert rh.loc["hr_share_high", "bias_vs_truth"] > 0.1 and abs(sr.loc["hr_share_high", "bias_vs_truth"]) < 0.05
    assert rh.loc["hr_share_high", "score_bias"] < rh.loc["coarse_noleap", "score_bias"]
    assert (overall.n > 100).all() and set(scores.by) >= {"all", "ecosystem", "zone"}


def test_the_evaluation_writes_its_tables_figure_and_report(evaluated):
    cfg, scores, products, _ = evaluated
    out = Path(cfg.workdir) / "evaluate"
    assert {"scores.csv", "taylor.png", "report.md", "samples_sr_8day.parquet"} <= {p.name for p in out.iterdir()}
    report = (out / "report.md").read_text()
    assert "![Taylor diagram](taylor.png)" in report and "## rh:8day" in report and "coarse_noleap" in report
    samples = pd.read_parquet(out / "samples_rh_8day.parquet")
    assert {"prod_q10_high", "prod_hr_share_high", "prod_coarse_noleap", "pred_zone", "truth"} <= set(samples)
    written = pd.read_csv(out / "scores.csv")
    assert len(written) == len(scores)


def test_a_bad_product_stops_the_evaluation_before_anything_is_written(evaluated, tmp_path):
    import dataclasses

    from fluxmap.config_evaluate import ProductConfig
    from fluxmap.stages.evaluate import evaluate_stage

    cfg, _, products, _ = evaluated
    out = Path(cfg.workdir) / "evaluate"
    before = (out / "scores.csv").read_bytes()
    bad = ProductConfig("nounits", str(_cmip_file(tmp_path / "bad.nc", units=None)), (("rh", "rh"),))
    with pytest.raises(ProductError, match="nounits.*bad.nc.*'rh' has no units"):
        evaluate_stage(cfg, (*products, bad), log=lambda m: None)
    # A product of another period: named, with both periods.
    old = ProductConfig("old", str(_cmip_file(tmp_path / "old.nc", since="1990-01-01")), (("rh", "rh"),))
    with pytest.raises(ProductError, match="'old'.*does not overlap the observations"):
        evaluate_stage(dataclasses.replace(cfg, evaluate=dataclasses.replace(cfg.evaluate)), (old,), log=lambda m: None)
    assert (out / "scores.csv").read_bytes() == before and not any(
        p.name.endswith(".partial") for p in out.parent.iterdir()
    )


def test_the_evaluate_command_parses_products_and_explains_itself(capsys):
    from fluxmap.cli import main
    from fluxmap.commands import _product_arg

    assert _product_arg("cable=runs/cable.nc:rh=rh,nee=-nbp") == {
        "label": "cable", "path": "runs/cable.nc", "variables": {"rh": "rh", "nee": "nbp"}, "signs": {"nee": -1.0},
    }  # fmt: skip
    with pytest.raises(ValueError, match="LABEL=PATH:NAME=VAR"):
        _product_arg("cable.nc")
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert "ILAMB" in capsys.readouterr().out


def test_each_products_global_total_and_bias_is_recovered_across_grids_units_and_calendars(evaluated, trainable_world):
    """The evaluation's totals of the products (read from their files: 1.5 deg, noleap, kg m-2 s-1;
    monthly, 0..360; 8-day) against the totals fluxmap's own machinery gives the truth's fields
    with the same faults built in: the coarse model's total is the truth's (its fault is
    resolution), the HR-share model's HR total is the truth's HR plus the share shifted."""
    from fluxmap.demo.ecosystem_models import SHARE_SHIFT
    from fluxmap.science.aggregate import annual_totals

    cfg, _, _, _ = evaluated
    got = pd.read_csv(Path(cfg.workdir) / "evaluate" / "totals.csv").set_index(["variable", "product", "year"])
    truth = xr.open_zarr(Path(trainable_world.root) / "truth" / "truth.zarr")
    land = truth.land_fraction
    for var in ("sr", "rh"):
        want = annual_totals(truth[var], land).total_pg_c_yr
        for year, total in want.items():
            assert got.loc[(var, "coarse_noleap", year), "total_pg_c_yr"] == pytest.approx(total, rel=0.01)
    sr, rh = truth.sr, truth.rh
    shifted = np.minimum(rh / sr + SHARE_SHIFT, 0.95) * sr
    for year, total in annual_totals(shifted, land).total_pg_c_yr.items():
        assert got.loc[("rh", "hr_share_high", year), "total_pg_c_yr"] == pytest.approx(total, rel=0.01)
        bias = total - annual_totals(rh, land).total_pg_c_yr[year]
        assert bias > 0.05 * total


def test_common_cmip_layouts_cyclic_longitude_unnamed_bounds_and_land_fraction(tmp_path):
    """A cyclic longitude column (0 and 360) is kept once; bounds found by their usual name when
    the time axis does not name them; ``sftlf`` in % read as a fraction; one step without bounds
    refused."""
    path = _cmip_file(tmp_path / "rh.nc")
    with xr.open_dataset(path, decode_times=False) as ds:
        ds = ds.load()
    cyclic = xr.concat([ds, ds.isel(lon=[0]).assign_coords(lon=[360.75])], dim="lon", data_vars="minimal")
    del cyclic["time"].attrs["bounds"]
    cyclic["sftlf"] = (("lat", "lon"), np.full((cyclic.sizes["lat"], cyclic.sizes["lon"]), 50.0), {"units": "%"})
    cyclic.to_netcdf(tmp_path / "cyclic.nc")
    got = open_product(**_spec(tmp_path / "cyclic.nc"))
    assert got.sizes["lon"] == 240 and np.all(np.diff(got.lon) > 0)
    assert pd.Timestamp(got.end.values[1]) == pd.Timestamp("2019-03-01")  # from time_bnds
    assert float(got.land_fraction.max()) == pytest.approx(0.5)
    one = ds.isel(time=[0]).drop_vars("time_bnds")
    del one["time"].attrs["bounds"]
    one.to_netcdf(tmp_path / "one.nc")
    with pytest.raises(ProductError, match="one time step and no time bounds"):
        open_product(**_spec(tmp_path / "one.nc"))


def test_the_totals_and_profile_of_a_product_follow_its_grid_days_and_land_fraction(tmp_path):
    from fluxmap.science.evaluate import product_profile, product_totals
    from fluxmap.science.grids import cell_area

    ds = open_product(**_spec(_cmip_file(tmp_path / "rh.nc", calendar="noleap")))
    t = product_totals(ds.rh)
    rows = cell_area(ds.lat.values, 1.5, 1.5) * ds.sizes["lon"]
    # 2019: months 0-11 hold 1 + lat/100 + month; every month's real days.
    days = np.diff(pd.date_range("2019-01-01", periods=13, freq="MS")).astype("timedelta64[D]").astype(float)
    lat_term = (rows * (1.0 + np.arange(120) / 100.0)).sum()
    want = sum(d * (lat_term + rows.sum() * m) for m, d in enumerate(days)) / 1e15
    assert t.loc[2019, "total_pg_c_yr"] == pytest.approx(want, rel=1e-5) and t.loc[2019, "days"] == 365
    # 2020 has January and February only: annualized over the 60 days covered.
    assert t.loc[2020, "days"] == 60 and t.loc[2020, "total_pg_c_yr"] == pytest.approx(
        t.loc[2020, "total_pg_c"] * 366 / 60
    )
    half = product_totals(ds.rh, xr.full_like(ds.rh.isel(time=0, drop=True), 0.5))
    assert half.loc[2019, "total_pg_c_yr"] == pytest.approx(want / 2, rel=1e-5)
    prof = product_profile(ds.rh)
    assert prof.index[0] < prof.index[-1] and np.all(np.diff(prof.to_numpy()) > 0)  # rises with latitude index


def test_the_maps_totals_band_is_the_members_own_totals(evaluated):
    """With ``predict.member_maps`` the 8-day store keeps every member's map; the totals give each
    member's total's 5-95 % range (not the per-cell spread summed), and the evaluation sets every
    product's total beside that band."""
    from fluxmap.science.aggregate import member_totals

    cfg, _, _, _ = evaluated
    predict = Path(cfg.workdir) / "predict"
    ds = xr.open_zarr(predict / "fluxmap.zarr")
    per_member = member_totals(ds.sr_members, ds.land_fraction)
    assert per_member.shape[1] == cfg.model.bootstrap_members
    mapped = pd.read_csv(predict / "totals.csv", index_col=0)
    np.testing.assert_allclose(mapped.sr_ensemble_p05, per_member.quantile(0.05, axis=1), rtol=1e-9)
    np.testing.assert_allclose(mapped.sr_ensemble_p95, per_member.quantile(0.95, axis=1), rtol=1e-9)
    # The members' per-cell SD summed only bounds the SD of the total.
    assert (mapped.sr_ensemble_sd <= mapped.sr_sd_upper_bound * (1 + 1e-9)).all()
    got = pd.read_csv(Path(cfg.workdir) / "evaluate" / "totals.csv")
    sr = got[got.variable == "sr"].set_index(["product", "year"])
    for (_, year), row in sr.iterrows():
        assert row.fluxmap_low_pg_c_yr == pytest.approx(mapped.loc[year, "sr_ensemble_p05"])
        assert row.fluxmap_map_pg_c_yr == pytest.approx(mapped.loc[year, "sr"])
        assert row.within_band == (row.fluxmap_low_pg_c_yr <= row.total_pg_c_yr <= row.fluxmap_high_pg_c_yr)
    # The Q10 fault (SR 17 % too high) lies outside the band; the map's own total inside it.
    assert not sr.loc["q10_high"].within_band.astype(bool).any()


def test_per_class_totals_add_up_and_the_hr_share_fault_shows_in_hr_over_sr(evaluated):
    cfg, _, _, _ = evaluated
    out = Path(cfg.workdir) / "evaluate"
    totals = pd.read_csv(out / "totals.csv").set_index(["variable", "product", "year"])
    biomes = pd.read_csv(out / "totals_by_biome.csv")
    summed = biomes.groupby(["variable", "product", "year"]).total_pg_c_yr.sum()
    for key, total in summed.items():
        assert total == pytest.approx(totals.loc[key, "total_pg_c_yr"], rel=1e-6), key
    assert {"croplands", "grasslands"} <= set(biomes.name)
    part = pd.read_csv(out / "partition.csv").set_index(["product", "year"])
    # The HR-share model moves 0.15 of SR from AR to HR (capped at 0.95): its HR/SR against the
    # coarse model's (the truth's split) is about 0.15 higher, and AR + HR = SR everywhere.
    shift = part.xs("hr_share_high").rh_over_sr - part.xs("coarse_noleap").rh_over_sr
    assert ((shift > 0.12) & (shift < 0.16)).all(), shift
    np.testing.assert_allclose(part.ra + part.rh, part.sr)
    by_class = pd.read_csv(out / "partition_by_biome.csv")
    assert set(by_class["product"]) >= {"fluxmap map", "hr_share_high"}


def test_difference_maps_and_the_main_reports_section(evaluated):
    from fluxmap.stages.evaluate import evaluate_stage

    cfg, _, products, _ = evaluated
    out = Path(cfg.workdir) / "evaluate"
    assert {f"difference_{v}_{p.label}.png" for v in ("sr", "rh") for p in products} <= {x.name for x in out.iterdir()}
    report = (out / "report.md").read_text()
    assert "](totals.png)" in report and "## Difference maps" in report and "## AR = SR - HR" in report
    main = Path(cfg.workdir) / "predict" / "report.md"
    assert main.read_text().count("## Gridded products against the sites and this map") == 1
    evaluate_stage(cfg, products, log=lambda m: None)  # again: the section is replaced, not repeated
    text = main.read_text()
    assert text.count("## Gridded products against the sites and this map") == 1 and "q10_high" in text


def test_difference_field_and_classes_on_another_grid():
    from fluxmap.science.evaluate import classes_on_grid, difference_field

    lat, lon = np.arange(-59.5, 60), np.arange(-179.5, 180)
    ref = xr.DataArray(np.add.outer(lat, lon) / 100.0, dims=("lat", "lon"), coords={"lat": lat, "lon": lon})
    # A product 0.5 higher everywhere, on a 3 deg grid (a 3 x 3 mean of the 1 deg field): +0.5 where
    # the 1 deg cell's own value is the block mean's (the field is linear), so the mean offset is 0.5.
    coarse = ref.coarsen(lat=3, lon=3).mean() + 0.5
    diff = difference_field(coarse, ref)
    assert diff.shape == ref.shape and float(diff.mean()) == pytest.approx(0.5, abs=1e-9)
    # Classes: the western half class 10, the eastern class 4 with its land fraction 0.2 except one
    # band: a 3 deg cell straddling nothing takes its block's class.
    classes = xr.where(ref.lon < 0, 10, 4).astype("int16").broadcast_like(ref)
    land = xr.where(ref.lon < 0, 1.0, 0.2).broadcast_like(ref)
    on = classes_on_grid(classes, land, coarse.lat.values, coarse.lon.values, [4, 10])
    assert (on.where(on.lon < 0) == 10).sum() == (on.lon < 0).sum() * on.sizes["lat"]
    assert (on.sel(lon=slice(0, None)) == 4).all()
    # A cell half of each class by area but with more of class 10's land takes class 10.
    mid = classes_on_grid(classes, land, np.array([0.0]), np.array([0.0]), [4, 10])
    assert int(mid.item()) == 10


def test_a_climatological_product_is_compared_with_the_same_days_of_every_year(tmp_path):
    from fluxmap.science.evaluate import repeat_climatology

    # A monthly climatology labelled 1990: January 10, the rest 0.
    start = pd.date_range("1990-01-01", periods=12, freq="MS").values
    end = pd.date_range("1990-02-01", periods=12, freq="MS").values
    values = np.where(np.arange(12) == 0, 10.0, 0.0)[None, :]
    v, s, e = repeat_climatology(values, start, end, range(2018, 2021))
    assert v.shape == (1, 36) and pd.Timestamp(s[12]) == pd.Timestamp("2019-01-01")
    # A January 2019 record, and a two-year record (its mean: 31 days of 10 in each 365 or 366).
    obs_start = np.array(["2019-01-05", "2019-01-01"], dtype="datetime64[ns]")
    obs_end = np.array(["2019-01-13", "2021-01-01"], dtype="datetime64[ns]")
    mean, cover = sample_at_rows(v, s, e, np.zeros(2, int), obs_start, obs_end, min_coverage=0.5)
    assert mean[0] == pytest.approx(10.0) and mean[1] == pytest.approx(10.0 * 62 / 731) and (cover == 1).all()
    path = _cmip_file(tmp_path / "clim.nc", months=12, since="1990-01-01")
    flagged = open_product(**_spec(path), climatology=True)
    assert flagged.attrs["climatology"] == "true" and open_product(**_spec(path)).attrs["climatology"] == "false"
    too_long = _cmip_file(tmp_path / "long.nc", months=14, since="1990-01-01")
    with pytest.raises(ProductError, match="climatology must span one year"):
        open_product(**_spec(too_long), climatology=True)


def _ilamb_python() -> str:
    """A Python with ilamb3 (and ILAMB 2.7): ilamb3 pins an older xarray than fluxmap's, so it lives
    in a virtual environment of its own (``.ci/run`` makes one and sets ``FLUXMAP_ILAMB_PYTHON``)."""
    python = os.environ.get("FLUXMAP_ILAMB_PYTHON", "")
    if not python:
        if os.environ.get("FLUXMAP_REQUIRE_ILAMB"):
            pytest.fail("FLUXMAP_REQUIRE_ILAMB is set but FLUXMAP_ILAMB_PYTHON is not")
        pytest.skip("FLUXMAP_ILAMB_PYTHON not set (a Python with `pip install ilamb3 ilamb mpich`)")
    return python


_ILAMB3_SCORES = """
import sys, warnings
import numpy as np, pandas as pd, xarray as xr
from ilamb3.analysis import bias_analysis, rmse_analysis
warnings.simplefilter("ignore")
ref, com = xr.open_dataset(sys.argv[1]).load(), xr.open_dataset(sys.argv[2]).load()
for name, analysis in (("Bias Score", bias_analysis), ("RMSE Score", rmse_analysis)):
    df, _, _ = analysis("sr")(ref.copy(deep=True), com.copy(deep=True))
    print(name, repr(float(df.loc[df["name"] == name, "value"].iloc[0])))
"""


def test_ilamb_bias_and_rmse_scores_equal_ilamb3s_on_the_same_inputs(tmp_path):
    """Where ilamb3 installs: its site-data Bias Score (Collier et al. 2018, as ilamb3 computes it)
    on six sites x 24 steps equals fluxmap's per-site score averaged over the sites. The steps are
    30 days each, so ilamb3's time weights (each step's days) are equal, as fluxmap's pairs are.
    Its RMSE Score weights the steps by centred differences of mid-month stamps on a noleap
    calendar (28 to 31 days), fluxmap's equally: the two agree to 0.1 % here (1e-4), not exactly."""
    python = _ilamb_python()
    rng = np.random.default_rng(7)
    n_site, n_t = 6, 24
    obs = (
        3
        + rng.uniform(0, 2, n_site)
        + np.sin(np.arange(n_t) / 12 * 2 * np.pi)[:, None]
        + rng.normal(0, 0.3, (n_t, n_site))
    )
    mod = obs + rng.normal(0, 0.5, (n_t, n_site)) + rng.uniform(-0.5, 0.5, n_site)
    starts = np.datetime64("2000-01-01") + np.arange(n_t) * np.timedelta64(30, "D")
    for name, values in (("ref", obs), ("com", mod)):
        ds = xr.Dataset(
            {"sr": (("time", "site"), values, {"units": "g m-2 d-1"}),
             "time_bnds": (("time", "nb"), np.stack([starts, starts + np.timedelta64(30, "D")], axis=1))},
            coords={"time": ("time", starts + np.timedelta64(15, "D"), {"bounds": "time_bnds"}),
                    "lat": ("site", np.linspace(-50, 50, n_site)), "lon": ("site", np.linspace(-150, 150, n_site))},
        )  # fmt: skip
        units = {"units": "days since 2000-01-01"}
        ds.to_netcdf(tmp_path / f"{name}.nc", encoding={"time": units, "time_bnds": units})
    script = tmp_path / "scores.py"
    script.write_text(_ILAMB3_SCORES)
    run = subprocess.run([python, str(script), str(tmp_path / "ref.nc"), str(tmp_path / "com.nc")],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    theirs = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in run.stdout.strip().splitlines()}
    ours = pair_scores(obs.ravel(), mod.ravel(), np.tile(np.arange(n_site), n_t))
    assert ours["score_bias"] == pytest.approx(theirs["Bias Score"], rel=1e-9)
    assert ours["score_rmse"] == pytest.approx(theirs["RMSE Score"], rel=1e-3)
