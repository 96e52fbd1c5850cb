"""fluxmap: site carbon-flux measurements to global, gridded, validated maps.

Stages, in pipeline order: :mod:`fluxmap.catalog` (lazy predictor cubes from Intake
catalogs, decoded by :mod:`fluxmap.products`), :mod:`fluxmap.sites` (observations and
quarantine), :mod:`fluxmap.periods` (the MODIS 8-day calendar), :mod:`fluxmap.extract`
and :mod:`fluxmap.features` (predictors at sites), :mod:`fluxmap.zones`,
:mod:`fluxmap.selection`, :mod:`fluxmap.train`, :mod:`fluxmap.validate`,
:mod:`fluxmap.uncertainty` (models), wired by :mod:`fluxmap.run` and :mod:`fluxmap.cli`.
:mod:`fluxmap.demo` builds the embedded demo world.
"""

__version__ = "0.1.0"

from fluxmap.catalog import CatalogError, FluxCatalog, builtin_catalog, describe, load_catalog  # noqa: E402
from fluxmap.config import DemoConfig, RunConfig  # noqa: E402
from fluxmap.demo import DemoWorld, build_world  # noqa: E402
from fluxmap.extract import extract_at_sites, locate_sites, to_periods  # noqa: E402
from fluxmap.periods import (  # noqa: E402
    aggregate_to_periods,
    period_bounds,
    period_days,
    period_start_of,
    period_starts,
)
from fluxmap.products import TARGETS, VARIABLES, spec  # noqa: E402
from fluxmap.sites import SiteTable, read_cosore_daily, read_fluxnet, read_generic_csv, read_srdb  # noqa: E402
from fluxmap.train import fit, load_model, save_model  # noqa: E402
from fluxmap.validate import loso_predict, metrics  # noqa: E402
from fluxmap.zones import ZoneModel, assign_zones, fit_zones  # noqa: E402

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
