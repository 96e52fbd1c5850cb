"""Totals per land-cover class (issue 24, part 2: per-biome totals): by hand on a tiny grid, adding up to
the grid total, with unlisted cells kept as ``unclassified``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from fluxmap.science.aggregate import annual_totals, totals_by_class
from fluxmap.science.grids import cell_area
from fluxmap.science.periods import period_days, period_starts


def test_totals_by_class_by_hand():
    t = period_starts([2020])
    lat, lon = np.array([10.5, 9.5]), np.array([0.5, 1.5, 2.5])
    rng = np.random.default_rng(0)
    flux = xr.DataArray(
        rng.uniform(0, 5, (len(t), 2, 3)), dims=("time", "lat", "lon"), coords={"time": t, "lat": lat, "lon": lon}
    )
    land = xr.DataArray(
        np.array([[1.0, 0.5, 1.0], [1.0, 0.0, 0.25]]), dims=("lat", "lon"), coords={"lat": lat, "lon": lon}
    )
    classes = xr.DataArray(
        np.array([[1, 1, 10], [10, 16, 255]], "uint8"), dims=("lat", "lon"), coords={"lat": lat, "lon": lon}
    )
    names = {1: "ENF", 10: "GRA", 16: "BSV"}
    out = totals_by_class(flux.chunk({"time": 10}), land, classes, names).set_index("name")
    area = cell_area(lat, 1.0, 1.0)[:, None] * land.values  # m2 of land per cell
    days = period_days(t)[:, None, None]
    grams = (flux.values * days).sum(0) * area
    for name, cells in (
        ("ENF", classes.values == 1),
        ("GRA", classes.values == 10),
        ("unclassified", classes.values == 255),
    ):
        assert out.loc[name, "total_pg_c_yr"] == pytest.approx(grams[cells].sum() / 1e15, rel=1e-9)
        assert out.loc[name, "land_km2"] == pytest.approx(area[cells].sum() / 1e6, rel=1e-9)
    assert "BSV" not in out.index  # its only cell has no land
    whole = annual_totals(flux, land).total_pg_c_yr.iloc[0]
    assert out.total_pg_c_yr.sum() == pytest.approx(whole, rel=1e-9)
    assert out.share_of_total.sum() == pytest.approx(1.0)
    assert isinstance(out, pd.DataFrame) and set(out["year"]) == {2020}
