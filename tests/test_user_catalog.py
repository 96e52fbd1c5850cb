"""A user's own predictor grids through a catalog (issue 24, part 1): a GeoTIFF, a 0..360 NetCDF
climatology in degrees Celsius and a south-up Zarr time series give, at random sites, the same
values as an independent lookup by arithmetic on the arrays that were written; units declared in
the catalog are used and checked; ``fluxmap catalog check`` names each problem in one line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from fluxmap.io.catalog import CatalogError, load_catalog
from fluxmap.science.extract import extract_at_sites, locate_sites

RES_TIF, RES_NC, RES_ZARR = 0.5, 2.5, 1.0


def _tif(path):
    """Elevation-like field on a north-up 0.5 deg EPSG:4326 raster, 20 W - 40 E, 30 - 70 N, no units."""
    import rioxarray  # noqa: F401

    lat = 70 - (np.arange(80) + 0.5) * RES_TIF
    lon = -20 + (np.arange(120) + 0.5) * RES_TIF
    values = (100 * lat[:, None] + lon[None, :]).astype("float32")
    da = xr.DataArray(values, dims=("y", "x"), coords={"y": lat, "x": lon}).rio.write_crs("EPSG:4326")
    da.rio.to_raster(path)
    return values


def _climatology(path):
    """12-month 2 m temperature climatology in degC on a global 2.5 deg grid with 0..360 longitudes."""
    lat = 90 - (np.arange(72) + 0.5) * RES_NC
    lon = (np.arange(144) + 0.5) * RES_NC
    month = np.arange(1, 13)
    values = (month[:, None, None] + lat[None, :, None] / 10 + lon[None, None, :] / 1000).astype("float32")
    xr.Dataset(
        {"tem": (("time", "lat", "lon"), values, {"units": "degC"})},
        coords={"time": month, "lat": lat, "lon": lon},
    ).to_netcdf(path)
    return values


def _series(path):
    """Monthly precipitation (mm/day) for 2019 on a south-up 1 deg grid (latitudes increasing)."""
    lat = -90 + (np.arange(180) + 0.5) * RES_ZARR
    lon = -180 + (np.arange(360) + 0.5) * RES_ZARR
    time = pd.date_range("2019-01-01", periods=12, freq="MS")
    values = (np.arange(12)[:, None, None] + (lat[None, :, None] + 90) / 100 + (lon[None, None, :] + 180) / 1e4).astype(
        "float32"
    )
    xr.Dataset(
        {"precip": (("time", "lat", "lon"), values, {"units": "mm/day"})},
        coords={"time": time, "lat": lat, "lon": lon},
    ).chunk({"time": 6, "lat": 90, "lon": 180}).to_zarr(path, zarr_format=2, consolidated=True)
    return values


def _doc() -> dict:
    def data(kind: str, url: str) -> dict:
        return {
            "datatype": f"intake.readers.datatypes:{kind}",
            "kwargs": {"url": url},
            "metadata": {},
            "user_parameters": {},
        }

    def entry(token: str, engine: str, fluxmap: dict, chunks: dict | None = None, **kw) -> dict:
        return {
            "reader": "intake.readers.readers:XArrayDatasetReader",
            "output_instance": "xarray:Dataset",
            "kwargs": {"args": [f"{{data({token})}}"], "engine": engine, "chunks": chunks or {}, **kw},
            "metadata": {"fluxmap": {"product": "canonical", **fluxmap}},
            "user_parameters": {},
        }

    return {
        "version": 2,
        "aliases": {},
        "metadata": {"description": "a user's own grids"},
        "user_parameters": {"ROOT": {"default": ".", "description": "data folder"}},
        "data": {
            "tif": data("TIFF", "{ROOT}/elevation.tif"),
            "nc": data("NetCDF3", "{ROOT}/tem_climatology.nc"),
            "zarr": data("Zarr", "{ROOT}/precip_monthly.zarr"),
        },
        "entries": {
            "elevation": entry(
                "tif", "rasterio", {"variables": {"elevation": "band_data"}, "units": {"elevation": "m"}}
            ),
            "temperature": entry(
                "nc", "netcdf4", {"variables": {"t2m": "tem"}, "time": "climatology"}, decode_times=False
            ),
            "precipitation": entry("zarr", "zarr", {"variables": {"tp": "precip"}}, consolidated=True),
        },
    }


@pytest.fixture
def user_grids(tmp_path):
    truth = {
        "elevation": _tif(tmp_path / "elevation.tif"),
        "temperature": _climatology(tmp_path / "tem_climatology.nc"),
        "precipitation": _series(tmp_path / "precip_monthly.zarr"),
    }
    path = tmp_path / "user.yaml"
    path.write_text(yaml.safe_dump(_doc(), sort_keys=False))
    return path, truth


def _sites(n: int = 40, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    # Cell centres are avoided (a site exactly between two cells has two equally near cells).
    lat = rng.uniform(30.1, 69.9, n)
    lon = rng.uniform(-19.9, 39.9, n)
    return pd.DataFrame({"site": [f"S{i}" for i in range(n)], "lat": lat, "lon": lon})


def test_user_grids_give_the_values_of_an_independent_lookup(user_grids):
    path, truth = user_grids
    cat = load_catalog(path)
    sites = _sites()
    lat, lon = sites.lat.to_numpy(), sites.lon.to_numpy()

    def at(entry: str) -> xr.Dataset:
        ds = cat.open(entry)
        return extract_at_sites(ds, locate_sites(ds, sites.site.values, lat, lon)).compute()

    # GeoTIFF, north-up from 70 N, 20 W: row and column by arithmetic; units from the catalog.
    elev = at("elevation")
    r, c = np.floor((70 - lat) / RES_TIF).astype(int), np.floor((lon + 20) / RES_TIF).astype(int)
    np.testing.assert_allclose(elev.elevation.values, truth["elevation"][r, c], rtol=1e-6)
    assert elev.elevation.attrs["units"] == "m"

    # NetCDF climatology, 0..360, degC: every month, converted to K.
    tem = at("temperature")
    r, c = np.floor((90 - lat) / RES_NC).astype(int), np.floor((lon % 360) / RES_NC).astype(int)
    np.testing.assert_allclose(
        tem.t2m.transpose("time", "site").values, truth["temperature"][:, r, c] + 273.15, rtol=1e-6
    )
    assert tem.t2m.attrs["units"] == "K" and tem.attrs["fluxmap_time"] == "climatology"

    # Zarr series, south-up (latitudes increasing), mm/day.
    tp = at("precipitation")
    r, c = np.floor((lat + 90) / RES_ZARR).astype(int), np.floor((lon + 180) / RES_ZARR).astype(int)
    np.testing.assert_allclose(tp.tp.transpose("time", "site").values, truth["precipitation"][:, r, c], rtol=1e-6)


def test_units_declared_in_the_catalog_are_checked_against_the_file(user_grids):
    path, _ = user_grids
    doc = yaml.safe_load(path.read_text())
    # The file says degC; a catalog that says K contradicts it: refused, naming entry and variable.
    doc["entries"]["temperature"]["metadata"]["fluxmap"]["units"] = {"t2m": "K"}
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(CatalogError, match=r"temperature.*'t2m'.*the catalog says 'K'.*the file says 'degC'"):
        load_catalog(path).open("temperature")
    # Units fluxmap cannot convert (the GeoTIFF has none of its own): refused, naming them.
    doc["entries"]["elevation"]["metadata"]["fluxmap"]["units"] = {"elevation": "ft"}
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(
        CatalogError, match=r"elevation: variable 'elevation' \(source 'band_data'\) has units 'ft', which"
    ):
        load_catalog(path).open("elevation")
    # No units anywhere: refused.
    doc = yaml.safe_load(path.read_text())
    doc["entries"]["elevation"]["metadata"]["fluxmap"].pop("units")
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(CatalogError, match=r"elevation.*no units attribute"):
        load_catalog(path).open("elevation")


def test_catalog_check_names_each_problem_in_one_line(user_grids, tmp_path, capsys):
    from fluxmap.cli import main

    path, _ = user_grids
    sites = _sites()
    table = tmp_path / "sites.csv"
    pd.concat([sites, pd.DataFrame({"site": ["FAR"], "lat": [-45.0], "lon": [170.0]})]).to_csv(table, index=False)
    assert main(["catalog", "check", str(path), "--sites", str(table)]) == 1
    out = capsys.readouterr().out.splitlines()
    problems = [line for line in out if line.startswith("problem:")]
    # The far site is off the GeoTIFF's grid; nothing else is wrong.
    assert len(problems) == 1 and "elevation" in problems[0] and "1 of 41 sites" in problems[0], out
    doc = yaml.safe_load(path.read_text())
    doc["entries"]["precipitation"]["metadata"]["fluxmap"]["units"] = {"tp": "inch/day"}
    doc["data"]["nc"]["kwargs"]["url"] = "{ROOT}/missing.nc"
    path.write_text(yaml.safe_dump(doc))
    assert main(["catalog", "check", str(path)]) == 1
    problems = [line for line in capsys.readouterr().out.splitlines() if line.startswith("problem:")]
    assert len(problems) == 2
    assert any("temperature" in p and "source not found" in p for p in problems)
    assert any("precipitation" in p and "inch/day" in p for p in problems)


def test_every_time_step_is_put_on_the_8day_periods():
    """Climatology by calendar month, monthly and annual series by the step holding each period's middle
    day (never extrapolated), daily series averaged: checked against hand-computed values."""
    from fluxmap.science.extract import on_periods
    from fluxmap.science.periods import period_starts

    starts = period_starts([2019])
    clim = xr.Dataset({"t": ("time", np.arange(1.0, 13.0))}, coords={"time": np.arange(1, 13)})
    got = on_periods(clim, "climatology", starts).t.to_series()
    # The period of 2019-01-25 has its middle day on 29 January; the one of 2019-02-26 on 2 March.
    assert got[pd.Timestamp("2019-01-25")] == 1 and got[pd.Timestamp("2019-02-26")] == 3
    assert got[pd.Timestamp("2019-12-27")] == 12 and len(got) == 46
    monthly = xr.Dataset(
        {"p": ("time", np.arange(6.0))}, coords={"time": pd.date_range("2019-03-01", periods=6, freq="MS")}
    )
    got = on_periods(monthly, "series", starts).p.to_series()
    assert np.isnan(got[pd.Timestamp("2019-02-18")])  # before the first month
    assert got[pd.Timestamp("2019-02-26")] == 0  # middle day 2 March
    assert got[pd.Timestamp("2019-08-21")] == 5  # middle day 25 August: the last month
    assert np.isnan(got[pd.Timestamp("2019-08-29")])  # middle day 2 September: after the series, not extrapolated
    daily = xr.Dataset(
        {"d": ("time", np.arange(365.0))}, coords={"time": pd.date_range("2019-01-01", periods=365, freq="D")}
    )
    got = on_periods(daily, "series", starts).d.to_series()
    assert got[pd.Timestamp("2019-01-01")] == pytest.approx(3.5) and got[pd.Timestamp("2019-01-09")] == pytest.approx(
        11.5
    )


def test_the_extract_stage_reads_a_user_catalog_with_a_climatology(user_grids, tmp_path):
    """The user catalog through the extract stage: a chamber site's 8-day rows carry July's temperature
    from the climatology and March's precipitation from the monthly series."""
    import dataclasses

    from fluxmap.config import RunConfig
    from fluxmap.io.sites import read_generic_csv
    from fluxmap.stages.extract import extract_stage

    path, truth = user_grids
    lat, lon = 47.3, 8.6
    rows = ["site,lat,lon,t,flux"] + [f"CH,{lat},{lon},2019-{m:02d}-{d:02d},2.0" for m in (3, 7) for d in range(1, 29)]
    csv = tmp_path / "obs.csv"
    csv.write_text("\n".join(rows) + "\n")
    mapping = {"site_id": "site", "lat": "lat", "lon": "lon", "start": "t", "step": "1D", "value": "flux",
               "units_name": "g C m-2 d-1", "variable_name": "sr"}  # fmt: skip
    table = read_generic_csv(csv, mapping)
    cfg = RunConfig(workdir=str(tmp_path / "w"), demo=None)
    cfg = dataclasses.replace(
        cfg,
        extract=dataclasses.replace(
            cfg.extract, catalog=str(path), entries=("elevation", "temperature", "precipitation")
        ),
    )
    out = extract_stage(cfg, table, log=lambda m: None)["training_8day"].set_index("start")
    r, c = int((90 - lat) // RES_NC), int((lon % 360) // RES_NC)
    july = out.loc[pd.Timestamp("2019-07-12")]
    assert july.t2m == pytest.approx(truth["temperature"][6, r, c] + 273.15, rel=1e-6)
    r, c = int((lat + 90) // RES_ZARR), int((lon + 180) // RES_ZARR)
    march = out.loc[pd.Timestamp("2019-03-06")]
    assert march.tp == pytest.approx(truth["precipitation"][2, r, c], rel=1e-6)
    r, c = int((70 - lat) // RES_TIF), int((lon + 20) // RES_TIF)
    assert july.elevation == pytest.approx(truth["elevation"][r, c], rel=1e-6)


def test_an_entry_that_covers_none_of_the_sites_or_periods_stops_before_any_compute(user_grids, tmp_path):
    """Bad input: an entry whose grid covers none of the sites, or whose time axis covers none of the
    observation periods, is an error naming the entry before anything is computed; partial coverage
    is quarantined row by row, as before."""
    import dataclasses

    from fluxmap.config import RunConfig
    from fluxmap.io.catalog import CatalogError
    from fluxmap.io.sites import read_generic_csv
    from fluxmap.stages.extract import extract_stage
    from fluxmap.testing import raise_if_dask_computes

    path, _ = user_grids
    mapping = {"site_id": "site", "lat": "lat", "lon": "lon", "start": "t", "step": "1D", "value": "flux",
               "units_name": "g C m-2 d-1", "variable_name": "sr"}  # fmt: skip

    def run(lat: float, lon: float, year: int, entries: tuple[str, ...]) -> None:
        csv = tmp_path / f"obs_{lat}_{year}.csv"
        csv.write_text(
            "site,lat,lon,t,flux\n" + "".join(f"S,{lat},{lon},{year}-07-{d:02d},2.0\n" for d in range(1, 29))
        )
        cfg = RunConfig(workdir=str(tmp_path / f"w_{lat}_{year}"), demo=None)
        cfg = dataclasses.replace(cfg, extract=dataclasses.replace(cfg.extract, catalog=str(path), entries=entries))
        with raise_if_dask_computes():
            extract_stage(cfg, read_generic_csv(csv, mapping), log=lambda m: None)

    with pytest.raises(CatalogError, match=r"'precipitation'.*time axis 2019-01-01 to 2019-12-01.*2021"):
        run(47.3, 8.6, 2021, ("temperature", "precipitation"))
    with pytest.raises(CatalogError, match=r"'elevation'.*covers none of the 1 site location"):
        run(-30.0, -150.0, 2019, ("elevation", "temperature"))
