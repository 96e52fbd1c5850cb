"""What several stages share: where the run's catalog is and what identifies its data."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import xarray as xr

from fluxmap.config import RunConfig
from fluxmap.io.catalog import FluxCatalog, builtin_catalog, load_catalog
from fluxmap.io.models import load_zones
from fluxmap.io.provenance import cache_key, sha256
from fluxmap.io.store import stored_key, write_keyed
from fluxmap.science.features import grid_zone_factors
from fluxmap.science.zones import zone_map

__all__ = ["Log", "catalog_inputs", "catalog_location", "open_catalog", "upstream_key", "zone_map_store"]

Log = Callable[[str], None]
"""Where a stage writes its messages (``print`` by default)."""


def catalog_location(cfg: RunConfig) -> tuple[Path, dict[str, str]]:
    """The catalog file of the run and its parameters (``DEMO_ROOT`` defaults to the workdir's world)."""
    ex = cfg.extract
    params = dict(ex.catalog_params)
    if ex.catalog == "demo" and "DEMO_ROOT" not in params:
        params["DEMO_ROOT"] = str(Path(cfg.workdir) / "demo-world")
    path = Path(ex.catalog) if ex.catalog.endswith((".yaml", ".yml")) else builtin_catalog(ex.catalog)
    return path, params


def open_catalog(cfg: RunConfig) -> FluxCatalog:
    """The run's catalog, checked and opened (entries stay lazy)."""
    path, params = catalog_location(cfg)
    return load_catalog(path, **params)


def catalog_inputs(cfg: RunConfig) -> dict[str, str]:
    """Checksums that identify the catalog's data: the catalog file and, for a demo, its world."""
    path, params = catalog_location(cfg)
    return {
        "catalog": sha256(path),
        **({"demo_world": sha256(Path(params["DEMO_ROOT"]) / "world.json")} if "DEMO_ROOT" in params else {}),
    }


def upstream_key(cfg: RunConfig, stage: str) -> str:
    """The cache key recorded by an earlier stage (``none`` when it has not run)."""
    prov = Path(cfg.workdir) / stage / "provenance.json"
    return json.loads(prov.read_text())["cache_key"] if prov.is_file() else "none"


_ZONE_KEY = "fluxmap_zone_map_key"


def zone_map_store(
    cfg: RunConfig, cubes: dict[str, xr.Dataset], models_dir: Path, out: Path, *, reuse: bool = True
) -> tuple[Path, bool]:
    """The zone of every cell of the catalog's grid as a chunked Zarr store, made once.

    The models stage writes ``models/zone_map.zarr``; the predict stage uses it when it was made
    from the same ``zones.json``, catalog and demo world and with the same chunks (the key is kept
    in the store's attributes), and otherwise writes ``out/zone.zarr`` itself. ``cubes`` are the
    catalog's decoded entries (ERA5 at its own time step). Computed chunk by chunk: memory is
    bounded by the chunk, not the grid. Returns the store and whether it was reused (``reuse=False``
    always writes it, e.g. to time it).
    """
    base = cubes["mod09a1"]
    chunks = {d: int(base.chunksizes[d][0]) if base.chunks else base.sizes[d] for d in ("lat", "lon")}
    key = cache_key({"zone_map": chunks}, {"zones": sha256(models_dir / "zones.json"), **catalog_inputs(cfg)})
    for store in (models_dir / "zone_map.zarr", out / "zone.zarr"):
        if reuse and store.is_dir() and stored_key(store, key_attr=_ZONE_KEY) == key:
            return store, True
    store = out / ("zone_map.zarr" if out == models_dir else "zone.zarr")
    land = cubes["static"]["land_fraction"] > 0.5
    zone = zone_map(load_zones(models_dir / "zones.json"), grid_zone_factors(cubes), land).chunk(chunks)
    write_keyed(zone.to_dataset(name="zone"), store, key, key_attr=_ZONE_KEY)
    return store, False
