"""The ``variability`` and ``project`` blocks of a run configuration: analyses of the finished 8-day
maps (year-to-year variability; a projection under a delta-changed climate)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["InversionConfig", "ProjectConfig", "VariabilityConfig"]


@dataclass(frozen=True)
class VariabilityConfig:
    """Year-to-year variability of the maps (``variability/``): regional anomalies per global,
    latitude band and zone scope, and per region of a user mask."""

    regions: str = "ar6"
    """The regions of the ``regions`` scope (:mod:`fluxmap.io.regions`): ``ar6``, the IPCC AR6 land
    regions (Iturbide et al. 2020, shipped with fluxmap, rasterized by regionmask); or a mask file
    (NetCDF, integer codes on lat/lon; CF ``flag_values``/``flag_meanings`` name them), e.g.
    CarbonTracker's ``regions.nc`` with ``variable: transcom_regions`` for the TransCom 3 land
    regions; empty: none."""
    variable: str = "region"
    """The mask file's variable."""


@dataclass(frozen=True)
class ProjectConfig:
    """A projection: the trained 8-day models applied to a delta-changed climate after the maps
    (``project/``): every temperature + ``warming_k``, precipitation x ``precipitation_factor``."""

    enabled: bool | None = None
    """None: on for the demo world only (+2 K, precipitation x 0.9); true or false anywhere."""
    warming_k: float = 2.0
    """Warming added to every temperature predictor (K)."""
    precipitation_factor: tuple[float, ...] = (0.9,)
    """Precipitation factor: one, or twelve (January to December)."""
    scenario_catalog: str = ""
    """A catalog whose canonical entries (``t2m``, ``tp``: a CMIP file's ``tas`` and ``pr`` mapped to them,
    units converted by the catalog) give a climate model's historical and future runs; set, it replaces
    ``warming_k`` and ``precipitation_factor`` by their per-cell, per-month delta."""
    scenario_params: dict[str, str] = field(default_factory=dict)
    """The scenario catalog's user parameters (e.g. ``ROOT``)."""
    historical_entry: str = "historical"
    """The scenario catalog's entry of the historical run."""
    future_entry: str = "future"
    """The scenario catalog's entry of the future run (may be the same entry when one file spans both)."""
    historical_years: tuple[int, int] = (1981, 2010)
    """The historical period (calendar years, inclusive)."""
    future_years: tuple[int, int] = (2041, 2070)
    """The future period (calendar years, inclusive)."""

    def __post_init__(self) -> None:
        try:
            self.delta()
        except ValueError as e:
            raise ValueError(f"project: {e}") from None

    def delta(self) -> Any:
        """The scenario as a :class:`fluxmap.science.projection.Delta`."""
        from fluxmap.science.projection import Delta

        return Delta(self.warming_k, tuple(self.precipitation_factor))


@dataclass(frozen=True)
class InversionConfig:
    """Training with an atmospheric-inversion constraint (``model.inversion``; Upton et al.,
    :mod:`fluxmap.science.inversion`): the target's model trained on the towers and on sparse points
    whose area-weighted sum per region and period is pulled to the inversions' regional fluxes,
    beside the same model without the constraint (``inversion/<target>/``)."""

    source: str = "demo"
    """The regional fluxes: ``demo`` (the demo world's inversion table), a generic table (CSV:
    region, period_start[, period_end], flux, units, spread or member; :mod:`fluxmap.io.inversion`),
    or empty with ``gridded``."""
    gridded: tuple[tuple[str, ...], ...] = ()
    """CarbonTracker-style gridded files (``bio_flux_opt``, mol m-2 s-1, 1 x 1 deg, monthly): one list
    of files per inversion (ensemble member), integrated over ``regions`` by fluxmap."""
    flux_variable: str = "bio_flux_opt"
    """The gridded files' flux variable."""
    regions: str = "ar6"
    """The regions the fluxes are given for: ``ar6`` (IPCC AR6 land regions) or a mask file."""
    region_variable: str = "region"
    """The mask file's variable (``transcom_regions`` for CarbonTracker's ``regions.nc``)."""
    target: str = "nee:8day"
    """The 8-day target trained with the constraint."""
    years: tuple[int, ...] = ()
    """The years whose regional fluxes constrain the training (empty: the predictor cube's years); a
    year outside the cube's periods is an error."""
    points_per_region: int = 30
    """K: sparse points per region in training (see ``benchmarks/bench_inversion.py`` for the error
    of the sparse estimate against K)."""
    evaluation_points_per_region: int = 300
    """Points per region (an independent draw) that estimate each variant's regional fluxes for the
    comparison and the held-out regions."""
    lambdas: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03)
    """The weights of the regional term tried (0, the unconstrained model, always is)."""
    site_folds: int = 5
    """Folds of whole physical sites that score each lambda's site skill (0: one site per fold)."""
    region_folds: int = 5
    """Folds of whole regions, left out of the constraint, that score each lambda's regional skill."""
    max_site_r2_loss: float = 0.02
    """The chosen lambda is the one with the best held-out regional skill among those whose site R2
    is at most this much below the unconstrained model's."""
    fixed_lambda: float | None = None
    """Set: the constrained model uses this lambda whatever the validation prefers (the trade-off is
    still scored and written, with the rule's own choice)."""
    relative_spread: float = 0.3
    """Without an ensemble (one inversion, no spread column): the spread as a fraction of |flux|."""
    min_spread_pg_c: float = 0.001
    """The smallest spread (Pg C per period) a regional flux gets where none is given."""
    params: dict[str, Any] = field(default_factory=dict)
    """XGBoost hyperparameters over fluxmap's defaults (the constraint is an XGBoost objective)."""
    loso: bool = True
    """Also the unified models' site R2 leaving one physical site out, without and with the chosen
    lambda (two fits per site): the site skill the constraint costs, as LOSO."""
    zone_models: bool = True
    """Also the zone models without and with the constraint (the unified model's lambda; block
    coordinate descent over the zones), compared beside the unified ones."""

    def __post_init__(self) -> None:
        if self.points_per_region < 1 or self.evaluation_points_per_region < 1:
            raise ValueError("model.inversion: points per region must be >= 1")
        if any(v <= 0 for v in self.lambdas):
            raise ValueError(f"model.inversion.lambdas = {self.lambdas}: each must be > 0 (0 is always tried)")
        if not self.source and not self.gridded:
            raise ValueError("model.inversion: give source (demo or a table) or gridded files")
        if not self.target.endswith(":8day"):
            raise ValueError(f"model.inversion.target = {self.target!r}: the constraint trains an 8-day target")
