"""Catalogs: lazy opening, decoding through the catalog, safety, and clear errors on bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from fluxmap.io.catalog import ALLOWED_READERS, CatalogError, builtin_catalog, check_catalog, load_catalog
from fluxmap.science import products as P
from fluxmap.testing import raise_if_dask_computes

CANONICAL = {
    "mod11a2": {"lst_day", "lst_night"},
    "mod09a1": {
        "refl_b01",
        "refl_b02",
        "refl_b03",
        "refl_b04",
        "refl_b05",
        "refl_b06",
        "refl_b07",
        "ndvi",
        "evi",
        "lswi",
    },
    "mod15a2h": {"lai", "fpar"},
    "mod17a2h": {"gpp"},
    "mod16a2": {"et"},
    "era5": {"t2m", "tp"},
    "static": {"elevation", "soc", "landcover", "land_fraction", "landcover_fraction"},
}


def test_every_demo_entry_opens_lazily_in_canonical_names_and_units(demo_catalog):
    with raise_if_dask_computes():
        for entry, names in CANONICAL.items():
            ds = demo_catalog.open(entry)
            assert names <= set(ds.data_vars), entry
            for v in names - {"landcover_fraction"}:
                assert ds[v].chunks is not None, f"{entry}.{v} is not lazy"
                assert ds[v].attrs["units"] == P.spec(v).units
                assert ds[v].attrs["long_name"]
            assert {"lat", "lon"} <= set(ds.dims)


def test_catalog_chunks_come_from_the_catalog(demo_catalog, tiny_world):
    import zarr

    doc = yaml.safe_load(builtin_catalog("demo").read_text())
    # ERA5 is opened with the catalog's chunks; the generator's stores with the chunks they were written with.
    want = doc["entries"]["era5"]["kwargs"]["chunks"]
    era5 = demo_catalog.open("era5")
    assert era5.t2m.data.chunksize[0] == min(want["time"], era5.sizes["time"])
    assert doc["entries"]["mod11a2"]["kwargs"]["chunks"] == {}
    ds = demo_catalog.open("mod11a2")
    assert doc["data"]["mod11a2_store"]["kwargs"]["url"] == "{DEMO_ROOT}/modis/mod11a2.zarr"
    store = zarr.open_group(str(tiny_world.root / "modis" / "mod11a2.zarr"), mode="r")
    assert ds.lst_day.data.chunksize == store["LST_Day_1km"].chunks


def test_decoding_through_catalog_matches_hand_decoding_of_raw(demo_catalog):
    raw = demo_catalog.open_raw("mod11a2").isel(time=5).load()
    dec = demo_catalog.open("mod11a2").isel(time=5).load()
    dn, qc = raw.LST_Day_1km.values, raw.QC_Day.values
    ok = (dn != 0) & ((qc & 3) <= 1)
    expect = np.where(ok, dn * 0.02, np.nan)
    np.testing.assert_allclose(dec.lst_day.values, expect, rtol=1e-6)
    assert np.isnan(dec.lst_day.values).any() and np.isfinite(dec.lst_day.values).any()
    gpp_raw = demo_catalog.open_raw("mod17a2h").Gpp_500m.isel(time=[0, -1]).load().values
    gpp = demo_catalog.open("mod17a2h").gpp.isel(time=[0, -1]).load().values
    last_days = 6  # 2020 is a leap year
    np.testing.assert_allclose(gpp[0], np.where(gpp_raw[0] < 32761, gpp_raw[0] * 0.1 / 8, np.nan), rtol=1e-5)
    np.testing.assert_allclose(gpp[1], np.where(gpp_raw[1] < 32761, gpp_raw[1] * 0.1 / last_days, np.nan), rtol=1e-5)


def test_era5_packing_and_units_decode(demo_catalog):
    raw = demo_catalog.open_raw("era5")
    assert raw["2m_temperature"].encoding["dtype"] == np.dtype("int16")  # CDS-style packing on disk
    ds = demo_catalog.open("era5").isel(time=slice(0, 3)).load()
    assert 200 < float(ds.t2m.mean()) < 320
    np.testing.assert_allclose(
        ds.tp.values, raw.total_precipitation.isel(time=slice(0, 3)).values * 1000.0, rtol=1e-5, atol=1e-4
    )
    assert float(ds.tp.min()) >= 0


def test_missing_catalog_file_names_it(tmp_path):
    with pytest.raises(CatalogError, match="catalog file not found: .*nope.yaml"):
        load_catalog(tmp_path / "nope.yaml")


def test_unknown_entry_and_builtin(demo_catalog):
    with pytest.raises(CatalogError, match="no entry 'modis_lst'.*mod11a2"):
        demo_catalog.open("modis_lst")
    with pytest.raises(CatalogError, match="no built-in catalog 'demoo'"):
        builtin_catalog("demoo")


def test_missing_source_is_a_clear_error(tmp_path):
    cat = load_catalog(builtin_catalog("demo"), DEMO_ROOT=str(tmp_path / "absent"))
    with pytest.raises(CatalogError, match="entry 'mod11a2': source not found"):
        cat.open("mod11a2")


def _write_catalog(tmp_path: Path, doc: dict) -> Path:
    p = tmp_path / "cat.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def _era5_doc(store: Path, variables: dict | None = None) -> dict:
    return {
        "version": 2,
        "aliases": {},
        "metadata": {},
        "user_parameters": {},
        "data": {
            "s": {
                "datatype": "intake.readers.datatypes:Zarr",
                "kwargs": {"url": str(store), "root": "", "storage_options": None},
                "metadata": {},
                "user_parameters": {},
            }
        },
        "entries": {
            "era5": {
                "reader": "intake.readers.readers:XArrayDatasetReader",
                "output_instance": "xarray:Dataset",
                "kwargs": {"args": ["{data(s)}"], "engine": "zarr", "consolidated": False, "chunks": {}},
                "metadata": {
                    "fluxmap": {"product": "ERA5", "step_hours": 24, **({"variables": variables} if variables else {})}
                },
                "user_parameters": {},
            }
        },
    }


def _tiny_era5(path: Path, t_units: str = "K") -> Path:
    ds = xr.Dataset(
        {
            "2m_temperature": (("time", "latitude", "longitude"), np.full((2, 2, 2), 280.0, "f4"), {"units": t_units}),
            "total_precipitation": (("time", "latitude", "longitude"), np.full((2, 2, 2), 0.002, "f4"), {"units": "m"}),
        },
        coords={
            "time": np.array(["2020-01-01", "2020-01-02"], "datetime64[ns]"),
            "latitude": [1.0, 0.0],
            "longitude": [0.0, 1.0],
        },
    )
    ds.to_zarr(path, zarr_format=3, consolidated=False, mode="w")
    return path


def test_wrong_units_attribute_names_variable_and_units(tmp_path):
    store = _tiny_era5(tmp_path / "e.zarr", t_units="degF")
    cat = load_catalog(_write_catalog(tmp_path, _era5_doc(store)))
    with pytest.raises(CatalogError, match="'2m_temperature' has units 'degF'; expected one of"):
        cat.open("era5")


def test_unknown_source_variable_names_it(tmp_path):
    store = _tiny_era5(tmp_path / "e.zarr")
    doc = _era5_doc(store, variables={"2m_temperature": "t2m_missing"})
    cat = load_catalog(_write_catalog(tmp_path, doc))
    with pytest.raises(CatalogError, match="variable 't2m_missing' .*not in the source"):
        cat.open("era5")


def test_tiny_era5_daily_decodes(tmp_path):
    cat = load_catalog(_write_catalog(tmp_path, _era5_doc(_tiny_era5(tmp_path / "e.zarr"))))
    ds = cat.open("era5").load()
    np.testing.assert_allclose(ds.tp.values, 2.0, rtol=1e-6)
    assert set(ds.dims) == {"time", "lat", "lon"}


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["entries"]["era5"].__setitem__("reader", "os:system"), "names reader 'os:system'"),
        (lambda d: d["entries"]["era5"]["kwargs"].__setitem__("engine", "{func(os:system)}"), "code template"),
        (lambda d: d["entries"]["era5"]["kwargs"].__setitem__("x", "{pickle64(gASVAAAA)}"), "code template"),
        (lambda d: d["data"]["s"].__setitem__("datatype", "intake.readers.datatypes:PickleFile"), "datatype"),
        (lambda d: d.pop("aliases"), "missing top-level key"),
        (lambda d: d["entries"]["era5"]["metadata"].pop("fluxmap"), "no metadata.fluxmap.product"),
        (lambda d: d["entries"]["era5"]["metadata"]["fluxmap"].__setitem__("product", "MOD99"), "unknown product"),
    ],
)
def test_unsafe_or_incomplete_catalogs_are_refused(tmp_path, mutate, message):
    doc = _era5_doc(tmp_path / "e.zarr")
    mutate(doc)
    with pytest.raises(CatalogError, match=message):
        load_catalog(_write_catalog(tmp_path, doc))


def test_unknown_user_parameter(tmp_path):
    with pytest.raises(CatalogError, match="unknown user parameter"):
        load_catalog(builtin_catalog("demo"), DEMO_ROT="x")


def test_cloud_catalog_loads_structurally():
    path = builtin_catalog("cloud")
    doc = yaml.safe_load(path.read_text())
    sources = check_catalog(path)
    cat = load_catalog(path)
    assert set(sources) == set(cat.entries)
    assert {"era5", "static", "mod11a2", "mod09a1", "mod15a2h", "mod17a2h"} <= set(cat.entries)
    assert "mcd12q1" not in cat.entries  # the Planetary Computer has no MCD12Q1 collection
    era5 = cat.source("era5")
    assert era5.url == "gs://gcp-public-data-arco-era5/ar/full_37-1h-0p25deg-chunk-1.zarr-v3"
    assert era5.storage_options == {"token": "anon"} and era5.local is None
    assert cat.source("static").url == era5.url and cat.meta("static")["product"] == "ERA5_INVARIANT"
    for name in ("mod11a2", "mod09a1", "mod15a2h", "mod17a2h"):
        src = cat.source(name)
        assert src.reader in ALLOWED_READERS and src.kind == "service"
        assert src.url == "https://planetarycomputer.microsoft.com/api/stac/v1"
        assert src.options["collection"].startswith("modis-") and src.options["collection"].endswith("-061")
        assert src.options["bbox"] == "-10,35,30,60"  # user parameter filled in
        assert src.options["platform"] == "terra" and src.options["crs"] == "EPSG:4326"
        assert float(src.options["resolution"]) == pytest.approx(1 / 240)
    assert load_catalog(path, BBOX="0,0,1,1").source("mod11a2").options["bbox"] == "0,0,1,1"
    assert cat.meta("era5")["step_hours"] == 1
    for tok in ("srdb_v5", "cosore", "fluxnet2015"):
        assert doc["data"][tok]["kwargs"]["url"].startswith("https://")


def test_fluxmap_catalogs_still_open_with_intake(demo_catalog, tiny_world):
    """The files keep Intake 2's format: Intake itself reads the demo catalog to the same data."""
    import intake

    cat = intake.from_yaml_file(str(builtin_catalog("demo")))
    cat.user_parameters["DEMO_ROOT"] = str(tiny_world.root)
    via_intake = cat["mod11a2"].read()
    ours = demo_catalog.open_raw("mod11a2")
    xr.testing.assert_identical(via_intake.isel(time=[0, -1]).load(), ours.isel(time=[0, -1]).load())


def test_cloud_entry_unreachable_here_is_a_clear_error():
    cat = load_catalog(builtin_catalog("cloud"))
    with pytest.raises(CatalogError, match="entry 'mod11a2'"):
        cat.open("mod11a2")
