"""The real MODIS and ERA5 path, offline: the cloud catalog on a mirror in the real formats
(Planetary Computer-style STAC items with sinusoidal COGs, an ARCO-ERA5-shaped Zarr store,
FLUXNET2015 daily files), through every stage to a georeferenced map."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from fluxmap.demo import mirror as mm
from fluxmap.demo.mirror_era5 import ARCO_URL
from fluxmap.science import products
from fluxmap.testing import raise_if_dask_computes

# odc-stac and pystac are in the test extra: without them these tests fail, they are not skipped.

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "modis-mirror.yaml"
PERIOD = ("2019-06-10", "2019-07-03T23:59:59")


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> dict[str, Path]:
    return mm.write_mirror(tmp_path_factory.mktemp("mirror"))


def _catalog(mirror: dict[str, Path], **extra: str):
    from fluxmap.io.catalog import builtin_catalog, load_catalog

    params = {"STAC_URL": str(mirror["stac"]), "ERA5_URL": str(mirror["era5"]), "BBOX": "12,44,16,47",
              "DATETIME": "2019-06-10/2019-07-03", **extra}  # fmt: skip
    return load_catalog(builtin_catalog("cloud"), **params)


def test_the_mirror_is_laid_out_like_the_planetary_computer(mirror):
    """Collection and item ids, asset keys, raster:bands and proj: fields as published; COGs in the
    MODIS sinusoidal CRS, tiled, with overviews, the products' fill values as nodata; the scale the
    items publish is the one fluxmap's decoders apply."""
    import pystac
    import rasterio
    from pyproj import CRS

    cat = pystac.Catalog.from_file(str(mirror["stac"]))
    assert {c.id for c in cat.get_children()} == set(mm.MIRROR_PRODUCTS)
    items = {
        ".".join(i.id.split(".")[:4]): i for i in cat.get_items(recursive=True)
    }  # ids end with the production time
    assert "MOD11A2.A2019161.h18v04.061" in items and "MYD11A2.A2019161.h19v04.061" in items
    assert "MOD09A1.A2019177.h19v04.061" in items and "MOD17A2HGF.A2019169.h18v04.061" in items
    item = items["MOD09A1.A2019161.h18v04.061"]
    p = json.loads(Path(item.get_self_href()).read_text())["properties"]  # as written (pystac migrates what it reads)
    assert p["start_datetime"] == "2019-06-10T00:00:00Z" and p["end_datetime"] == "2019-06-17T23:59:59Z"
    assert p["platform"] == "terra" and p["proj:shape"] == [2400, 2400] and p["proj:epsg"] is None
    assert p["proj:transform"][0] == pytest.approx(463.3127165, abs=1e-6) and p["proj:transform"][2] == pytest.approx(0.0, abs=1e-3)  # fmt: skip
    assert items["MOD11A2.A2019161.h19v04.061"].properties["proj:transform"][0] == pytest.approx(926.6254331, abs=1e-6)
    published = {"sur_refl_b01": products.REFL_SCALE, "sur_refl_b06": products.REFL_SCALE}
    for key, scale in published.items():
        assert item.assets[key].extra_fields["raster:bands"][0] == {"data_type": "int16", "spatial_resolution": 500, "scale": scale}  # fmt: skip
    lst = items["MOD11A2.A2019161.h18v04.061"].assets["LST_Day_1km"].extra_fields["raster:bands"][0]
    assert lst["scale"] == products.LST_SCALE and lst["unit"] == "Kelvin" and lst["data_type"] == "uint16"
    gpp = items["MOD17A2HGF.A2019161.h18v04.061"].assets["Gpp_500m"].extra_fields["raster:bands"][0]
    assert gpp["scale"] == 0.0001 and gpp["unit"] == "kg C/m^2"
    sinusoidal = CRS.from_wkt(p["proj:wkt2"])
    with rasterio.open(item.assets["sur_refl_b01"].get_absolute_href()) as src:
        assert src.width == src.height == 2400 and src.block_shapes == [(512, 512)] and src.overviews(1) == [2, 4, 8]
        assert CRS.from_wkt(src.crs.to_wkt()).equals(sinusoidal) and src.nodata == products.REFL_FILL
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.transform.c == pytest.approx(0.0, abs=1e-3) and src.transform.f == pytest.approx(
            5559752.598, abs=1e-2
        )
    # The tile's corner is 50 N on the MODIS sphere.
    assert mm.sinusoidal_to_lonlat(np.array(0.0), np.array(src.transform.f))[1] == pytest.approx(50.0, abs=1e-6)


def test_the_mirror_run_period_only_and_terra_only(mirror):
    """The search keeps the bbox's, the period's and the platform's items: without ``platform`` the
    Aqua items of MOD11A2 come too (the Planetary Computer serves both in one collection)."""
    from fluxmap.io.stac import stac_items

    box = [12.0, 44.0, 16.0, 47.0]
    terra = stac_items(
        str(mirror["stac"]), "modis-11A2-061", box, "2019-06-10/2019-06-20", platform="terra", local=True
    )
    both = stac_items(str(mirror["stac"]), "modis-11A2-061", box, "2019-06-10/2019-06-20", local=True)
    assert [i.id[:27] for i in terra] == [f"MOD11A2.A2019{d}.h{h}v04.061" for d in (161, 169) for h in (18, 19)]
    assert len(both) == 2 * len(terra)
    west = stac_items(str(mirror["stac"]), "modis-11A2-061", [5.0, 44.0, 9.0, 47.0], "2019-06-10/2019-07-03",
                      platform="terra", local=True)  # fmt: skip
    assert {i.id.split(".")[2] for i in west} == {"h18v04"}


def test_cloud_catalog_opens_the_mirror_lazily_and_decodes_each_place(mirror):
    """Every entry opens without computing; then the decoded LST, NDVI, LAI and GPP at each cell of
    the lat/lon grid (odc-stac reprojecting the sinusoidal tiles chunk by chunk, across the h18/h19
    edge at 14.1 E) equal the mirror's fields at that cell's centre, within the encoding's step
    and half a pixel; cloudy and lake pixels are missing, and no Aqua value leaks in."""
    cat = _catalog(mirror)
    with raise_if_dask_computes():
        cubes = {
            e: cat.open(e, period=PERIOD) for e in ("mod11a2", "mod09a1", "mod15a2h", "mod17a2h", "era5", "static")
        }
    mod11, mod09 = cubes["mod11a2"], cubes["mod09a1"]
    assert mod11.sizes["time"] == 3 and pd.Timestamp(mod11.time.values[0]) == pd.Timestamp("2019-06-10")
    assert mod11["lat"].values[0] > mod11["lat"].values[-1]  # north up, as loaded
    assert float(abs(mod11["lon"].diff("lon")).mean()) == pytest.approx(1 / 240)
    lon, lat = mod11["lon"].values[None, :], mod11["lat"].values[:, None]
    day = pd.Timestamp("2019-06-18").day_of_year + 3.5
    truth = mm.fields(lon.astype("float32"), lat.astype("float32"), day)
    checks = {("mod11a2", "lst_day"): 0.03, ("mod09a1", "ndvi"): 0.01, ("mod15a2h", "lai"): 0.08,
              ("mod17a2h", "gpp"): 0.02}  # fmt: skip
    for (entry, name), tol in checks.items():
        got = cubes[entry][name].isel(time=1).values
        ok = np.isfinite(got)
        err = np.abs(got - truth[name])[ok]
        assert err.max() < tol, (name, float(err.max()))
        for side in (lon[0] < 14.0, lon[0] > 14.3):  # both tiles
            assert ok[:, side].mean() > 0.9
    lst = mod11["lst_day"].isel(time=1).values
    lake = mm.water(lon, lat)
    inner = np.hypot(lon - mm.LAKE[0], lat - mm.LAKE[1]) < mm.LAKE[2] - 0.02  # off the shore's mixed pixels
    assert np.isnan(lst[inner]).all() and 0.005 < np.isnan(lst[~lake]).mean() < 0.05  # cloud QC masks ~2 %
    assert abs(np.nanmean(lst - truth["lst_day"])) < 0.01  # Aqua's +1.5 K would show here
    assert not np.isfinite(cubes["mod15a2h"]["lai"].isel(time=0).values[inner]).any()
    assert float(mod09["ndvi"].isel(time=0).mean()) == pytest.approx(
        float(mm.fields(lon.astype("float32"), lat.astype("float32"), 161 + 3.5)["ndvi"][~lake].mean()), abs=0.01
    )


def test_era5_hourly_is_cut_to_the_period_and_to_its_valid_times_before_compute(mirror):
    """ARCO-ERA5's hours outside the run's period never enter the graph; its unfilled tail (past
    ``valid_time_stop``) is never read; hourly temperature and accumulated precipitation become
    8-day means equal to the hours' mean of the mirror's fields."""
    from fluxmap.science.extract import to_periods

    cat = _catalog(mirror)
    raw = cat.open_raw("era5")
    assert raw["2m_temperature"].dims == ("time", "latitude", "longitude")
    assert raw["longitude"].values.max() == 359.75 and raw["latitude"].values[0] == 90.0
    assert raw["2m_temperature"].encoding["chunks"] == (1, 721, 1440)
    with raise_if_dask_computes():
        whole = cat.open("era5")
        cut = cat.open("era5", period=PERIOD)
    stop = pd.Timestamp(raw.attrs["valid_time_stop"])
    assert pd.Timestamp(whole.time.values[-1]) == stop < pd.Timestamp(raw.time.values[-1])
    assert cut.sizes["time"] == 24 * 24 and len(cut.t2m.data.dask) < len(whole.t2m.data.dask)
    means = to_periods(cut)
    assert list(pd.DatetimeIndex(means.time.values).strftime("%m-%d")) == ["06-10", "06-18", "06-26"]
    y, x = 45.75, 13.0
    cell = means.sel(lat=y, lon=x).isel(time=1).compute()
    hours = pd.date_range("2019-06-18", periods=8 * 24, freq="h")
    doy = hours.day_of_year.to_numpy(float) + hours.hour.to_numpy(float) / 24.0
    assert float(cell.t2m) == pytest.approx(mm.truth("t2m", x, y, doy).mean(), abs=1e-3)
    assert float(cell.tp) == pytest.approx(mm.truth("tp", x, y, doy).mean(), rel=1e-4)
    static = cat.open("static")
    assert static.attrs["fluxmap_time"] == "static" and "time" not in static.dims
    assert float(static.land_fraction.sel(lat=45.5, lon=13.5)) == 0.0  # the lake
    assert float(static.land_fraction.sel(lat=46.5, lon=15.0)) == 1.0
    assert float(static.elevation.sel(lat=46.5, lon=15.0)) == pytest.approx(float(mm.fields(15.0, 46.5, 180)["elevation"]), abs=0.01)  # fmt: skip


def test_the_modis_grid_takes_the_static_layers_and_era5_onto_its_cells(mirror):
    """Without predict.resolution the maps are made on the MODIS entry's grid: ERA5 (hourly, 0.25 deg)
    and its static layers come onto the 1/240 deg cells lazily, each cell taking the ERA5 cell it lies
    in (the target cells are smaller)."""
    from fluxmap.science.extract import to_periods
    from fluxmap.science.predict import predictor_cube

    cat = _catalog(mirror, BBOX="13.9,45.0,14.3,45.3")
    with raise_if_dask_computes():
        cubes = {e: cat.open(e, period=PERIOD) for e in ("mod11a2", "mod09a1", "era5", "static")}
        cube = predictor_cube(cubes)
    assert cube.elevation.dims == ("lat", "lon") and cube.elevation.shape == (72, 96)
    assert cube.t2m.dims == ("time", "lat", "lon") and cube.sizes["time"] == 3
    y, x = float(cube.lat[40]), float(cube.lon[50])
    era = to_periods(cubes["era5"]).sel(lat=y, lon=x, method="nearest").isel(time=2)
    assert float(cube.t2m.isel(time=2).sel(lat=y, lon=x)) == pytest.approx(float(era.t2m), abs=1e-4)
    static = cubes["static"].sel(lat=y, lon=x, method="nearest")
    assert float(cube.elevation.sel(lat=y, lon=x)) == pytest.approx(float(static.elevation), abs=1e-3)
    assert float(cube.land_fraction.sel(lat=y, lon=x)) == pytest.approx(float(static.land_fraction), abs=1e-6)


def test_cell_areas_of_the_lat_lon_grid_equal_the_sinusoidal_pixels(mirror):
    """Independent check of the areas the totals use: the MODIS sinusoidal projection is equal-area,
    so the land in a lat/lon box is its native pixels (centres inside) times 463.31 m squared;
    fluxmap's spherical cell areas of the lat/lon grid over the same box must agree."""
    from fluxmap.science.aggregate import cell_land_area

    w, s, e, n = 12.0, 44.0, 16.0, 47.0
    pixels = 0
    for h in (18, 19):
        lon, lat = mm._pixel_lonlat(h, 4, 2400)
        pixels += int(((lon >= w) & (lon < e) & (lat >= s) & (lat < n)).sum())
    native_km2 = pixels * (mm.TILE_METERS / 2400) ** 2 / 1e6
    grid = xr.DataArray(np.zeros((60, 80)), dims=("lat", "lon"),
                        coords={"lat": np.arange(46.975, 44.0, -0.05), "lon": np.arange(12.025, 16.0, 0.05)})  # fmt: skip
    fluxmap_km2 = float(cell_land_area(grid, xr.ones_like(grid)).sum()) / 1e6
    assert fluxmap_km2 == pytest.approx(native_km2, rel=1e-5)  # measured: 1.8e-6


@pytest.fixture(scope="module")
def mirror_run(mirror, tmp_path_factory):
    from fluxmap.cli import main

    work = tmp_path_factory.mktemp("mirror-run")
    root = mirror["stac"].parents[1]
    assert main(["run", "--config", str(EXAMPLE), "--param", f"MIRROR={root}", "--workdir", str(work / "out")]) == 0
    return work / "out"


def test_the_example_runs_every_stage_on_the_mirror_to_a_georeferenced_map(mirror_run, tmp_path):
    """sites -> extract -> models -> predict -> report on the mirror: the store opens georeferenced in
    xarray (rioxarray, cf-xarray) and in GDAL at the same pixels; the totals equal a sum over the
    cells with the areas computed here; the report says the year is annualized from 24 days."""
    store = mirror_run / "predict" / "fluxmap.zarr"
    ds = xr.open_zarr(store, consolidated=True)
    assert ds.sizes == {"time": 3, "lat": 60, "lon": 80, "nv": 2} or {"time", "lat", "lon"} <= set(ds.sizes)
    assert str(ds.nee.rio.crs) == "EPSG:4326" and ds.nee.attrs["units"] == "g m-2 d-1"
    assert pd.Timestamp(ds.time.values[0]) == pd.Timestamp("2019-06-10")
    nee = ds.nee.values
    land = ds.land_fraction.values > 0.5
    assert np.isfinite(nee[:, land]).all() and -12 < np.nanmin(nee) < np.nanmax(nee) < 8
    # Totals: sum(flux x 8 days x area x land fraction), areas from the band formula written out here.
    r = 6371007.0
    edges = np.radians(np.arange(47.0, 43.99, -0.05))
    band = r**2 * np.radians(0.05) * np.abs(np.sin(edges[:-1]) - np.sin(edges[1:]))
    grams = np.nansum(ds.nee.values * 8 * band[None, :, None] * ds.land_fraction.fillna(0).values[None])
    totals = pd.read_csv(mirror_run / "predict" / "totals.csv")
    assert float(totals.days.iloc[0]) == 24
    assert grams / 1e15 / (24 / 365) == pytest.approx(float(totals.nee.iloc[0]), rel=1e-4)
    report = (mirror_run / "predict" / "report.md").read_text()
    assert "annualized from 24 mapped days" in report
    assert "ds.nee.sel(lat=45.475, lon=14.025" in report  # how to open it, with its own flux and a cell of its grid
    summary = (mirror_run / "models" / "summary.md").read_text()
    assert "nee" in summary
    if shutil.which("gdallocationinfo"):
        for x, y in ((12.61, 46.58), (15.43, 44.32), (14.11, 45.47)):  # inside cells, not on their edges
            want = float(ds.nee.isel(time=0).sel(lon=x, lat=y, method="nearest"))
            out = subprocess.run(["gdallocationinfo", "-valonly", "-geoloc", f'ZARR:"{store}":/nee:0', str(x), str(y)],
                                 capture_output=True, text=True)  # fmt: skip
            assert out.returncode == 0, out.stderr
            assert float(out.stdout.split()[0]) == pytest.approx(want, rel=1e-5)


def test_the_network_example_resolves_to_the_real_addresses():
    """examples/modis-cloud.yaml (the network run, not runnable here): it parses, and its catalog
    points at the Planetary Computer's API and ARCO-ERA5's bucket with the run's box and year."""
    from fluxmap.config import load_yaml, run_config_from_mapping, substitute
    from fluxmap.io.catalog import builtin_catalog, load_catalog

    path = EXAMPLE.with_name("modis-cloud.yaml")
    cfg = run_config_from_mapping(substitute(load_yaml(path), {"SHARED_DATA": "/data"}, where=str(path)))
    assert cfg.extract.catalog == "cloud" and "mod16a2" not in cfg.extract.entries and cfg.predict.years == (2012,)
    cat = load_catalog(builtin_catalog("cloud"), **dict(cfg.extract.catalog_params))
    assert cat.source("mod09a1").url == "https://planetarycomputer.microsoft.com/api/stac/v1"
    assert cat.source("mod09a1").options["datetime"] == "2012-01-01/2012-12-31"
    assert cat.source("era5").url == ARCO_URL and cat.source("static").url == ARCO_URL


def _online(host: str) -> bool:
    try:
        socket.create_connection((host, 443), timeout=3).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _online("planetarycomputer.microsoft.com"), reason="no network: the real item is not reachable")
def test_a_real_planetary_computer_item_has_the_mirrors_structure(mirror):
    """Where the network exists: one real MOD11A2 item of h18v04 has the mirror's collection, asset
    keys, raster:bands and sinusoidal grid, and the real ARCO-ERA5 store the mirror's layout."""
    from fluxmap.io.stac import stac_items

    pytest.importorskip("pystac_client")  # the cloud extra: pip install -e '.[cloud]'
    pytest.importorskip("planetary_computer")
    real = stac_items("https://planetarycomputer.microsoft.com/api/stac/v1", "modis-11A2-061", [12, 44, 13, 45],
                      "2019-06-10/2019-06-17", platform="terra")  # fmt: skip
    mine = stac_items(str(mirror["stac"]), "modis-11A2-061", [12, 44, 13, 45], "2019-06-10/2019-06-17",
                      platform="terra", local=True)  # fmt: skip
    assert [i.id.split(".")[:4] for i in real] == [i.id.split(".")[:4] for i in mine]
    for key in ("LST_Day_1km", "QC_Day", "LST_Night_1km", "QC_Night"):
        got = real[0].assets[key].extra_fields["raster:bands"][0]
        want = mine[0].assets[key].extra_fields["raster:bands"][0]
        assert {k: got.get(k) for k in ("data_type", "scale", "unit")} == {k: want.get(k) for k in ("data_type", "scale", "unit")}  # fmt: skip
    assert real[0].properties["proj:shape"] == mine[0].properties["proj:shape"]
    assert real[0].properties["proj:transform"] == pytest.approx(mine[0].properties["proj:transform"], abs=1e-3)
    pytest.importorskip("gcsfs")
    era = xr.open_zarr(ARCO_URL, chunks=None, storage_options={"token": "anon"})
    mirror_era = xr.open_zarr(mirror["era5"], chunks=None)
    for v in ("2m_temperature", "total_precipitation", "land_sea_mask", "geopotential_at_surface"):
        assert era[v].dims == mirror_era[v].dims and era[v].attrs.get("units") == mirror_era[v].attrs["units"]
    assert {"valid_time_start", "valid_time_stop"} <= set(era.attrs)
