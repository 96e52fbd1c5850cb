"""The same catalog and decoding path on the real files in ../shared/data."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from fluxmap.io.catalog import builtin_catalog, load_catalog
from fluxmap.science.grids import EARTH_RADIUS_M, cell_area, reproject_to_latlon
from fluxmap.testing import raise_if_dask_computes


@pytest.fixture(scope="module")
def ref(shared_data):
    return load_catalog(builtin_catalog("reference"), SHARED_DATA=str(shared_data))


def test_all_reference_entries_open_lazily(ref):
    with raise_if_dask_computes():
        opened = {name: ref.open(name) for name in ref.entries}
    assert opened["cru_tem"].t2m.chunks is not None
    assert opened["modis_array"].refl_b01.chunks is not None


def _global_mean(da: xr.DataArray) -> float:
    w = xr.DataArray(cell_area(da.lat.values, abs(float(da.lat[0] - da.lat[1]))), dims="lat")
    return float(da.weighted(w.where(da.notnull().any("lon"), 0)).mean(("lat", "lon")))


def test_cru_celsius_converted_to_kelvin(ref, shared_data):
    t = ref.open("cru_tem").t2m.load()
    assert t.attrs["units"] == "K"
    raw = xr.open_dataset(shared_data / "climate" / "cru_absolute_tem_1961-1990_5deg.nc", decode_times=False).tem
    np.testing.assert_allclose(t.values, raw.values + 273.15, rtol=1e-6, equal_nan=True)
    # CRU 1961-1990 absolute global mean is about 14 C (Jones et al. 1999).
    assert 286.0 < _global_mean(t.mean("time")) < 288.5


def test_cmap_precipitation_in_mm_per_day(ref):
    tp = ref.open("cmap_precip").tp.load()
    assert tp.attrs["units"] == "mm d-1"
    # Global mean precipitation is about 2.7 mm/d.
    assert 2.4 < _global_mean(tp.mean("time")) < 3.0


def test_ghcn_cams_in_kelvin(ref):
    t = ref.open("ghcn_cams_air").t2m.load()
    assert t.attrs["units"] == "K"
    assert 180 < float(t.min()) and float(t.max()) < 340


def test_landsea_to_land_fraction(ref):
    land = ref.open("ncar_landsea").land_fraction.load()
    assert set(np.unique(land.values)) == {0.0, 1.0}
    frac = _global_mean(land)
    assert 0.26 < frac < 0.32  # land (with islands, without lakes and ice shelves) covers ~29 % of Earth


def test_modis_sinusoidal_sample_decodes_and_reprojects(ref, shared_data):
    ds = ref.open("modis_array")
    refl = ds.refl_b01.load()
    raw = xr.open_dataset(shared_data / "modis" / "MODIS_ARRAY.nc", mask_and_scale=False)[
        "__xarray_dataarray_variable__"
    ]
    fill = raw.values == -28672
    assert fill.sum() == int(np.isnan(refl.values).sum()) > 0
    np.testing.assert_allclose(refl.values[~fill], raw.values[~fill] * 1e-4, rtol=1e-6)
    assert refl.rio.crs is not None and "Sinusoidal" in refl.rio.crs.to_wkt()

    res = 0.002
    ll = reproject_to_latlon(refl, resolution=res, nodata=np.nan)
    assert ll.lat.values[0] > ll.lat.values[-1]
    assert 45.0 < float(ll.lat.mean()) < 46.0  # the sample lies near 45.4 N
    # Independent check: invert the sinusoidal projection at each output cell centre.
    lat2, lon2 = np.meshgrid(ll.lat.values, ll.lon.values, indexing="ij")
    x = EARTH_RADIUS_M * np.deg2rad(lon2) * np.cos(np.deg2rad(lat2))
    y = EARTH_RADIUS_M * np.deg2rad(lat2)
    xs, ys = refl.x.values, refl.y.values
    dx, dy = xs[1] - xs[0], ys[1] - ys[0]
    col = np.round((x - xs[0]) / dx).astype(int)
    row = np.round((y - ys[0]) / dy).astype(int)
    inside = (col >= 0) & (col < xs.size) & (row >= 0) & (row < ys.size)
    expect = np.full(lat2.shape, np.nan)
    expect[inside] = refl.values[row[inside], col[inside]]
    both = np.isfinite(expect) & np.isfinite(ll.values)
    assert both.sum() > 0.5 * inside.sum()
    assert np.mean(np.isclose(ll.values[both], expect[both])) > 0.97
