"""fluxmap: site carbon-flux measurements to global, gridded, validated maps.

Three layers, each a subpackage, and nothing imports upward: :mod:`fluxmap.science` (pure
functions of arrays and tables), :mod:`fluxmap.io` (the edges: catalogs, site files, model files,
the CF Zarr store, figures, reports, provenance) and :mod:`fluxmap.stages` (one runner per stage:
sites -> extract -> models -> predict -> report), driven by :mod:`fluxmap.cli`.
:mod:`fluxmap.demo` builds the embedded demo world. This module re-exports the public API; no
module of the package imports it.
"""

from fluxmap._version import __version__ as __version__
from fluxmap.config import DemoConfig, RunConfig  # noqa: E402
from fluxmap.demo import DemoWorld, build_world  # noqa: E402
from fluxmap.io.catalog import CatalogError, FluxCatalog, builtin_catalog, describe, load_catalog  # noqa: E402
from fluxmap.io.models import load_model, save_model  # noqa: E402
from fluxmap.io.sites import SiteTable, read_cosore_daily, read_fluxnet, read_generic_csv, read_srdb  # noqa: E402
from fluxmap.science.extract import extract_at_sites, locate_sites, to_periods  # noqa: E402
from fluxmap.science.periods import (  # noqa: E402
    aggregate_to_periods,
    period_bounds,
    period_days,
    period_start_of,
    period_starts,
)
from fluxmap.science.products import TARGETS, VARIABLES, spec  # noqa: E402
from fluxmap.science.train import fit  # noqa: E402
from fluxmap.science.validate import loso_predict, metrics  # noqa: E402
from fluxmap.science.zones import ZoneModel, assign_zones, fit_zones  # noqa: E402

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
