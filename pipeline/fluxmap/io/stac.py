"""STAC sources: items found in a STAC API or a static STAC catalog, loaded lazily with odc-stac.

The Planetary Computer's MODIS 6.1 collections are the model (sinusoidal COGs, granule items of
one tile and 8-day period, Terra and Aqua in one collection); a static catalog laid out the same
way (fluxmap's offline mirror, :mod:`fluxmap.demo.mirror`) is filtered here as the API filters.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import xarray as xr

from fluxmap.io.catalog_schema import CatalogError

__all__ = ["open_stac", "stac_items"]


def _period(datetime: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The first and last instant of an ISO 8601 interval ``start/end`` (dates are whole days)."""
    first, _, last = datetime.partition("/")
    t0 = pd.Timestamp(first) if first not in ("", "..") else pd.Timestamp.min
    t1 = pd.Timestamp(last or first) if last not in ("..",) else pd.Timestamp.max
    if len(last or first) <= 10:  # a date: the whole day
        t1 = t1 + pd.Timedelta(days=1) - pd.Timedelta(seconds=1)
    return t0.tz_localize(None) if t0.tzinfo else t0, t1.tz_localize(None) if t1.tzinfo else t1


def _item_period(item: Any) -> tuple[pd.Timestamp, pd.Timestamp]:
    p = item.properties
    start = p.get("start_datetime") or p.get("datetime")
    end = p.get("end_datetime") or p.get("datetime")
    return pd.Timestamp(start).tz_localize(None), pd.Timestamp(end).tz_localize(None)


def stac_items(
    url: str, collection: str, bbox: list[float], datetime: str, *, platform: str | None = None, local: bool = False
) -> list[Any]:
    """The items of ``collection`` that meet ``bbox`` and the interval ``datetime``, from a STAC API
    (searched with pystac-client, assets signed on the Planetary Computer) or, ``local``, a static
    catalog file (walked with pystac, filtered here the way an API filters). ``platform`` keeps the
    items of one satellite (``terra``, ``aqua``): the Planetary Computer serves MOD (Terra) and MYD
    (Aqua) composites of the same period in one collection, and loading both would mix them."""
    from fluxmap._extras import require

    box = [float(v) for v in bbox]
    if local:
        pystac = require("pystac", "cloud")
        root = pystac.Catalog.from_file(url)
        coll = root.get_child(collection)
        if coll is None:
            known = sorted(c.id for c in root.get_children())
            raise CatalogError(f"STAC catalog {url}: no collection {collection!r}; it has {known}")
        t0, t1 = _period(datetime)
        items = []
        for item in coll.get_items(recursive=True):
            w, s, e, n = item.bbox
            i0, i1 = _item_period(item)
            if w <= box[2] and e >= box[0] and s <= box[3] and n >= box[1] and i0 <= t1 and i1 >= t0:
                items.append(item)
    else:
        pystac_client = require("pystac_client", "cloud")
        modifier = require("planetary_computer", "cloud").sign_inplace if "planetarycomputer" in url else None
        client = pystac_client.Client.open(url, modifier=modifier)
        items = list(client.search(collections=[collection], bbox=box, datetime=datetime).item_collection())
    if platform is not None:
        items = [i for i in items if str(i.properties.get("platform", "")).lower() == platform.lower()]
    return sorted(items, key=lambda i: (_item_period(i)[0], i.id))


def open_stac(
    url: str,
    collection: str,
    assets: list[str],
    bbox: str | list[float],
    datetime: str,
    chunks: dict[str, int],
    crs: str | None = None,
    resolution: float | str | None = None,
    platform: str | None = None,
    *,
    nodata: dict[str, int] | None = None,
    local: bool = False,
) -> xr.Dataset:
    """Find the STAC items (:func:`stac_items`) and load them as a lazy cube with odc-stac.

    Dimensions come back as ``(time, y, x)`` in the items' CRS (MODIS sinusoidal) unless
    ``crs``/``resolution`` ask for another grid: then odc-stac reprojects each output chunk from the
    tiles it overlaps when it is computed (nearest neighbour, so QA bits and fill values stay whole;
    decoding comes after), and the tiles are joined across their edges. Band names are the asset keys
    (the products' SDS names), so the decoders apply as they are; ``nodata`` gives each asset's fill
    value (from the product's guide), which is also what odc-stac writes where no tile lies. Time is
    each item's period start (its ``start_datetime``). Needs ``pip install 'fluxmap[cloud]'``.
    """
    from fluxmap._extras import require

    odc_stac = require("odc.stac", "cloud")
    box = [float(v) for v in bbox.split(",")] if isinstance(bbox, str) else list(bbox)
    items = stac_items(url, collection, box, datetime, platform=platform, local=local)
    if len(items) == 0:
        raise CatalogError(
            f"STAC {url}: no {collection} items"
            + (f" of {platform}" if platform else "")
            + f" in bbox {box} for {datetime}"
        )
    extra: dict[str, Any] = {}
    if crs is not None:
        extra["crs"] = crs
    if resolution is not None:
        extra["resolution"] = float(resolution)
    # odc-stac reads a band's type from raster:bands; an asset configured here without one would be float32.
    declared = {k: (a.extra_fields.get("raster:bands") or [{}])[0].get("data_type") for k, a in items[0].assets.items()}
    cfg = {
        collection: {
            "assets": {
                k: {"nodata": v, **({"data_type": declared[k]} if declared.get(k) else {})}
                for k, v in (nodata or {}).items()
                if k in assets
            }
        }
    }
    ds = odc_stac.load(
        items, bands=assets, bbox=box, chunks=chunks, groupby="solar_day", resampling="nearest", stac_cfg=cfg, **extra
    )
    starts = pd.DatetimeIndex(ds["time"].values).normalize().astype("datetime64[ns]")
    return ds.assign_coords(time=starts).rename(
        {k: v for k, v in (("latitude", "lat"), ("longitude", "lon")) if k in ds.dims}
    )
