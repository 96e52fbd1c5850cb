"""What several stages share: where the run's catalog is and what identifies its data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import xarray as xr

from fluxmap.config import RunConfig
from fluxmap.io.catalog import CatalogError, FluxCatalog, builtin_catalog, load_catalog
from fluxmap.io.models import ComposedFiles, ModelFiles, load_mapping, load_zones, model_files
from fluxmap.io.provenance import cache_key, data_fingerprint, sha256
from fluxmap.io.store import stored_key, write_keyed
from fluxmap.science.features import grid_zone_factors
from fluxmap.science.zones import zone_map

__all__ = [
    "model_sources",
    "modelled_targets",
    "store_is_current",
    "Log",
    "catalog_inputs",
    "catalog_location",
    "named_damage",
    "open_catalog",
    "zone_map_store",
]

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


def catalog_inputs(cfg: RunConfig, entries: tuple[str, ...] | list[str] | None = None) -> dict[str, Any]:
    """What identifies the catalog's data: the catalog file's checksum, its parameters, and a
    fingerprint of every local source of ``entries`` (default: all) made from the files it holds
    (:func:`~fluxmap.io.provenance.data_fingerprint`; a damaged chunk changes it). Remote sources
    are named by address only (said so: ``remote:``)."""
    path, params = catalog_location(cfg)
    cat = load_catalog(path, **params)
    data = {}
    for name in entries if entries is not None else cat.entries:
        src = cat.source(name)
        if src.local is None:
            data[name] = f"remote:{src.url}"
        else:
            data[name] = data_fingerprint(src.local) if src.local.exists() else "missing"
    return {"catalog": sha256(path), "params": dict(sorted(params.items())), "data": data}


def named_damage(cat: FluxCatalog, entries: list[str] | tuple[str, ...], error: Exception) -> Exception:
    """After a computation over ``entries`` failed with ``error``: a :class:`CatalogError` naming the
    entry, array, chunk and file that cannot be decoded, when one is found; else ``error`` itself."""
    bad = [p for e in entries for p in cat.chunk_problems(e) if p["problem"].startswith("cannot be decoded")]
    if not bad:
        return error
    first = bad[0]
    more = f" (and {len(bad) - 1} more damaged chunk(s))" if len(bad) > 1 else ""
    return CatalogError(
        f"{cat.path}: entry {first['entry']!r}, array {first['array']!r}, chunk {first['chunk']} "
        f"({', '.join(f'{d} {r}' for d, r in first['ranges'].items())}; file {first['file']}) "
        f"{first['problem']}{more}"
    )


_ZONE_KEY = "fluxmap_zone_map_key"


def zone_map_store(
    cfg: RunConfig, cubes: dict[str, xr.Dataset], models_dir: Path, out: Path, *, reuse: bool = True
) -> tuple[Path, bool]:
    """The zone of every cell of the catalog's grid as a chunked Zarr store, made once.

    The models stage writes ``models/zone_map.zarr``; the predict stage uses it when it was made
    from the same ``zones.json`` and the same predictor data (fingerprints of the files, not notes)
    with the same chunks, and its own files are unchanged since (see :func:`stored_key`), and
    otherwise writes ``out/zone.zarr`` itself. ``cubes`` are the
    catalog's decoded entries (ERA5 at its own time step). Computed chunk by chunk: memory is
    bounded by the chunk, not the grid. Returns the store and whether it was reused (``reuse=False``
    always writes it, e.g. to time it).
    """
    base = cubes["mod09a1"]
    chunks = {d: int(base.chunksizes[d][0]) if base.chunks else base.sizes[d] for d in ("lat", "lon")}
    inputs = catalog_inputs(cfg, ("era5", "mod09a1", "static"))
    key = cache_key({"zone_map": chunks}, {"zones": sha256(models_dir / "zones.json"), **inputs})
    for store in (models_dir / "zone_map.zarr", out / "zone.zarr"):
        if reuse and store.is_dir() and stored_key(store, key_attr=_ZONE_KEY) == key:
            return store, True
    store = out / ("zone_map.zarr" if out == models_dir else "zone.zarr")
    land = cubes["static"]["land_fraction"] > 0.5
    zone = zone_map(load_zones(models_dir / "zones.json"), grid_zone_factors(cubes), land).chunk(chunks)
    try:
        write_keyed(zone.to_dataset(name="zone"), store, key, key_attr=_ZONE_KEY)
    except Exception as e:  # a damaged input chunk: say which one
        raise named_damage(open_catalog(cfg), ("era5", "mod09a1", "static"), e) from e
    return store, False


def modelled_targets(cfg: RunConfig, models_dir: Path, table: str) -> list[str]:
    """The configured targets of ``table`` (``8day`` or ``annual``) that have a unified model."""
    return [
        t
        for t in cfg.model.all_targets()
        if t.endswith(f":{table}") and model_files(models_dir / t.replace(":", "_"), "model_unified.*")
    ]


def model_sources(
    targets: list[str], models_dir: Path, *, ensemble: bool, unified_map: bool, member_maps: bool = False
) -> list[ModelFiles | ComposedFiles]:
    """What maps each target: its model folder, or (the models stage chose ``ratio`` in its
    ``mapping.json``) its denominator's and the ratio's folders composed."""

    def files(t: str) -> ModelFiles:
        return ModelFiles.of(
            t.split(":")[0], models_dir / t.replace(":", "_"), ensemble=ensemble, unified_map=unified_map,
            member_maps=member_maps,
        )  # fmt: skip

    out: list[ModelFiles | ComposedFiles] = []
    for t in targets:
        note = load_mapping(models_dir / t.replace(":", "_"))
        if note and note["mapped_as"] == "ratio" and {note["denominator"], note["ratio"]} <= set(targets):
            out.append(ComposedFiles(t.split(":")[0], files(note["denominator"]), files(note["ratio"])))
        else:
            out.append(files(t))
    return out


def store_is_current(store: Path, key: str) -> bool:
    """Whether a prediction store exists, opens and was made under ``key`` (else it is rewritten)."""
    try:
        return store.exists() and xr.open_zarr(store, consolidated=True).attrs.get("fluxmap_run_key") == key
    except (OSError, ValueError, KeyError):
        return False
