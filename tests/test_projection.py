"""Projection under a delta-changed climate (issue 29, part 4): the change applied lazily to the
right variables, refused when malformed; the stage itself is tested on the pipeline's run in
``test_predict.py``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from fluxmap.config import ConfigError, run_config_from_mapping
from fluxmap.science.projection import Delta, apply_delta
from fluxmap.testing import raise_if_dask_computes


def _cubes() -> dict[str, xr.Dataset]:
    time = pd.date_range("2020-01-01", periods=12, freq="MS")
    shape = (12, 2, 3)
    coords = {"time": time, "lat": [1.0, 0.0], "lon": [0.0, 1.0, 2.0]}
    era5 = xr.Dataset(
        {
            "t2m": (("time", "lat", "lon"), np.full(shape, 280.0, "float32"), {"units": "K"}),
            "tp": (("time", "lat", "lon"), np.full(shape, 2.0, "float32"), {"units": "mm d-1"}),
        },
        coords=coords,
    ).chunk({"time": 4})
    modis = xr.Dataset({"ndvi": (("time", "lat", "lon"), np.full(shape, 0.5, "float32"))}, coords=coords).chunk()
    static = xr.Dataset({"elevation": (("lat", "lon"), np.zeros((2, 3)))}, coords={"lat": [1.0, 0.0], "lon": [0, 1, 2]})
    return {"era5": era5, "mod09a1": modis, "static": static}


def test_a_delta_warms_temperatures_scales_precipitation_per_month_and_holds_the_rest():
    factors = tuple(np.linspace(0.5, 1.6, 12))
    with raise_if_dask_computes():
        out, changed = apply_delta(_cubes(), Delta(2.5, factors))
    assert changed == {"warmed": ["era5/t2m"], "scaled": ["era5/tp"], "held": ["mod09a1/ndvi"]}
    np.testing.assert_allclose(out["era5"].t2m.values, 282.5)
    np.testing.assert_allclose(out["era5"].tp.values[:, 0, 0], 2.0 * np.array(factors), rtol=1e-6)
    assert out["era5"].tp.attrs["units"] == "mm d-1" and out["era5"].tp.dtype == np.float32
    xr.testing.assert_identical(out["mod09a1"], _cubes()["mod09a1"])
    one = apply_delta(_cubes(), Delta(0.0, (0.9,)))[0]
    np.testing.assert_allclose(one["era5"].tp.values, 1.8, rtol=1e-6)


@pytest.mark.parametrize(
    ("project", "message"),
    [
        ({"precipitation_factor": [0.9, 1.0]}, "one factor or twelve"),
        ({"precipitation_factor": [-0.1]}, "finite factors >= 0"),
        ({"warming_k": "2K"}, "project: warming_k = '2K'"),
        ({"warming": 2}, "unknown key"),
    ],
)
def test_a_malformed_scenario_is_refused_by_name(project, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        run_config_from_mapping({"workdir": "w", "project": project})
