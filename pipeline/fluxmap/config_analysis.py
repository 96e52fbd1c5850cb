"""The ``variability`` and ``project`` blocks of a run configuration: analyses of the finished 8-day
maps (year-to-year variability; a projection under a delta-changed climate)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ProjectConfig", "VariabilityConfig"]


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
