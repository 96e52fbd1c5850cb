"""The atmospheric-inversion constraint (issue 30): the sparse observation operator, the custom
objective's derivatives, and training with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from fluxmap.science.inversion import (
    ConstraintTerm,
    constrained_loss,
    gradient_hessian,
    group_estimates,
    operator_rows,
    period_overlap_days,
    region_integrals,
    sample_points,
    xgboost_objective,
)


def _term(seed: int = 0, n_groups: int = 4, per_group: int = 6, lam: float = 3.0) -> tuple[np.ndarray, ConstraintTerm]:
    rng = np.random.default_rng(seed)
    group = np.repeat(np.arange(n_groups), per_group)
    coef = rng.uniform(0.1, 2.0, group.size)
    term = ConstraintTerm(group=group, coef=coef, flux=rng.normal(0, 3, n_groups), spread=rng.uniform(0.5, 2, n_groups),
                          lam=lam, offset=rng.normal(0, 1, n_groups))  # fmt: skip
    return rng.normal(0, 1, 7), term


def test_the_custom_objectives_gradient_matches_finite_differences():
    y, term = _term()
    rng = np.random.default_rng(1)
    pred = rng.normal(0, 1, len(y) + term.group.size)
    grad, _ = gradient_hessian(pred, y, term)
    eps = 1e-6
    for k in range(pred.size):
        up, down = pred.copy(), pred.copy()
        up[k] += eps
        down[k] -= eps
        fd = (constrained_loss(up, y, term) - constrained_loss(down, y, term)) / (2 * eps)
        assert grad[k] == pytest.approx(fd, rel=1e-6, abs=1e-6)


def test_the_hessian_row_sums_are_the_curvature_of_shifting_a_whole_group_and_bound_the_block():
    """Site rows: the exact second derivative (2). Sparse rows: the row sums of the rank-one block,
    which add up to the second difference of the loss along a shift of all of a group's points
    together (what a leaf holding the group does) and majorize the block (diag(H 1) - H >= 0)."""
    y, term = _term(lam=2.0)
    pred = np.random.default_rng(2).normal(0, 1, len(y) + term.group.size)
    _, hess = gradient_hessian(pred, y, term)
    np.testing.assert_allclose(hess[: len(y)], 2.0)
    eps = 1e-3
    for g in range(term.n_groups):
        shift = np.zeros_like(pred)
        shift[len(y) :][term.group == g] = 1.0
        second = (constrained_loss(pred + eps * shift, y, term) - 2 * constrained_loss(pred, y, term)
                  + constrained_loss(pred - eps * shift, y, term)) / eps**2  # fmt: skip
        assert hess[len(y) :][term.group == g].sum() == pytest.approx(second, rel=1e-5)
        a = term.coef[term.group == g]
        block = 2 * term.lam * np.outer(a, a) / term.spread[g] ** 2
        assert np.linalg.eigvalsh(np.diag(block.sum(axis=1)) - block).min() > -1e-9


def test_sampling_is_proportional_to_land_area_and_errors_name_the_region():
    codes = np.array([[1, 1, 2], [1, 0, 2]])
    area = np.array([[1.0, 3.0, 5.0], [0.0, 9.0, 5.0]])
    pts = sample_points(codes, area, [1, 2], 4000, seed=3)
    r1 = pts[pts.region == 1]
    assert (r1.area_m2 == 4.0 / 4000).all()  # region 1's land (1 + 3 + 0) over K
    share = r1.groupby(["i", "j"]).size() / len(r1)
    assert share[(0, 1)] == pytest.approx(0.75, abs=0.01) and (1, 0) not in share  # no land, never drawn
    with pytest.raises(ValueError, match="region 7 has no land"):
        sample_points(codes, area, [7], 5)
    starts = pd.date_range("2020-01-01", periods=4, freq="8D")
    groups = pd.DataFrame({"region": [1], "start": [pd.Timestamp("2021-03-01")], "end": [pd.Timestamp("2021-04-01")]})
    with pytest.raises(ValueError, match="region 1, period 2021-03-01 to 2021-04-01 lies outside the model periods"):
        operator_rows(pts, starts, starts + pd.Timedelta(days=8), groups)


def test_a_period_split_between_months_counts_its_days_in_each():
    pts = pd.DataFrame({"region": [5], "i": [0], "j": [0], "area_m2": [2e9]})
    starts = pd.DatetimeIndex(["2020-01-25", "2020-02-02"])
    ends = starts + pd.Timedelta(days=8)
    groups = pd.DataFrame({"region": [5, 5], "start": pd.to_datetime(["2020-01-01", "2020-02-01"]),
                           "end": pd.to_datetime(["2020-02-01", "2020-03-01"])})  # fmt: skip
    rows = operator_rows(pts, starts, ends, groups)
    days = rows.set_index(["group", "period"]).coef * 1e15 / 2e9
    assert days.to_dict() == {(0, 0): 7.0, (1, 0): 1.0, (1, 1): 8.0}
    # a flux of 1 g C m-2 d-1 everywhere: each month's estimate is its days in the periods x area
    est = group_estimates(np.ones(len(rows)), rows.group.to_numpy(), rows.coef.to_numpy(), 2)
    np.testing.assert_allclose(est, [7 * 2e9 / 1e15, 9 * 2e9 / 1e15])


@pytest.fixture(scope="module")
def tiny_truth(tmp_path_factory):
    from fluxmap.demo import build_world
    from fluxmap.testing import tiny_demo_config

    world = build_world(tmp_path_factory.mktemp("inv") / "world", tiny_demo_config())
    return xr.open_zarr(world.root / "truth" / "truth.zarr").load()


def test_the_sparse_estimate_converges_to_the_full_regional_integral_on_the_demo_truth(tiny_truth):
    """The AR6 regions of the tiny world, monthly: the sparse estimate's RMS error against the full
    area integral of the truth's NEE falls as K grows, about as 1 / sqrt(K)."""
    from fluxmap.io.regions import region_mask
    from fluxmap.science.aggregate import cell_land_area, step_days

    truth = tiny_truth
    codes, names = region_mask("ar6", "", truth.lat, truth.lon)
    codes = codes.values
    area = cell_land_area(truth.land_fraction, truth.land_fraction).values
    regions = [c for c in names if (area[codes == c] > 0).sum() >= 20]
    assert len(regions) >= 3
    starts = pd.DatetimeIndex(truth.time.values)
    ends = starts + pd.to_timedelta(step_days(truth.time).values, unit="D")
    months = pd.date_range("2020-01-01", "2020-12-01", freq="MS")
    groups = pd.DataFrame([(r, m, m + pd.offsets.MonthBegin()) for r in regions for m in months],
                          columns=["region", "start", "end"])  # fmt: skip
    nee = truth.nee.values  # time x lat x lon
    full = region_integrals(nee, codes, area, starts, ends, groups)
    # the full integral by hand for one group: every land cell of the region, the days within the month
    g = groups.iloc[13]
    days = period_overlap_days(starts, ends, g.start, g.end)
    by_hand = np.nansum(np.nansum(nee * days[:, None, None], axis=0) * np.where(codes == g.region, area, 0)) / 1e15
    assert full[13] == pytest.approx(by_hand, rel=1e-9)
    errors = {}
    for k in (10, 30, 100, 300):
        sq = []
        for seed in range(5):
            pts = sample_points(codes, area, regions, k, seed=seed)
            rows = operator_rows(pts, starts, ends, groups)
            f = nee[rows.period.to_numpy(), pts.i.to_numpy()[rows.point], pts.j.to_numpy()[rows.point]]
            est = group_estimates(np.nan_to_num(f), rows.group.to_numpy(), rows.coef.to_numpy(), len(groups))
            sq.append((est - full) ** 2)
        errors[k] = float(np.sqrt(np.mean(sq)))
    values = list(errors.values())
    assert all(b < a for a, b in zip(values, values[1:])), errors
    assert errors[300] < errors[10] / 3, errors  # sqrt(30) = 5.5 for independent draws


def test_boosting_with_the_constraint_pulls_the_regional_totals_to_the_inversion():
    """Sites that see one region's flux with a bias: with lambda > 0 the trained model's sparse
    estimates move to the inversion's fluxes, and the loss the objective defines falls."""
    import xgboost as xgb

    rng = np.random.default_rng(4)
    n_site, n_sparse = 300, 400
    x_site = rng.uniform(0, 1, (n_site, 2))
    y_site = 2 * x_site[:, 0] + 0.5 + rng.normal(0, 0.1, n_site)  # biased by +0.5 against the truth 2 x0
    x_sparse = rng.uniform(0, 1, (n_sparse, 2))
    group = (x_sparse[:, 1] > 0.5).astype(int)
    coef = np.full(n_sparse, 0.01)
    truth = group_estimates(2 * x_sparse[:, 0], group, coef, 2)
    x = np.vstack([x_site, x_sparse])
    labels = np.concatenate([y_site, np.zeros(n_sparse)])
    fitted = {}
    for lam in (0.0, 50.0):
        term = ConstraintTerm(group=group, coef=coef, flux=truth, spread=np.full(2, 0.05), lam=lam)
        model = xgb.XGBRegressor(n_estimators=80, max_depth=3, learning_rate=0.2, objective=xgboost_objective(y_site, term),
                                 base_score=float(y_site.mean()))  # fmt: skip
        model.fit(x, labels)
        pred = model.predict(x).astype(float)
        fitted[lam] = (group_estimates(pred[n_site:], group, coef, 2), constrained_loss(pred, y_site, term))
    off_free = np.abs(fitted[0.0][0] - truth)
    off_constrained = np.abs(fitted[50.0][0] - truth)
    assert (off_constrained < off_free / 3).all(), (off_free, off_constrained)


def _ct_file(path, flux, months, *, units="mol m-2 s-1", name="bio_flux_opt"):
    """A file in CarbonTracker CT2022's monthly flux1x1 layout: ``bio_flux_opt`` (time, latitude,
    longitude) in mol m-2 s-1 on the 1 x 1 degree grid, mid-month times."""
    lat, lon = np.arange(-89.5, 90, 1.0), np.arange(-179.5, 180, 1.0)
    time = pd.DatetimeIndex([m + pd.Timedelta(days=14) for m in months])
    ds = xr.Dataset(
        {name: (("time", "latitude", "longitude"), flux, {"units": units, "long_name": "Terrestrial biosphere flux, optimized"})},
        coords={"time": time, "latitude": ("latitude", lat, {"units": "degrees_north"}),
                "longitude": ("longitude", lon, {"units": "degrees_east"})},
        attrs={"Conventions": "CF-1.5", "source": "CarbonTracker release CT2022"},
    )  # fmt: skip
    ds.to_netcdf(path)
    return path


def test_carbontracker_files_are_integrated_over_regions_and_members_give_the_spread(tmp_path):
    from fluxmap.io.inversion import CARBON_G_PER_MOL, read_gridded
    from fluxmap.io.regions import region_mask
    from fluxmap.science.grids import cell_area

    months = pd.date_range("2020-06-01", periods=3, freq="MS")
    lat = np.arange(-89.5, 90, 1.0)
    base = np.where(lat[None, :, None] > 30, -2e-6, 1e-7) * np.ones((3, 180, 360))  # uptake in the north
    a = _ct_file(tmp_path / "a.nc", base, months)
    b = _ct_file(tmp_path / "b.nc", base * 1.5, months)
    table, names = read_gridded([[a], [b]], "ar6")
    codes, _ = region_mask(
        "ar6", "", xr.DataArray(lat, dims="lat"), xr.DataArray(np.arange(-179.5, 180, 1.0), dims="lon")
    )
    wce = next(c for c, n in names.items() if n.startswith("WCE "))
    area = (cell_area(lat, 1.0)[:, None] * np.ones(360))[codes.values == wce].sum()
    seconds = 30 * 86400  # June
    expected = [-2e-6 * CARBON_G_PER_MOL * area * seconds / 1e15 * f for f in (1.0, 1.5)]
    row = table[(table.region == wce) & (table.start == months[0])].iloc[0]
    assert row.flux_pg_c == pytest.approx(np.mean(expected), rel=1e-9)
    assert row.spread_pg_c == pytest.approx(np.std(expected, ddof=1), rel=1e-9) and row.members == 2
    assert row.end == pd.Timestamp("2020-07-01") and row.spread_from == "ensemble SD"


def test_gridded_inversions_in_other_units_another_variable_or_uptake_positive_are_refused(tmp_path):
    from fluxmap.io.inversion import read_gridded

    months = pd.date_range("2020-06-01", periods=1, freq="MS")
    lat = np.arange(-89.5, 90, 1.0)
    uptake = np.where(lat[None, :, None] > 30, -2e-6, 0.0) * np.ones((1, 180, 360))
    with pytest.raises(ValueError, match=r"umol.nc: 'bio_flux_opt' is in 'micromol m-2 s-1'"):
        read_gridded([[_ct_file(tmp_path / "umol.nc", uptake * 1e6, months, units="micromol m-2 s-1")]], "ar6")
    with pytest.raises(ValueError, match=r"other.nc: inversion flux variable 'bio_flux_opt' not found"):
        read_gridded([[_ct_file(tmp_path / "other.nc", uptake, months, name="nee")]], "ar6")
    with pytest.raises(ValueError, match=r"flipped.nc: .*uptake-positive"):
        read_gridded([[_ct_file(tmp_path / "flipped.nc", -uptake, months)]], "ar6")


def test_a_regional_table_converts_units_combines_members_and_quarantines_bad_rows(tmp_path):
    from fluxmap.io.inversion import read_regional_table

    names = {1: "NEU (N.Europe)", 2: "WCE (West&Central-Europe)"}
    path = tmp_path / "inv.csv"
    pd.DataFrame(
        [
            ("NEU", "2020-01-01", "", "0.012", "Pg C", "0.004"),  # one month, Pg C over the period
            ("2", "2020-01-01", "2020-01-09", "-0.365", "Pg C yr-1", "0.1"),  # a rate over 8 days
            ("WCE (West&Central-Europe)", "2020-02-01", "", "0.5", "g C m-2 d-1", "0.1"),
            ("XYZ", "2020-01-01", "", "1", "Pg C", "0.1"),  # unknown region
            ("NEU", "2020-02-01", "", "n/a", "Pg C", "0.1"),  # not a number
            ("NEU", "2020-03-01", "", "0.1", "Pg C", "0"),  # no spread
            ("NEU", "2020-03-15", "", "0.1", "Pg C", "0.1"),  # a month needs its first day
        ],
        columns=["region", "period_start", "period_end", "flux", "units", "spread"],
    ).to_csv(path, index=False)
    table, rejected = read_regional_table(path, names, {1: 1e6, 2: 2e6})
    t = table.set_index(["region", "start"])
    assert t.loc[(1, pd.Timestamp("2020-01-01"))].flux_pg_c == pytest.approx(0.012)
    assert t.loc[(1, pd.Timestamp("2020-01-01"))].end == pd.Timestamp("2020-02-01")
    assert t.loc[(2, pd.Timestamp("2020-01-01"))].flux_pg_c == pytest.approx(-0.365 * 8 / 365.25)
    assert t.loc[(2, pd.Timestamp("2020-02-01"))].flux_pg_c == pytest.approx(0.5 * 2e12 * 29 / 1e15)
    assert rejected.row.tolist() == [5, 6, 7, 8]
    assert rejected.reason.tolist() == [
        "region 'XYZ' is not in the region mask",
        "flux is not a number",
        "spread is not a number > 0",
        "without period_end, period_start must be a month's first day",
    ]
    bad = tmp_path / "bad.csv"
    pd.DataFrame([("NEU", "2020-01-01", "1", "kg C", "0.1")], columns=["region", "period_start", "flux", "units", "spread"]).to_csv(bad, index=False)  # fmt: skip
    with pytest.raises(ValueError, match=r"bad.csv, row 2: units 'kg C' of variable 'flux' not understood"):
        read_regional_table(bad, names, {})
    ens = tmp_path / "ens.csv"
    pd.DataFrame([("NEU", "2020-01-01", v, "Pg C", m) for m, v in enumerate(("0.1", "0.2", "0.3"))],
                 columns=["region", "period_start", "flux", "units", "member"]).to_csv(ens, index=False)  # fmt: skip
    table, _ = read_regional_table(ens, names, {})
    assert table.flux_pg_c.iloc[0] == pytest.approx(0.2) and table.spread_pg_c.iloc[0] == pytest.approx(0.1)
    assert table.members.iloc[0] == 3 and table.spread_from.iloc[0] == "ensemble SD"


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """A tiny world (Europe, 2020) through sites, extract and models, NEE only."""
    from fluxmap.demo import build_world, demo_sources
    from fluxmap.stages.extract import extract_stage
    from fluxmap.stages.models import model_stage
    from fluxmap.stages.sites import sites_stage
    from fluxmap.testing import small_run_config, tiny_demo_config

    tmp = tmp_path_factory.mktemp("inv_run")
    world = build_world(tmp / "world", tiny_demo_config())
    cfg = small_run_config(str(tmp / "work"), str(world.root), targets=["nee:8day"], backward_elimination=False,
                           bootstrap_members=0, params={"n_estimators": 40})  # fmt: skip
    quiet = lambda m: None  # noqa: E731
    tables = extract_stage(cfg, sites_stage(cfg, demo_sources(world.root), log=quiet), log=quiet)
    model_stage(cfg, tables, log=quiet)
    return cfg, tables, world


def _with_inversion(cfg, **kw):
    import dataclasses

    from fluxmap.config_analysis import InversionConfig

    inv = InversionConfig(**{"lambdas": (0.01, 1.0), "params": {"n_estimators": 30}, "site_folds": 3, "region_folds": 3,
                             "evaluation_points_per_region": 100, **kw})  # fmt: skip
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, inversion=inv))


def test_the_inversion_stage_trains_both_variants_and_reports_the_comparison(tiny_models):
    """On the tiny world's inversion (3 AR6 regions x 12 months): every lambda scored on folds of sites
    and of regions, one chosen by the rule, the constrained model saved as UBJ (no pickle) and loadable,
    the regional table with the truth beside both variants, and the report."""
    from fluxmap.io.models import load_model
    from fluxmap.stages.inversion import inversion_stage

    cfg, tables, _ = tiny_models
    cfg = _with_inversion(cfg)
    out = inversion_stage(cfg, tables, log=lambda m: None)
    folder = Path(cfg.workdir) / "inversion" / "nee_8day"
    t = out["tradeoff"]
    assert t["lambda"].tolist() == [0.0, 0.01, 1.0] and t.chosen.sum() == 1
    ok = t[t.site_r2 >= t.site_r2.iloc[0] - cfg.model.inversion.max_site_r2_loss]
    assert out["lambda"] == ok.sort_values("heldout_region_rmse_pg_c")["lambda"].iloc[0]  # the documented rule
    r = out["regional"]
    assert len(r) == 36 and r.truth_pg_c.notna().all() and set(r.name.str[:3]) == {"NEU", "WCE", "MED"}
    model = load_model(folder / "model_constrained.ubj")
    assert (folder / "model_constrained.ubj").is_file() and model.metadata["inversion_lambda"] == out["lambda"]
    c = out["comparison"].set_index("measure")
    r2 = c.loc["site R2 (folds of whole physical sites)"]
    assert r2["unified, unconstrained"] == pytest.approx(t.site_r2.iloc[0])
    assert r2[["zone models, unconstrained", "zone models, constrained"]].notna().all()
    loso = c.loc["site R2, leave one physical site out (unified models)"]
    assert loso[["unified, unconstrained", "unified, constrained"]].between(-1, 1).all()
    assert r[["zones_unconstrained_pg_c", "zones_constrained_pg_c"]].notna().all().all()
    for name in ("tradeoff.png", "seasonal_cycles.png", "regional_fluxes.csv", "inversion_quarantine.csv"):
        assert (folder / name).is_file(), name
    text = (folder / "report.md").read_text()
    assert "## Choosing lambda" in text and "## Constrained against unconstrained" in text
    again = inversion_stage(cfg, tables, log=(said := []).append)
    assert any("cached" in m for m in said) and again["lambda"] == out["lambda"]
    from fluxmap.stages.inversion import inversion_report_section

    main = Path(cfg.workdir) / "predict" / "report.md"
    main.parent.mkdir(exist_ok=True)
    main.write_text("# maps\n")
    inversion_report_section(cfg)
    inversion_report_section(cfg)  # a rerun replaces the section, never repeats it
    assert main.read_text().count("](../inversion/nee_8day/seasonal_cycles.png)") == 1
    assert "## Trained with an atmospheric-inversion constraint" in main.read_text()


def test_a_fixed_lambda_pulls_the_regional_fluxes_towards_the_inversion(tiny_models):
    """An inversion that puts every region 0.05 Pg C per month below the truth (a table of the user's)
    and ``fixed_lambda``: the constrained model uses it whatever the validation prefers, and its
    regional fluxes (at independent evaluation points) lie far closer to that inversion than the
    unconstrained model's."""
    from fluxmap.stages.inversion import inversion_stage

    cfg, tables, world = tiny_models
    table = pd.read_csv(world.root / "inversion" / "regional_nee.csv")
    path = Path(cfg.workdir) / "shifted.csv"
    table.assign(flux=table.flux - 0.05).to_csv(path, index=False)
    inv = {"source": str(path), "lambdas": (1.0,), "fixed_lambda": 1.0, "params": {"n_estimators": 100}}
    out = inversion_stage(_with_inversion(cfg, **inv), tables, log=lambda m: None)
    assert out["lambda"] == 1.0 and bool(out["tradeoff"].set_index("lambda").chosen.loc[1.0])
    r = out["regional"]
    off = {c: float(np.sqrt(np.mean((r[c] - r.flux_pg_c) ** 2))) for c in ("unconstrained_pg_c", "constrained_pg_c")}
    assert off["unconstrained_pg_c"] > 0.04 and off["constrained_pg_c"] < 0.5 * off["unconstrained_pg_c"], off


def test_on_a_dask_cluster_the_validation_fits_run_as_tasks_and_give_the_local_result(tiny_models, tmp_path):
    """With a Dask client the lambda x fold fits run on its workers (joblib's Dask backend, each seeded):
    the trade-off equals the local run's."""
    import dataclasses

    from distributed import Client, LocalCluster

    from fluxmap.stages.inversion import inversion_stage

    cfg, tables, _ = tiny_models
    cfg = _with_inversion(cfg, lambdas=(0.01,), zone_models=False)
    local = inversion_stage(cfg, tables, log=lambda m: None)["tradeoff"]
    remote_cfg = dataclasses.replace(cfg, workdir=str(tmp_path / "remote"))
    (tmp_path / "remote").mkdir()
    for part in ("models", "predict"):
        src = Path(cfg.workdir) / part
        if src.is_dir():
            import shutil

            shutil.copytree(src, tmp_path / "remote" / part)
    said: list[str] = []
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster),
    ):
        remote = inversion_stage(remote_cfg, tables, log=said.append)["tradeoff"]
    assert any("on the cluster" in m for m in said)
    pd.testing.assert_frame_equal(local[["lambda", "site_r2", "heldout_region_rmse_pg_c"]],
                                  remote[["lambda", "site_r2", "heldout_region_rmse_pg_c"]], rtol=1e-4)  # fmt: skip


def test_inversion_years_outside_the_predictors_or_a_target_not_modelled_are_refused(tiny_models):
    from fluxmap.stages.inversion import inversion_stage

    cfg, tables, world = tiny_models
    with pytest.raises(ValueError, match=r"no regional flux in the years \[2019\]; the inversion gives \[2020\]"):
        inversion_stage(_with_inversion(cfg, years=(2019,)), tables, log=lambda m: None)
    table = pd.read_csv(world.root / "inversion" / "regional_nee.csv")
    late = table.assign(period_start=table.period_start.str.replace("2020", "2021"))
    path = Path(cfg.workdir) / "late.csv"
    pd.concat([table, late]).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"period 2021-01-01 to 2021-02-01 lies outside the model periods"):
        inversion_stage(_with_inversion(cfg, source=str(path), years=(2020, 2021)), tables, log=lambda m: None)
    with pytest.raises(ValueError, match=r"model.inversion.target 'sr:8day' is not among model.targets"):
        inversion_stage(_with_inversion(cfg, target="sr:8day"), tables, log=lambda m: None)
    import dataclasses

    regular = dataclasses.replace(cfg, extract=dataclasses.replace(cfg.extract, entries=("era5", "static")))
    with pytest.raises(ValueError, match=r"needs the entries \['mod09a1', 'mod11a2'\]"):
        inversion_stage(_with_inversion(regular), tables, log=lambda m: None)


def test_the_example_configs_parse_and_name_their_inversion_inputs():
    """examples/demo_inversion.yaml and examples/ct2022_inversion.yaml (the network run): both parse;
    the CT2022 one names its files by a glob under the --param folder."""
    from fluxmap.config import load_yaml, run_config_from_mapping, substitute

    root = Path(__file__).resolve().parents[1] / "examples"
    demo = run_config_from_mapping(load_yaml(root / "demo_inversion.yaml"))
    assert demo.model.inversion is not None and demo.model.inversion.source == "demo"
    path = root / "ct2022_inversion.yaml"
    ct = run_config_from_mapping(substitute(load_yaml(path), {"SHARED_DATA": "/d", "CT2022": "/ct"}, where=str(path)))
    assert ct.model.inversion.gridded == (("/ct/CT2022.flux1x1.2012*.nc",),) and ct.model.inversion.years == (2012,)
