"""What several stages share: where the run's catalog is and what identifies its data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from fluxmap.config import RunConfig
from fluxmap.io.catalog import CatalogError, FluxCatalog, builtin_catalog, load_catalog
from fluxmap.io.models import ComposedFiles, ModelFiles, load_mapping, load_zones, model_files
from fluxmap.io.provenance import cache_key, data_fingerprint, sha256
from fluxmap.io.store import stored_key, write_keyed
from fluxmap.science import products
from fluxmap.science.features import grid_zone_factors
from fluxmap.science.regrid import regrid_to
from fluxmap.science.zones import zone_map

__all__ = [
    "model_sources",
    "modelled_targets",
    "store_is_current",
    "Log",
    "catalog_inputs",
    "catalog_location",
    "discovery_attrs",
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
    static, lat, lon = cubes["static"], base["lat"].values, base["lon"].values
    if static.sizes["lat"] != lat.size or static.sizes["lon"] != lon.size or not np.allclose(static["lat"], lat):
        # Static layers on a grid of their own (ERA5's land-sea mask and relief): onto the MODIS grid.
        static = regrid_to(static, lat, lon, chunks=(chunks["lat"], chunks["lon"]))
    cubes = {**cubes, "static": static}
    land = static["land_fraction"] > 0.5
    zm = load_zones(models_dir / "zones.json")
    zone = zone_map(zm, grid_zone_factors(cubes, tuple(zm.factors)), land).chunk(chunks)
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


_SOURCE_REFERENCES = {
    "srdb": "Jian, J. et al. (2021) A global database of soil respiration data, version 5.0. Earth System Science "
    "Data 13, 255-267, doi:10.5194/essd-13-255-2021",
    "cosore": "Bond-Lamberty, B. et al. (2020) COSORE: A community database for continuous soil respiration and "
    "other soil-atmosphere greenhouse gas flux data. Global Change Biology 26, 7268-7283, doi:10.1111/gcb.15353",
    "fluxnet": "Pastorello, G. et al. (2020) The FLUXNET2015 dataset and the ONEFlux processing pipeline for eddy "
    "covariance data. Scientific Data 7, 225, doi:10.1038/s41597-020-0534-3",
}
_METHOD_REFERENCES = {
    "aoa": "Meyer, H. and Pebesma, E. (2021) Predicting into unknown space? Estimating the area of applicability "
    "of spatial prediction models. Methods in Ecology and Evolution 12, 1620-1633, doi:10.1111/2041-210X.13650",
    "landcover": "Friedl, M. and Sulla-Menashe, D. (2019) MCD12C1 MODIS/Terra+Aqua Land Cover Type Yearly L3 "
    "Global 0.05Deg CMG V006. NASA EOSDIS Land Processes DAAC, doi:10.5067/MODIS/MCD12C1.006",
}


def discovery_attrs(cfg: RunConfig, targets: list[str], *, step: str) -> dict[str, str]:
    """The ACDD-1.3 attributes of a store from the run's ``metadata`` block, its targets and its
    site sources (each source's data paper cited; the methods' papers as used)."""
    from fluxmap._version import __version__

    meta = cfg.metadata
    fluxes = [t.split(":")[0] for t in targets]
    names = [products.spec(f).long_name.split(",")[0] if f in products.VARIABLES else f for f in fluxes]
    kinds = sorted({s.kind.split("_")[0] for s in cfg.sites.sources})
    origin = (f"site records from {', '.join(kinds)}" if kinds else
              "the embedded demo world's synthetic sites and grids (a test bed, not real fluxes)")  # fmt: skip
    refs = [_SOURCE_REFERENCES[k] for k in kinds if k in _SOURCE_REFERENCES]
    refs.append(_METHOD_REFERENCES["aoa"])
    if cfg.extract.landcover:
        refs.append(_METHOD_REFERENCES["landcover"])
    if cfg.predict.published_source:
        refs.append(cfg.predict.published_source)
    refs.extend(meta.references)
    what = "8-day" if step == "8day" else "annual"
    out = {
        "title": meta.title or f"fluxmap {what} maps of {', '.join(names)}",
        "summary": meta.summary
        or (
            f"{what.capitalize()} mean {', '.join(names)} (g C m-2 d-1 of mapped land) predicted from {origin} with "
            "machine-learning models per environmental zone (PCA + k-means) and a unified model, validated "
            "leave-one-site-out with nested model choices; bootstrap ensemble spread and the area of "
            "applicability are given per cell."
        ),
        "keywords": ", ".join(["carbon flux", *names]),
        "license": meta.license,
        "references": "\n".join(refs),
        "source": f"fluxmap {__version__}",
        "product_version": __version__,
        "history": f"fluxmap {__version__} predict ({what} maps)",
    }
    for key in ("creator_name", "creator_email", "creator_url", "institution", "acknowledgement"):
        if getattr(meta, key):
            out[key] = getattr(meta, key)
    if meta.creator_name:
        out["creator_type"] = "person"
    return out
