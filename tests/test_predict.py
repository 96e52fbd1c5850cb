"""Global prediction, the CF Zarr store (GDAL, netCDF-C, cf-xarray), resumable writes, totals, report."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from fluxmap.science import aggregate
from fluxmap.science.grids import cell_area
from fluxmap.testing import cf_errors


@pytest.fixture(scope="module")
def run_dir(tiny_world, tmp_path_factory):
    """The whole pipeline on the tiny world, through prediction."""
    from fluxmap.demo import demo_sources
    from fluxmap.stages.extract import extract_stage
    from fluxmap.stages.models import model_stage
    from fluxmap.stages.sites import sites_stage
    from fluxmap.testing import predict_and_report, small_run_config

    work = tmp_path_factory.mktemp("run")
    cfg = small_run_config(work, tiny_world.root, targets=["sr:8day", "nee:8day"], backward_elimination=False)
    log = []
    tables = extract_stage(cfg, sites_stage(cfg, demo_sources(tiny_world.root), log=log.append), log=log.append)
    model_stage(cfg, tables, log=log.append)
    result = predict_and_report(cfg, log=log.append)
    return cfg, result, log


def test_the_report_of_a_store_too_large_to_read_whole_stays_lazy_and_gives_the_same_totals(run_dir, monkeypatch):
    """A store above ``SMALL_STORE_BYTES`` (as command 1's 8-day store is) is reported lazily, with
    its variables chunked differently (the fluxes by period, the static layers not), and gives the
    totals the whole-read store gives."""
    import fluxmap.io.store
    from fluxmap.stages.predict import predict_stage
    from fluxmap.stages.report import report_stage

    cfg, result, _ = run_dir
    written = predict_stage(cfg, log=lambda m: None)  # every region done: the store as it is
    totals = Path(result["store"]).parent / "totals.csv"
    eager = pd.read_csv(totals)
    monkeypatch.setattr(fluxmap.io.store, "SMALL_STORE_BYTES", 0)
    assert fluxmap.io.store.open_for_tables(written["store"]).sr.chunks is not None
    report_stage(cfg, written, log=lambda m: None)
    pd.testing.assert_frame_equal(pd.read_csv(totals), eager, rtol=1e-12)  # the sums' order differs


def test_store_has_cf_metadata(run_dir, tmp_path):
    import json

    import cf_xarray  # noqa: F401
    import rioxarray  # noqa: F401

    cfg, result, _ = run_dir
    ds = xr.open_zarr(result["store"], consolidated=True)
    assert ds.attrs["Conventions"] == "CF-1.10, ACDD-1.3"
    for key in (
        "fluxmap_config",
        "fluxmap_versions",
        "fluxmap_model_sha256",
        "fluxmap_git_revision",
        "fluxmap_input_sha256",
    ):
        assert ds.attrs[key]
    # ACDD: discovery, licence, coverage from the grid, the real references of what the run used.
    assert ds.attrs["license"] == cfg.metadata.license and "demo world" in ds.attrs["summary"]
    assert "doi:10.1111/2041-210X.13650" in ds.attrs["references"]  # the area of applicability's paper
    assert ds.attrs["geospatial_lat_min"] == float(ds.lat_bnds.min()) and ds.attrs["geospatial_lon_max"] == 30.0
    assert ds.attrs["time_coverage_start"] == "2020-01-01T00:00:00Z"
    assert ds.attrs["time_coverage_end"] == "2021-01-01T00:00:00Z"
    assert ds.cf["latitude"].name == "lat" and ds.cf["longitude"].name == "lon" and ds.cf["time"].name == "time"
    assert ds.cf.bounds["lat"] == ["lat_bnds"] and ds.cf.bounds["time"] == ["time_bnds"]
    assert ds.sr.attrs["grid_mapping"] == "crs" and ds.sr.attrs["cell_methods"] == "time: mean"
    assert ds.sr.attrs["units"] == "g m-2 d-1" and ds.crs.attrs["grid_mapping_name"] == "latitude_longitude"
    assert ds.sr.attrs["standard_name"].endswith("carbon_dioxide_expressed_as_carbon_due_to_respiration_in_soil")
    assert "standard_name" not in ds.nee.attrs and "positive upward" in ds.nee.attrs["comment"]
    assert 'EPSG",4326' in ds.crs.attrs["crs_wkt"]
    # The grid mapping is a coordinate: rioxarray and cf-xarray find it on any variable, as opened.
    assert "crs" in ds.coords and ds.sr.rio.crs.to_epsg() == 4326 and ds.zone.rio.crs.to_epsg() == 4326
    assert ds.sr.cf.grid_mapping_names == {"latitude_longitude": ["crs"]}
    # zone: its own attributes (none leaked from the zone factors), flags of its dtype, one meaning each.
    k = int(ds.zone.max())
    assert "standard_name" not in ds.zone.attrs and "valid_min" not in ds.zone.attrs
    assert list(ds.zone.attrs["flag_values"]) == list(range(k + 1))
    assert ds.zone.attrs["flag_meanings"].split() == ["not_land", *(f"zone_{z}" for z in range(1, k + 1))]
    # No dict-valued attributes anywhere (GDAL's old _CRS): the store converts to netCDF as it is.
    assert not [(v, a) for v in ds.variables for a, x in ds[v].attrs.items() if isinstance(x, dict)]
    ds.to_netcdf(tmp_path / "as_is.nc")
    # Coordinates and bounds without fill values; time_bnds without units of its own (CF 7.1).
    store = Path(result["store"])
    for v in ("lat", "lon", "time", "lat_bnds", "lon_bnds", "time_bnds", "cell_area"):
        assert json.loads((store / v / ".zarray").read_text())["fill_value"] is None, v
    assert not {"units", "calendar"} & set(json.loads((store / "time_bnds" / ".zattrs").read_text()))
    b = ds.time_bnds.values
    days = (b[:, 1] - b[:, 0]) / np.timedelta64(1, "D")
    assert (days[:-1] == 8).all() and days[-1] == 6  # 2020: the leap-year last period
    for v in ("sr", "sr_unified", "sr_sd", "sr_p05", "sr_p95", "nee", "nee_unified", "zone", "sr_missing_predictors"):
        assert v in ds, v
        assert ds[v].attrs["cell_measures"] == "area: cell_area", v
    assert ds.sr_unified.attrs["long_name"].endswith("unified model") and ds.sr_unified.attrs["units"] == "g m-2 d-1"
    assert float((ds.sr_p95 >= ds.sr_p05).where(ds.sr.notnull()).mean()) == 1.0


def test_totals_from_the_store_alone(run_dir):
    """Any user recomputes the totals from the store: flux x days x cell_area x land_fraction."""
    _, result, _ = run_dir
    ds = xr.open_zarr(result["store"], consolidated=True)
    assert ds.cell_area.attrs["units"] == "m2" and ds.land_fraction.attrs["standard_name"] == "land_area_fraction"
    days = (ds.time_bnds[:, 1] - ds.time_bnds[:, 0]) / np.timedelta64(1, "D")
    total = float((ds.sr * days * ds.cell_area * ds.land_fraction).sum()) / 1e15  # one whole year: Pg C yr-1
    reported = result["totals"].loc[2020, "sr"]  # the report stage's totals.csv (index: year)
    assert total == pytest.approx(reported, rel=1e-5)
    # and the sphere: the grid's cells add up to the area of its latitude band
    band = 2 * np.pi * 6_371_007.181**2 * (np.sin(np.deg2rad(60)) - np.sin(np.deg2rad(36))) * 40 / 360
    assert float(ds.cell_area.sum()) * ds.sizes["lon"] == pytest.approx(band, rel=1e-9)


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tool} is missing; .ci/run installs gdal-bin and netcdf-bin")
        pytest.skip(f"{tool} not installed (apt-get install gdal-bin netcdf-bin)")


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    """``fluxmap export --format netcdf`` on the run."""
    from fluxmap.cli import main

    cfg = run_dir[0]
    out = tmp_path_factory.mktemp("export")
    assert main(["export", "--workdir", cfg.workdir, "--out", str(out), "--format", "netcdf"]) == 0
    return out


def test_netcdf_export_is_cf_compliant_and_complete(run_dir, exported, tmp_path):
    import netCDF4

    store = xr.open_zarr(run_dir[1]["store"], consolidated=True)
    files = sorted(exported.glob("*.nc"))
    assert [f.name for f in files] == ["fluxmap_8day_nee_2020.nc", "fluxmap_8day_sr_2020.nc"]
    for f in files:
        assert cf_errors(f, tmp_path) == [], f.name
    sr = xr.open_dataset(exported / "fluxmap_8day_sr_2020.nc")
    assert {"sr", "sr_sd", "sr_p05", "sr_p95", "sr_aoa", "sr_missing_predictors", "zone", "cell_area",
            "land_fraction"} <= set(sr.variables) and "nee" not in sr  # fmt: skip
    xr.testing.assert_identical(sr.sr.load(), store.sr.load())  # values and attributes as in the store
    with netCDF4.Dataset(exported / "fluxmap_8day_sr_2020.nc") as nc:
        assert nc["sr"].filters()["zlib"] and nc["sr"].filters()["shuffle"]
        assert (
            nc["sr_aoa"].flag_values.dtype == np.int8 == nc["sr_aoa"].dtype and nc["zone"].flag_values.dtype == np.int8
        )
        assert not {"units", "calendar"} & set(nc["time_bnds"].ncattrs()) and "_FillValue" not in nc["lat"].ncattrs()


def test_zarr_store_compliance_errors_are_only_the_readers(run_dir, tmp_path):
    """On the Zarr store, compliance-checker reads through netCDF-C 4.10's NCZarr, which suppresses
    scalar Zarr arrays (Unidata/netcdf-c#3108), so it misses ``crs``; and it wants a .nc name. Any
    other error is ours."""
    errors = cf_errors(Path(run_dir[1]["store"]), tmp_path)
    ours = [e for e in errors if not e.startswith("§2.1 Filename") and "crs" not in e]
    assert ours == []
    assert any("grid mapping variable crs must exist" in e for e in errors)  # the reader's gap, still there


def test_gdal_places_the_pixels(run_dir, exported, tmp_path):
    """10 E 50 N (and other cells) land on the pixel xarray reads there, in the Zarr store (GDAL
    3.6 knows no CRS there: map coordinates) and in the netCDF export (WGS 84 coordinates); the
    export warps to Web Mercator."""
    _need("gdallocationinfo")
    store = run_dir[1]["store"]
    ds = xr.open_zarr(store, consolidated=True)
    nc = exported / "fluxmap_8day_sr_2020.nc"
    zarr_zone, nc_zone = f'ZARR:"{store}":/zone', f"NETCDF:{nc}:zone"
    points = [(10.2, 50.3), (-7.6, 37.4), (25.5, 58.8), (0.5, 45.5)]
    values = {int(ds.zone.sel(lon=x, lat=y, method="nearest")) for x, y in points}
    assert len(values) > 1  # the points tell pixels apart
    for x, y in points:
        want = str(int(ds.zone.sel(lon=x, lat=y, method="nearest")))
        for source, how in ((zarr_zone, "-geoloc"), (nc_zone, "-wgs84")):
            out = subprocess.run(["gdallocationinfo", "-valonly", how, source, str(x), str(y)],
                                 capture_output=True, text=True)  # fmt: skip
            assert out.returncode == 0 and out.stdout.strip() == want, (source, x, y, out.stdout, out.stderr)
    info = subprocess.run(["gdalinfo", nc_zone], capture_output=True, text=True).stdout
    assert 'ID["EPSG",4326]' in info and "Origin = (-10.000000000000000,60.000000000000000)" in info
    warped = subprocess.run(["gdalwarp", "-q", "-t_srs", "EPSG:3857", nc_zone, str(tmp_path / "w.tif")],
                            capture_output=True, text=True)  # fmt: skip
    assert warped.returncode == 0, warped.stderr


def test_netcdf_c_reads_the_store(run_dir):
    _need("ncdump")
    store = Path(run_dir[1]["store"]).resolve()
    out = subprocess.run(["ncdump", "-h", f"file://{store}#mode=nczarr,file"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "float sr(time, lat, lon)" in out.stdout and 'sr:units = "g m-2 d-1"' in out.stdout
    assert "time_bnds(time, nv)" in out.stdout and 'crs:grid_mapping_name = "latitude_longitude"' in out.stdout
    # The flags' values have the variable's type (netCDF-C 4.9 reads small JSON integers as bytes).
    assert "byte sr_missing_predictors(time, lat, lon)" in out.stdout and "byte zone(lat, lon)" in out.stdout
    assert "sr_missing_predictors:flag_values = 0b, 1b" in out.stdout and "zone:flag_values = 0b, 1b" in out.stdout


def test_predictions_equal_the_models_at_cells(run_dir):
    from fluxmap.io.models import load_model_set

    cfg, result, _ = run_dir
    ds = xr.open_zarr(result["store"], consolidated=True)
    ms = load_model_set("sr", Path(cfg.workdir) / "models" / "sr_8day", ensemble=False)
    from fluxmap.io.catalog import builtin_catalog, load_catalog
    from fluxmap.science.extract import to_periods
    from fluxmap.science.predict import predictor_cube

    cat = load_catalog(builtin_catalog("demo"), **dict(cfg.extract.catalog_params))
    cubes = {e: cat.open(e) for e in cfg.extract.entries}
    cubes["era5"] = to_periods(cubes["era5"])
    pc = predictor_cube(cubes)
    zone = ds.zone.load()
    cells = np.argwhere(zone.values > 0)[:: max(1, len(np.argwhere(zone.values > 0)) // 5)][:5]
    for r, c in cells:
        z = int(zone.values[r, c])
        model = ms.zone_models.get(z, ms.unified)
        x = pc[model.features].isel(lat=r, lon=c, time=[3, 30]).compute()
        cols = [np.broadcast_to(x[f].values, (2,)) for f in model.features]
        expect = model.predict(np.stack(cols, axis=1))
        np.testing.assert_allclose(ds.sr.isel(lat=r, lon=c, time=[3, 30]).values, expect, rtol=1e-5)
        x = pc[ms.unified.features].isel(lat=r, lon=c, time=[3, 30]).compute()
        cols = [np.broadcast_to(x[f].values, (2,)) for f in ms.unified.features]
        expect = ms.unified.predict(np.stack(cols, axis=1))
        np.testing.assert_allclose(ds.sr_unified.isel(lat=r, lon=c, time=[3, 30]).values, expect, rtol=1e-5)
    assert (
        np.isnan(ds.sr.values[:, zone.values == 0]).all() and np.isnan(ds.sr_unified.values[:, zone.values == 0]).all()
    )
    # NEE's zone models are trained on parts of the unified model's rows: the two maps differ where a
    # zone has its own model, and agree in the zones with too few physical sites for one.
    import json

    nee_dir = Path(cfg.workdir) / "models" / "nee_8day"
    nee = load_model_set("nee", nee_dir, ensemble=False)
    fallback = set(json.loads((nee_dir / "zones_without_model.json").read_text())["zones"])
    assert nee.zone_models and not fallback & set(nee.zone_models)
    for z in fallback & set(np.unique(zone.values[zone.values > 0]).tolist()):
        on = zone.values == z
        np.testing.assert_allclose(ds.nee.values[:, on], ds.nee_unified.values[:, on], rtol=1e-6)
    assert float(np.nanmax(np.abs(ds.nee.values - ds.nee_unified.values))) > 0.01


def test_blocks_without_land_are_never_written(run_dir):
    store = Path(run_dir[1]["store"])
    ds = xr.open_zarr(store, consolidated=True)
    land = ds.zone.values > 0
    ch = ds.sr.encoding["chunks"]
    written = {p.name for p in (store / "sr").iterdir() if not p.name.startswith(".")}
    for j in range(0, land.shape[0], ch[1]):
        for k in range(0, land.shape[1], ch[2]):
            name = f"0.{j // ch[1]}.{k // ch[2]}"
            assert (name in written) == bool(land[j : j + ch[1], k : k + ch[2]].any()), name


def _digest(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def test_interrupted_write_resumes_to_an_identical_store(run_dir, tmp_path):
    from fluxmap.io.store import block_counts, create_store, done_regions, fill_regions, land_regions, region_slices

    store = Path(run_dir[1]["store"])
    src = xr.open_zarr(store, consolidated=True)
    # The gridded variables stay lazy (read back from the finished store); the small ones load.
    template = src.assign_coords({c: src[c].load() for c in src.coords})
    for v in list(template.variables):
        gridded = template[v].dims == ("time", "lat", "lon")
        if not gridded:
            template[v] = template[v].load()
        keep = ("_FillValue", "dtype") if gridded else ()
        template[v].encoding = {k: template[v].encoding[k] for k in keep if k in template[v].encoding}
    chunks = {"time": 23, "lat": 8, "lon": 8}  # small regions, so the write can be cut in the middle
    regions = land_regions(region_slices(dict(src.sizes), chunks), block_counts(src.zone > 0, chunks), chunks)

    clean = tmp_path / "clean.zarr"
    create_store(clean, template, chunks=chunks)
    fill_regions(clean, template, regions, batch=2)

    broken = tmp_path / "broken.zarr"
    create_store(broken, template, chunks=chunks)

    class Killed(Exception):
        pass

    def kill_after_first_batch(done, total):
        raise Killed

    with pytest.raises(Killed):
        fill_regions(broken, template, regions, batch=2, progress=kill_after_first_batch)
    assert 0 < len(done_regions(broken)) < len(regions)
    assert len(regions) > 4
    rerun = fill_regions(broken, template, regions, batch=2)
    assert rerun == len(regions) - 2
    assert _digest(broken) == _digest(clean)
    assert xr.open_zarr(broken, consolidated=True).nee_missing_predictors.dtype == src.nee_missing_predictors.dtype


def test_totals_by_hand_on_a_tiny_grid():
    lat = np.array([0.5, -0.5])
    lon = np.array([10.5, 11.5])
    t = pd.DatetimeIndex(["2019-12-19", "2019-12-27"])  # an 8-day and the 5-day last period of 2019
    flux = xr.DataArray(
        np.array([[[1.0, 2.0], [3.0, np.nan]], [[1.0, 1.0], [1.0, 1.0]]]),
        dims=("time", "lat", "lon"),
        coords={"time": t, "lat": lat, "lon": lon},
    )
    land = xr.DataArray(np.array([[1.0, 0.5], [1.0, 1.0]]), dims=("lat", "lon"), coords={"lat": lat, "lon": lon})
    r = 6_371_007.181
    a = r**2 * np.deg2rad(1.0) * (np.sin(np.deg2rad(1.0)) - np.sin(0.0))  # both rows have the same area
    grams = 8 * a * (1.0 * 1 + 2.0 * 0.5 + 3.0 * 1) + 5 * a * (1 + 0.5 + 1 + 1)
    tot = aggregate.annual_totals(flux, land, flagged=flux > 2.5)
    # Two periods of 2019 (13 of its 365 days): their total, and that total annualized, labelled so.
    assert tot.total_pg_c.loc[2019] == pytest.approx(grams / 1e15, rel=1e-12)
    assert (tot.days.loc[2019], tot.time_fraction.loc[2019]) == (13, pytest.approx(13 / 365))
    assert tot.total_pg_c_yr.loc[2019] == pytest.approx(grams / 1e15 * 365 / 13, rel=1e-12)
    assert cell_area(lat, 1.0)[0] == pytest.approx(a)
    covered = (8 * a * 2.5 + 5 * a * 3.5) / (8 * a * 3.5 + 5 * a * 3.5)
    assert tot.covered_fraction.loc[2019] == pytest.approx(covered)
    # Every cell had a value in some period; the flagged part is the one cell-period above 2.5.
    assert tot.land_km2_never_predicted.loc[2019] == 0.0
    assert tot.flagged_pg_c_yr.loc[2019] == pytest.approx(8 * a * 3.0 / 1e15 * 365 / 13, rel=1e-12)
    # A cell with land but no value in any period is reported, not silently counted as zero.
    gap = aggregate.annual_totals(flux.where(~((flux.lat == -0.5) & (flux.lon == 11.5))), land)
    assert gap.land_km2_never_predicted.loc[2019] == pytest.approx(a / 1e6, rel=1e-9)
    part = aggregate.partition(tot, tot.assign(total_pg_c_yr=tot.total_pg_c_yr * 0.6))
    assert part.ra.loc[2019] == pytest.approx(0.4 * tot.total_pg_c_yr.loc[2019])
    assert part.rh_sr_ratio.loc[2019] == pytest.approx(0.6)


def test_figures_of_a_large_grid_are_drawn_from_a_small_lazy_view(tmp_path):
    """A 500 m global field cannot be loaded to draw it: the figure's view is block means (or, for
    zones, block centres) computed chunk by chunk, and a figure refuses a field too large to draw."""
    import warnings

    import dask
    import dask.array as dsa

    from fluxmap.io.figures import map_figure

    rng = np.random.default_rng(0)
    a = rng.normal(size=(1003, 2005)).astype("float32")
    a[:40] = np.nan  # a band without data: whole blocks stay NaN, partly covered blocks average the rest
    a[41, :7] = np.nan
    lat, lon = np.linspace(-89.9, 89.9, 1003), np.linspace(-179.9, 179.9, 2005)
    field = xr.DataArray(dsa.from_array(a, chunks=(100, 300)), dims=("lat", "lon"), coords={"lat": lat, "lon": lon})

    view = aggregate.display_field(field, max_cells=500)  # f = ceil(2005 / 500) = 5
    assert view.shape == (201, 401) and isinstance(view.data, dsa.Array)  # nothing computed yet
    padded = np.full((1005, 2005), np.nan, "float32")
    padded[:1003] = a
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's "mean of empty slice" for the NaN band
        expected = np.nanmean(padded.reshape(201, 5, 401, 5), axis=(1, 3))
    np.testing.assert_allclose(view.values, expected, rtol=1e-6)
    assert np.isnan(view.values[:8]).all() and np.isfinite(view.values[8]).all()
    np.testing.assert_allclose(view.lat.values[:2], [lat[:5].mean(), lat[5:10].mean()])
    assert view.lat.values[-1] == pytest.approx(lat[1000:].mean())  # the padded last block: its 3 rows

    zones = xr.DataArray(
        dsa.from_array((np.arange(2005)[None] // 401 + np.zeros((1003, 1), int)).astype("uint8"), chunks=(100, 300)),
        dims=("lat", "lon"),
        coords={"lat": lat, "lon": lon},
    )
    zview = aggregate.display_field(zones, max_cells=500, categorical=True)
    assert zview.shape == (201, 401) and set(np.unique(zview.values)) <= set(range(5))  # no averaged categories
    np.testing.assert_array_equal(zview.values, zones.values[2::5, 2::5])
    small = zones.isel(lat=slice(0, 300), lon=slice(0, 400))
    assert aggregate.display_field(small, max_cells=500) is small  # already small enough: drawn as it is

    with dask.config.set(scheduler="synchronous"):
        assert map_figure(view, tmp_path / "m.png", title="t", units="u").is_file()
    big = xr.DataArray(dsa.zeros((2100, 2100), chunks=500), dims=("lat", "lon"), name="sr")
    with pytest.raises(ValueError, match=r"big\.png: sr has 4,410,000 cells.*display_field"):
        map_figure(big, tmp_path / "big.png", title="t", units="u")


def test_report_and_totals(run_dir):
    cfg, result, log = run_dir
    out = Path(cfg.workdir) / "predict"
    report = (out / "report.md").read_text()
    assert "Global totals" in report and "known truth" in report and "map_sr_mean.png" in report
    for f in (
        "map_sr_mean.png",
        "map_sr_sd.png",
        "map_zones.png",
        "latitudinal_profiles.png",
        "totals.csv",
        "latitudinal_profile_sr.csv",
        "error_vs_truth.csv",
        "map_sr_zone_minus_unified.png",
    ):
        assert (out / f).is_file(), f
    err = pd.read_csv(out / "error_vs_truth.csv").set_index("target")
    assert np.isfinite(err.loc["sr", "r2"]) and err.loc["sr", "truth_total_pg_c_yr"] > 0
    assert np.isfinite(err.loc["sr", "r2_unified"]) and err.loc["nee", "r2_unified"] != err.loc["nee", "r2"]
    totals = pd.read_csv(out / "totals.csv", index_col=0)
    assert set(totals.columns) >= {"sr", "sr_unified", "nee", "nee_unified"}
    # The unified map's totals: the same reduction of its own variable.
    from fluxmap.io.catalog import builtin_catalog, load_catalog

    lf = load_catalog(builtin_catalog("demo"), **dict(cfg.extract.catalog_params)).open("static")["land_fraction"]
    ds = xr.open_zarr(result["store"], consolidated=True)
    expect = aggregate.annual_totals(ds.sr_unified, lf).total_pg_c_yr
    np.testing.assert_allclose(totals.sr_unified.values, expect.values, rtol=1e-6)
    assert err.loc["sr", "unified_total_pg_c_yr"] == pytest.approx(totals.sr_unified.mean())
    assert (totals.nee_unified - totals.nee).abs().max() > 0
    assert "unified model's" in report and "map_sr_zone_minus_unified.png" in report
    # The same errors within each true zone of the world: the zones partition the compared cells.
    by_zone = pd.read_csv(out / "error_vs_truth_by_zone.csv")
    for v in ("sr", "nee"):
        part = by_zone[by_zone.target == v]
        assert set(part.true_zone) <= {1, 2, 3, 4} and len(part) >= 2
        assert part.cells_x_periods.sum() == err.loc[v, "cells_x_periods"]
        assert part[["r2", "rmse_g_c_m2_d", "rmse_unified_g_c_m2_d"]].notna().all().all()
    # The pooled RMSE follows from the zones' (cell-weighted mean of squares).
    nee = by_zone[by_zone.target == "nee"]
    pooled = np.sqrt((nee.rmse_g_c_m2_d**2 * nee.cells_x_periods).sum() / nee.cells_x_periods.sum())
    assert pooled == pytest.approx(err.loc["nee", "rmse_g_c_m2_d"], rel=1e-4)
    assert "within each of the world's true zones" in report
    assert any(m.startswith("predict:") for m in log)
    # The zones mapped without a model of their own: in the store's attributes and the report.
    import json

    unmodelled = json.loads(ds.attrs["fluxmap_zones_without_model"])
    assert set(unmodelled) == {"sr:8day", "nee:8day"}
    assert all(set(v) >= {"zones", "mapped_with", "physical_sites"} for v in unmodelled.values())
    assert "## Zones without a model of their own" in report
    listed = sum(len(v["zones"]) for v in unmodelled.values())
    if listed:
        table = pd.read_csv(out / "zones_without_model.csv")
        assert len(table) == listed and (table.land_km2 > 0).all() and table.share_of_land.between(0, 1).all()
    else:
        assert "None: every zone has a validated model." in report
    # Totals say which part of the year they cover and what they leave out.
    assert (totals.time_fraction == 1.0).all() and (totals.days.isin([365, 366])).all()
    assert {"sr_from_missing_predictors", "land_km2_never_predicted_max"} <= set(totals.columns)
    # The spread and what the totals rest on, in the table and in words.
    days = (ds.time_bnds[:, 1] - ds.time_bnds[:, 0]) / np.timedelta64(1, "D")
    w = ds.cell_area * ds.land_fraction.fillna(0.0)
    upper = float((ds.sr_sd * days * w).sum()) / 1e15  # the members' SD summed over cells (one whole year)
    assert totals.sr_sd_upper_bound.iloc[0] == pytest.approx(upper, rel=1e-5) and upper > 0
    flagged = ds.sr.notnull() & (ds.sr_missing_predictors == 1)
    share = float((flagged * days * w).sum() / (days * w).sum())  # of all the land area-days
    assert totals.sr_missing_predictors_area_fraction.iloc[0] == pytest.approx(share, rel=1e-5)
    assert f"{share:.0%} of the land area-days predicted with a predictor missing" in report
    assert "ensemble SD at most" in report and "## Opening the output" in report
    assert f"Licence of the maps: {cfg.metadata.license}" in report
    assert "| sr_aoa " in report and "xr.open_zarr(" in report  # the variable list, the three lines


def test_the_report_says_plainly_what_disagrees_with_the_truth():
    from fluxmap.io.report import truth_disagreements

    truth = pd.DataFrame(
        {"predicted_total_pg_c_yr": [84.2, 63.0, 2.7], "truth_total_pg_c_yr": [82.8, 47.8, -5.6]},
        index=pd.Index(["sr", "rh", "nee"], name="target"),
    )
    lines = truth_disagreements(truth)
    assert "**nee: the sign is wrong.**" in "\n".join(lines) and "+2.70" in "\n".join(lines)
    assert any("**rh: the total is 32% too high**" in line for line in lines)
    assert not any("sr:" in line for line in lines)  # 1.7 % off: within 10 %
    assert truth_disagreements(truth.loc[["sr"]])[0].startswith("Every total is within 10%")


def test_500m_subregion_end_to_end(run_dir, tmp_path):
    """The models trained on the 1 deg world predict a 500 m (1/240 deg) sub-region with the same code."""
    import dataclasses

    from fluxmap.config import DemoConfig
    from fluxmap.demo import build_world
    from fluxmap.testing import predict_and_report

    cfg, _, _ = run_dir
    world = build_world(
        tmp_path / "w500",
        DemoConfig(
            resolution=1 / 240,
            bbox=(8.0, 46.5, 9.0, 47.0),
            years=(2020,),
            n_srdb_sites=4,
            n_cosore_sites=2,
            n_fluxnet_sites=2,
            n_halfhourly=1,
        ),
    )
    work = tmp_path / "work"
    shutil.copytree(Path(cfg.workdir) / "models", work / "models")
    cfg500 = dataclasses.replace(
        cfg,
        workdir=str(work),
        extract=dataclasses.replace(cfg.extract, catalog_params=(("DEMO_ROOT", str(world.root)),)),
    )
    result = predict_and_report(cfg500, log=lambda m: None)
    ds = xr.open_zarr(result["store"], consolidated=True)
    assert ds.sizes["lat"] == 120 and ds.sizes["lon"] == 240
    assert float(ds.lat[0] - ds.lat[1]) == pytest.approx(1 / 240)
    land = ds.zone.values > 0
    assert land.mean() > 0.5 and np.isfinite(ds.sr.values[:, land]).mean() > 0.99
    err = pd.read_csv(work / "predict" / "error_vs_truth.csv").set_index("target")
    assert np.isfinite(err.loc["sr", "rmse_g_c_m2_d"])


def test_rerun_resumes_instead_of_rewriting(run_dir):
    from fluxmap.testing import predict_and_report

    cfg, result, log0 = run_dir
    # The first run already used the models stage's zone map (same zones, catalog and chunks).
    models_map = Path(cfg.workdir) / "models" / "zone_map.zarr"
    assert any("zone map reused (same inputs and zones)" in m and str(models_map) in m for m in log0), log0
    assert not (Path(cfg.workdir) / "predict" / "zone.zarr").exists()
    before = {p: p.stat().st_mtime_ns for p in Path(result["store"]).glob("sr/*")}
    log: list[str] = []
    zone_before = {p: p.stat().st_mtime_ns for p in models_map.rglob("*")}
    predict_and_report(cfg, log=log.append)
    assert any("0 regions written" in m for m in log), log
    assert any("sources reused (same inputs)" in m for m in log), log
    assert {p: p.stat().st_mtime_ns for p in Path(result["store"]).glob("sr/*")} == before
    assert {p: p.stat().st_mtime_ns for p in models_map.rglob("*")} == zone_before


def test_changed_zones_invalidate_the_zone_map(run_dir, tmp_path):
    import dataclasses

    from fluxmap.stages.predict import predict_stage

    cfg, result, _ = run_dir
    work = tmp_path / "work"
    shutil.copytree(Path(cfg.workdir) / "models", work / "models")
    shutil.copytree(Path(cfg.workdir) / "predict", work / "predict")
    zones = work / "models" / "zones.json"
    zones.write_text(zones.read_text() + "\n")  # same zones, different file: the checksum changes
    log: list[str] = []
    written = predict_stage(dataclasses.replace(cfg, workdir=str(work)), log=log.append)
    assert any("zone map ready" in m for m in log), log
    assert written["zone_map"] == work / "predict" / "zone.zarr"
    a = xr.open_zarr(Path(cfg.workdir) / "models" / "zone_map.zarr", consolidated=True).zone.values
    np.testing.assert_array_equal(a, xr.open_zarr(written["zone_map"], consolidated=True).zone.values)
    # The store's zone variable is the map used.
    np.testing.assert_array_equal(a, xr.open_zarr(written["store"], consolidated=True).zone.values)


def test_model_references_keep_tasks_small_and_predict_the_same(run_dir, tmp_path):
    from distributed import Client, LocalCluster

    from fluxmap.io.catalog import builtin_catalog, load_catalog
    from fluxmap.io.models import ModelFiles, load_model_set
    from fluxmap.science.extract import to_periods
    from fluxmap.science.predict import predict_cube, predictor_cube

    cfg, result, _ = run_dir
    cat = load_catalog(builtin_catalog("demo"), **dict(cfg.extract.catalog_params))
    cubes = {e: cat.open(e) for e in cfg.extract.entries}
    cubes["era5"] = to_periods(cubes["era5"])
    pc = predictor_cube(cubes).isel(time=slice(0, 23))
    zone = xr.open_zarr(result["store"], consolidated=True).zone
    folder = Path(cfg.workdir) / "models" / "nee_8day"
    ms = load_model_set("nee", folder, ensemble=True)
    ref = ModelFiles.of("nee", folder, ensemble=True)
    local_lazy = predict_cube(pc, zone, ms)
    local = local_lazy.compute()
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c,
        Client(c),
    ):
        remote = predict_cube(pc, zone, ref)
        graph = remote.__dask_graph__()
        remote = remote.compute()
    xr.testing.assert_identical(local, remote)
    # The unified model's map only when asked for (the stage asks by default: predict.unified).
    assert "nee_unified" not in local
    both = predict_cube(pc, zone, ModelFiles.of("nee", folder, ensemble=True, unified_map=True)).compute()
    xr.testing.assert_identical(both.drop_vars("nee_unified"), local)
    stored = xr.open_zarr(result["store"], consolidated=True).nee_unified.isel(time=slice(0, 23))
    np.testing.assert_array_equal(both.nee_unified.values, stored.values)
    # With the models themselves every block task carries them; with the reference none does.
    import cloudpickle

    model_bytes = len(cloudpickle.dumps(ms))

    def biggest_task(g):
        return max(len(cloudpickle.dumps(task)) for task in dict(g).values())

    assert biggest_task(local_lazy.__dask_graph__()) >= model_bytes
    assert biggest_task(graph) < model_bytes / 10
    # A model file changed after the graph was built is refused, not mixed in.
    copy = tmp_path / "nee_8day"
    shutil.copytree(folder, copy)
    stale = ModelFiles.of("nee", copy, ensemble=True)
    (copy / "model_unified.json").write_text((copy / "model_unified.json").read_text() + " ")
    with pytest.raises(RuntimeError, match="changed after the prediction graph was built"):
        stale.load()


@contextlib.contextmanager
def loopback_cluster(tmp_path: Path, n_workers: int = 2):
    """A `dask scheduler` and ``n_workers`` `dask worker` processes (each under its nanny) on
    127.0.0.1, launched as separate processes; yields the scheduler address."""
    import json
    import sys
    import time

    sf = tmp_path / "scheduler.json"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler = [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0"]
    procs = [subprocess.Popen([*scheduler, "--no-dashboard", "--scheduler-file", str(sf)], **quiet)]
    try:
        for _ in range(150):
            if sf.is_file() and sf.stat().st_size:
                break
            time.sleep(0.2)
        address = json.loads(sf.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        worker = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--nworkers", "1"]
        for i in range(n_workers):
            args = ["--no-dashboard", "--host", "127.0.0.1", "--memory-limit", "3GB", "--name", f"w{i}"]
            procs.append(subprocess.Popen([*worker, *args], **quiet))
        yield address
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


def _remote_copy(cfg, tmp_path: Path):
    import dataclasses

    work = tmp_path / "work"
    shutil.copytree(Path(cfg.workdir) / "models", work / "models")
    return dataclasses.replace(cfg, workdir=str(work))


def test_pipeline_on_a_real_loopback_cluster_equals_the_local_run(run_dir, tmp_path):
    """The prediction stage on a real multi-process cluster writes the same store as the local run."""
    from fluxmap.cluster import client_for
    from fluxmap.config import ClusterConfig
    from fluxmap.testing import predict_and_report

    cfg, result, _ = run_dir
    remote_cfg = _remote_copy(cfg, tmp_path)
    with loopback_cluster(tmp_path) as address, client_for(ClusterConfig(kind="address", address=address)) as client:
        client.wait_for_workers(2, timeout=60)
        assert len(client.scheduler_info()["workers"]) == 2
        remote = predict_and_report(remote_cfg, log=lambda m: None)
    _assert_same_store(result["store"], remote["store"])


@pytest.mark.parametrize(
    # SLURM over TLS, PBS over plain TCP: each batch system and each protocol once (CI's time).
    "kind, directive, tls",
    [("pbs", "#PBS", False), ("slurm", "#SBATCH", True)],
)
def test_pipeline_on_batch_jobs_equals_the_local_run(run_dir, tmp_path, batch_system, request, kind, directive, tls):
    """``cluster: {kind: slurm}`` (and pbs) end to end on this machine: SLURM for real (a one-node
    cluster, ``sbatch``/``squeue``/``scancel``), PBS emulated (stand-ins for ``qsub``/``qdel``; see
    the ``batch_system`` fixture). fluxmap's dask-jobqueue cluster submits its rendered job scripts,
    they run as batch jobs (the exports, then the nanny and a worker that finds the scheduler over
    the configured interface; with TLS files, over TLS with the certificate given on its command
    line), one worker in each job, the prediction stage runs on those workers and writes the local
    run's store, and closing the cluster cancels the jobs."""
    import dataclasses
    import sys

    from fluxmap.cluster import WORKER_ENV, client_for
    from fluxmap.testing import predict_and_report

    jobs, cluster = batch_system(kind)
    cfg, result, _ = run_dir
    remote_cfg = _remote_copy(cfg, tmp_path)
    files = request.getfixturevalue("tls_files") if tls else {}
    cluster = dataclasses.replace(cluster, n_workers=2, walltime="00:30:00", **files)
    protocol = "tls" if tls else "tcp"
    remote_cfg = dataclasses.replace(remote_cfg, cluster=cluster)
    with client_for(remote_cfg.cluster) as client:
        client.wait_for_workers(2, timeout=120)
        workers = client.scheduler_info()["workers"]
        assert client.scheduler.address.startswith(f"{protocol}://127.0.0.1:")
        assert len(workers) == 2 and all(w.startswith(f"{protocol}://127.0.0.1:") for w in workers)
        env = client.run(lambda: {k: os.environ.get(k) for k in WORKER_ENV})
        assert all(e == WORKER_ENV for e in env.values()), env
        worker_jobs = set(jobs.of_workers(client).values())
        remote = predict_and_report(remote_cfg, log=lambda m: None)
    ids = jobs.submitted()
    assert len(ids) == 2 and worker_jobs == set(ids), (ids, worker_jobs)  # one worker in each job
    for job in ids:
        text = jobs.script(job)
        assert directive in text and "00:30:00" in text and "--interface lo" in text
        assert f"{sys.executable} -m distributed.cli.dask_worker {protocol}://127.0.0.1:" in text
        flags = {"--tls-ca-file": "tls_ca_file", "--tls-cert": "tls_cert", "--tls-key": "tls_key"}
        assert all(f"{flag} {files[k]}" in text for flag, k in flags.items()) if tls else "--tls-" not in text
    assert jobs.cancelled() == set(ids)
    jobs.assert_ended(ids)
    _assert_same_store(result["store"], remote["store"])


@contextlib.contextmanager
def operator_pods(spec: dict, logs: Path):
    """The pods the Dask operator makes of a DaskCluster resource, run as processes on this machine.

    The scheduler Deployment, its Service, the default worker group and one worker Deployment per
    replica come from the operator's own builders (``dask_kubernetes.operator.controller``). Each
    pod's container then runs as the kubelet runs it: its ``args`` as the command (the image has no
    entrypoint), ``$(VAR)`` references expanded from the container's env, in that env; the image's
    executables are this environment's. Only the network is emulated: the service's DNS name is
    127.0.0.1 and its ports are free local ports, so the scheduler gets ``--host 127.0.0.1 --port P
    --dashboard-address 127.0.0.1:Q`` appended (the last value of an option wins) and the workers'
    ``DASK_SCHEDULER_ADDRESS`` points there. Waits for the scheduler pod's readiness probe; yields
    the scheduler address, the Service and the worker Deployments."""
    import re
    import subprocess
    import sys
    import time
    import urllib.request
    import uuid

    from dask_kubernetes.operator.controller import controller as op
    from distributed.utils import open_port

    name, namespace = spec["metadata"]["name"], spec["metadata"]["namespace"]
    scheduler = op.build_scheduler_deployment_spec(name, spec["spec"]["scheduler"]["spec"], {}, {})
    service = op.build_scheduler_service_spec(name, spec["spec"]["scheduler"]["service"], {}, {})
    group = op.build_default_worker_group_spec(name, spec["spec"]["worker"], {}, {})
    workers = [
        op.build_worker_deployment_spec(
            group["metadata"]["name"], namespace, name, uuid.uuid4().hex[:10], group["spec"]["worker"]["spec"], {}, {}
        )
        for _ in range(group["spec"]["worker"]["replicas"])
    ]
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    local = {"tcp-comm": open_port("127.0.0.1"), "http-dashboard": open_port("127.0.0.1")}
    dns = f"tcp://{service['metadata']['name']}.{namespace}.svc.cluster.local:{ports['tcp-comm']['port']}"
    address = f"tcp://127.0.0.1:{local['tcp-comm']}"
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    procs = []

    def run(deployment: dict, extra: list[str], **overrides: str) -> None:
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert "command" not in container
        env = {e["name"]: e["value"] for e in container.get("env", [])}
        if "DASK_SCHEDULER_ADDRESS" in env:
            assert env["DASK_SCHEDULER_ADDRESS"] == dns  # what the operator gives the pods
        env.update(overrides)
        args = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in container["args"]]
        out = open(logs / f"{deployment['metadata']['name']}.log", "wb")  # noqa: SIM115 (the child has its own copy)
        procs.append(
            subprocess.Popen(
                [*args, *extra],
                env={**os.environ, "PATH": path, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        out.close()

    try:
        run(
            scheduler,
            ["--host", "127.0.0.1", "--port", str(local["tcp-comm"])]
            + ["--dashboard-address", f"127.0.0.1:{local['http-dashboard']}"],
        )
        (container,) = scheduler["spec"]["template"]["spec"]["containers"]
        probe = container["readinessProbe"]["httpGet"]
        url = f"http://127.0.0.1:{local[probe['port']]}{probe['path']}"
        for _ in range(300):
            assert procs[0].poll() is None, (logs / f"{scheduler['metadata']['name']}.log").read_text()
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    if r.status == 200 and r.read() == b"ok":
                        break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            raise AssertionError(f"the scheduler pod never became ready ({url})")
        for w in workers:
            run(w, [], DASK_SCHEDULER_ADDRESS=address)
        yield address, service, workers
    finally:
        import signal

        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def test_pipeline_on_the_kubernetes_operators_pods_equals_the_local_run(run_dir, tmp_path):
    """``cluster: {kind: kubernetes}`` as far as it runs without Kubernetes: fluxmap's rendered
    DaskCluster, turned into pods by the Dask operator's own builders, each pod's command run for
    real (see :func:`operator_pods`). The scheduler passes its readiness probe, the workers find it
    at the address the operator gives them, one per pod named as its pod (the operator's scale-down
    retires workers by that name), with the pod's CPUs as threads, its memory as their limit and the
    worker environment; the prediction stage on them writes the local run's store in the workdir on
    the mounted volume."""
    from box import Box
    from dask.utils import parse_bytes
    from dask_kubernetes.operator.networking import _get_port

    from fluxmap.cluster import WORKER_ENV, check_shared_workdir, client_for, render_kubernetes
    from fluxmap.config import ClusterConfig
    from fluxmap.testing import predict_and_report

    cfg, result, _ = run_dir
    volume = tmp_path / "volume"
    remote_cfg = _remote_copy(cfg, volume)
    cluster = ClusterConfig(
        kind="kubernetes", n_workers=2, cores=1, memory="3GB", volume_claim="shared", mount_path=str(volume)
    )
    check_shared_workdir(cluster, remote_cfg.workdir)
    spec = render_kubernetes(cluster)
    assert spec["spec"]["worker"]["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] == str(volume)
    logs = tmp_path / "pods"
    logs.mkdir()
    with (
        operator_pods(spec, logs) as (address, service, deployments),
        client_for(ClusterConfig(kind="address", address=address)) as client,
    ):
        client.wait_for_workers(2, timeout=120)
        workers = client.scheduler_info()["workers"].values()
        assert sorted(w["name"] for w in workers) == sorted(d["metadata"]["name"] for d in deployments)
        assert all(w["nthreads"] == 1 and w["memory_limit"] == parse_bytes("3GB") for w in workers)
        env = client.run(lambda: {k: os.environ.get(k) for k in WORKER_ENV})
        assert all(e == WORKER_ENV for e in env.values()), env
        assert {_get_port(Box(service), p) for p in ("tcp-comm", "http-dashboard")} == {8786, 8787}
        remote = predict_and_report(remote_cfg, log=lambda m: None)
    _assert_same_store(result["store"], remote["store"])


def _kill_a_busy_worker(client, store: Path, kill, stop, killed: dict) -> None:
    """Once the first region is in ``store``, ``kill(worker_address)`` the first worker seen running
    a region task (reads, prediction and writes of one region); what was killed goes to ``killed``."""
    import time

    from fluxmap.io.store import done_regions

    while not stop.is_set() and not done_regions(store):
        time.sleep(0.05)
    while not stop.is_set():
        processing = client.processing()
        busy = [w for w, tasks in processing.items() if any("_write_region" in str(k) for k in tasks)]
        if busy:
            killed["done_before"] = len(done_regions(store))
            killed["tasks"] = [str(k) for k in processing[busy[0]]]
            kill(busy[0])
            killed["worker"] = busy[0]
            return
        time.sleep(0.01)


def _predict_while_killing(client, cfg, kill) -> tuple[dict, dict]:
    """The prediction stage on ``client``'s cluster while :func:`_kill_a_busy_worker` kills a worker."""
    import threading

    from fluxmap.testing import predict_and_report

    store = Path(cfg.workdir) / "predict" / "fluxmap.zarr"
    killed: dict[str, object] = {}
    stop = threading.Event()
    killer = threading.Thread(target=_kill_a_busy_worker, args=(client, store, kill, stop, killed), daemon=True)
    killer.start()
    try:
        remote = predict_and_report(cfg, log=lambda m: None)
    finally:
        stop.set()
        killer.join(timeout=10)
    assert "worker" in killed, "no worker was killed: the run finished before any block task was seen running"
    return remote, killed


def _assert_same_store(a_store: Path, b_store: Path) -> None:
    from fluxmap.io.store import done_regions

    a = xr.open_zarr(a_store, consolidated=True)
    b = xr.open_zarr(b_store, consolidated=True)
    assert done_regions(a_store) == done_regions(b_store)
    for v in ("sr", "nee", "sr_sd", "sr_missing_predictors", "zone"):
        np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=v)


def test_a_worker_killed_during_prediction_changes_nothing(run_dir, tmp_path):
    """SIGKILL one worker process while it predicts a region (one task: reads, prediction, writes):
    its nanny starts a new one, the lost region is recomputed from files, the run completes and
    the store equals the clean run's."""
    import dataclasses
    import signal

    from fluxmap.cluster import client_for
    from fluxmap.config import ClusterConfig
    from fluxmap.io.store import done_regions

    cfg, result, _ = run_dir
    remote_cfg = _remote_copy(cfg, tmp_path)
    remote_cfg = dataclasses.replace(remote_cfg, predict=dataclasses.replace(remote_cfg.predict, regions_per_batch=1))
    n_regions = len(done_regions(result["store"]))
    with loopback_cluster(tmp_path) as address, client_for(ClusterConfig(kind="address", address=address)) as client:
        client.wait_for_workers(2, timeout=60)
        pids = client.run(os.getpid)
        remote, killed = _predict_while_killing(client, remote_cfg, lambda w: os.kill(pids[w], signal.SIGKILL))
        after = client.run(os.getpid)
    assert 0 < killed["done_before"] < n_regions, killed
    assert pids[killed["worker"]] not in after.values()  # that process is gone; its nanny started another
    _assert_same_store(result["store"], remote["store"])


def test_a_batch_job_lost_during_prediction_changes_nothing(run_dir, tmp_path, batch_system):
    """A whole SLURM job (nanny and worker) SIGKILLed while its worker predicts a region, as when a
    node fails or the job is preempted (``scancel --signal=KILL`` on the real one-node SLURM):
    nothing restarts it, the other job's worker recomputes the lost region, the run completes and
    the store equals the clean run's."""
    import dataclasses

    from fluxmap.cluster import client_for
    from fluxmap.io.store import done_regions

    jobs, cluster = batch_system("slurm")
    cfg, result, _ = run_dir
    remote_cfg = _remote_copy(cfg, tmp_path)
    remote_cfg = dataclasses.replace(
        remote_cfg,
        predict=dataclasses.replace(remote_cfg.predict, regions_per_batch=1),
        cluster=dataclasses.replace(cluster, n_workers=2),
    )
    n_regions = len(done_regions(result["store"]))
    with client_for(remote_cfg.cluster) as client:
        client.wait_for_workers(2, timeout=120)
        job_of = jobs.of_workers(client)
        assert len(set(job_of.values())) == 2, job_of
        remote, killed = _predict_while_killing(client, remote_cfg, lambda w: jobs.kill(job_of[w]))
        survivors = client.scheduler_info()["workers"]
    assert 0 < killed["done_before"] < n_regions, killed
    assert killed["worker"] not in survivors and len(survivors) == 1
    jobs.assert_ended([job_of[killed["worker"]]])
    _assert_same_store(result["store"], remote["store"])


def test_a_corrupt_input_chunk_is_masked_and_reported(run_dir, tmp_path):
    """The first time chunk of every MODIS-like product overwritten with its fill value: the run
    finishes, the cells are flagged in *_missing_predictors, and the blocks are reported by position."""
    import dataclasses

    import zarr

    from fluxmap.testing import predict_and_report

    cfg, _, _ = run_dir
    world = Path(dict(cfg.extract.catalog_params)["DEMO_ROOT"])
    broken = tmp_path / "world"
    shutil.copytree(world, broken)
    fills = {
        "mod11a2": {"LST_Day_1km": 0, "LST_Night_1km": 0},
        "mod09a1": {f"sur_refl_b0{b}": -28672 for b in range(1, 8)},
        "mod15a2h": {"Lai_500m": 255, "Fpar_500m": 255},
        "mod17a2h": {"Gpp_500m": 32767},
        "mod16a2": {"ET_500m": 32767},
    }
    for product, variables in fills.items():
        for var, fill in variables.items():
            arr = zarr.open_array(str(broken / "modis" / f"{product}.zarr" / var), mode="r+")
            arr[0:23] = fill
    work = tmp_path / "work"
    shutil.copytree(Path(cfg.workdir) / "models", work / "models")
    cfg2 = dataclasses.replace(
        cfg, workdir=str(work), extract=dataclasses.replace(cfg.extract, catalog_params=(("DEMO_ROOT", str(broken)),))
    )
    log: list[str] = []
    result = predict_and_report(cfg2, log=log.append)
    ds = xr.open_zarr(result["store"], consolidated=True)
    land = ds.zone.values > 0
    assert np.isfinite(ds.sr.values[:, land]).all()  # the run finished and predicted every land cell
    assert ds.sr_missing_predictors.isel(time=slice(0, 23)).values[:, land].mean() > 0.95
    clean = xr.open_zarr(run_dir[1]["store"], consolidated=True)
    np.testing.assert_array_equal(
        ds.sr_missing_predictors.isel(time=slice(23, 46)).values,
        clean.sr_missing_predictors.isel(time=slice(23, 46)).values,
    )
    assert clean.sr_missing_predictors.values[:, land].mean() < 0.9  # ordinary cloud gaps stay below the bar
    suspect = pd.read_csv(work / "predict" / "suspect_blocks.csv")
    assert set(suspect.time) == {"0:23"} and {"sr:8day", "nee:8day"} <= set(suspect.target)
    assert any("WARNING" in m and "time 0:23" in m for m in log)


def test_accuracy_against_the_demo_truth(run_dir):
    """Accuracy bounded by the known truth, not only checked for shape: a model that predicts a
    constant has R2 <= 0 at the sites and on the map and fails here.

    The bounds come from ``python benchmarks/truth_bounds.py`` (2026-12-03): this test's pipeline on
    the tiny world for 10 world seeds; each bound is the worst value over the seeds widened by half
    the range across them (e.g. SR map R2 0.646-0.865 over the seeds: bound 0.646 - 0.110 = 0.537).
    This world's seed (20240501) gave 0.917 / 0.772 / 1.066 (SR sites R2, map R2, total ratio) and
    0.682 / 0.757 / +0.05 Pg (NEE)."""
    cfg, result, _ = run_dir
    summary = pd.read_csv(Path(cfg.workdir) / "models" / "summary.csv").set_index("target")
    err = result["error_vs_truth"]
    sr, nee = summary.loc["sr:8day"], summary.loc["nee:8day"]
    assert sr.truth_r2_unified >= 0.267 and sr.truth_r2_zone >= 0.455
    assert nee.truth_r2_unified >= 0.347 and nee.truth_r2_zone >= 0.426
    assert err.loc["sr", "r2"] >= 0.537 and err.loc["sr", "r2_unified"] >= 0.691
    assert err.loc["nee", "r2"] >= 0.312 and err.loc["nee", "r2_unified"] >= 0.278
    assert 0.899 <= err.loc["sr", "predicted_total_pg_c_yr"] / err.loc["sr", "truth_total_pg_c_yr"] <= 1.276
    assert -0.793 <= err.loc["nee", "predicted_total_pg_c_yr"] - err.loc["nee", "truth_total_pg_c_yr"] <= 1.021


def test_maps_take_a_projection_coastlines_and_discrete_zones(tmp_path):
    import cartopy.crs as ccrs

    from fluxmap.io.figures import _projection, map_figure

    assert isinstance(_projection(np.arange(-179.5, 180), np.arange(-59.5, 80))[0], ccrs.Robinson)
    assert isinstance(_projection(np.arange(-9.5, 30), np.arange(36.5, 60))[0], ccrs.PlateCarree)
    lat, lon = np.arange(36.5, 60), np.arange(-9.5, 30)
    zone = xr.DataArray((np.add.outer(np.arange(lat.size), np.arange(lon.size)) % 3 + 1).astype(float),
                        coords={"lat": lat, "lon": lon}, dims=("lat", "lon"))  # fmt: skip
    land = xr.DataArray(np.where(np.arange(lon.size)[None] < 20, 1.0, 0.0) + 0 * zone, coords=zone.coords)
    for kw in ({"categories": {1: "zone 1", 2: "zone 2", 3: "zone 3"}}, {"symmetric": True, "cmap": "RdBu_r"}):
        path = map_figure(zone, tmp_path / "m.png", title="t", units="u", land=land, **kw)
        assert path.stat().st_size > 10_000


def test_a_new_licence_reaches_a_finished_store_without_recomputing(run_dir, tmp_path):
    from fluxmap.io.cf import refresh_discovery

    store = tmp_path / "copy.zarr"
    shutil.copytree(run_dir[1]["store"], store)
    before = xr.open_zarr(store, consolidated=True)
    attrs = {**before.attrs, "license": "CC0-1.0", "creator_name": "A. Scientist"}
    assert refresh_discovery(store, attrs) and not refresh_discovery(store, attrs)
    after = xr.open_zarr(store, consolidated=True)
    assert after.attrs["license"] == "CC0-1.0" and after.attrs["creator_name"] == "A. Scientist"
    assert after.attrs["fluxmap_run_key"] == before.attrs["fluxmap_run_key"]
    xr.testing.assert_identical(after.sr.load(), before.sr.load())


def test_export_as_ilamb_reference_data(run_dir, tmp_path):
    """``fluxmap export --format ilamb``: each 8-day map in kg m-2 s-1 with time, latitude and
    longitude bounds, one variable per file, and its site observations as ILAMB site data
    (``var(time, data)``, ``lat(data)``, ``lon(data)``); read back, the values are the store's and
    the training table's. ILAMB's own reader opens them where ILAMB is installed."""
    from fluxmap.stages.export import export_stage

    cfg, result, _ = run_dir
    files = export_stage(cfg, fmt="ilamb", out=tmp_path, log=lambda m: None)
    assert {p.relative_to(tmp_path).as_posix() for p in files} >= {"sr/fluxmap_sr.nc", "sr/fluxmap_sr_sites.nc"}
    store = xr.open_zarr(result["store"])
    with xr.open_dataset(tmp_path / "sr" / "fluxmap_sr.nc") as ds:
        assert ds.sr.attrs["units"] == "kg m-2 s-1" and ds.time.attrs["bounds"] == "time_bnds"
        assert ds.time.encoding["calendar"] == "standard" and "days since" in ds.time.encoding["units"]
        np.testing.assert_allclose(ds.sr.values * 86400.0e3, store.sr.values, rtol=1e-5)
        np.testing.assert_array_equal(ds.time_bnds.values, store.time_bnds.values)
        assert {"lat_bnds", "lon_bnds"} <= set(ds.variables) and list(ds.data_vars).count("sr") == 1
    obs = pd.read_parquet(Path(cfg.workdir) / "extract" / "training_8day.parquet")
    obs = obs[obs.variable == "sr"]
    with xr.open_dataset(tmp_path / "sr" / "fluxmap_sr_sites.nc") as sites:
        assert sites.sr.dims == ("time", "data") and sites.sizes["data"] == obs.location.nunique()
        first = obs.groupby(["location", "start"]).value.mean()
        loc = str(sites.site.values[0])
        got = sites.sr.sel(data=0).to_series().dropna() * 86400.0e3
        np.testing.assert_allclose(got.to_numpy(), first.loc[loc].reindex(got.index).to_numpy(), rtol=1e-5)


def test_ilambs_own_reader_opens_the_exported_reference(run_dir, tmp_path):
    """Where ILAMB installs (``pip install ilamb mpich`` in the environment ``FLUXMAP_ILAMB_PYTHON``
    names; ``.ci/run`` makes it: ILAMB brings MPI, and ilamb3 beside it an older xarray), its
    ``Variable`` reads the exported map as spatial and temporal and the sites as site data."""
    import os
    import subprocess

    python = os.environ.get("FLUXMAP_ILAMB_PYTHON", "")
    if not python:
        if os.environ.get("FLUXMAP_REQUIRE_ILAMB"):
            pytest.fail("FLUXMAP_REQUIRE_ILAMB is set but FLUXMAP_ILAMB_PYTHON is not")
        pytest.skip("FLUXMAP_ILAMB_PYTHON not set (a Python with `pip install ilamb mpich`)")
    from fluxmap.stages.export import export_stage

    cfg, _, _ = run_dir
    export_stage(cfg, fmt="ilamb", out=tmp_path, variables=["sr"], log=lambda m: None)
    obs = pd.read_parquet(Path(cfg.workdir) / "extract" / "training_8day.parquet")
    script = (
        "import sys\nfrom ILAMB.Variable import Variable\n"
        "m = Variable(filename=sys.argv[1], variable_name='sr')\n"
        "s = Variable(filename=sys.argv[2], variable_name='sr')\n"
        "print(m.temporal, m.spatial, s.ndata)\n"
    )
    run = subprocess.run(
        [python, "-c", script, str(tmp_path / "sr" / "fluxmap_sr.nc"), str(tmp_path / "sr" / "fluxmap_sr_sites.nc")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    temporal, spatial, ndata = run.stdout.split()
    assert temporal == spatial == "True" and int(ndata) == obs[obs.variable == "sr"].location.nunique()


def test_projection_under_a_delta_flags_climates_no_site_has_seen(run_dir):
    """The demo run's models under +2 K / -10 % precipitation and under +12 K: a store with the
    baseline's variables and CF metadata and the scenario recorded; totals beside the baseline's;
    every projected cell whose dissimilarity index exceeds the threshold flagged outside the area of
    applicability, and far more of the land outside it under the far larger warming."""
    import dataclasses

    from fluxmap.config import ProjectConfig
    from fluxmap.io.models import load_applicability
    from fluxmap.stages.project import project_stage

    cfg, result, _ = run_dir
    base = xr.open_zarr(result["store"], consolidated=True)
    shares = {}
    for warming in (2.0, 12.0):
        c = dataclasses.replace(
            cfg, project=ProjectConfig(enabled=True, warming_k=warming, precipitation_factor=(0.9,))
        )
        out = project_stage(c, result, log=lambda m: None)
        proj = xr.open_zarr(out["store"], consolidated=True)
        assert set(base.data_vars) <= set(proj.data_vars)
        for v in ("sr", "nee"):
            assert proj[v].attrs["units"] == base[v].attrs["units"]
        assert json.loads(proj.attrs["fluxmap_scenario"])["warming_k"] == warming
        assert "era5/t2m" in json.loads(proj.attrs["fluxmap_scenario"])["warmed"]
        totals = out["totals"].set_index("variable")
        assert {"baseline_pg_c_yr", "projected_pg_c_yr", "projected_outside_aoa_area_fraction"} <= set(totals.columns)
        assert totals.loc["sr", "difference_pg_c_yr"] == pytest.approx(
            totals.loc["sr", "projected_pg_c_yr"] - totals.loc["sr", "baseline_pg_c_yr"]
        )
        threshold = load_applicability(Path(cfg.workdir) / "models" / "sr_8day").threshold
        di, aoa = proj["sr_di"].values, proj["sr_aoa"].values
        land = np.isfinite(di)
        assert ((di[land] > threshold) == (aoa[land] == 0)).all()
        shares[warming] = float(totals.loc["sr", "projected_outside_aoa_area_fraction"])
        assert (Path(cfg.workdir) / "project" / "report.md").is_file()
    baseline_share = float(totals.loc["sr", "baseline_outside_aoa_area_fraction"])
    assert shares[12.0] > shares[2.0] >= baseline_share and shares[12.0] > baseline_share + 0.2, shares
    report = (Path(result["store"]).parent / "report.md").read_text()
    assert report.count("<!-- fluxmap project: begin -->") == 1 and "## Projection" in report
