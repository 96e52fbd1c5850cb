"""fluxmap: site carbon-flux measurements to global, gridded, validated maps.

Stages, in pipeline order: :mod:`fluxmap.catalog` (lazy predictor cubes from
Intake catalogs, decoded by :mod:`fluxmap.products`), :mod:`fluxmap.periods`
(the MODIS 8-day calendar), :mod:`fluxmap.demo` (the embedded demo world).
"""

from fluxmap.catalog import CatalogError, FluxCatalog, builtin_catalog, describe, load_catalog
from fluxmap.config import DemoConfig
from fluxmap.demo import DemoWorld, build_world
from fluxmap.periods import period_bounds, period_days, period_start_of, period_starts
from fluxmap.products import TARGETS, VARIABLES, spec

__version__ = "0.1.0"

__all__ = [
    "TARGETS",
    "VARIABLES",
    "CatalogError",
    "DemoConfig",
    "DemoWorld",
    "FluxCatalog",
    "build_world",
    "builtin_catalog",
    "describe",
    "load_catalog",
    "period_bounds",
    "period_days",
    "period_start_of",
    "period_starts",
    "spec",
]
