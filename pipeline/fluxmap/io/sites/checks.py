"""Physical plausibility of site fluxes: a range per variable that quarantines single impossible
values, and a units check per source that warns when a whole file looks scaled.

All values are g C m-2 d-1 (1 umol CO2 m-2 s-1 = 1.03775 g C m-2 d-1); NEE is negative for uptake.
Means over a day or longer are checked against :data:`PLAUSIBLE`; records shorter than a day
(half-hours, hours) against the wider :data:`PLAUSIBLE_SUBDAILY`, since a midday half-hour can be
several times its day's mean. The run config's ``sites: plausible`` and ``sites:
plausible_subdaily`` override single variables.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fluxmap.science.products import TARGETS, UMOL_CO2_M2_S_TO_G_C_M2_D

__all__ = [
    "PLAUSIBLE",
    "PLAUSIBLE_SUBDAILY",
    "TYPICAL_MAGNITUDE",
    "PlausibleRanges",
    "SiteUnitsWarning",
]

_U = UMOL_CO2_M2_S_TO_G_C_M2_D

PLAUSIBLE: dict[str, tuple[float, float]] = {
    "sr": (0.0, 40.0),
    "rh": (0.0, 30.0),
    "ra": (0.0, 30.0),
    "nee": (-25.0, 25.0),
    "gpp": (-5.0, 40.0),
    "reco": (0.0, 40.0),
}
"""Plausible means over a day or longer, g C m-2 d-1, [low, high].

- sr: soil CO2 efflux is a source (>= 0). SRDB v5's (Jian et al. 2021) annual SR reach 8,136
  g C m-2 yr-1 (22 g C m-2 d-1, PA-BUV) but for two urban records (US-TAU, 15,251 and 23,046,
  which SRDB's own filters already drop); the 99.9th percentile of COSORE v0.8's (Bond-Lamberty
  et al. 2020) daily means is 26. 40 (38.5 umol CO2 m-2 s-1 held for 24 h) quarantines 5 of
  COSORE's 36,479 daily Rs (four of one dataset, 41.5 to 56.9, and one of 14,352).
- rh, ra: the heterotrophic and autotrophic parts of SR (RH/SR about 0.59, Lu et al. 2021); the
  largest daily RH in COSORE is 19.6, the largest annual RH and RA in SRDB 11.4 and 6.2.
- nee: negative for uptake. FLUXNET2015's monthly means over 204 sites (the data we hold) run from
  -16.1 to +7.4; daily values at irrigated C4 crops go further at the season's peak (about -20, a
  figure from general knowledge, not checked against data here), hence +-25.
- gpp: FLUXNET2015's largest monthly mean is 23.8; daily peaks at irrigated maize are higher (about
  30, from general knowledge, not checked against data here). Night-time partitioning leaves small negative daily values in dormant seasons
  (FLUXNET2015 keeps them), hence -5.
- reco: ecosystem respiration >= SR; daily means above 20 are rare, 40 as for SR.
"""

PLAUSIBLE_SUBDAILY: dict[str, tuple[float, float]] = {
    "sr": (0.0, 50.0 * _U),
    "rh": (0.0, 50.0 * _U),
    "ra": (0.0, 50.0 * _U),
    "nee": (-75.0 * _U, 50.0 * _U),
    "gpp": (-50.0 * _U, 125.0 * _U),
    "reco": (0.0, 50.0 * _U),
}
"""Plausible rates of records shorter than a day (half-hours, hours), g C m-2 d-1, [low, high]:
in umol CO2 m-2 s-1, respiration fluxes 0 to 50 and NEE -75 to 50. +-50 is the L2 range check
OzFlux's PyFluxPro applies to half-hourly CO2 fluxes; the uptake side is widened for the midday
half-hours of irrigated C4 crops (about -60, from general knowledge, not checked against data here). GPP (= Reco - NEE in night-time partitioning) spans
-50 (night-time NEE noise) to 125 (the NEE uptake bound plus respiration)."""

TYPICAL_MAGNITUDE: dict[str, float] = {"sr": 2.0, "rh": 1.2, "ra": 0.8, "nee": 1.0, "gpp": 3.0, "reco": 2.2}
"""Median |value| of a source in g C m-2 d-1, what the units check compares a file with: SR 2.1
and RH 1.2 and RA 0.8 in SRDB v5 (kept records), SR 2.3 in COSORE v0.8 daily means; |NEE| 1.0 and
GPP 3.1 in FLUXNET2015 monthly means (204 sites); Reco 2.2 at FR-Pue (FLUXNET2015 MM). Single
sites' medians lie within a factor 20 of these (COSORE datasets: SR 0.25 to 7.1; FLUXNET2015
sites: |NEE| 0.06 to 5.8, GPP 0.15 to 10.5)."""

UNITS_RATIO = 30.0
"""A source whose median |value| is more than this factor above or below :data:`TYPICAL_MAGNITUDE`
looks scaled (real sites stay within 20)."""
UNITS_SHARE = 0.1
"""...as does a source with more than this share of its values outside the plausible range (real
sources: COSORE 0.01 %, SRDB, FLUXNET2015 none)."""
UNITS_MIN_OUTSIDE = 3
"""...and at least this many of them: one or two stray values in a small source are the plausibility
range's job (quarantined one by one), not evidence about the source's units."""
UNITS_MIN_VALUES = 5
"""Fewer finite values than this are not judged (single values are the plausibility range's job)."""

_SLIPS: tuple[tuple[float, str, str], ...] = (
    (100.0, "values scaled by 100", "values scaled by 1/100"),
    (1000.0, "mg where g is expected (or nmol where umol)", "g where mg is expected (or umol where nmol)"),
    (365.25, "totals per year where rates per day are expected", "rates per day where totals per year are expected"),
    (30.4, "totals per month where rates per day are expected", "rates per day where totals per month are expected"),
    (24.0, "rates per day where rates per hour are expected", "rates per hour where rates per day are expected"),
    (1 / 0.024, "mg C m-2 h-1 where g C m-2 d-1 is expected", "g C m-2 d-1 where mg C m-2 h-1 is expected"),
    (
        1000 / 44.01,
        "umol CO2 m-2 s-1 where mg CO2 m-2 s-1 is expected",
        "mg CO2 m-2 s-1 where umol CO2 m-2 s-1 is expected",
    ),
)
"""Unit slips the units check names when a source's scale is within a factor 3 of one (factor, what
the file holds if its values are that factor too large, and if too small). A slip of
umol CO2 m-2 s-1 for g C m-2 d-1 (x1.0378) or of g CO2 for g C (x3.66) is within the spread of real
sites and cannot be told from the distribution."""


class SiteUnitsWarning(UserWarning):
    """A site source whose values, as a whole, look like other units (see :func:`_units_check`)."""


def _check_range(variable: str, bounds: Any, where: str) -> tuple[float, float]:
    if variable not in TARGETS:
        raise ValueError(f"{where}: unknown variable {variable!r}; known: {list(TARGETS)}")
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {variable} = {bounds!r}: expected [low, high] in g C m-2 d-1") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"{where}: {variable} = {bounds!r}: expected finite low < high")
    return lo, hi


@dataclass(frozen=True)
class PlausibleRanges:
    """The plausible range of each variable, for means over a day or longer and for shorter records."""

    daily: Mapping[str, tuple[float, float]] = field(default_factory=lambda: dict(PLAUSIBLE))
    """Means over a day or longer, g C m-2 d-1."""
    subdaily: Mapping[str, tuple[float, float]] = field(default_factory=lambda: dict(PLAUSIBLE_SUBDAILY))
    """Records shorter than a day, g C m-2 d-1."""

    @classmethod
    def with_overrides(
        cls,
        daily: Mapping[str, Any] | tuple[tuple[str, Any], ...] = (),
        subdaily: Mapping[str, Any] | tuple[tuple[str, Any], ...] = (),
    ) -> PlausibleRanges:
        """The defaults with some variables' ranges replaced (checked: known variable, low < high)."""
        d, s = dict(PLAUSIBLE), dict(PLAUSIBLE_SUBDAILY)
        for k, v in dict(daily).items():
            d[k] = _check_range(k, v, "plausible")
        for k, v in dict(subdaily).items():
            s[k] = _check_range(k, v, "plausible_subdaily")
        return cls(d, s)

    def bounds(self, variable: pd.Series, days: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row: low, high (NaN for variables without a range) and whether the sub-daily range applies."""
        sub = (days < 1.0 - 1e-6).to_numpy()
        lo = np.full(len(variable), np.nan)
        hi = np.full(len(variable), np.nan)
        v = variable.astype("object").to_numpy()
        for name in set(self.daily) | set(self.subdaily):
            m = v == name
            if not m.any():
                continue
            dlo, dhi = self.daily.get(name, (-np.inf, np.inf))
            slo, shi = self.subdaily.get(name, (dlo, dhi))
            lo[m] = np.where(sub[m], slo, dlo)
            hi[m] = np.where(sub[m], shi, dhi)
        return lo, hi, sub

    def as_dict(self) -> dict[str, dict[str, list[float]]]:
        """JSON-ready ranges (for reports and provenance)."""
        return {
            "daily": {k: [float(a), float(b)] for k, (a, b) in sorted(self.daily.items())},
            "subdaily": {k: [round(float(a), 4), round(float(b), 4)] for k, (a, b) in sorted(self.subdaily.items())},
        }


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def _slips(scale: float) -> list[str]:
    """Known unit slips within a factor 3 of ``scale`` (the source's magnitude over the typical one),
    nearest first."""
    near = []
    for factor, larger, smaller in _SLIPS:
        for f, text in (
            (factor, f"x{factor:.4g}: the file holds {larger}"),
            (1 / factor, f"x1/{factor:.4g}: the file holds {smaller}"),
        ):
            off = abs(math.log(scale / f))
            if off < math.log(3.0):
                near.append((off, text))
    return [text for _, text in sorted(near)]


def _units_check(
    variable: pd.Series, value: pd.Series, low: np.ndarray, high: np.ndarray, *, source: str, file: str
) -> list[dict[str, Any]]:
    """Per variable of one source: warn (:class:`SiteUnitsWarning`) and report when its finite values,
    as a whole, look like other units: median |value| more than :data:`UNITS_RATIO` from the
    variable's :data:`TYPICAL_MAGNITUDE`, more than :data:`UNITS_SHARE` (and at least
    :data:`UNITS_MIN_OUTSIDE`) of the values outside the plausible range, or, for a flux that cannot be negative, a negative median (sign reversed)."""
    out: list[dict[str, Any]] = []
    val = pd.to_numeric(value, errors="coerce").to_numpy(dtype="float64")
    var = variable.astype("object").to_numpy()
    for name in sorted(TYPICAL_MAGNITUDE):
        m = (var == name) & np.isfinite(val)
        n = int(m.sum())
        if n < UNITS_MIN_VALUES:
            continue
        v, lo, hi = val[m], low[m], high[m]
        med, p95 = float(np.median(np.abs(v))), float(np.percentile(np.abs(v), 95))
        out_of_range = (v < lo) | (v > hi)
        outside = float(np.mean(out_of_range))
        many_outside = outside > UNITS_SHARE and int(out_of_range.sum()) >= UNITS_MIN_OUTSIDE
        typical = TYPICAL_MAGNITUDE[name]
        scale = med / typical if med > 0 else 0.0
        reversed_sign = bool(np.nanmin(lo) >= 0 and np.median(v) < 0)
        if not (scale > UNITS_RATIO or scale < 1 / UNITS_RATIO or many_outside or reversed_sign):
            continue
        if reversed_sign:
            likely = "x-1: the sign convention reversed"
        elif scale > 0:
            slips = _slips(scale)
            likely = f"about x{_fmt(scale)}" + (f" ({'; '.join(slips)})" if slips else "")
        else:
            likely = "all values zero"
        message = (
            f"site source {source!r} ({file}): {name} looks like other units: median |value| {_fmt(med)} and "
            f"95th percentile {_fmt(p95)} g C m-2 d-1 (typical median {_fmt(typical)}), {outside:.0%} of {n} "
            f"values outside the plausible range; likely factor {likely}. Check the file's units."
        )
        warnings.warn(message, SiteUnitsWarning, stacklevel=3)  # attributed to the reader
        out.append(
            {
                "variable": name,
                "n": n,
                "median_abs": med,
                "p95_abs": p95,
                "typical_median_abs": typical,
                "share_outside_plausible": outside,
                "likely_factor": -1.0 if reversed_sign else scale,
                "message": message,
            }
        )
    return out
