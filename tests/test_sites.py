"""Site readers: real SRDB/COSORE/FLUXNET files, demo files, quarantine accounting, units."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fluxmap.io import sites as S
from fluxmap.science.periods import aggregate_to_periods, period_starts
from fluxmap.science.products import UMOL_CO2_M2_S_TO_G_C_M2_D


def _accounted(t: S.SiteTable, source: str) -> None:
    r = t.report[source]
    assert r["candidates"] == r["kept"] + r["quarantined"] == len(t.observations) + len(t.quarantine)
    assert t.quarantine["reason"].notna().all()
    assert list(t.observations.columns) == S.OBS_COLUMNS


def test_srdb_v5_unmanipulated_with_rs_and_coordinates_is_3808(shared_data):
    rules = S.SrdbRules(
        methods=None, exclude_quality=None, exclude_duplicates=False, sr_greater_than_hr=False, min_year=None
    )
    t = S.read_srdb(shared_data / "srdb" / "srdb-data.csv", rules)
    q = t.quarantine
    later = q[(q.variable == "sr") & ~q.reason.isin(["failed filter: manipulation", "missing coordinates"])]
    # Every such record is read; those without a study year or with a negative Rs are then quarantined.
    assert (t.observations.variable == "sr").sum() + len(later) == 3808
    assert set(later.reason) <= {"bad time period", "non-physical negative soil flux"}
    _accounted(t, "srdb")


def test_srdb_rules_each_reported_and_rows_accounted(shared_data):
    t = S.read_srdb(shared_data / "srdb" / "srdb-data.csv")
    r = t.report["srdb"]
    assert r["rows_in"] == 10366
    assert r["records_kept"] + sum(r["records_rejected_by_rule"].values()) == 10366
    for rule in (
        "failed filter: manipulation",
        "failed filter: measurement method",
        "failed filter: quality flag",
        "duplicate",
        "failed filter: study year < 2000",
        "failed filter: Rh_annual > Rs_annual",
    ):
        assert r["records_rejected_by_rule"][rule] > 0, rule
    _accounted(t, "srdb")
    obs = t.observations
    # Annual g C m-2 yr-1 became a mean daily flux over the study years.
    assert obs[obs.variable == "sr"].value.between(0.0, 20).all()
    assert 1.5 < obs[obs.variable == "sr"].value.median() < 3.0  # about 760 g C m-2 yr-1
    assert ((obs.start + (obs.end - obs.start) / 2).dt.year >= 2000).all() and (obs.start.dt.month == 1).all()


def test_srdb_reads_literal_none(tmp_path):
    csv = tmp_path / "srdb-data.csv"
    cols = "Record_number,Site_ID,Site_name,Latitude,Longitude,Study_midyear,YearsOfData,Manipulation,Meas_method,Quality_flag,Duplicate_record,Ecosystem_type,Rs_annual,Rh_annual,Ra_annual"
    csv.write_text(
        cols + "\n1,X1,x,45,10,2005.5,1,None,IRGA,,,Forest,730.5,,\n"
        "2,X2,y,45,10,2005.5,1,,IRGA,,,Forest,700,,\n3,X3,z,95,10,2005.5,1,None,IRGA,,,Forest,700,,\n"
    )
    t = S.read_srdb(csv)
    assert len(t.observations) == 1 and t.observations.value[0] == pytest.approx(730.5 / 365)
    reasons = set(t.quarantine.reason)
    assert reasons == {"failed filter: manipulation", "coordinates out of range"}
    assert set(t.quarantine.row) == {3, 4}


def test_cosore_daily_units_and_treatments(shared_data):
    t = S.read_cosore_daily(
        shared_data / "cosore" / "cosore_daily_all.csv.gz", shared_data / "cosore" / "cosore_datasets_summary.csv"
    )
    _accounted(t, "cosore_daily")
    raw = pd.read_csv(shared_data / "cosore" / "cosore_daily_all.csv.gz")
    first = raw.iloc[0]
    o = t.observations
    trt = "None" if pd.isna(first.trt) else first.trt
    hit = o[o.record_id == f"{first.dataset}/{first.date}/{first['var']}/{trt}"]
    assert hit.value.iloc[0] == pytest.approx(first.flux_co2_umol_m2_s * 1.03775, rel=1e-4)
    # d20190409_ANJILELI is Etc/GMT+8: local midnight is 08:00 UTC.
    assert hit.start.iloc[0] == pd.Timestamp(f"{first.date} 08:00")
    assert "failed filter: treatment" in set(t.quarantine.reason)
    assert set(o.variable) == {"sr", "rh", "nee", "reco"}


def test_fluxnet_fr_pue_monthly_integrates_to_yearly_within_4_percent(shared_data):
    info = pd.read_csv(shared_data / "fluxnet" / "siteinfo_fluxnet2015.csv")
    f = shared_data / "fluxnet"
    mm = S.read_fluxnet(f / "FLX_FR-Pue_FLUXNET2015_FULLSET_MM_2007-2014_2-3.csv", site_info=info, min_qc=0)
    yy = S.read_fluxnet(f / "FLX_FR-Pue_FLUXNET2015_FULLSET_YY_2007-2014_2-3.csv", site_info=info, min_qc=0)
    o = mm.observations
    monthly = (o.value * (o.end - o.start).dt.days).groupby(o.start.dt.year).sum()
    y = yy.observations.set_index(yy.observations.start.dt.year)
    yearly = y.value * (y.end - y.start).dt.days
    assert list(monthly.index) == list(range(2007, 2015))
    rel = ((monthly - yearly) / yearly.abs()).abs()
    assert (rel < 0.04).all(), rel.to_dict()
    assert np.allclose(o.lat, 43.7413, atol=1e-3)


def test_fluxnet_monthly_204_sites(shared_data):
    t = S.read_fluxnet_monthly_table(shared_data / "fluxnet" / "fluxnet2015_monthly_GPP_NEE_ET_204sites.csv")
    _accounted(t, "fluxnet_monthly")
    assert t.observations.site_id.nunique() == 204


def test_demo_fluxnet_dd_and_hh_with_gaps_and_qc(tiny_world):
    root = tiny_world.root / "sites" / "fluxnet"
    info = pd.read_csv(root / "siteinfo_demo.csv")
    hh = next(root.glob("FLX_*_HH_*.csv"))
    site = hh.name.split("_")[1]
    dd = next(root.glob(f"FLX_{site}_*_DD_*.csv"))
    t_hh = S.read_fluxnet(hh, site_info=info, max_qc_hh=3)
    t_dd = S.read_fluxnet(dd, site_info=info, min_qc=0)
    assert "missing value (-9999)" in set(t_dd.quarantine.reason)
    _accounted(t_dd, f"fluxnet:{site}:DD")
    # HH (umol m-2 s-1) averaged to days equals the DD file (g C m-2 d-1).
    h = t_hh.observations
    daily = h.groupby(h.start.dt.floor("D")).value.mean()
    d = t_dd.observations.set_index("start").value
    common = daily.index.intersection(d.index)
    np.testing.assert_allclose(daily[common].values, d[common].values, atol=2e-3)
    strict = S.read_fluxnet(hh, site_info=info, max_qc_hh=1)
    assert "failed filter: NEE_VUT_REF_QC > 1" in set(strict.quarantine.reason)


def test_demo_cosore_halfhourly_matches_daily(tiny_world):
    root = tiny_world.root / "sites" / "cosore"
    path = next((root / "halfhourly").glob("*.csv"))
    ds = path.stem
    hh = S.read_cosore_halfhourly(path, dataset=ds, summary=root / "cosore_datasets_summary.csv")
    daily = S.read_cosore_daily(root / "cosore_daily_all.csv", root / "cosore_datasets_summary.csv")
    h = hh.observations
    mean = h.groupby(h.start.dt.floor("D")).value.mean()
    d = daily.observations
    d = d[(d.site_id == f"COSORE-{ds}") & (d.variable == "sr")].set_index("start").value
    np.testing.assert_allclose(mean[d.index].values, d.values, rtol=1e-3)


def test_generic_csv_mapping_units_and_quarantine(tmp_path):
    csv = tmp_path / "obs.csv"
    csv.write_text(
        "site,la,lo,t,flux,u,var\n"
        "A,45,10,2020-01-01,1.0,umol CO2 m-2 s-1,sr\n"
        "A,45,10,2020-01-02,2.0,g C m-2 d-1,sr\n"
        "A,45,10,2020-01-03,2.0,furlongs,sr\n"
        "B,145,10,2020-01-03,2.0,g C m-2 d-1,sr\n"
        "B,45,10,2020-01-03,inf,g C m-2 d-1,sr\n"
        "A,45,10,2020-01-02,2.0,g C m-2 d-1,sr\n"
        "A,45,10,2020-01-02,2.0,g C m-2 d-1,soil_moisture\n"
    )
    mapping = {
        "site_id": "site",
        "lat": "la",
        "lon": "lo",
        "start": "t",
        "step": "1D",
        "value": "flux",
        "units": "u",
        "variable": "var",
    }
    t = S.read_generic_csv(csv, mapping)
    _accounted(t, "csv")
    assert t.observations.value.tolist() == pytest.approx([UMOL_CO2_M2_S_TO_G_C_M2_D, 2.0])
    assert dict(zip(t.quarantine.row, t.quarantine.reason)) == {
        4: "unknown units",
        5: "coordinates out of range",
        6: "non-finite value",
        7: "duplicate",
        8: "unknown variable",
    }
    with pytest.raises(ValueError, match="mapped column"):
        S.read_generic_csv(csv, {**mapping, "value": "nope"})
    with pytest.raises(FileNotFoundError, match="site file not found"):
        S.read_generic_csv(tmp_path / "none.csv", mapping)


def test_cosore_daily_to_8day_by_hand(shared_data):
    t = S.read_cosore_daily(
        shared_data / "cosore" / "cosore_daily_all.csv.gz", shared_data / "cosore" / "cosore_datasets_summary.csv"
    )
    o = t.observations
    o = o[(o.site_id == "COSORE-d20190415_VARNER") & (o.variable == "sr")]
    kept, low = aggregate_to_periods(o, keys=["site_id", "variable"], value_cols=["value"], min_coverage=0.0)
    # By hand: the period starting 2004-07-19 (DOY 201 of a leap year) holds local days 07-19..07-26,
    # which are [05:00, 05:00) UTC days: the UTC period holds 5 h of local 07-18, 7 full days and 19 h of 07-26.
    row = kept[kept.start == pd.Timestamp("2004-07-19")].iloc[0]
    days = o.set_index("start").value
    pieces = {pd.Timestamp("2004-07-18 05:00"): 5 / 24}
    pieces.update({pd.Timestamp(f"2004-07-{d} 05:00"): 1.0 for d in range(19, 26)})
    pieces[pd.Timestamp("2004-07-26 05:00")] = 19 / 24
    present = {k: w for k, w in pieces.items() if k in days.index}
    expect = sum(days[k] * w for k, w in present.items()) / sum(present.values())
    assert row.value == pytest.approx(expect, rel=1e-9)
    assert row.coverage == pytest.approx(sum(present.values()) / 8, rel=1e-9)


def test_year_end_coverage():
    days = pd.date_range("2019-12-20", "2020-01-05", freq="D")
    obs = pd.DataFrame(
        {"site_id": "s", "variable": "sr", "start": days, "end": days + pd.Timedelta(days=1), "value": 2.0}
    )
    kept, low = aggregate_to_periods(obs, keys=["site_id", "variable"], value_cols=["value"], min_coverage=0.7)
    cov = dict(zip(pd.concat([kept, low]).start, pd.concat([kept, low]).coverage))
    assert cov[pd.Timestamp("2019-12-19")] == pytest.approx(7 / 8)
    assert cov[pd.Timestamp("2019-12-27")] == pytest.approx(5 / 5)  # the 5-day last period of 2019
    assert cov[pd.Timestamp("2020-01-01")] == pytest.approx(5 / 8)
    assert list(low.start) == [pd.Timestamp("2020-01-01")]
    assert kept[kept.start == pd.Timestamp("2019-12-27")].end.iloc[0] == pd.Timestamp("2020-01-01")
    assert (kept.value == 2.0).all()
    assert set(kept.start) <= set(period_starts([2019, 2020]))


def test_fluxnet_monthly_and_yearly_records_keep_their_calendar_periods(shared_data):
    """A site east of Greenwich (UTC+1): its YY records stay in their own calendar year and its MM
    records in their own month (the UTC shift applies to half-hours and days only); before, the
    shift moved each year's start to 31 December 23:00 of the previous year."""
    info = pd.read_csv(shared_data / "fluxnet" / "siteinfo_fluxnet2015.csv")
    f = shared_data / "fluxnet"
    yy = S.read_fluxnet(f / "FLX_FR-Pue_FLUXNET2015_FULLSET_YY_2007-2014_2-3.csv", site_info=info, min_qc=0,
                        utc_offset_hours=1)  # fmt: skip
    o = yy.observations
    assert list(o.start) == [pd.Timestamp(f"{y}-01-01") for y in range(2007, 2015)]
    assert list(o.end) == [pd.Timestamp(f"{y + 1}-01-01") for y in range(2007, 2015)]
    mm = S.read_fluxnet(f / "FLX_FR-Pue_FLUXNET2015_FULLSET_MM_2007-2014_2-3.csv", site_info=info, min_qc=0,
                        utc_offset_hours=1)  # fmt: skip
    starts = mm.observations.start
    assert (starts.dt.day == 1).all() and (starts.dt.hour == 0).all() and starts.min() == pd.Timestamp("2007-01-01")


def test_generic_csv_annual_rates_use_the_calendar_year(tmp_path):
    """g C m-2 yr-1 is per calendar year: 365 days in 2019, 366 in 2020 (not 365.25 everywhere)."""
    path = tmp_path / "annual.csv"
    pd.DataFrame(
        {"site": ["a", "b"], "lat": [10.0, 10.0], "lon": [5.0, 5.0], "time": ["2019-01-01", "2020-01-01"],
         "flux": [365.0, 366.0]}
    ).to_csv(path, index=False)  # fmt: skip
    mapping = {"site_id": "site", "lat": "lat", "lon": "lon", "start": "time", "step": "365D", "value": "flux",
               "units_name": "g C m-2 yr-1", "variable_name": "sr"}  # fmt: skip
    t = S.read_generic_csv(path, mapping)
    assert t.observations.value.tolist() == [1.0, 1.0]
