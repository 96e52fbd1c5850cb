"""Year-to-year variability: annual anomalies of regional totals with the ensemble's spread, and at
the sites observed against held-out predicted annual anomalies (the hardest part of upscaling:
Jung et al. 2020, Biogeosciences 17:1343; Tramontana et al. 2016, Biogeosciences 13:4291).

An anomaly is a year's value minus the mean over the years present; over those years the anomalies
of one region (or site) sum to zero by construction. Each ensemble member's anomaly is taken against
its own mean, so the band is the spread of the anomaly, not of the level.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fluxmap.science.validate import metrics

__all__ = ["anomalies", "driver_anomalies", "member_anomaly_band", "site_anomalies", "site_anomaly_scores"]


def anomalies(totals: pd.DataFrame, *, by: list[str], value: str = "total_pg_c_yr") -> pd.DataFrame:
    """``totals`` with ``anomaly_pg_c_yr``: ``value`` minus its mean over the years within each
    ``by`` group, and ``years``, the number of years that mean is over."""
    g = totals.groupby(by)[value]
    return totals.assign(anomaly_pg_c_yr=totals[value] - g.transform("mean"), years=g.transform("count"))


def member_anomaly_band(members: pd.DataFrame) -> pd.DataFrame:
    """Per (year, name) row of ``members`` (columns: one ensemble member's annual total each, as
    :func:`fluxmap.science.aggregate.member_region_totals` gives them): the 5 %, 95 % and SD over the
    members of each member's anomaly against its own mean over the years of that region."""
    anom = members - members.groupby(level="name").transform("mean")
    values = anom.to_numpy(dtype="float64")
    return pd.DataFrame(
        {
            "anomaly_p05_pg_c_yr": np.percentile(values, 5, axis=1),
            "anomaly_p95_pg_c_yr": np.percentile(values, 95, axis=1),
            "anomaly_sd_pg_c_yr": values.std(axis=1, ddof=1) if values.shape[1] > 1 else np.nan,
        },
        index=members.index,
    )


def site_anomalies(rows: pd.DataFrame, *, pred: str, site: str = "site_group", min_periods: int = 23) -> pd.DataFrame:
    """Observed and predicted annual anomalies per site-year from held-out 8-day rows (``value``,
    ``pred``, ``site``, ``start``): each site-year's mean over the periods with both (a year needs
    ``min_periods`` of them, half the 46), then each site's anomalies against its own mean over its
    years; sites with fewer than two such years are left out. Columns ``site, year, periods,
    observed, predicted, observed_anomaly, predicted_anomaly``."""
    ok = rows[["value", pred]].notna().all(axis=1)
    r = rows[ok].assign(year=pd.to_datetime(rows.loc[ok, "start"]).dt.year)
    yearly = r.groupby([site, "year"]).agg(periods=("value", "size"), observed=("value", "mean"),
                                          predicted=(pred, "mean")).reset_index()  # fmt: skip
    yearly = yearly[yearly.periods >= min_periods]
    yearly = yearly[yearly.groupby(site).year.transform("count") >= 2]
    for col in ("observed", "predicted"):
        yearly[f"{col}_anomaly"] = yearly[col] - yearly.groupby(site)[col].transform("mean")
    return yearly.rename(columns={site: "site"}).reset_index(drop=True)


def site_anomaly_scores(table: pd.DataFrame) -> dict[str, float]:
    """How well the held-out predictions follow the sites' year-to-year anomalies: Pearson r, R2
    (1 - SSE / the anomalies' own sum of squares), RMSE and bias of the anomalies, with the
    site-years and sites scored; and the same for the annual means themselves, for contrast."""
    if table.empty:
        return {"site_years": 0, "sites": 0}
    a = metrics(table.observed_anomaly.to_numpy(), table.predicted_anomaly.to_numpy())
    m = metrics(table.observed.to_numpy(), table.predicted.to_numpy())
    r = float(np.corrcoef(table.observed_anomaly, table.predicted_anomaly)[0, 1]) if len(table) > 2 else np.nan
    return {
        "site_years": int(len(table)),
        "sites": int(table.site.nunique()),
        "anomaly_r": r,
        "anomaly_r2": float(a["r2"]),
        "anomaly_rmse": float(a["rmse"]),
        "observed_anomaly_sd": float(table.observed_anomaly.std(ddof=1)),
        "predicted_anomaly_sd": float(table.predicted_anomaly.std(ddof=1)),
        "annual_mean_r2": float(m["r2"]),
    }


def driver_anomalies(drivers: pd.DataFrame, weight: pd.Series, region: pd.Series, year: pd.Series) -> pd.DataFrame:
    """Each region's annual anomaly split by driver (SHAP of the anomaly): ``drivers`` holds, per
    sampled cell-period row, each driver's SHAP value (its predictors' summed); the weighted mean
    per region and year of each driver's value, minus its mean over the years. Because SHAP values
    add up to the prediction less a constant, the drivers' anomalies add up to the anomaly of the
    model's weighted mean prediction over the sampled rows. Columns ``region, year, driver,
    contribution, anomaly`` (the flux's units), ``rows``."""
    w = weight.to_numpy(dtype="float64")
    keys = pd.DataFrame({"region": region.to_numpy(), "year": year.to_numpy()})
    weighted = drivers.mul(w, axis=0).assign(_w=w)
    sums = weighted.groupby([keys.region, keys.year]).sum()
    mean = sums[drivers.columns].div(sums["_w"], axis=0)
    counts = keys.groupby(["region", "year"]).size()
    long = mean.stack().rename("contribution").reset_index()
    long.columns = ["region", "year", "driver", "contribution"]
    long["anomaly"] = long.contribution - long.groupby(["region", "driver"]).contribution.transform("mean")
    long["rows"] = [int(counts[(r, y)]) for r, y in zip(long.region, long.year)]
    return long
