"""A tower's micrometeorology read beside its fluxes (issue 29, part 1): the FULLSET variables with
their QC columns, the flux's quality rules, the quarantine, units, and the 8-day means with their
own coverage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fluxmap.config import ConfigError, run_config_from_mapping
from fluxmap.io import sites as S
from fluxmap.io.sites.fluxnet import MICROMET_UNITS, tower_column
from fluxmap.science.training import align_to_periods

_PUE = "FLX_FR-Pue_FLUXNET2015_FULLSET_MM_2007-2014_2-3.csv"
_PUE_YY = "FLX_FR-Pue_FLUXNET2015_FULLSET_YY_2007-2014_2-3.csv"
_INFO = pd.DataFrame({"sitename": ["XX-Tst"], "lat": [45.0], "lon": [10.0], "classid": ["ENF"]})


def _accounted(t: S.SiteTable) -> None:
    (r,) = t.report.values()
    assert r["candidates"] == r["kept"] + r["quarantined"] == len(t.observations) + len(t.quarantine)


def test_fr_pue_monthly_micrometeorology_with_qc_and_quarantine(shared_data):
    """FR-Pue's monthly FULLSET (no soil water there): every other variable of the issue is read, a
    value passing its QC is the file's, one failing it or -9999 is quarantined by name while the
    month's NEE stays."""
    folder = shared_data / "fluxnet"
    info = S.read_fluxnet_site_info(folder / "siteinfo_fluxnet2015.csv")
    names = tuple(n for n in MICROMET_UNITS if n != "SWC_F_MDS_1")
    t = S.read_fluxnet(folder / _PUE, site_info=info, micromet=names)
    _accounted(t)
    raw = pd.read_csv(folder / _PUE)
    o = t.observations.set_index(t.observations.start.dt.strftime("%Y%m").astype(int))
    assert len(o) == 93 and (t.quarantine.variable == "nee").sum() == 3  # NEE_VUT_REF_QC < 0.5
    for name in names:
        qc_ok = raw[f"{name}_QC"] >= 0.5  # an unknown QC (-9999) fails, as the flux's does
        good = raw[(raw[name] != -9999) & qc_ok].set_index("TIMESTAMP")[name]
        common = o.index.intersection(good.index)
        np.testing.assert_allclose(o.loc[common, tower_column(name)], good[common])  # MM P_F is already mm d-1
        rejected = t.quarantine[t.quarantine.variable == name]
        assert len(rejected) == len(raw) - qc_ok.sum() + ((raw[name] == -9999) & qc_ok).sum()
    g = t.quarantine[t.quarantine.variable == "G_F_MDS"].reason.value_counts()
    assert g["missing value (-9999)"] == 21 and g["failed filter: G_F_MDS_QC < 0.5"] == 8
    (report,) = t.report.values()
    assert report["micromet"]["G_F_MDS"]["units"] == "W m-2" and report["micromet"]["TA_F"]["kept"] == 96
    # The yearly file: precipitation in mm yr-1 becomes mm d-1.
    y = S.read_fluxnet(folder / _PUE_YY, site_info=info, micromet=("P_F",)).observations
    assert y.tower_p_f.iloc[0] == pytest.approx(570.2 / 365)


def _hh_file(tmp_path, *, drop: str | None = None):
    """One day of half-hours at a test site: NEE, TA_F and P_F with their QC columns."""
    stamps = pd.date_range("2020-06-01", periods=48, freq="30min")
    frame = pd.DataFrame(
        {
            "TIMESTAMP_START": stamps.strftime("%Y%m%d%H%M"),
            "TIMESTAMP_END": (stamps + pd.Timedelta("30min")).strftime("%Y%m%d%H%M"),
            "NEE_VUT_REF": np.full(48, 2.0),
            "NEE_VUT_REF_QC": np.zeros(48, int),
            "TA_F": np.linspace(10, 20, 48).round(3).astype(object),
            "TA_F_QC": np.zeros(48, int),
            "P_F": np.full(48, 0.1).astype(object),
            "P_F_QC": np.zeros(48, int),
        }
    )
    frame.loc[3, "TA_F_QC"] = 3  # poor gap-filling
    frame.loc[4, "P_F"] = "n/a?"  # no number
    frame.loc[5, "TA_F"] = -9999
    if drop:
        frame = frame.drop(columns=drop)
    path = tmp_path / "FLX_XX-Tst_FLUXNET2015_FULLSET_HH_2020-2020_1-4.csv"
    frame.to_csv(path, index=False)
    return path


def test_half_hourly_micrometeorology_rejects_values_not_fluxes(tmp_path):
    t = S.read_fluxnet(_hh_file(tmp_path), site_info=_INFO, micromet=("TA_F", "P_F"), max_qc_hh=1)
    _accounted(t)
    o = t.observations
    assert len(o) == 48 and o.value.notna().all()  # every NEE half-hour stays
    assert o.tower_ta_f.isna().sum() == 2 and o.tower_p_f.isna().sum() == 1
    q = t.quarantine.set_index("row")
    assert q.loc[5, "reason"] == "failed filter: TA_F_QC > 1" and q.loc[5, "detail"] == "TA_F_QC=3.0"
    assert q.loc[6, "reason"] == "non-numeric micrometeorological value" and q.loc[6, "detail"] == "P_F='n/a?'"
    assert q.loc[7, "reason"] == "missing value (-9999)" and sorted(q.variable) == ["P_F", "TA_F", "TA_F"]
    # Precipitation per half-hour becomes a rate: 0.1 mm per half-hour is 4.8 mm d-1.
    np.testing.assert_allclose(o.tower_p_f.dropna(), 4.8)
    # Columns follow the observations through the 8-day alignment with their own coverage.
    periods, _ = align_to_periods(o, min_coverage=0.0)
    (p,) = periods.itertuples()
    assert p.tower_p_f == pytest.approx(4.8) and p.tower_p_f_coverage == pytest.approx(47 / 48 / 8)
    assert p.tower_ta_f_coverage == pytest.approx(46 / 48 / 8) and p.coverage == pytest.approx(1 / 8)
    kept = o.tower_ta_f.dropna()
    assert p.tower_ta_f == pytest.approx(kept.mean())


@pytest.mark.parametrize(
    ("drop", "micromet", "message"),
    [
        (None, ("VPD_F",), "micrometeorological variable 'VPD_F' was requested but is not in the file"),
        ("TA_F_QC", ("TA_F",), "quality column 'TA_F_QC' of the requested variable 'TA_F' is not in the file"),
    ],
)
def test_a_missing_variable_or_qc_column_names_the_file_and_the_variable(tmp_path, drop, micromet, message):
    path = _hh_file(tmp_path, drop=drop)
    with pytest.raises(S.SiteFileError, match=message) as err:
        S.read_fluxnet(path, site_info=_INFO, micromet=micromet)
    assert str(path) in str(err.value)


def test_config_micromet_must_be_a_list_of_names():
    def config(micromet):
        source = {"kind": "fluxnet", "path": "x/*.csv", "options": {"site_info": "s.csv", "micromet": micromet}}
        return run_config_from_mapping({"workdir": "w", "sites": {"sources": [source]}})

    with pytest.raises(ConfigError, match="micromet = 'TA_F': expected a list of FULLSET variable names"):
        config("TA_F")
    (spec,) = config(["TA_F", "VPD_F"]).sites.sources
    assert spec.kwargs()["micromet"] == ("TA_F", "VPD_F")


def test_site_covariate_experiments_score_three_models_per_ecosystem():
    """Remote sensing only, with the tower's micrometeorology, and the micrometeorology only: a flux
    the tower's air temperature drives, which the remote-sensing predictor only echoes, is
    predicted best by the models that see the tower."""
    from fluxmap.science.experiments import covariate_predictions, experiment_scores, site_covariates
    from fluxmap.science.train import FitSpec

    rng = np.random.default_rng(0)
    n_sites, n = 12, 40
    site = np.repeat(np.arange(n_sites), n)
    ta = rng.normal(12, 6, n_sites * n)
    d = pd.DataFrame(
        {
            "site_group": site,
            "ecosystem": np.where(site % 2, "ENF", "GRA"),
            "lst_day": ta + rng.normal(0, 6, len(ta)),  # a noisy echo of the tower's temperature
            "tower_ta_f": ta,
            "tower_ta_f_coverage": 1.0,
            "tower_swc_f_mds_1": np.where(site < 2, 30.0, np.nan),  # two towers only: left out
        }
    )
    d["value"] = 0.3 * np.exp(0.08 * ta) + rng.normal(0, 0.05, len(ta))
    d.loc[d.index[:5], "tower_ta_f"] = np.nan  # a quarantined value: those rows are not scored
    assert site_covariates(d, ("tsoil_c",)) == ["tower_ta_f"]
    spec = FitSpec("xgboost", {"n_estimators": 60}, group="site_group")
    for held in range(n_sites):
        test = d.site_group == held
        preds = covariate_predictions(spec, d[~test], d[test], ["lst_day"], site_covariates(d[~test], ()))
        for col, values in preds.items():
            d.loc[test, col] = values
    assert d.loc[d.index[:5], "pred_rs_meteo"].isna().all() and d.pred_rs_meteo.iloc[5:].notna().all()
    table, sites = experiment_scores(d, group="site_group")
    assert sites == n_sites and set(table.group) == {"all", "ENF", "GRA"}
    r2 = table[table.group == "all"].set_index("experiment").r2
    assert r2["site meteorology only"] > 0.9 and r2["remote sensing + site meteorology"] > 0.8
    assert r2["remote sensing only"] < r2["site meteorology only"] - 0.2
    assert (table[table.group == "ENF"].physical_sites == 6).all()


def test_the_204_site_monthly_table_carries_the_towers_et(shared_data):
    """The 204-site table's ET (mm d-1, its latent-heat proxy) beside NEE: a missing ET is
    quarantined on its own and its NEE month stays."""
    path = shared_data / "fluxnet" / "fluxnet2015_monthly_GPP_NEE_ET_204sites.csv"
    t = S.read_fluxnet_monthly_table(path, variables=("NEE",), micromet=("ET",))
    _accounted(t)
    raw = pd.read_csv(path)
    o = t.observations
    assert len(o) == raw.NEE.notna().sum() and o.tower_et.notna().sum() == raw.ET.notna().sum()
    q = t.quarantine[t.quarantine.variable == "ET"]
    assert len(q) == raw.ET.isna().sum() > 0 and set(q.reason) == {"missing value"}
    with pytest.raises(S.SiteFileError, match="missing column"):
        S.read_fluxnet_monthly_table(path, micromet=("LE_F_MDS",))
