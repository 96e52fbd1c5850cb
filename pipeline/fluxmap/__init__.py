"""fluxmap: site carbon-flux measurements to global, gridded, validated maps.

Three layers, each a subpackage, and nothing imports upward: :mod:`fluxmap.science` (pure
functions of arrays and tables), :mod:`fluxmap.io` (the edges: catalogs, site files, model files,
the CF Zarr store, figures, reports, provenance) and :mod:`fluxmap.stages` (one runner per stage:
sites -> extract -> models -> predict -> report), driven by :mod:`fluxmap.cli`.
:mod:`fluxmap.demo` builds the embedded demo world. This module re-exports the public API; no
module of the package imports it.
"""

from __future__ import annotations

import importlib
from typing import Any

from fluxmap._version import __version__ as __version__

# The public API, imported on first use: ``import fluxmap`` (and ``fluxmap --help``) stays fast.
_LAZY = {
    "fluxmap.config": ("DemoConfig", "RunConfig"),
    "fluxmap.demo": ("DemoWorld", "build_world"),
    "fluxmap.io.catalog": ("CatalogError", "FluxCatalog", "builtin_catalog", "describe", "load_catalog"),
    "fluxmap.io.models": ("load_model", "save_model"),
    "fluxmap.io.sites": ("SiteTable", "read_cosore_daily", "read_fluxnet", "read_generic_csv", "read_srdb"),
    "fluxmap.science.extract": ("extract_at_sites", "locate_sites", "to_periods"),
    "fluxmap.science.periods": ("aggregate_to_periods", "period_bounds", "period_days", "period_start_of",
                                "period_starts"),
    "fluxmap.science.products": ("TARGETS", "VARIABLES", "spec"),
    "fluxmap.science.train": ("fit",),
    "fluxmap.science.validate": ("loso_predict", "metrics"),
    "fluxmap.science.zones": ("ZoneModel", "assign_zones", "fit_zones"),
}  # fmt: skip
_WHERE = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fluxmap' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


__all__ = [
    "TARGETS",
    "VARIABLES",
    "CatalogError",
    "DemoConfig",
    "DemoWorld",
    "FluxCatalog",
    "RunConfig",
    "SiteTable",
    "ZoneModel",
    "aggregate_to_periods",
    "assign_zones",
    "build_world",
    "builtin_catalog",
    "describe",
    "extract_at_sites",
    "fit",
    "fit_zones",
    "load_catalog",
    "load_model",
    "locate_sites",
    "loso_predict",
    "metrics",
    "period_bounds",
    "period_days",
    "period_start_of",
    "period_starts",
    "read_cosore_daily",
    "read_fluxnet",
    "read_generic_csv",
    "read_srdb",
    "save_model",
    "spec",
    "to_periods",
]
