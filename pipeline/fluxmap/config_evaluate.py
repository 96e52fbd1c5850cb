"""The ``evaluate`` block of a run configuration: gridded flux products scored against the sites
and fluxmap's maps (``fluxmap evaluate``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["EvaluateConfig", "ProductConfig", "evaluate_config_from_mapping"]


@dataclass(frozen=True)
class ProductConfig:
    """One gridded product: a NetCDF file or Zarr store (see :mod:`fluxmap.io.flux_products`)."""

    label: str
    """Short name in tables and figures."""
    path: str
    """The file or store."""
    variables: tuple[tuple[str, str], ...]
    """fluxmap's name -> the product's variable, e.g. ``{rh: rh, sr: rs}``."""
    signs: tuple[tuple[str, float], ...] = ()
    """fluxmap's name -> factor, e.g. ``{nee: -1}`` for a product's ``nbp`` (uptake positive)."""
    units: tuple[tuple[str, str], ...] = ()
    """fluxmap's name -> units, for variables whose file gives none."""
    climatology: bool = False
    """The product is one climatological year (its year label arbitrary): each observation is
    compared with the same days of that year (also when the file says so: a CF ``climatology``
    attribute, or fluxmap's annual map from climatologies)."""


@dataclass(frozen=True)
class EvaluateConfig:
    """Which products ``fluxmap evaluate`` (and ``fluxmap run``) scores, and how."""

    products: tuple[ProductConfig, ...] = ()
    """The products, each ``{label, path, variables, signs, units}``."""
    demo_products: bool = True
    """With the demo world: also its three synthetic ecosystem-model outputs with known faults."""
    by: tuple[str, ...] = ("ecosystem", "zone")
    """Columns of the site table the scores are also given within (IGBP class, zone)."""
    min_coverage: float = 0.5
    """Smallest fraction of an observation's days the product must cover for the pair to count."""

    def __post_init__(self) -> None:
        labels = [p.label for p in self.products]
        if len(set(labels)) != len(labels):
            raise ValueError(f"evaluate.products: labels must be unique, got {labels}")
        if not 0 < self.min_coverage <= 1:
            raise ValueError(f"evaluate.min_coverage must be in (0, 1], got {self.min_coverage}")


def _pairs(value: Any, where: str, kind: type) -> tuple[tuple[str, Any], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"{where} = {value!r}: expected a mapping")
    if kind is float:
        bad = {k: v for k, v in value.items() if not isinstance(v, (int, float)) or isinstance(v, bool)}
    else:
        bad = {k: v for k, v in value.items() if not isinstance(v, str)}
    if bad:
        raise ValueError(f"{where}: {bad}: expected {kind.__name__} values")
    return tuple(sorted((k, kind(v)) for k, v in value.items()))


def product_from_mapping(entry: Any, where: str) -> ProductConfig:
    """One ``evaluate.products`` entry."""
    keys = {"label", "path", "variables", "signs", "units", "climatology"}
    if not isinstance(entry, dict) or not {"label", "path", "variables"} <= set(entry) or set(entry) - keys:
        raise ValueError(
            f"{where} = {entry!r}: expected a mapping with label, path, variables and optional signs, units, "
            "climatology"
        )
    if not isinstance(entry["label"], str) or not isinstance(entry["path"], str):
        raise ValueError(f"{where}: label and path must be strings")
    variables = _pairs(entry["variables"], f"{where}: variables", str)
    if not variables:
        raise ValueError(f"{where}: variables is empty")
    return ProductConfig(
        label=entry["label"],
        path=entry["path"],
        variables=variables,
        signs=_pairs(entry.get("signs"), f"{where}: signs", float),
        units=_pairs(entry.get("units"), f"{where}: units", str),
        climatology=_flag(entry.get("climatology", False), f"{where}: climatology"),
    )


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{where} = {value!r}: expected true or false")
    return value


def evaluate_config_from_mapping(data: dict[str, Any], where: str) -> dict[str, Any]:
    """The ``evaluate`` mapping with its products parsed (the rest is checked by the caller)."""
    out = dict(data)
    products = out.get("products") or []
    if not isinstance(products, list):
        raise ValueError(f"{where}: products = {products!r}: expected a list")
    out["products"] = tuple(product_from_mapping(p, f"{where}: products[{i}]") for i, p in enumerate(products))
    return out
