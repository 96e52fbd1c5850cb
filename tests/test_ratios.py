"""A flux mapped as its denominator times a modelled ratio (HR = SR x HR/SR): the paired table,
the two ways scored on the same held-out records, the composed model in the block kernel (per
land-cover class before the class weighting) and the joint area of applicability."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from fluxmap.config import ModelConfig, parse_ratio, ratio_name
from fluxmap.science.applicability import JointApplicability, fit_applicability
from fluxmap.science.comparison import composed_scores
from fluxmap.science.predict import ModelSet, ProductModel, compose, predict_block
from fluxmap.science.train import fit
from fluxmap.science.training import ratio_table


def _table() -> pd.DataFrame:
    rows = [
        # SRDB-like: one record gives SR and HR (same record_id)
        ("A", "2001", "sr", 2.0, "r1"),
        ("A", "2001", "rh", 1.2, "r1"),
        ("A", "2001", "sr", 3.0, "r2"),  # a second study at the same site and year, no HR
        ("B", "2002", "sr", 0.0, "r3"),
        ("B", "2002", "rh", 0.4, "r3"),  # SR 0: no ratio
        ("C", "2003", "sr", 1.0, "r4"),
        ("C", "2003", "rh", 0.5, "r4"),
        ("C", "2003", "rh", 0.6, "r4"),  # two HR rows for one record: ambiguous
        ("D", "2004", "rh", 0.7, "r5"),  # no SR
    ]
    df = pd.DataFrame(rows, columns=["site_id", "year", "variable", "value", "record_id"])
    df["start"] = pd.to_datetime(df.pop("year"))
    df["end"] = df.start + pd.DateOffset(years=1)
    df["t2m_ann_mean"] = np.arange(len(df), dtype=float)
    df.index = pd.RangeIndex(100, 100 + len(df))
    return df


def test_ratio_table_pairs_records_and_says_what_it_left_out():
    out, excluded = ratio_table(_table(), "rh", "sr", "rh_sr_ratio")
    assert list(out.index) == [101]  # the numerator's row
    r = out.loc[101]
    assert r.variable == "rh_sr_ratio" and r.value == pytest.approx(0.6) and r.den_row == 100
    assert r.t2m_ann_mean == 1.0  # the numerator row's predictors
    reasons = excluded.reason.tolist()
    assert "sr <= 0" in reasons
    assert sum("more than one rh row" in x for x in reasons) == 2  # both ambiguous HR rows, each said
    assert len(excluded) == 3


def test_ratio_table_pairs_by_site_and_period_without_shared_record_ids():
    df = _table()
    df["record_id"] = [f"{v}-{i}" for i, v in enumerate(df.variable)]  # COSORE-like: the id names the flux
    df = df[df.index != 102]  # one SR per site and period
    out, excluded = ratio_table(df, "rh", "sr", "rh_sr_ratio")
    assert out.value.round(3).tolist() == [0.6]
    assert "sr <= 0" in excluded.reason.tolist()


def test_composed_scores_on_known_predictions():
    idx = pd.RangeIndex(10)
    rng = np.random.default_rng(0)
    sr = rng.uniform(1, 3, 10)
    ratio = rng.uniform(0.4, 0.7, 10)
    hr = sr * ratio
    group = [f"P{i // 2}" for i in range(10)]
    den = pd.DataFrame({"value": sr, "pred_unified": sr, "pred_zone": sr, "site_group": group}, index=idx + 100)
    num = pd.DataFrame({"value": hr, "pred_unified": hr + 0.3, "pred_zone": hr + 0.3, "site_group": group}, index=idx)
    rat = pd.DataFrame(
        {"value": ratio, "pred_unified": ratio, "pred_zone": ratio * 1.1, "den_row": idx + 100, "site_group": group},
        index=idx,
    )
    rows, table = composed_scores(num, den, rat)
    np.testing.assert_allclose(rows.composed_unified, hr)  # perfect parts: a perfect product
    np.testing.assert_allclose(rows.composed_zone, hr * 1.1)
    t = table.set_index(["models", "way"])
    assert t.loc[("unified", "composed"), "rmse"] == pytest.approx(0.0, abs=1e-12)
    assert t.loc[("unified", "independent"), "rmse"] == pytest.approx(0.3)
    assert t.loc[("unified", "composed"), "delta_r2_composed_minus_independent"] > 0
    assert t.loc[("unified", "composed"), "physical_sites"] == 5


def _models(seed: int = 0) -> tuple[ModelSet, ModelSet]:
    rng = np.random.default_rng(seed)
    n = 300
    df = pd.DataFrame({"t": rng.uniform(0, 1, n), "landcover": rng.choice([1.0, 10.0], n)})
    sr = 1.0 + 2.0 * df.t + (df.landcover == 10) * 1.0
    ratio = 0.4 + 0.2 * (df.landcover == 10) + 0.1 * df.t
    kw = {"seed": 0, "params": {"n_estimators": 20}}
    den = fit("rf", df, sr, features=["t", "landcover"], **kw)
    rat = fit("rf", df, ratio, features=["landcover", "t"], **kw)  # another column order
    aoa_d = fit_applicability(df.assign(value=sr), ["t"], weights=np.ones(1), folds=np.arange(n) % 5, seed=0)
    aoa_r = fit_applicability(
        df.assign(value=ratio), ["landcover", "t"], weights=np.ones(2), folds=np.arange(n) % 5, seed=0
    )
    return (
        ModelSet("sr", {}, den, ensemble=[den, den], applicability=aoa_d),
        ModelSet("rh_sr_ratio", {}, rat, ensemble=[rat, rat], applicability=aoa_r),
    )


def test_composed_model_set_multiplies_per_class_before_the_class_weighting():
    den, rat = _models()
    rh = compose("rh", den, rat)
    assert isinstance(rh.unified, ProductModel) and rh.features[:2] == ["t", "landcover"]
    assert isinstance(rh.applicability, JointApplicability)
    t = np.array([[0.2, 0.8]])
    frac = np.array([[[0.5, 1.0]], [[0.5, 0.0]]])  # classes 1 and 10: the first cell half each
    block = xr.Dataset(
        {
            "t": (("time", "lat", "lon"), t[None]),
            "zone": (("lat", "lon"), np.array([[1, 1]])),
            "landcover": (("lat", "lon"), np.array([[1.0, 1.0]])),
            "class_fraction": (("igbp", "lat", "lon"), frac),
        },
        coords={"time": [0], "lat": [0.0], "lon": [0.0, 1.0], "igbp": [1, 10]},
    )
    out = predict_block(block, rh)
    x = pd.DataFrame({"t": [0.2, 0.2], "landcover": [1.0, 10.0]})
    per_class = den.unified.predict(x) * rat.unified.predict(x)
    assert float(out["rh"].values[0, 0, 0]) == pytest.approx(per_class.mean(), rel=1e-5)
    # Not the product of the class-weighted SR and ratio (that would drop their covariance).
    assert float(out["rh"].values[0, 0, 0]) != pytest.approx(
        den.unified.predict(x).mean() * rat.unified.predict(x).mean(), rel=1e-4
    )
    sr = predict_block(block, den)["sr"].values
    assert (out["rh"].values < sr).all()
    # Joint AOA: its DI is the larger of the parts' DIs each over its own threshold.
    di = out["rh_di"].values[0, 0]
    rows = np.array([[0.2, 1.0], [0.8, 1.0]])
    parts = [
        den.applicability.dissimilarity(rows[:, [0]]) / den.applicability.threshold,
        rat.applicability.dissimilarity(rows[:, [1, 0]]) / rat.applicability.threshold,
    ]
    np.testing.assert_allclose(di, np.max(parts, axis=0), rtol=1e-4)


def test_ratio_config_needs_both_fluxes_as_targets():
    mc = ModelConfig(targets=("sr:annual", "rh:annual", "sr:8day"), ratios=(("rh", "sr"),))
    assert mc.ratio_targets() == [("rh_sr_ratio:annual", "rh:annual", "sr:annual")]
    assert mc.all_targets()[-1] == "rh_sr_ratio:annual"
    assert parse_ratio(ratio_name("rh", "sr")) == ("rh", "sr") and parse_ratio("rh_sd") is None
    with pytest.raises(ValueError, match="needs both rh and sr"):
        ModelConfig(targets=("sr:annual", "rh:8day"), ratios=(("rh", "sr"),))
    with pytest.raises(ValueError, match="ratio_maps"):
        ModelConfig(targets=("sr:annual", "rh:annual"), ratios=(("rh", "sr"),), ratio_maps="best")


def test_ratio_pairs_are_decided_per_source():
    """SRDB pairs by its shared record ids; a source numbering each flux apart (COSORE) still pairs
    by site and period in the same table."""
    srdb = _table().assign(source="srdb")
    cosore = pd.DataFrame(
        {
            "site_id": ["X", "X"],
            "variable": ["sr", "rh"],
            "value": [2.0, 0.5],
            "record_id": ["X/sr", "X/rh"],
            "start": pd.to_datetime(["2010-01-01"] * 2),
            "end": pd.to_datetime(["2010-01-09"] * 2),
            "t2m_ann_mean": [1.0, 1.0],
            "source": "cosore",
        },
        index=[500, 501],
    )
    out, _ = ratio_table(pd.concat([srdb, cosore]), "rh", "sr", "rh_sr_ratio")
    assert sorted(out.index) == [101, 501] and out.loc[501, "value"] == pytest.approx(0.25)
    assert out.loc[501, "den_row"] == 500


def test_joint_applicability_flags_a_part_with_threshold_zero():
    from fluxmap.science.applicability import Applicability

    one = Applicability(
        features=["a"], train=np.zeros((3, 1)), mean=np.zeros(1), sd=np.ones(1), weights=np.ones(1),
        mean_distance=1.0, threshold=0.0, train_di=np.zeros(3),
    )  # fmt: skip
    joint = JointApplicability([one])
    di = joint.dissimilarity(np.array([[0.0], [2.0], [np.nan]]))
    assert np.isinf(di[1]) and joint.inside(di).tolist() == [1, 0, 255]


def test_a_run_maps_rh_as_sr_times_its_ratio(tmp_path_factory):
    """The tiny demo world through sites, extract, models and predict with ``ratios: {rh: sr}``:
    the ratio is modelled, both ways scored (composed.csv), the choice written (mapping.json), the
    8-day RH map is SR's map times the ratio's (so below it) and the ratio has no Pg C total."""
    import json

    from fluxmap.demo import build_world, demo_sources
    from fluxmap.stages.extract import extract_stage
    from fluxmap.stages.models import model_stage
    from fluxmap.stages.sites import sites_stage
    from fluxmap.testing import predict_and_report, small_run_config, tiny_trainable_config

    root = tmp_path_factory.mktemp("ratio")
    world = build_world(root / "world", tiny_trainable_config())
    cfg = small_run_config(
        str(root / "work"), str(world.root), targets=["sr:8day", "rh:8day"], ratios={"rh": "sr"},
        ratio_maps="ratio", backward_elimination=False, bootstrap_members=2, k_candidates=[2],
    )  # fmt: skip
    quiet = lambda m: None  # noqa: E731
    model_stage(cfg, extract_stage(cfg, sites_stage(cfg, demo_sources(world.root), log=quiet), log=quiet), log=quiet)
    models = root / "work" / "models"
    assert (models / "rh_sr_ratio_8day" / "model_unified.json").is_file()
    note = json.loads((models / "rh_8day" / "mapping.json").read_text())
    assert note == {
        "mapped_as": "ratio",
        "denominator": "sr:8day",
        "ratio": "rh_sr_ratio:8day",
        "why": "model.ratio_maps",
    }
    composed = pd.read_csv(models / "rh_8day" / "composed.csv")
    assert set(composed.way) == {"independent", "composed"} and (composed.n > 20).all()
    predict_and_report(cfg, log=quiet)
    ds = xr.open_zarr(root / "work" / "predict" / "fluxmap.zarr", consolidated=True)
    sr, rh, ratio = (ds[v].values for v in ("sr", "rh", "rh_sr_ratio"))
    both = np.isfinite(sr) & np.isfinite(rh)
    assert both.sum() > 100
    # rh is the per-zone product; the ratio map is the ratio's zone models: the same product by cell.
    np.testing.assert_allclose(rh[both], (sr * ratio)[both], rtol=1e-5)
    assert ds["rh_sr_ratio"].attrs["units"] == "1"
    totals = pd.read_csv(root / "work" / "predict" / "totals.csv", index_col=0)
    assert not any(c.startswith("rh_sr_ratio") for c in totals.columns)
