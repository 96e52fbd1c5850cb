"""Projection under a changed climate by the delta-change method: the baseline's predictors with a
warming added to every temperature and precipitation scaled per calendar month, the rest (surface
reflectance, greenness, productivity, soil, terrain) held at the baseline, as the delta method does
(e.g. Hay, Wilby & Leavesley 2000, J. Am. Water Resour. Assoc. 36:387). Applied to the decoded
catalog cubes, before the 8-day means, annual statistics and zones are derived from them, so every
derived predictor follows. Lazy: nothing is computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["PRECIPITATION", "TEMPERATURE", "Delta", "apply_delta"]

TEMPERATURE = ("t2m", "lst_day", "lst_night", "tair", "tsoil")
"""Canonical temperatures a delta warms (K or degC: a difference is the same in both)."""
PRECIPITATION = ("tp", "precip")
"""Canonical precipitation a delta scales."""


@dataclass(frozen=True)
class Delta:
    """A delta change: ``warming_k`` added to every temperature, precipitation times
    ``precipitation_factor`` (one factor, or twelve, January to December)."""

    warming_k: float = 2.0
    precipitation_factor: tuple[float, ...] = (0.9,)

    def __post_init__(self) -> None:
        f = self.precipitation_factor
        if len(f) not in (1, 12):
            raise ValueError(f"precipitation_factor: one factor or twelve (per month), not {len(f)}: {list(f)}")
        if any(not np.isfinite(v) or v < 0 for v in f) or not np.isfinite(self.warming_k):
            raise ValueError(f"a delta needs a finite warming and finite factors >= 0: {self}")

    def monthly(self) -> np.ndarray:
        """The precipitation factor of each calendar month (12 values)."""
        return np.resize(np.asarray(self.precipitation_factor, dtype="float64"), 12)

    def describe(self) -> str:
        f = self.precipitation_factor
        p = f"x {f[0]:g}" if len(f) == 1 else "x " + "/".join(f"{v:g}" for v in f) + " (Jan-Dec)"
        return f"{self.warming_k:+g} K, precipitation {p}"

    def as_dict(self) -> dict[str, Any]:
        return {"warming_k": self.warming_k, "precipitation_factor": list(self.precipitation_factor)}


def apply_delta(cubes: dict[str, xr.Dataset], delta: Delta) -> tuple[dict[str, xr.Dataset], dict[str, list[str]]]:
    """The cubes under ``delta`` and what changed: ``{"warmed": [...], "scaled": [...], "held":
    [...]}`` (entry/variable names). A precipitation variable without a time axis (a static layer)
    is scaled by the mean factor; one with a time axis by its month's."""
    out: dict[str, xr.Dataset] = {}
    changed: dict[str, list[str]] = {"warmed": [], "scaled": [], "held": []}
    factors = delta.monthly()
    for entry, ds in cubes.items():
        new = {}
        for name, da in ds.data_vars.items():
            key = f"{entry}/{name}"
            if name in TEMPERATURE:
                new[name] = (da + delta.warming_k).assign_attrs(da.attrs)
                changed["warmed"].append(key)
            elif name in PRECIPITATION:
                f: xr.DataArray | float = float(factors.mean())
                if "time" in da.dims:
                    month = da["time"].dt.month.values - 1
                    f = xr.DataArray(factors[month], coords={"time": da["time"]}, dims="time")
                new[name] = (da * f).astype(da.dtype).assign_attrs(da.attrs)
                changed["scaled"].append(key)
            elif "time" in da.dims:
                changed["held"].append(key)
        out[entry] = ds.assign(new) if new else ds
    return out, changed
