"""SRDB v5 (Jian et al. 2021, ESSD 13:255; github bpbond/srdb ``srdb-data.csv``): annual
``Rs_annual``/``Rh_annual``/``Ra_annual`` in g C m-2 yr-1, read with ``keep_default_na=False`` so the
literal ``None`` of ``Manipulation`` survives."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fluxmap.io.sites.checks import PlausibleRanges
from fluxmap.io.sites.parse import _mark, _numeric, _read, _reasons
from fluxmap.io.sites.table import SiteTable, _finish

__all__ = ["SrdbRules", "read_srdb"]

# --- SRDB -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SrdbRules:
    """Selection rules for SRDB records, each switchable (None/False turns it off)."""

    no_manipulation: bool = True
    """Keep only ``Manipulation == "None"`` (unmanipulated control sites)."""
    methods: tuple[str, ...] | None = ("IRGA", "Gas chromatography")
    """Allowed ``Meas_method`` values (alkali absorption and soda lime underestimate)."""
    exclude_quality: tuple[str, ...] | None = ("Q10", "Q11", "Q12", "Q13", "Q14")
    """``Quality_flag`` codes marking suspected or known problems."""
    exclude_duplicates: bool = True
    """Drop records whose ``Duplicate_record`` names an earlier record."""
    sr_greater_than_hr: bool = True
    """Drop records reporting Rh_annual > Rs_annual."""
    min_year: float | None = 2000
    """Earliest ``Study_midyear`` (satellite era); None keeps all."""


_SRDB_VARS = {"Rs_annual": "sr", "Rh_annual": "rh", "Ra_annual": "ra"}
_SRDB_REQUIRED = ("Record_number", "Latitude", "Longitude", "Study_midyear", "Manipulation", "Meas_method", "Rs_annual")
_SRDB_NUMERIC = {
    "Latitude": "latitude",
    "Longitude": "longitude",
    "Study_midyear": "year",
    "YearsOfData": "year",
    "Rs_annual": "flux",
    "Rh_annual": "flux",
    "Ra_annual": "flux",
}
_FIRST_YEAR = 1850
"""Earliest plausible study year (soil respiration has been measured since the 1920s)."""


def read_srdb(
    path: str | Path,
    rules: SrdbRules | None = None,
    *,
    encoding: str = "utf-8",
    plausible: PlausibleRanges | None = None,
) -> SiteTable:
    """Read SRDB v5 ``srdb-data.csv`` into annual site-year observations.

    Each record gives one observation per reported flux (sr, rh, ra), with the
    annual value (g C m-2 yr-1) converted to the mean daily flux over the study
    years. A record with a cell that is no number (coordinates, years, fluxes) is
    quarantined whole (``non-numeric <what>``, the cell in ``detail``), as is one whose
    study years are impossible (``implausible year``: before 1850 or after this year).
    Rules are applied next, in the order of :class:`SrdbRules`; each rejected record is
    quarantined with the first rule it fails. Malformed lines are quarantined with their
    line; a file that cannot be read raises :class:`~fluxmap.io.sites.SiteFileError`.
    """
    rules = rules or SrdbRules()
    sf = _read(
        path,
        required=_SRDB_REQUIRED,
        what="an SRDB file",
        encoding=encoding,
        keep_default_na=False,
        na_values=["NA", ""],
        low_memory=False,
    )
    df = sf.frame.copy()
    n = len(df)
    reason, detail = _reasons(n)
    for col in _SRDB_VARS:
        if col not in df:  # Rh and Ra are optional: a file without them reports Rs only
            df[col] = np.nan
    # A flux cell that is not a number still makes a candidate (quarantined with the cell).
    reported = df[list(_SRDB_VARS)].notna()
    for col, what in _SRDB_NUMERIC.items():
        if col in df:
            df[col] = _numeric(df[col], column=col, what=what, reason=reason, detail=detail)
    years = _study_years(df)
    first = np.floor(df.Study_midyear - years / 2.0 + 0.5)
    this_year = pd.Timestamp.now(tz="UTC").year
    _mark(
        reason,
        detail,
        ((first < _FIRST_YEAR) | (first + years > this_year + 1)).to_numpy(),
        "implausible year",
        "Study_midyear=" + df.Study_midyear.astype(str) + " YearsOfData=" + years.astype(str),
    )
    rule = _first_failed_rule(df, rules)
    reason = reason.where(reason.notna(), rule)
    has_any = reported.any(axis=1)
    record = df.Record_number.map(lambda v: f"{v:g}" if isinstance(v, float) else str(v))
    site_name = df.get("Site_ID", pd.Series(pd.NA, index=df.index)).astype("object")
    site_name = site_name.where(site_name.notna(), df.get("Site_name", record).astype("object"))
    row_no = pd.Series(sf.line)  # line in the file (1 = header)
    cand = _candidates(df, reported, reason, detail, record, site_name, row_no, years)
    no_value = df.index[~has_any]
    extra = pd.DataFrame(
        {
            "row": row_no[no_value].values,
            "record_id": record[no_value].values,
            "site_id": site_name[no_value].astype(str).values,
            "variable": "",
            "reason": reason[no_value].values,
            "detail": detail[no_value].values,
        }
    )
    filters = {k: v for k, v in rules.__dict__.items()}
    # Distinct SRDB records at one site and year are distinct plots or studies; SRDB marks
    # true duplicates itself (Duplicate_record).
    table = _finish(
        cand,
        source="srdb",
        file=str(sf.path),
        rows_in=sf.rows_in,
        extra_quarantine=extra,
        bad_lines=sf.bad,
        filters=filters,
        duplicate_keys=("record_id", "variable"),
        plausible=plausible,
    )
    # Record-level counts per rule, as the literature reports them (malformed lines are no records).
    table.report["srdb"]["records_rejected_by_rule"] = {str(k): int(v) for k, v in reason.value_counts().items()}
    table.report["srdb"]["records_kept"] = int(reason.isna().sum())
    return table


def _study_years(df: pd.DataFrame) -> pd.Series:
    """Whole years of data per record (``YearsOfData``, 1 when absent or below 1)."""
    if "YearsOfData" not in df:
        return pd.Series(1, index=df.index, dtype="int64")
    return df.YearsOfData.fillna(1.0).clip(lower=1.0, upper=1e4).round().astype("int64")


def _first_failed_rule(df: pd.DataFrame, rules: SrdbRules) -> pd.Series:
    """Per record, the first rule of :class:`SrdbRules` it fails (None: kept)."""
    reason = pd.Series([None] * len(df), dtype="object")

    def rule(mask: pd.Series, why: str) -> None:
        reason[(reason.isna()) & mask.fillna(False).to_numpy()] = why

    rule(df.Latitude.isna() | df.Longitude.isna(), "missing coordinates")
    if rules.no_manipulation:
        rule(df.Manipulation.astype(str) != "None", "failed filter: manipulation")
    if rules.methods:
        rule(~df.Meas_method.isin(rules.methods), "failed filter: measurement method")
    if rules.exclude_quality:
        flags = df.get("Quality_flag", pd.Series("", index=df.index)).astype("object").fillna("").astype(str)
        codes = flags.str.replace(" ", "").str.split(",")
        bad = codes.apply(lambda cs: any(c in rules.exclude_quality for c in cs))
        rule(bad, "failed filter: quality flag")
    if rules.exclude_duplicates and "Duplicate_record" in df:
        rule(df.Duplicate_record.notna(), "duplicate")
    rule(~df[list(_SRDB_VARS)].notna().any(axis=1), "no annual flux value")
    if rules.sr_greater_than_hr:
        rule(df.Rh_annual > df.Rs_annual, "failed filter: Rh_annual > Rs_annual")
    if rules.min_year is not None:
        rule(df.Study_midyear < rules.min_year, f"failed filter: study year < {rules.min_year:g}")
    return reason


def _candidates(
    df: pd.DataFrame,
    reported: pd.DataFrame,
    reason: pd.Series,
    detail: pd.Series,
    record: pd.Series,
    site_name: pd.Series,
    row_no: pd.Series,
    years: pd.Series,
) -> pd.DataFrame:
    """One candidate per reported annual flux: the mean daily flux over the study years."""
    first = np.floor(df.Study_midyear.fillna(2000) - years / 2.0 + 0.5).clip(1800, 2200).astype(int)
    start = pd.to_datetime({"year": first, "month": 1, "day": 1}).where(df.Study_midyear.notna())
    end = pd.to_datetime({"year": (first + years).clip(1801, 2201), "month": 1, "day": 1}).where(
        df.Study_midyear.notna()
    )
    days_per_year = (end - start).dt.days / years
    frames = []
    for col, var in _SRDB_VARS.items():
        present = reported[col]
        frames.append(
            pd.DataFrame(
                {
                    "site_id": "SRDB-" + site_name.astype(str),
                    "lat": df.Latitude,
                    "lon": df.Longitude,
                    "start": start,
                    "end": end,
                    "variable": var,
                    "value": df[col] / days_per_year,
                    "quality": np.nan,
                    "ecosystem": df.Ecosystem_type.astype("object") if "Ecosystem_type" in df else "",
                    "method": df.Meas_method,
                    "source": "srdb",
                    "record_id": record,
                    "reason": reason,
                    "detail": detail,
                    "row": row_no,
                }
            )[present]
        )
    return pd.concat(frames, ignore_index=True)
