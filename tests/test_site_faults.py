"""Bad site input never crashes a reader and never slips through (issue 23, class 5: site readers).

Fault injection into small files cut from the real SRDB, COSORE and FLUXNET2015 files (written to
pytest's tmp_path, never into the repository), one reader at a time. The oracle of a row fault is
the same file with that line deleted: the faulty file must keep exactly those observations, and
quarantine the line with its reason, its line number and the offending cell. Per-file faults must
raise one SiteFileError naming the file and, where known, the line.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from fluxmap.io import sites as S


@dataclass
class Case:
    """One reader over one small file."""

    path: Path
    """The data file (its folder is the test's; variants go to sibling folders, same file name)."""
    read: Callable[..., S.SiteTable]
    """``read(path, **reader_keywords)``."""
    columns: dict[str, str]
    """What each numeric column of the file holds (latitude, flux, date...) -> its name."""
    implausible: str
    """A flux cell, in the file's own units, far outside the plausible range."""
    variable: str
    """The variable of the flux column."""


def _head(src: Path, n: int) -> list[str]:
    opener = gzip.open if src.suffix == ".gz" else open
    with opener(src, "rt", encoding="utf-8", newline="") as f:
        return [next(f).rstrip("\r\n") for _ in range(n)]


def _write(path: Path, lines: list[str], *, newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((newline.join(lines) + newline).encode("utf-8"))
    return path


def _srdb(tmp: Path, data: Path) -> Case:
    path = _write(tmp / "base" / "srdb-data.csv", _head(data / "srdb" / "srdb-data.csv", 400))
    columns = {"latitude": "Latitude", "longitude": "Longitude", "year": "Study_midyear", "flux": "Rs_annual"}
    return Case(path, lambda p, **kw: S.read_srdb(p, **kw), columns, implausible="100000", variable="sr")


def _cosore_daily(tmp: Path, data: Path) -> Case:
    summary = tmp / "cosore_datasets_summary.csv"
    summary.write_bytes((data / "cosore" / "cosore_datasets_summary.csv").read_bytes())
    path = _write(tmp / "base" / "cosore_daily.csv", _head(data / "cosore" / "cosore_daily_all.csv.gz", 120))
    columns = {"flux": "flux_co2_umol_m2_s", "date": "date", "soil temperature": "tsoil_C"}
    return Case(path, lambda p, **kw: S.read_cosore_daily(p, summary, **kw), columns, "5000", "sr")


def _cosore_halfhourly(tmp: Path, data: Path) -> Case:
    """A half-hourly COSORE file derived from three real days of one dataset (the daily mean flux and
    soil temperature held through each day's 48 half-hours)."""
    summary = tmp / "cosore_datasets_summary.csv"
    summary.write_bytes((data / "cosore" / "cosore_datasets_summary.csv").read_bytes())
    daily = pd.read_csv(data / "cosore" / "cosore_daily_all.csv.gz", nrows=3)
    lines = ["CSR_TIMESTAMP_BEGIN,CSR_FLUX_CO2,CSR_T5"]
    for _, day in daily.iterrows():
        for t in pd.date_range(day.date, periods=48, freq="30min"):
            lines.append(f"{t:%Y-%m-%d %H:%M:%S},{day.flux_co2_umol_m2_s},{day.tsoil_C}")
    path = _write(tmp / "base" / f"{daily.dataset[0]}.csv", lines)
    columns = {"flux": "CSR_FLUX_CO2", "date": "CSR_TIMESTAMP_BEGIN", "soil temperature": "CSR_T5"}
    read = lambda p, **kw: S.read_cosore_halfhourly(p, dataset=daily.dataset[0], summary=summary, **kw)  # noqa: E731
    return Case(path, read, columns, implausible="5000", variable="sr")


def _fluxnet(tmp: Path, data: Path) -> Case:
    name = "FLX_FR-Pue_FLUXNET2015_FULLSET_MM_2007-2014_2-3.csv"
    path = _write(tmp / "base" / name, _head(data / "fluxnet" / name, 97))
    info = S.read_fluxnet_site_info(data / "fluxnet" / "siteinfo_fluxnet2015.csv")
    columns = {"flux": "NEE_VUT_REF", "date": "TIMESTAMP", "quality flag": "NEE_VUT_REF_QC", "air temperature": "TA_F"}
    return Case(path, lambda p, **kw: S.read_fluxnet(p, site_info=info, **kw), columns, "500", "nee")


def _fluxnet_monthly(tmp: Path, data: Path) -> Case:
    src = data / "fluxnet" / "fluxnet2015_monthly_GPP_NEE_ET_204sites.csv"
    path = _write(tmp / "base" / "fluxnet_monthly.csv", _head(src, 120))
    columns = {"latitude": "lat", "longitude": "lon", "date": "Date", "flux": "NEE"}
    return Case(path, lambda p, **kw: S.read_fluxnet_monthly_table(p, **kw), columns, "500", "nee")


_MAPPING = {"site_id": "site", "lat": "la", "lon": "lo", "start": "t0", "end": "t1", "value": "flux",
            "units": "u", "variable_name": "nee"}  # fmt: skip


def _csv(tmp: Path, data: Path) -> Case:
    """A generic CSV of real FLUXNET2015 monthly NEE (g C m-2 d-1), with its own column names."""
    src = pd.read_csv(data / "fluxnet" / "fluxnet2015_monthly_GPP_NEE_ET_204sites.csv", nrows=80)
    start = pd.to_datetime(src.Date.astype(str), format="%Y%m")
    lines = ["site,la,lo,t0,t1,flux,u"] + [
        f"{s},{la},{lo},{a:%Y-%m-%d},{b:%Y-%m-%d},{v},g C m-2 d-1"
        for s, la, lo, a, b, v in zip(src.site, src.lat, src.lon, start, start + pd.DateOffset(months=1), src.NEE)
    ]
    path = _write(tmp / "base" / "obs.csv", lines)
    columns = {"latitude": "la", "longitude": "lo", "date": "t0", "flux": "flux"}
    return Case(path, lambda p, **kw: S.read_generic_csv(p, _MAPPING, **kw), columns, "500", "nee")


BUILD = {
    "srdb": _srdb,
    "cosore_daily": _cosore_daily,
    "cosore_halfhourly": _cosore_halfhourly,
    "fluxnet": _fluxnet,
    "fluxnet_monthly": _fluxnet_monthly,
    "csv": _csv,
}


@pytest.fixture
def case(request, tmp_path, shared_data) -> Case:
    return BUILD[request.param](tmp_path, shared_data)


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def _variant(case: Case, tag: str, lines: list[str], **kw) -> Path:
    return _write(case.path.parent.parent / tag / case.path.name, lines, **kw)


def _set_cell(lines: list[str], line: int, column: str, value: str) -> list[str]:
    header = next(csv.reader([lines[0]]))
    row = next(csv.reader([lines[line - 1]]))
    row[header.index(column)] = value
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(row)
    return lines[: line - 1] + [buf.getvalue()] + lines[line:]


def _accounted(t: S.SiteTable) -> None:
    """Nothing silently dropped: every candidate kept or quarantined with a reason."""
    assert len(t.report) == 1
    r = next(iter(t.report.values()))
    assert r["candidates"] == r["kept"] + r["quarantined"] == len(t.observations) + len(t.quarantine)
    assert t.quarantine["reason"].notna().all() and (t.quarantine["reason"] != "").all()
    assert list(t.observations.columns) == S.OBS_COLUMNS


def _same_observations(a: pd.DataFrame, b: pd.DataFrame) -> None:
    cols = ["site_id", "variable", "start", "end", "value"]
    a, b = (x[cols].sort_values(cols).reset_index(drop=True) for x in (a, b))
    pd.testing.assert_frame_equal(a, b)


def _clean_line(case: Case, base: S.SiteTable) -> int:
    """The first data line all of whose candidates the base read keeps."""
    touched = set(base.quarantine.row.dropna().astype(int))
    return next(n for n in range(2, len(_lines(case.path)) + 1) if n not in touched)


def _without(case: Case, line: int) -> S.SiteTable:
    lines = _lines(case.path)
    return case.read(_variant(case, "without", lines[: line - 1] + lines[line:]))


_KEY = ["site_id", "variable", "start", "end", "value"]


def _losing(case: Case, base: S.SiteTable, line: int, variable: str | None = None) -> pd.DataFrame:
    """The base observations less those of ``line`` (only of ``variable``, when given): what a fault
    on that line must leave. A cell that is no number costs its whole line; a value that is missing,
    infinite or implausible costs its own variable only (the line's other fluxes are measurements
    of their own)."""
    of_line = base.observations.merge(_without(case, line).observations[_KEY], how="left", on=_KEY, indicator=True)
    gone = (of_line._merge == "left_only").to_numpy().copy()
    assert gone.any(), "the line held no kept observation: the test could not fail"
    if variable is not None:
        gone &= (base.observations.variable == variable).to_numpy()
    return base.observations[~gone]


ALL = list(BUILD)
_PAIRS = [
    ("srdb", "latitude"), ("srdb", "longitude"), ("srdb", "year"), ("srdb", "flux"),
    ("cosore_daily", "flux"), ("cosore_daily", "date"), ("cosore_daily", "soil temperature"),
    ("cosore_halfhourly", "flux"), ("cosore_halfhourly", "date"), ("cosore_halfhourly", "soil temperature"),
    ("fluxnet", "flux"), ("fluxnet", "date"), ("fluxnet", "quality flag"), ("fluxnet", "air temperature"),
    ("fluxnet_monthly", "latitude"), ("fluxnet_monthly", "longitude"), ("fluxnet_monthly", "date"),
    ("fluxnet_monthly", "flux"),
    ("csv", "latitude"), ("csv", "longitude"), ("csv", "date"), ("csv", "flux"),
]  # fmt: skip
_GARBLED = ["n.d.", "12..5", "45°N", "--"]
"""Cells seen in real spreadsheets: "no data", a typo, a unit in the cell, a dash for missing."""
CELLS = [(name, what, _GARBLED[i % len(_GARBLED)]) for i, (name, what) in enumerate(_PAIRS)]


@pytest.mark.parametrize(("case", "what", "cell"), CELLS, indirect=["case"])
def test_a_cell_that_is_no_number_quarantines_its_row_only(case, what, cell):
    base = case.read(case.path)
    line = _clean_line(case, base)
    column = case.columns[what]
    t = case.read(_variant(case, "fault", _set_cell(_lines(case.path), line, column, cell)))
    _accounted(t)
    q = t.quarantine[t.quarantine.row == line]
    expected = "unparseable date" if what == "date" else f"non-numeric {what}"
    assert len(q) >= 1 and set(q.reason) == {expected}, q
    assert q.detail.str.contains(f"{column}='{cell}'", regex=False).all(), q.detail.tolist()
    assert next(iter(t.report.values()))["rows_in"] == next(iter(base.report.values()))["rows_in"]
    _same_observations(t.observations, _losing(case, base, line))


_VALUE_LEVEL = {"non-finite value", "non-physical negative soil flux", "implausible value"}
"""Reasons that judge one value: the line's other fluxes stay."""


@pytest.mark.parametrize("case", ALL, indirect=True)
@pytest.mark.parametrize(
    ("cell", "reasons"),
    [
        ("inf", {"non-finite value"}),
        # SRDB judges the record first: Rh_annual > -inf fails its Rh <= Rs rule.
        ("-inf", _VALUE_LEVEL | {"failed filter: Rh_annual > Rs_annual"}),
        # pandas reads "n/a" as missing, except in SRDB (read with keep_default_na=False): no number there.
        ("n/a", {"non-finite value", "non-numeric flux"}),
    ],
)
def test_an_infinite_or_missing_flux_is_quarantined(case, cell, reasons):
    base = case.read(case.path)
    line = _clean_line(case, base)
    t = case.read(_variant(case, "fault", _set_cell(_lines(case.path), line, case.columns["flux"], cell)))
    _accounted(t)
    q = t.quarantine[t.quarantine.row == line]
    assert len(q) >= 1 and set(q.reason) <= reasons, q
    variable = case.variable if set(q.reason) <= _VALUE_LEVEL else None
    _same_observations(t.observations, _losing(case, base, line, variable))


@pytest.mark.parametrize("case", ALL, indirect=True)
@pytest.mark.parametrize("fault", ["extra field", "truncated", "stray quote"])
def test_a_malformed_line_is_quarantined_with_its_line_and_text(case, fault):
    base = case.read(case.path)
    line = _clean_line(case, base)
    lines = _lines(case.path)
    n = len(next(csv.reader([lines[0]])))
    bad = {
        "extra field": lines[line - 1] + ",surplus",
        "truncated": ",".join(lines[line - 1].split(",")[: n // 2]),
        "stray quote": lines[line - 1].replace(",", ',"', 1),
    }[fault]
    t = case.read(_variant(case, "fault", lines[: line - 1] + [bad] + lines[line:]))
    _accounted(t)
    q = t.quarantine[t.quarantine.row == line]
    assert list(q.reason) == ["malformed line"]
    assert bad[:40] in q.detail.iloc[0]
    assert next(iter(t.report.values()))["malformed_lines"] == 1
    _same_observations(t.observations, _losing(case, base, line))


@pytest.mark.parametrize("case", ALL, indirect=True)
def test_a_repeated_header_and_trailing_garbage_cost_their_lines_only(case):
    base = case.read(case.path)
    lines = _lines(case.path)
    mid = len(lines) // 2
    t = case.read(_variant(case, "fault", lines[:mid] + [lines[0]] + lines[mid:] + ["END OF DATA", "\x1a"]))
    _accounted(t)
    q = t.quarantine.set_index("row").reason
    assert q[mid + 1] == "repeated header line"
    assert q[len(lines) + 2] == q[len(lines) + 3] == "malformed line"
    _same_observations(t.observations, base.observations)


@pytest.mark.parametrize("case", ALL, indirect=True)
def test_line_numbers_count_blank_lines_under_crlf_and_a_bom(case):
    """CRLF line ends, a byte-order mark and a blank line change nothing read; a fault after the
    blank line is reported on its true line."""
    base = case.read(case.path)
    line = _clean_line(case, base)
    lines = _lines(case.path)
    column = next(iter(case.columns.values()))
    lines = ["\ufeff" + lines[0]] + lines[1 : line - 1] + [""] + _set_cell(lines, line, column, "x")[line - 1 :]
    t = case.read(_variant(case, "fault", lines, newline="\r\n"))
    _accounted(t)
    assert set(t.quarantine.row[t.quarantine.detail.str.contains(f"{column}='x'", regex=False)]) == {line + 1}
    _same_observations(t.observations, _losing(case, base, line))


@pytest.mark.parametrize("case", ALL, indirect=True)
def test_an_implausible_flux_is_quarantined_with_value_and_range(case):
    base = case.read(case.path)
    line = _clean_line(case, base)
    t = case.read(_variant(case, "fault", _set_cell(_lines(case.path), line, case.columns["flux"], case.implausible)))
    _accounted(t)
    q = t.quarantine[t.quarantine.row == line]
    assert list(q.reason) == ["implausible value"]
    assert "outside [" in q.detail.iloc[0] and "g C m-2 d-1" in q.detail.iloc[0]
    assert q.variable.iloc[0] == case.variable
    _same_observations(t.observations, _losing(case, base, line, case.variable))


# --- per-file problems: one SiteFileError naming the file (and the line) ----------------------------


@pytest.mark.parametrize("case", ALL, indirect=True)
def test_a_latin1_file_names_file_and_line_and_reads_when_its_encoding_is_named(case):
    base = case.read(case.path)
    line = _clean_line(case, base)
    column = case.columns["flux"]
    ascii_only = [s.encode("ascii", "replace").decode("ascii") for s in _lines(case.path)]
    lines = _set_cell(ascii_only, line, column, "1.5µ")
    path = case.path.parent.parent / "latin1" / case.path.name
    path.parent.mkdir()
    path.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    with pytest.raises(S.SiteFileError) as err:
        case.read(path)
    assert err.value.line == line and err.value.path == str(path)
    assert str(err.value).startswith(f"{path}: line {line}: not valid utf-8 text: byte 0xb5")
    t = case.read(path, encoding="latin-1")
    _accounted(t)
    q = t.quarantine[t.quarantine.row == line]
    assert set(q.reason) == {"non-numeric flux"} and q.detail.str.contains("1.5µ").all()


@pytest.mark.parametrize("case", ALL, indirect=True)
@pytest.mark.parametrize(
    ("fault", "line", "message"),
    [
        ("empty", None, "empty file"),
        ("blank", None, "empty file"),
        ("header only", 1, "has a header but no data rows"),
        ("missing column", 1, "column(s) ["),
        ("semicolons", 1, "column(s) ["),
        ("mostly malformed", 2, "do not match the header's"),
        ("NUL byte", 3, "NUL byte"),
    ],
)
def test_a_file_that_cannot_be_read_raises_one_error_naming_it(case, fault, line, message):
    lines = _lines(case.path)
    flux = case.columns["flux"]
    header = next(csv.reader([lines[0]]))
    variant = {
        "empty": [],
        "blank": ["", "   "],
        "header only": lines[:1],
        "missing column": [lines[0].replace(flux, flux + "_renamed")] + lines[1:],
        "semicolons": [s.replace(",", ";") for s in lines],
        "mostly malformed": [lines[0]] + [s + ",x" for s in lines[1:]],
        "NUL byte": lines[:2] + ["\x00" * 8] + lines[2:],
    }[fault]
    path = case.path.parent.parent / "fault" / case.path.name
    path.parent.mkdir()
    path.write_text("\n".join(variant) + ("\n" if variant else ""), encoding="utf-8")
    with pytest.raises(S.SiteFileError) as err:
        case.read(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value), str(err.value)
    assert err.value.line == line
    if fault == "missing column":
        assert f"{flux}_renamed" not in header and repr(flux) in str(err.value)


def test_a_corrupt_gzip_file_names_the_file(tmp_path, shared_data):
    path = tmp_path / "cosore_daily_all.csv.gz"
    path.write_bytes((shared_data / "cosore" / "cosore_daily_all.csv.gz").read_bytes()[:5000])
    with pytest.raises(S.SiteFileError, match=f"^{re.escape(str(path))}: not a valid .gz file"):
        S.read_cosore_daily(path, shared_data / "cosore" / "cosore_datasets_summary.csv")


def test_metadata_files_are_strict(tmp_path, shared_data):
    """A summary or site table row is the location of every row of its dataset: a malformed line, a
    dataset listed twice, or a non-numeric coordinate there is not quarantined one by one."""
    case = _cosore_daily(tmp_path, shared_data)
    summary = _lines(tmp_path / "cosore_datasets_summary.csv")
    bad = tmp_path / "bad" / "summary.csv"
    _write(bad, summary[:3] + [summary[3] + ",x"] + summary[4:])
    where = re.escape(str(bad))
    with pytest.raises(S.SiteFileError, match=f"^{where}: line 4: malformed line: expected 16 fields, found 17"):
        S.read_cosore_daily(case.path, bad)
    _write(bad, summary + [summary[1]])
    twice = f"^{where}: line {len(summary) + 1}: dataset 'd20190409_ANJILELI' is listed twice"
    with pytest.raises(S.SiteFileError, match=twice):
        S.read_cosore_daily(case.path, bad)
    # A coordinate that is no number in the summary quarantines that dataset's rows, naming the summary's line.
    _write(bad, _set_cell(summary, 2, "lat", "33°658"))
    t = S.read_cosore_daily(case.path, bad)
    _accounted(t)
    rows = sum(s.startswith("d20190409_ANJILELI,") for s in _lines(case.path))
    assert rows > 100 and len(t.quarantine) == rows and len(t.observations) == 0
    assert set(t.quarantine.reason) == {"non-numeric coordinates in the summary"}
    assert (t.quarantine.detail == "summary.csv line 2: lat='33°658'").all()
    info = _lines(shared_data / "fluxnet" / "siteinfo_fluxnet2015.csv")
    _write(bad, info[:2] + [info[2] + ",x"] + info[3:])
    with pytest.raises(S.SiteFileError, match=f"^{where}: line 3: malformed line"):
        S.read_fluxnet_site_info(bad)


def test_an_unknown_time_zone_or_dataset_is_quarantined(tmp_path, shared_data):
    case = _cosore_daily(tmp_path, shared_data)
    summary = _lines(tmp_path / "cosore_datasets_summary.csv")
    bad = _write(tmp_path / "bad" / "summary.csv", _set_cell(summary, 2, "tz", "Mars/Olympus_Mons"))
    t = S.read_cosore_daily(case.path, bad)
    _accounted(t)
    assert set(t.quarantine.reason) == {"unknown time zone"} and len(t.observations) == 0  # one dataset only
    assert (t.quarantine.detail == "tz=Mars/Olympus_Mons").all()
    lines = _set_cell(_lines(case.path), 5, "dataset", "d29990101_NOBODY")
    t = case.read(_variant(case, "fault", lines))
    assert t.quarantine.set_index("row").reason[5] == "unknown dataset (not in the summary)"


def test_an_srdb_year_outside_any_study_is_implausible(tmp_path, shared_data):
    case = _srdb(tmp_path, shared_data)
    base = case.read(case.path)
    line = _clean_line(case, base)
    for year in ("1066", "3000.5"):
        t = case.read(_variant(case, f"y{year}", _set_cell(_lines(case.path), line, "Study_midyear", year)))
        _accounted(t)
        q = t.quarantine[t.quarantine.row == line]
        assert set(q.reason) == {"implausible year"} and q.detail.str.contains(f"Study_midyear={float(year)}").all()


# --- plausible ranges and the units check -----------------------------------------------------------


def test_default_ranges_cover_every_target_and_are_configurable():
    from fluxmap.science.products import TARGETS

    assert set(S.PLAUSIBLE) == set(S.PLAUSIBLE_SUBDAILY) == set(S.TYPICAL_MAGNITUDE) == set(TARGETS)
    for name, (lo, hi) in S.PLAUSIBLE.items():
        slo, shi = S.PLAUSIBLE_SUBDAILY[name]
        assert lo < S.TYPICAL_MAGNITUDE[name] < hi and slo <= lo and shi >= hi, name
    r = S.PlausibleRanges.with_overrides({"sr": [0, 10]}, {"nee": (-1, 1)})
    assert r.daily["sr"] == (0.0, 10.0) and r.daily["rh"] == S.PLAUSIBLE["rh"] and r.subdaily["nee"] == (-1.0, 1.0)
    for bad, message in (({"co2": [0, 1]}, "unknown variable 'co2'"), ({"sr": [5, 1]}, "low < high"),
                         ({"sr": [0]}, "expected [low, high]")):  # fmt: skip
        with pytest.raises(ValueError, match=message.replace("[", r"\[")):
            S.PlausibleRanges.with_overrides(bad)


def test_half_hours_are_judged_against_the_sub_daily_range(tmp_path, shared_data):
    """45 umol CO2 m-2 s-1 is a plausible half-hour of a hot soil, not a plausible daily mean."""
    hh = _cosore_halfhourly(tmp_path, shared_data)
    line = 10
    t = hh.read(_variant(hh, "hh", _set_cell(_lines(hh.path), line, "CSR_FLUX_CO2", "45")))
    assert line not in set(t.quarantine.row) and len(t.observations) == 144
    daily = _cosore_daily(tmp_path, shared_data)
    clean = _clean_line(daily, daily.read(daily.path))
    t = daily.read(_variant(daily, "dd", _set_cell(_lines(daily.path), clean, "flux_co2_umol_m2_s", "45")))
    assert t.quarantine.set_index("row").reason[clean] == "implausible value"
    strict = S.PlausibleRanges.with_overrides(subdaily={"sr": [0, 40]})
    t = hh.read(_variant(hh, "hh", _set_cell(_lines(hh.path), line, "CSR_FLUX_CO2", "45")), plausible=strict)
    assert t.quarantine.set_index("row").reason[line] == "implausible value"


@pytest.mark.parametrize(
    ("name", "column", "factor", "expect"),
    [
        ("srdb", "Rs_annual", 100.0, "x100: the file holds values scaled by 100"),
        ("srdb", "Rs_annual", 0.01, "x1/100: the file holds values scaled by 1/100"),
        ("cosore_daily", "flux_co2_umol_m2_s", 100.0, "x100: the file holds values scaled by 100"),
        ("cosore_daily", "flux_co2_umol_m2_s", -1.0, "x-1: the sign convention reversed"),
        ("fluxnet_monthly", "GPP", 365.25, "x365.2: the file holds totals per year where rates per day"),
        ("fluxnet_monthly", "GPP", 1e-3, "x1/1000: the file holds g where mg is expected"),
    ],
)
def test_a_scaled_real_file_warns_loudly_naming_source_variable_and_factor(tmp_path, shared_data, name, column,
                                                                           factor, expect):  # fmt: skip
    case = BUILD[name](tmp_path, shared_data)
    with warnings.catch_warnings():
        warnings.simplefilter("error", S.SiteUnitsWarning)  # the unscaled file must not warn
        base = case.read(case.path)
    frame = pd.read_csv(case.path, keep_default_na=False, na_values=["NA", ""], low_memory=False)
    frame[column] = pd.to_numeric(frame[column]) * factor
    path = case.path.parent.parent / "scaled" / case.path.name
    path.parent.mkdir()
    frame.to_csv(path, index=False)
    variable = {"Rs_annual": "sr", "flux_co2_umol_m2_s": "sr", "GPP": "gpp"}[column]
    match = rf"'{next(iter(base.report))}' \({re.escape(str(path))}\): {variable} looks like other units"
    with pytest.warns(S.SiteUnitsWarning, match=match) as w:
        t = case.read(path)
    _accounted(t)
    assert expect in str(w[0].message)
    units = next(iter(t.report.values()))["units_warnings"]
    assert [u["variable"] for u in units] == [variable]
    if factor > 0:  # the estimate: the file's median over the variable's typical one
        assert 1 / 3 < units[0]["likely_factor"] / factor < 3
    if factor > 30:  # most values themselves are impossible, and quarantined as such
        before = (base.observations.variable == variable).sum()
        assert (t.observations.variable == variable).sum() < 0.1 * before
        assert (t.quarantine.reason == "implausible value").sum() > 0.9 * before


def test_real_files_whole_pass_the_units_check(shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("error", S.SiteUnitsWarning)
        tables = [
            S.read_srdb(shared_data / "srdb" / "srdb-data.csv"),
            S.read_cosore_daily(shared_data / "cosore" / "cosore_daily_all.csv.gz",
                                shared_data / "cosore" / "cosore_datasets_summary.csv"),
            S.read_fluxnet_monthly_table(shared_data / "fluxnet" / "fluxnet2015_monthly_GPP_NEE_ET_204sites.csv"),
        ]  # fmt: skip
    for t in tables:
        _accounted(t)
        r = next(iter(t.report.values()))
        assert r["units_warnings"] == [] and r["malformed_lines"] == 0
    # The defaults quarantine a negligible share of real values: 5 COSORE daily means (4 of one dataset
    # above 40 g C m-2 d-1, one of 14,352) and none of SRDB's or FLUXNET2015's.
    implausible = [int((t.quarantine.reason == "implausible value").sum()) for t in tables]
    assert implausible == [0, 5, 0]


# --- the stage and the command line ------------------------------------------------------------------


def test_the_stage_logs_units_warnings_applies_configured_ranges_and_caches_by_them(tmp_path, shared_data):
    from fluxmap.config import run_config_from_mapping
    from fluxmap.stages.sites import sites_stage

    case = _fluxnet_monthly(tmp_path, shared_data)
    frame = pd.read_csv(case.path)
    frame["GPP"] *= 100
    scaled = tmp_path / "scaled.csv"
    frame.to_csv(scaled, index=False)
    sources = [{"kind": "fluxnet_monthly", "path": str(scaled)}]
    cfg = run_config_from_mapping({"workdir": str(tmp_path / "out"), "demo": None, "sites": {"sources": sources}})
    logs: list[str] = []
    with pytest.warns(S.SiteUnitsWarning, match="gpp looks like other units"):
        table = sites_stage(cfg, cfg.sites.sources, log=logs.append)
    assert any(m.startswith("sites: WARNING: site source 'fluxnet_monthly'") and "gpp" in m for m in logs)
    logs.clear()
    sites_stage(cfg, cfg.sites.sources, log=logs.append)  # cached: the warning is logged again
    assert any("sites: cached" in m for m in logs) and any("WARNING" in m and "gpp" in m for m in logs)
    n = int((table.quarantine.reason == "implausible value").sum())
    tight = run_config_from_mapping(
        {"workdir": str(tmp_path / "out"), "demo": None,
         "sites": {"sources": sources, "plausible": {"nee": [-1, 1], "gpp": [0, 1e6]}}}
    )  # fmt: skip
    logs.clear()
    with pytest.warns(S.SiteUnitsWarning, match="gpp looks like other units"):
        table = sites_stage(tight, tight.sites.sources, log=logs.append)
    assert not any("sites: cached" in m for m in logs)
    q = table.quarantine[table.quarantine.reason == "implausible value"]
    assert set(q.variable) == {"nee"} and n > 0
    assert (table.observations.query("variable == 'nee'").value.abs() <= 1).all()
    assert (table.observations.variable == "gpp").sum() == (frame.GPP.notna()).sum()


def test_the_command_line_shows_a_site_file_error_in_one_line(tmp_path, shared_data, capsys):
    from fluxmap.cli import main

    case = _srdb(tmp_path, shared_data)
    lines = _lines(case.path)
    bad = _write(tmp_path / "bad" / "srdb-data.csv", [lines[0]] + [s + ",x,y" for s in lines[1:]])
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"workdir": str(tmp_path / "out"), "demo": None, "cluster": {"kind": "threads"},
                                   "sites": {"sources": [{"kind": "srdb", "path": str(bad)}]}}))  # fmt: skip
    assert main(["sites", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fluxmap sites: error: {bad}: line 2: 399 of 399 data lines do not match the header's 85")
    assert err.count("\n") == 1


def test_a_large_clean_file_is_read_whole_without_loss(tmp_path, shared_data):
    """The scan of lines and pandas agree on a many-row file (every line kept, in order)."""
    name = "FLX_FR-Pue_FLUXNET2015_FULLSET_MM_2007-2014_2-3.csv"
    lines = _lines(shared_data / "fluxnet" / name)
    stamps = pd.date_range("1900-01-01", periods=20 * (len(lines) - 1), freq="MS").strftime("%Y%m")
    body = [lines[0]] + [f"{s}{line[line.index(',') :]}" for s, line in zip(stamps, lines[1:] * 20)]
    path = _write(tmp_path / name, body)
    info = S.read_fluxnet_site_info(shared_data / "fluxnet" / "siteinfo_fluxnet2015.csv")
    t = S.read_fluxnet(path, site_info=info, min_qc=0)
    _accounted(t)
    assert len(t.observations) == len(body) - 1 and np.all(np.diff(t.observations.start.values) > np.timedelta64(0))
