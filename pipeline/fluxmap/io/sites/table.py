"""The tidy observation table every site reader returns, its quarantine, and the checks they share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fluxmap.io.sites.checks import PlausibleRanges, _units_check
from fluxmap.science.products import TARGETS

__all__ = ["OBS_COLUMNS", "QUARANTINE_COLUMNS", "SiteFileError", "SiteTable", "concat"]

OBS_COLUMNS = [
    "site_id",
    "lat",
    "lon",
    "start",
    "end",
    "variable",
    "value",
    "quality",
    "ecosystem",
    "method",
    "source",
    "record_id",
    "tsoil_c",
    "swc",
    "tair_c",
]
"""Columns of the tidy observation table (value in g C m-2 d-1, start/end UTC, end exclusive)."""

QUARANTINE_COLUMNS = ["source", "file", "row", "record_id", "site_id", "variable", "reason", "detail"]
"""Columns of the quarantine table: one row per rejected candidate, with the reason; ``row`` is the
line of the file (1 = the header), ``detail`` the offending value."""


class SiteFileError(ValueError):
    """A site file that cannot be read as a whole (undecodable, empty, only a header, required
    columns missing, mostly malformed lines): the message names the file and, where known, the line."""

    def __init__(self, path: str | Path, message: str, *, line: int | None = None) -> None:
        self.path = str(path)
        """The file."""
        self.line = line
        """Line of the file (1 = first line) the problem was found on, or None."""
        super().__init__(f"{path}: line {line}: {message}" if line is not None else f"{path}: {message}")


@dataclass
class SiteTable:
    """Kept observations, their quarantine, and the counts of the reading."""

    observations: pd.DataFrame
    """Tidy observations, columns :data:`OBS_COLUMNS`."""
    quarantine: pd.DataFrame
    """Rejected candidates, columns :data:`QUARANTINE_COLUMNS`."""
    report: dict[str, Any] = field(default_factory=dict)
    """Counts: rows read, candidates, kept, quarantined by reason, per source."""


def concat(tables: list[SiteTable]) -> SiteTable:
    """Join several readers' results into one table (reports merged by source)."""
    obs = pd.concat([t.observations for t in tables], ignore_index=True) if tables else _empty_obs()
    qua = pd.concat([t.quarantine for t in tables], ignore_index=True) if tables else _empty_quarantine()
    report: dict[str, Any] = {}
    for t in tables:
        report.update(t.report)
    return SiteTable(obs, qua, report)


def _empty_obs() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=_OBS_DTYPES.get(c, "object")) for c in OBS_COLUMNS})


def _empty_quarantine() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in QUARANTINE_COLUMNS})


_OBS_DTYPES = {
    "lat": "float64",
    "lon": "float64",
    "value": "float64",
    "quality": "float64",
    "start": "datetime64[ns]",
    "end": "datetime64[ns]",
    "tsoil_c": "float64",
    "swc": "float64",
    "tair_c": "float64",
}


def _finish(
    cand: pd.DataFrame,
    *,
    source: str,
    file: str,
    rows_in: int,
    extra_quarantine: pd.DataFrame | None = None,
    bad_lines: pd.DataFrame | None = None,
    filters: dict[str, Any] | None = None,
    duplicate_keys: tuple[str, ...] = ("site_id", "variable", "start", "end", "source", "method"),
    plausible: PlausibleRanges | None = None,
) -> SiteTable:
    """Split candidates (with a ``reason`` column, None = keep) into kept and quarantine.

    Common checks run on every candidate not already rejected: variable known,
    coordinates in range, period well formed, value finite, soil fluxes not negative,
    value within the variable's plausible range (``plausible``, default
    :class:`~fluxmap.io.sites.checks.PlausibleRanges`), no duplicates. ``extra_quarantine``
    (rows rejected before becoming candidates) and ``bad_lines`` (malformed lines of the
    file: ``row``, ``reason``, ``detail``) join the quarantine and count as candidates. The
    units check then runs over every finite value of each variable (warning, and
    ``units_warnings`` in the report).
    """
    plausible = plausible or PlausibleRanges()
    cand = cand.copy()
    for c in OBS_COLUMNS:
        if c not in cand:
            cand[c] = np.nan
    if "reason" not in cand:
        cand["reason"] = None
    if "detail" not in cand:
        cand["detail"] = ""
    ok = cand["reason"].isna()

    def reject(mask: pd.Series, reason: str, detail: pd.Series | str = "") -> None:
        nonlocal ok
        m = ok & mask
        cand.loc[m, "reason"] = reason
        cand.loc[m, "detail"] = detail[m] if isinstance(detail, pd.Series) else detail
        ok = ok & ~m

    lat = pd.to_numeric(cand["lat"], errors="coerce")
    lon = pd.to_numeric(cand["lon"], errors="coerce")
    reject(~cand["variable"].isin(TARGETS), "unknown variable", cand["variable"].astype(str))
    reject(lat.isna() | lon.isna(), "missing coordinates")
    reject(
        (lat.abs() > 90) | (lon < -180) | (lon > 360),
        "coordinates out of range",
        "lat=" + lat.astype(str) + " lon=" + lon.astype(str),
    )
    reject(cand["start"].isna() | cand["end"].isna() | (cand["end"] <= cand["start"]), "bad time period")
    value = pd.to_numeric(cand["value"], errors="coerce")
    reject(~np.isfinite(value), "non-finite value", cand["value"].astype(str))
    # Soil CO2 efflux is a source by definition; a negative SR or RH is an entry error.
    reject(cand["variable"].isin(["sr", "rh"]) & (value < 0), "non-physical negative soil flux", value.astype(str))
    days = pd.Series((cand["end"] - cand["start"]) / pd.Timedelta(days=1), index=cand.index, dtype="float64")
    low, high, sub = plausible.bounds(cand["variable"], days)
    with np.errstate(invalid="ignore"):
        implausible = pd.Series((value.to_numpy() < low) | (value.to_numpy() > high), index=cand.index)
    span = np.where(sub, "records shorter than a day", "means over a day or longer")
    reject(
        implausible,
        "implausible value",
        pd.Series(
            [
                f"{v:.6g} g C m-2 d-1 outside [{lo:.4g}, {hi:.4g}] for {var} ({s})"
                for v, lo, hi, var, s in zip(value, low, high, cand["variable"].astype(str), span)
            ],
            index=cand.index,
            dtype="object",
        )
        if implausible.any()
        else "",
    )
    dup = cand.duplicated(list(duplicate_keys), keep="first") & ok
    reject(dup, "duplicate", "same site, variable, method and period as an earlier row")

    cand["lat"], cand["lon"], cand["value"] = lat, np.where(lon > 180, lon - 360, lon), value
    # Covariates a reader carries beside the flux (a tower's micrometeorology: ``tower_*``) stay.
    columns = OBS_COLUMNS + [c for c in cand.columns if str(c).startswith("tower_")]
    kept = cand.loc[ok, columns].astype({k: v for k, v in _OBS_DTYPES.items()}).reset_index(drop=True)
    q = cand.loc[~ok].copy()
    q["source"], q["file"] = source, file
    quarantine = q.reindex(columns=QUARANTINE_COLUMNS)
    extras = [e for e in (extra_quarantine, bad_lines) if e is not None and len(e)]
    for e in extras:
        e = e.assign(source=source, file=file).reindex(columns=QUARANTINE_COLUMNS)
        for c in ("record_id", "site_id", "variable"):
            e[c] = e[c].astype("object").where(e[c].notna(), "")
        quarantine = pd.concat([quarantine, e], ignore_index=True)
    quarantine = quarantine.astype({"row": "Int64"}).reset_index(drop=True)
    # Units are judged against the default ranges: a range narrowed in the config is a choice of
    # what to keep, not a hint that the file's units are wrong.
    default_low, default_high, _ = PlausibleRanges().bounds(cand["variable"], days)
    units = _units_check(cand["variable"], value, default_low, default_high, source=source, file=file)
    present = set(cand["variable"].astype(str))
    reasons = quarantine["reason"].value_counts().to_dict()
    report = {
        source: {
            "file": file,
            "rows_in": int(rows_in),
            "candidates": int(len(cand) + sum(len(e) for e in extras)),
            "kept": int(len(kept)),
            "quarantined": int(len(quarantine)),
            "quarantined_by_reason": {str(k): int(v) for k, v in reasons.items()},
            "kept_by_variable": {str(k): int(v) for k, v in kept["variable"].value_counts().items()},
            "malformed_lines": int(len(bad_lines)) if bad_lines is not None else 0,
            "plausible": {
                kind: {k: v for k, v in ranges.items() if k in present} for kind, ranges in plausible.as_dict().items()
            },
            "units_warnings": units,
            **({"filters": filters} if filters else {}),
        }
    }
    return SiteTable(kept, quarantine, report)


def _file_check(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"site file not found: {path}")
    return path
