"""Decoders against hand-computed values, including fill and QC cases (eager and lazy)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from fluxmap.science import products as P
from fluxmap.testing import raise_if_dask_computes


def arr(values, dtype, dims=("x",)):
    return xr.DataArray(np.array(values, dtype=dtype), dims=dims)


def test_bits_extracts_fields():
    qc = arr([0b11000010, 0b01000001], "uint8")
    assert P.bits(qc, 0, 1).values.tolist() == [2, 1]
    assert P.bits(qc, 6, 7).values.tolist() == [3, 1]


def test_mod11a2_scale_fill_and_qc():
    # DN 14500 x 0.02 = 290.0 K; DN 0 is fill; QC mandatory 2 = cloud; error class 3 (>3 K).
    lst = arr([14500, 0, 15000, 15000, 15000, 7000], "uint16")
    qc = arr([0b00000000, 0, 0b00000010, 0b11000001, 0b00000011, 0], "uint8")
    out = P.decode_mod11a2(lst, qc, name="lst_day")
    np.testing.assert_allclose(out.values, [290.0, np.nan, np.nan, 300.0, np.nan, np.nan])
    assert out.name == "lst_day" and out.attrs["units"] == "K"
    assert out.attrs["standard_name"] == "surface_temperature"
    strict = P.decode_mod11a2(lst, qc, name="lst_day", max_error_class=1)
    assert np.isnan(strict.values[3])
    good_only = P.decode_mod11a2(lst, qc, name="lst_day", accept_other_quality=False)
    assert np.isnan(good_only.values[3]) and good_only.values[0] == pytest.approx(290.0)


def test_mod09a1_reflectance_and_state_bits():
    refl = arr([1234, -28672, 500, 500, 500, 500, 500, 16001], "int16")
    # clear; fill; cloudy (01); shadow (bit 2); adjacent (bit 13); snow (bit 15); "not set" (11); out of range
    state = arr([0b1000, 0, 0b1001, 0b1100, 1 << 13, 1 << 15, 0b11, 0], "uint16")
    out = P.decode_mod09a1(refl, state, band="b01")
    np.testing.assert_allclose(out.values, [0.1234, np.nan, np.nan, np.nan, np.nan, np.nan, 0.05, np.nan], rtol=1e-6)
    keep_adj = P.decode_mod09a1(refl, state, band="b01", mask_adjacent=False, mask_snow=False)
    assert keep_adj.values[4] == pytest.approx(0.05) and keep_adj.values[5] == pytest.approx(0.05)
    assert out.name == "refl_b01" and out.attrs["units"] == "1"


def test_indices_hand_computed():
    red, nir, blue, swir = (xr.DataArray(np.float32(v)) for v in (0.05, 0.40, 0.03, 0.20))
    assert float(P.ndvi(red, nir)) == pytest.approx((0.40 - 0.05) / (0.40 + 0.05), rel=1e-6)
    assert float(P.evi(red, nir, blue)) == pytest.approx(2.5 * 0.35 / (0.40 + 0.30 - 0.225 + 1.0), rel=1e-6)
    assert float(P.lswi(nir, swir)) == pytest.approx(0.20 / 0.60, rel=1e-6)
    # Unstable EVI (bright blue) leaves -1..1 and is masked, not clipped.
    assert np.isnan(P.evi(arr([0.01], "f4"), arr([0.9], "f4"), arr([0.5], "f4")).values[0])


def test_mod15a2h_scales_fill_and_algorithm():
    lai = arr([35, 254, 35, 35], "uint8")
    fpar = arr([62, 250, 62, 101], "uint8")
    qc = arr([0, 0, 3 << 5, 4 << 5], "uint8")  # main; main; backup; not produced
    out = P.decode_mod15a2h(lai, qc, name="lai")
    np.testing.assert_allclose(out.values, [3.5, np.nan, np.nan, np.nan], rtol=1e-6)
    relaxed = P.decode_mod15a2h(lai, qc, name="lai", main_algorithm_only=False)
    np.testing.assert_allclose(relaxed.values, [3.5, np.nan, 3.5, np.nan], rtol=1e-6)
    f = P.decode_mod15a2h(fpar, qc, name="fpar", main_algorithm_only=False)
    np.testing.assert_allclose(f.values, [0.62, np.nan, 0.62, np.nan], rtol=1e-6)
    with pytest.raises(ValueError, match="'lai' or 'fpar'"):
        P.decode_mod15a2h(lai, qc, name="gpp")


def test_mod17_and_mod16_period_sums_to_daily():
    # 800 x 1e-4 kg C m-2 = 80 g C m-2 over 8 days = 10 g C m-2 d-1; over the 5-day last period 16.
    gpp = xr.DataArray(np.array([[800], [800], [32767]], "int16"), dims=("time", "x"))
    out = P.decode_mod17a2h(gpp, np.array([8, 5, 8]))
    np.testing.assert_allclose(out.values[:, 0], [10.0, 16.0, np.nan], rtol=1e-6)
    assert out.attrs["units"] == "g m-2 d-1"
    et = xr.DataArray(np.array([[40], [32761]], "int16"), dims=("time", "x"))
    np.testing.assert_allclose(P.decode_mod16a2(et, np.array([8, 8])).values[:, 0], [0.5, np.nan])


def test_landcover_mcd12c1_water_and_fill():
    c1 = arr([0, 5, 16, 200], "uint8")
    assert P.decode_mcd12(c1, product="MCD12C1").values.tolist() == [17, 5, 16, 255]
    q1 = arr([17, 1, 0, 255], "uint8")
    assert P.decode_mcd12(q1, product="MCD12Q1").values.tolist() == [17, 1, 255, 255]
    with pytest.raises(ValueError, match="unknown product"):
        P.decode_mcd12(q1, product="MCD12Q9")


def test_era5_units():
    tp = arr([0.001, -1e-9, 0.0], "float32")
    np.testing.assert_allclose(P.decode_era5_precipitation(tp, step_hours=1).values, [24.0, 0.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(P.decode_era5_precipitation(arr([0.005], "f4"), step_hours=24).values, [5.0], rtol=1e-6)
    t = P.decode_era5_temperature(arr([288.15], "float32"))
    assert t.attrs["units"] == "K" and t.name == "t2m"
    with pytest.raises(ValueError):
        P.decode_era5_precipitation(tp, step_hours=0)


def test_unknown_variable_error_lists_known():
    with pytest.raises(KeyError, match="unknown variable 'sr_typo'.*lst_day"):
        P.spec("sr_typo")


def test_every_target_is_a_flux_in_g_c():
    for t in P.TARGETS:
        assert P.spec(t).units == "g m-2 d-1"
        assert "g C m-2 d-1" in P.spec(t).long_name


def test_decoders_eager_equals_lazy_and_lazy_computes_nothing():
    rng = np.random.default_rng(0)
    lst = rng.integers(0, 17000, (4, 6, 5)).astype("uint16")
    qc = rng.integers(0, 256, (4, 6, 5)).astype("uint8")
    dims = ("time", "lat", "lon")
    eager = P.decode_mod11a2(xr.DataArray(lst, dims=dims), xr.DataArray(qc, dims=dims), name="lst_night")
    with raise_if_dask_computes():
        lazy = P.decode_mod11a2(
            xr.DataArray(da.from_array(lst, chunks=2), dims=dims),
            xr.DataArray(da.from_array(qc, chunks=2), dims=dims),
            name="lst_night",
        )
    xr.testing.assert_allclose(eager, lazy.compute())
