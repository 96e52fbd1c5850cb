"""A local mirror of the real remote sources in their real formats, small and seeded, so the
cloud path (``catalogs/cloud.yaml``) runs offline end to end.

It writes, under one folder:

- ``stac/``: a static STAC catalog laid out like the Microsoft Planetary Computer's MODIS 6.1
  collections (collection ids ``modis-11A2-061``, ``modis-09A1-061``, ``modis-15A2H-061``,
  ``modis-17A2HGF-061``; granule item ids ``MOD11A2.A2019161.h18v04.061.2019170041528`` with the
  production time; the asset keys, ``raster:bands``
  (data type, unit, scale) and ``proj:`` fields of the items stactools-packages/modis publishes)
  with Cloud-Optimized GeoTIFF assets in the MODIS sinusoidal projection (2400 x 2400 pixels of
  463.3 m, 1200 x 1200 of 926.6 m for MOD11A2), in the products' raw integer encodings and fill
  values. Terra (MOD) and Aqua (MYD) items share a collection, as on the Planetary Computer.
- ``arco-era5/full_37-1h-0p25deg-chunk-1.zarr-v3``: a Zarr store laid out like ARCO-ERA5
  (Carver et al., google-research/arco-era5): dimensions ``time``, ``latitude`` (90 to -90),
  ``longitude`` (0 to 359.75), hourly, one chunk per hour and the whole globe, the variables
  ``2m_temperature`` (K), ``total_precipitation`` (m per hour), ``land_sea_mask`` (0-1) and
  ``geopotential_at_surface`` (m2 s-2), and the attributes ``valid_time_start``/``valid_time_stop``
  (the store runs on past ``valid_time_stop`` with NaN, as ARCO's does).
- ``fluxnet/``: FLUXNET2015 SUBSET daily files of towers inside the tiles and their site table.

Every field is an analytic function of latitude, longitude and time (:func:`truth`), so a test can
compare what the pipeline decodes at any place with what was encoded there. Outside the box the
sites and tiles lie in, the ERA5 fields vary with latitude only (each global hourly chunk then
compresses to a few kilobytes); the mirror is a format test, not a climate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "MIRROR_PRODUCTS",
    "MirrorConfig",
    "SINUSOIDAL_WKT",
    "sinusoidal_to_lonlat",
    "tile_transform",
    "truth",
    "write_mirror",
]

SPHERE_RADIUS = 6371007.181
"""Radius (m) of the MODIS sinusoidal grid's sphere (MODIS Land grid; stactools-packages/modis)."""
TILE_METERS = 2 * np.pi * SPHERE_RADIUS / 36
"""Width of a MODIS tile (m): 10 degrees of the sphere's equator, 1111950.5197 m."""
X_MIN, Y_MAX = -18 * TILE_METERS, 9 * TILE_METERS
"""Upper-left corner of tile h00v00 (m): -20015109.354, 10007554.677."""

SINUSOIDAL_WKT = (
    'PROJCRS["unnamed",BASEGEOGCRS["Unknown datum based upon the custom spheroid",DATUM["Not specified '
    '(based on custom spheroid)",ELLIPSOID["Custom spheroid",6371007.181,0,LENGTHUNIT["metre",1,ID["EPSG",9001]]]],'
    'PRIMEM["Greenwich",0,ANGLEUNIT["degree",0.0174532925199433,ID["EPSG",9122]]]],CONVERSION["unnamed",'
    'METHOD["Sinusoidal"],PARAMETER["Longitude of natural origin",0,ANGLEUNIT["degree",0.0174532925199433],'
    'ID["EPSG",8802]],PARAMETER["False easting",0,LENGTHUNIT["metre",1],ID["EPSG",8806]],PARAMETER["False '
    'northing",0,LENGTHUNIT["metre",1],ID["EPSG",8807]]],CS[Cartesian,2],AXIS["easting",east,ORDER[1],'
    'LENGTHUNIT["metre",1,ID["EPSG",9001]]],AXIS["northing",north,ORDER[2],LENGTHUNIT["metre",1,ID["EPSG",9001]]]]'
)
"""The ``proj:wkt2`` of the Planetary Computer's MODIS 6.1 items (a sphere of radius 6371007.181 m)."""


@dataclass(frozen=True)
class Asset:
    """One asset of a product: its key, raw dtype, fill value (None: none) and ``raster:bands``."""

    key: str
    dtype: str
    fill: int | None
    band: dict


MIRROR_BANDS = (1, 2, 3, 6)
"""The MOD09A1 bands fluxmap reads (NDVI: 1, 2; EVI: 1, 2, 3; LSWI: 2, 6) and the mirror writes."""


def _band(dtype: str, res: int, **kw: object) -> dict:
    return {"data_type": dtype, "spatial_resolution": res, **kw}


MIRROR_PRODUCTS: dict[str, dict] = {
    "modis-11A2-061": {
        "short": "11A2",
        "pixels": 1200,
        "title": "MODIS Land Surface Temperature/Emissivity 8-Day",
        "assets": [
            Asset("LST_Day_1km", "uint16", 0, _band("uint16", 1000, unit="Kelvin", scale=0.02)),
            Asset("QC_Day", "uint8", None, _band("uint8", 1000)),
            Asset("LST_Night_1km", "uint16", 0, _band("uint16", 1000, unit="Kelvin", scale=0.02)),
            Asset("QC_Night", "uint8", None, _band("uint8", 1000)),
        ],
    },
    "modis-09A1-061": {
        "short": "09A1",
        "pixels": 2400,
        "title": "MODIS Surface Reflectance 8-Day (500m)",
        "assets": [
            *(Asset(f"sur_refl_b0{b}", "int16", -28672, _band("int16", 500, scale=0.0001)) for b in MIRROR_BANDS),
            Asset("sur_refl_state_500m", "uint16", None, _band("uint16", 500)),
        ],
    },
    "modis-15A2H-061": {
        "short": "15A2H",
        "pixels": 2400,
        "title": "MODIS Leaf Area Index/FPAR 8-Day",
        "assets": [
            Asset("Lai_500m", "uint8", 255, _band("uint8", 500, unit="m^2/m^2", scale=0.1)),
            Asset("Fpar_500m", "uint8", 255, _band("uint8", 500, unit="Percent", scale=0.01)),
            Asset("FparLai_QC", "uint8", None, _band("uint8", 500)),
        ],
    },
    "modis-17A2HGF-061": {
        "short": "17A2HGF",
        "pixels": 2400,
        "title": "MODIS Gross Primary Productivity 8-Day Gap-Filled",
        "assets": [
            Asset("Gpp_500m", "int16", 32767, _band("int16", 500, unit="kg C/m^2", scale=0.0001)),
            Asset("Psn_QC_500m", "uint8", None, _band("uint8", 500)),
        ],
    },
}
"""The Planetary Computer collections the mirror writes, with the assets fluxmap reads (a subset of
each item's assets: the real items also carry e.g. view angles and the source HDF file)."""


@dataclass(frozen=True)
class MirrorConfig:
    """What the mirror holds."""

    seed: int = 20261203
    tiles: tuple[tuple[int, int], ...] = ((18, 4), (19, 4))
    """(h, v) MODIS tiles; h18v04 and h19v04 meet at 14.1 E at 45 N."""
    first_period: str = "2019-06-10"
    """Start of the first MODIS 8-day period (day 161 of 2019)."""
    n_periods: int = 3
    """8-day periods of MODIS items (and, with a day either side, of ERA5 hours)."""
    box: tuple[float, float, float, float] = (12.0, 44.0, 16.0, 47.0)
    """(west, south, east, north): where the towers stand and the fields vary in longitude."""
    n_sites: int = 14
    """FLUXNET towers in the box."""
    aqua: bool = True
    """Also write Aqua (MYD) items of MOD11A2, with other values, as the Planetary Computer serves
    both platforms in one collection: a reader that does not select Terra mixes them."""


# --- geometry -----------------------------------------------------------------------------


def tile_transform(h: int, v: int, pixels: int) -> tuple[float, float, float, float, float, float]:
    """The GDAL geotransform-style affine (a, b, c, d, e, f) of tile ``h``/``v`` with ``pixels`` per side."""
    size = TILE_METERS / pixels
    return (size, 0.0, X_MIN + h * TILE_METERS, 0.0, -size, Y_MAX - v * TILE_METERS)


def sinusoidal_to_lonlat(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Longitude and latitude (degrees) of sinusoidal coordinates (m) on the MODIS sphere (NaN
    where x lies beyond the projection's edge at that latitude)."""
    lat = y / SPHERE_RADIUS
    with np.errstate(divide="ignore", invalid="ignore"):
        lon = x / (SPHERE_RADIUS * np.cos(lat))
    lon = np.where(np.abs(lon) <= np.pi, lon, np.nan)
    return np.degrees(lon), np.degrees(lat)


def _pixel_lonlat(h: int, v: int, pixels: int) -> tuple[np.ndarray, np.ndarray]:
    a, _, c, _, e, f = tile_transform(h, v, pixels)
    x = c + a * (np.arange(pixels) + 0.5)
    y = f + e * (np.arange(pixels) + 0.5)
    lon, lat = sinusoidal_to_lonlat(x[None, :], y[:, None])
    return lon.astype("float32"), np.broadcast_to(lat, lon.shape).astype("float32")


# --- the fields -----------------------------------------------------------------------------

LAKE = (13.5, 45.4, 0.35)
"""Centre longitude, latitude and radius (degrees) of the mirror's lake (water in every product)."""


def water(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """True inside the lake."""
    return np.hypot(lon - LAKE[0], lat - LAKE[1]) < LAKE[2]


def _spatial(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The time-invariant parts of the fields: relief (m) and the greenness pattern."""
    relief = 400.0 + 350.0 * np.sin(np.radians(lon * 37.0)) * np.cos(np.radians(lat * 29.0))
    pattern = 0.55 + 0.15 * np.sin(np.radians(lon * 55.0)) * np.cos(np.radians(lat * 40.0))
    return relief, pattern


def fields(
    lon: np.ndarray, lat: np.ndarray, day: np.ndarray | float, *, spatial: tuple[np.ndarray, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """The mirror's physical fields at longitude/latitude (degrees) on day ``day`` (day of year):
    ``lst_day``/``lst_night`` K, ``ndvi`` and the reflectances ``refl_b01``..``refl_b07`` (1), ``lai``
    (m2 m-2), ``fpar`` (1), ``gpp`` (g C m-2 d-1), ``elevation`` (m). Smooth in space, so a value read
    half a pixel away differs by little."""
    season = np.sin(2 * np.pi * (np.asarray(day, float) - 105.0) / 365.0).astype("float32")
    relief, pattern = spatial if spatial is not None else _spatial(lon, lat)
    green = pattern + 0.1 * season
    lst_day = 292.0 + 9.0 * season - 0.7 * (lat - 45.0) - 0.0065 * relief + 3.0 * (0.6 - green)
    red = 0.12 - 0.1 * green
    nir = red * (1 + green) / (1 - green)
    lai = 6.0 * green**1.5
    fpar = 0.95 * (1 - np.exp(-0.5 * lai))
    return {
        "elevation": relief, "ndvi": green, "lst_day": lst_day, "lst_night": lst_day - 11.0 + 2.0 * green,
        "refl_b01": red, "refl_b02": nir, "refl_b03": 0.6 * red + 0.01, "refl_b04": 0.9 * red + 0.02,
        "refl_b05": 0.9 * nir, "refl_b06": 0.55 * nir, "refl_b07": 0.3 * nir,
        "lai": lai, "fpar": fpar, "gpp": 11.0 * fpar * (0.6 + 0.4 * season),
    }  # fmt: skip


def truth(name: str, lon: np.ndarray, lat: np.ndarray, day: np.ndarray | float) -> np.ndarray:
    """One field of :func:`fields`, or the ERA5 ones: ``t2m`` (K, hourly: ``day`` fractional) and
    ``tp`` (mm d-1)."""
    lon, lat, day = np.asarray(lon, float), np.asarray(lat, float), np.asarray(day, float)
    if name == "t2m":
        hour = (day % 1.0) * 24.0
        diurnal = 4.0 * np.sin(2 * np.pi * (hour + lon / 15.0 - 9.0) / 24.0)
        return fields(lon, lat, np.floor(day))["lst_day"] - 6.0 + diurnal
    if name == "tp":
        return np.maximum(0.0, 2.5 + 2.0 * np.sin(np.radians(lon * 90.0) + day * 0.9) * np.cos(np.radians(lat * 70.0)))
    out = fields(lon, lat, day)
    if name not in out:
        raise KeyError(f"the mirror has no field {name!r}")
    return out[name]


def mirror_periods(cfg: MirrorConfig) -> pd.DatetimeIndex:
    """The starts of the 8-day periods the mirror holds."""
    return pd.DatetimeIndex([pd.Timestamp(cfg.first_period) + pd.Timedelta(days=8 * i) for i in range(cfg.n_periods)])


def _period_end(start: pd.Timestamp) -> pd.Timestamp:
    """The last day of the 8-day period from ``start`` (the year's last period is 5 or 6 days)."""
    return min(start + pd.Timedelta(days=7), pd.Timestamp(start.year, 12, 31))


def _middle_day(start: pd.Timestamp) -> float:
    """Day of year of a period's middle (the composite's value is taken there)."""
    return float(start.day_of_year + 3.5)


def _encode(product: str, lon: np.ndarray, lat: np.ndarray, day: float, rng: np.random.Generator,
            platform: str, spatial: tuple[np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:  # fmt: skip
    """Each asset's raw array for one tile and period, in the product's encoding."""
    wet = water(lon, lat)
    offset = 1.5 if platform == "aqua" else 0.0  # Aqua's afternoon overpass: warmer, so a mix would show
    cloud = rng.random(lon.shape) < 0.02  # scattered cloudy pixels, flagged in the QA bits
    f = fields(lon, lat, day, spatial=spatial)  # float32 (the tiles fluxmap mirrors have no pixel off the sphere)
    out: dict[str, np.ndarray] = {}
    if product == "modis-11A2-061":
        for part, qc_key in (("Day", "QC_Day"), ("Night", "QC_Night")):
            dn = np.round((f[f"lst_{part.lower()}"] + offset) / 0.02).astype("uint16")
            qc = np.where(cloud, 2, 0).astype("uint8")  # bits 0-1: 2 = not produced due to cloud
            dn = np.where(wet | cloud, 0, dn).astype("uint16")
            qc = np.where(wet, 3, qc).astype("uint8")  # 3 = not produced, other reasons
            out[f"LST_{part}_1km"], out[qc_key] = dn, qc
    elif product == "modis-09A1-061":
        for b in MIRROR_BANDS:
            out[f"sur_refl_b0{b}"] = np.round(f[f"refl_b0{b}"] * 1e4).astype("int16")
        state = np.where(cloud, 1, 0)  # bits 0-1: 1 = cloudy
        out["sur_refl_state_500m"] = (state | np.where(wet, 0b111 << 3, 0b001 << 3)).astype(
            "uint16"
        )  # bits 3-5 land/water
    elif product == "modis-15A2H-061":
        out["Lai_500m"] = np.where(wet, 254, np.round(f["lai"] / 0.1)).astype("uint8")
        out["Fpar_500m"] = np.where(wet, 254, np.round(f["fpar"] / 0.01)).astype("uint8")
        out["FparLai_QC"] = np.where(cloud, 0b100 << 5, 0).astype("uint8")  # SCF_QC 4: not produced
        out["Lai_500m"] = np.where(cloud, 255, out["Lai_500m"]).astype("uint8")
        out["Fpar_500m"] = np.where(cloud, 255, out["Fpar_500m"]).astype("uint8")
    elif product == "modis-17A2HGF-061":
        kg_per_period = f["gpp"] * 8 / 1000.0
        out["Gpp_500m"] = np.where(wet, 32766, np.round(kg_per_period / 0.0001)).astype("int16")
        out["Psn_QC_500m"] = np.zeros(lon.shape, dtype="uint8")
    return out


def _write_cog(path: Path, data: np.ndarray, transform: tuple, nodata: int | None) -> None:
    """A Cloud-Optimized GeoTIFF (GDAL's COG driver: 512-pixel tiles, deflate with the horizontal
    predictor, overviews by nearest neighbour so QA bits and codes are never averaged) in the MODIS
    sinusoidal CRS, with the product's fill value as its nodata where it has one."""
    import rasterio
    import rasterio.shutil
    from affine import Affine
    from rasterio.io import MemoryFile

    profile = {
        "driver": "GTiff", "height": data.shape[0], "width": data.shape[1], "count": 1, "dtype": data.dtype.name,
        "crs": rasterio.crs.CRS.from_wkt(SINUSOIDAL_WKT), "transform": Affine(*transform),
    }  # fmt: skip
    if nodata is not None:
        profile["nodata"] = nodata
    with MemoryFile() as mem:
        with mem.open(**profile) as tmp:
            tmp.write(data, 1)
        with mem.open() as src:
            rasterio.shutil.copy(src, str(path), driver="COG", COMPRESS="DEFLATE", LEVEL="1", PREDICTOR="2",
                                 BLOCKSIZE="512", OVERVIEW_RESAMPLING="NEAREST", NUM_THREADS="ALL_CPUS")  # fmt: skip


def _item_dict(collection: str, item_id: str, start: pd.Timestamp, end: pd.Timestamp, h: int, v: int,
               pixels: int, platform: str, assets: dict[str, dict]) -> dict:  # fmt: skip
    a, _, c, _, e, f = tile_transform(h, v, pixels)
    x0, x1, y1, y0 = c, c + a * pixels, f, f + e * pixels
    xs = np.linspace(x0, x1, 9)
    ys = np.linspace(y0, y1, 9)
    ring = [(x, y0) for x in xs] + [(x1, y) for y in ys] + [(x, y1) for x in xs[::-1]] + [(x0, y) for y in ys[::-1]]
    lon, lat = sinusoidal_to_lonlat(np.array([p[0] for p in ring]), np.array([p[1] for p in ring]))
    coords = [[round(float(o), 6), round(float(a_), 6)] for o, a_ in zip(lon, lat) if np.isfinite(o)]
    coords.append(coords[0])
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [
            "https://stac-extensions.github.io/projection/v1.0.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
        ],
        "id": item_id,
        "collection": collection,
        "bbox": [
            min(p[0] for p in coords),
            min(p[1] for p in coords),
            max(p[0] for p in coords),
            max(p[1] for p in coords),
        ],  # fmt: skip
        "geometry": {"type": "Polygon", "coordinates": [coords]},
        "properties": {
            "datetime": None,
            "start_datetime": start.strftime("%Y-%m-%dT00:00:00Z"),
            "end_datetime": end.strftime("%Y-%m-%dT23:59:59Z"),
            "platform": platform,
            "instruments": ["modis"],
            "modis:horizontal-tile": h,
            "modis:vertical-tile": v,
            "modis:tile-id": f"51{h:03d}{v:03d}",
            "proj:epsg": None,
            "proj:wkt2": SINUSOIDAL_WKT,
            "proj:shape": [pixels, pixels],
            "proj:transform": [a, 0.0, c, 0.0, e, f],
        },
        "links": [],
        "assets": assets,
    }


def _write_item(root: Path, cid: str, start: pd.Timestamp, prefix: str, platform: str, h: int,
                v: int, grid: tuple, seed: int) -> Any:  # fmt: skip
    """One item: its assets' COGs, and the pystac Item pointing at them (absolute hrefs)."""
    import pystac

    spec = MIRROR_PRODUCTS[cid]
    short, pixels = spec["short"], spec["pixels"]
    end = _period_end(start)
    made = start + pd.Timedelta(days=9, hours=4, minutes=15, seconds=28)  # the granule's production time
    item_id = f"{prefix}{short}.A{start.year}{start.day_of_year:03d}.h{h:02d}v{v:02d}.061.{made:%Y}{made.day_of_year:03d}{made:%H%M%S}"
    folder = root / cid / item_id
    folder.mkdir(parents=True, exist_ok=True)
    lon, lat, spatial = grid
    arrays = _encode(cid, lon, lat, _middle_day(start), np.random.default_rng(seed), platform, spatial)
    assets = {}
    for asset in spec["assets"]:
        name = f"{item_id}_{asset.key}.tif"
        _write_cog(folder / name, arrays[asset.key], tile_transform(h, v, pixels), asset.fill)
        assets[asset.key] = {
            "href": str(folder / name),
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "title": asset.key,
            "raster:bands": [dict(asset.band)],
            "roles": ["data"],
        }
    return pystac.Item.from_dict(_item_dict(cid, item_id, start, end, h, v, pixels, platform, assets), migrate=False)


def write_stac(root: Path, cfg: MirrorConfig) -> Path:
    """The static STAC catalog and its COGs (items written in parallel threads: GDAL and numpy
    release the GIL; each item has a seed of its own, so the files do not depend on the order);
    returns ``catalog.json``."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    import pystac

    catalog = pystac.Catalog(id="fluxmap-modis-mirror", description="A local mirror of Planetary Computer MODIS 6.1 items (fluxmap test data)")  # fmt: skip
    starts = mirror_periods(cfg)
    grids: dict[tuple[int, int, int], tuple] = {}
    for spec in MIRROR_PRODUCTS.values():
        for h, v in cfg.tiles:
            if (h, v, spec["pixels"]) not in grids:
                lon, lat = _pixel_lonlat(h, v, spec["pixels"])
                grids[(h, v, spec["pixels"])] = (lon, lat, _spatial(lon, lat))
    tasks: list[tuple] = []
    for cid, spec in MIRROR_PRODUCTS.items():
        platforms = [("MOD", "terra")] + ([("MYD", "aqua")] if cfg.aqua and spec["short"] == "11A2" else [])
        for start in starts:
            for prefix, platform in platforms:
                for h, v in cfg.tiles:
                    tasks.append(
                        (cid, start, prefix, platform, h, v, grids[(h, v, spec["pixels"])], cfg.seed + len(tasks))
                    )
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        items = list(pool.map(lambda t: _write_item(root, *t), tasks))
    for cid, spec in MIRROR_PRODUCTS.items():
        extent = pystac.Extent(
            pystac.SpatialExtent([[-180.0, -90.0, 180.0, 90.0]]),
            pystac.TemporalExtent([[starts[0].to_pydatetime(), None]]),
        )
        coll = pystac.Collection(id=cid, description=spec["title"], extent=extent, title=spec["title"],
                                 license="proprietary")  # fmt: skip
        coll.add_items([i for i, t in zip(items, tasks) if t[0] == cid])
        catalog.add_child(coll)
    catalog.normalize_hrefs(str(root))
    catalog.make_all_asset_hrefs_relative()  # a mirror that can be moved, as a self-contained catalog is
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    # pystac writes its own STAC version and projection extension (v2: proj:code); put back the fields
    # the Planetary Computer publishes (STAC 1.0.0, projection v1.0.0 with proj:epsg null).
    for item, (cid, start, _, platform, h, v, *_rest) in zip(items, tasks):
        path = Path(item.get_self_href())
        saved = json.loads(path.read_text())
        pixels = MIRROR_PRODUCTS[cid]["pixels"]
        end = _period_end(start)
        mine = _item_dict(cid, item.id, start, end, h, v, pixels, platform, {})
        saved.update({k: mine[k] for k in ("stac_version", "stac_extensions", "properties")})
        path.write_text(json.dumps(saved, indent=2))
    return root / "catalog.json"


# --- FLUXNET towers ---------------------------------------------------------------------------


def _sites(cfg: MirrorConfig) -> pd.DataFrame:
    rng = np.random.default_rng(cfg.seed + 1)
    w, s, e, n = cfg.box
    rows: list[dict] = []
    while len(rows) < cfg.n_sites:
        lon, lat = rng.uniform(w + 0.2, e - 0.2), rng.uniform(s + 0.2, n - 0.2)
        if water(np.array(lon), np.array(lat)) or np.hypot(lon - LAKE[0], lat - LAKE[1]) < LAKE[2] + 0.1:
            continue
        rows.append({"sitename": f"MI-T{len(rows) + 1:02d}", "lat": round(lat, 4), "lon": round(lon, 4),
                     "classid": ["CRO", "DBF", "GRA", "ENF"][len(rows) % 4], "utc_offset": 1})  # fmt: skip
    return pd.DataFrame(rows)


def nee_truth(lon: float, lat: float, day: np.ndarray) -> np.ndarray:
    """The towers' daily NEE (g C m-2 d-1, negative uptake): respiration rising with temperature
    minus a share of GPP."""
    f = fields(np.asarray(lon, "float32"), np.asarray(lat, "float32"), day)
    reco = 2.0 * np.exp(0.06 * (f["lst_day"] - 293.0))
    return reco - 0.85 * f["gpp"]


def write_fluxnet(root: Path, cfg: MirrorConfig) -> tuple[Path, Path]:
    """FLUXNET2015 SUBSET DD files (``FLX_<site>_FLUXNET2015_SUBSET_DD_2019-2019_1-4.csv``) and the
    site table; returns (the files' folder, the site table)."""
    rng = np.random.default_rng(cfg.seed + 2)
    root.mkdir(parents=True, exist_ok=True)
    sites = _sites(cfg)
    starts = mirror_periods(cfg)
    days = pd.date_range(starts[0], starts[-1] + pd.Timedelta(days=7), freq="D")
    for _, site in sites.iterrows():
        doy = days.day_of_year.to_numpy(float) + 0.5
        nee = nee_truth(site.lon, site.lat, doy) + rng.normal(0, 0.4, len(days))
        gap = rng.random(len(days)) < 0.05
        ta = np.array([truth("t2m", site.lon, site.lat, d) for d in doy]) - 273.15
        frame = pd.DataFrame({
            "TIMESTAMP": days.strftime("%Y%m%d"),
            "TA_F": np.round(ta, 3),
            "NEE_VUT_REF": np.where(gap, -9999, np.round(nee, 5)),
            "NEE_VUT_REF_QC": np.where(gap, -9999, np.round(rng.uniform(0.7, 1.0, len(days)), 3)),
        })  # fmt: skip
        frame.to_csv(root / f"FLX_{site.sitename}_FLUXNET2015_SUBSET_DD_2019-2019_1-4.csv", index=False)
    info = root / "siteinfo_mirror.csv"
    sites.to_csv(info, index=False)
    return root, info


def write_mirror(root: str | Path, cfg: MirrorConfig | None = None) -> dict[str, Path]:
    """The whole mirror under ``root``: ``stac/catalog.json``, ``arco-era5/<store>``, ``fluxnet/``.
    Returns their paths (``stac``, ``era5``, ``fluxnet``, ``site_info``)."""
    cfg = cfg or MirrorConfig()
    root = Path(root)
    from fluxmap.demo.mirror_era5 import write_arco_era5

    stac = write_stac(root / "stac", cfg)
    era5 = write_arco_era5(root / "arco-era5", cfg)
    flx, info = write_fluxnet(root / "fluxnet", cfg)
    (root / "MIRROR.json").write_text(pd.Series({"seed": cfg.seed, "first_period": cfg.first_period,
                                                 "n_periods": cfg.n_periods}).to_json())  # fmt: skip
    return {"stac": stac, "era5": era5, "fluxnet": flx, "site_info": info}
