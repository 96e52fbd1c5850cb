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


def _cmip(path, years, *, warm: float, rain: float, calendar: str = "noleap", pr_units: str = "kg m-2 s-1"):
    """A monthly CMIP-style file: ``tas`` (K) and ``pr`` (kg m-2 s-1) on a 0..360 grid, ``calendar``;
    the north half ``warm`` K warmer than the south and ``rain`` times its precipitation."""
    import cftime

    times = [cftime.datetime(y, m, 15, calendar="noleap") for y in years for m in range(1, 13)]
    lat, lon = np.array([-45.0, 45.0]), np.array([90.0, 270.0])
    tas = np.full((len(times), 2, 2), 280.0)
    tas[:, 1, :] += warm
    pr = np.full((len(times), 2, 2), 2.0 / 86400)  # 2 mm d-1
    pr[:, 1, :] *= rain
    ds = xr.Dataset(
        {"tas": (("time", "lat", "lon"), tas, {"units": "K"}), "pr": (("time", "lat", "lon"), pr, {"units": pr_units})},
        coords={"time": times, "lat": lat, "lon": lon},
    )
    if calendar == "noleap":
        ds.time.encoding.update({"units": "days since 1850-01-01", "calendar": calendar})
    else:  # a calendar cftime does not know: written as the numbers a model would write
        days = np.arange(len(times)) * 30.0 + 73000
        ds = ds.assign_coords(time=("time", days, {"units": "days since 1850-01-01", "calendar": calendar}))
    ds.to_netcdf(path)


def _scenario_catalog(tmp_path):
    import yaml

    def entry(token: str) -> dict:
        return {
            "reader": "intake.readers.readers:XArrayDatasetReader",
            "output_instance": "xarray:Dataset",
            "kwargs": {"args": [f"{{data({token})}}"], "engine": "netcdf4", "chunks": {}},
            "metadata": {"fluxmap": {"product": "canonical", "variables": {"t2m": "tas", "tp": "pr"}}},
            "user_parameters": {},
        }

    doc = {
        "version": 2, "aliases": {}, "metadata": {"description": "a climate model's runs"},
        "user_parameters": {"ROOT": {"default": ".", "description": "data folder"}},
        "data": {k: {"datatype": "intake.readers.datatypes:NetCDF3", "kwargs": {"url": f"{{ROOT}}/{k}.nc"},
                     "metadata": {}, "user_parameters": {}} for k in ("historical", "future")},
        "entries": {"historical": entry("historical"), "future": entry("future")},
    }  # fmt: skip
    path = tmp_path / "cmip.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _project_cfg(tmp_path, **extra):
    project = {"enabled": True, "scenario_catalog": str(_scenario_catalog(tmp_path)),
               "scenario_params": {"ROOT": str(tmp_path)}, "historical_years": [1991, 1992],
               "future_years": [2051, 2052], **extra}  # fmt: skip
    return run_config_from_mapping({"workdir": str(tmp_path / "w"), "project": project})


def test_a_climate_models_runs_give_a_delta_per_cell_and_month(tmp_path):
    """CMIP-style ``tas``/``pr`` on a ``noleap`` calendar through a catalog's canonical entries: the
    future minus historical delta is 3 K in the north and 1 K in the south, precipitation x 0.5 and
    x 1; each map cell takes its nearest model cell, lazily, block by block."""
    from fluxmap.stages.project import scenario_of

    _cmip(tmp_path / "historical.nc", [1990, 1991, 1992], warm=0.0, rain=1.0)
    _cmip(tmp_path / "future.nc", [2051, 2052], warm=2.0, rain=0.5)
    delta = scenario_of(_project_cfg(tmp_path))
    f = delta.fields
    np.testing.assert_allclose(f.t2m_delta.sel(lat=45.0).values, 2.0, atol=1e-5)
    np.testing.assert_allclose(f.t2m_delta.sel(lat=-45.0).values, 0.0, atol=1e-5)
    np.testing.assert_allclose(f.tp_ratio.sel(lat=45.0).values, 0.5, rtol=1e-5)
    assert sorted(f.lon.values) == [-90.0, 90.0] and f.sizes["month"] == 12
    cube = _cubes()["era5"].assign_coords(lat=[50.0, -40.0], lon=[-100.0, 80.0, 100.0])
    with raise_if_dask_computes():
        out, changed = apply_delta({"era5": cube}, delta)
    assert changed["warmed"] == ["era5/t2m"]
    t2m = out["era5"].t2m.values
    np.testing.assert_allclose(t2m[:, 0, :], 282.0, atol=1e-4)  # north: +2 K
    np.testing.assert_allclose(t2m[:, 1, :], 280.0, atol=1e-4)
    np.testing.assert_allclose(out["era5"].tp.values[:, 0, :], 1.0, rtol=1e-5)  # 2 mm d-1 x 0.5
    assert json_like(delta.as_dict())["fields_sha256"]


def json_like(d):
    import json

    return json.loads(json.dumps(d))


@pytest.mark.parametrize(
    ("files", "extra", "message"),
    [
        ({"pr_units": "mm month-1"}, {}, "pr"),
        ({}, {"future_years": [2061, 2062]}, "future: years 2061-2062 requested, 2 missing"),
        ({}, {"future_entry": "ssp585"}, "no entry 'ssp585'"),
        ({"calendar": "martian"}, {}, "calendar"),
    ],
)
def test_a_scenario_in_other_units_calendar_or_years_is_refused_by_name(tmp_path, files, extra, message):
    from fluxmap.stages.project import scenario_of

    _cmip(tmp_path / "historical.nc", [1991, 1992], warm=0.0, rain=1.0)
    _cmip(tmp_path / "future.nc", [2051, 2052], warm=2.0, rain=0.5, **files)
    with pytest.raises(ValueError, match=message) as err:
        scenario_of(_project_cfg(tmp_path, **extra))
    if extra.get("future_entry") is None:
        assert "cmip.yaml" in str(err.value) or "future.nc" in str(err.value)
