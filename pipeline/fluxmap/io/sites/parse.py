"""Reading one site file without ever crashing on its content: bytes decoded strictly, every line
checked against the header, numbers and dates parsed cell by cell.

What is wrong with one line or one cell becomes a quarantine entry with the file's line number;
what is wrong with the whole file (not decodable, empty, only a header, required columns missing,
a header that does not describe most lines) raises :class:`SiteFileError` naming the file and,
where it is known, the line.

A line with a field count other than the header's (an extra comma, a truncated write, a footer,
trailing garbage, a stray quote) is quarantined as ``malformed line`` with its line number and raw
text, and a copy of the header inside the data (files joined with ``cat``) as ``repeated header
line``: one bad line costs one row, not the source. pandas' ``on_bad_lines`` callable was not
used: it needs the slow python engine, is not told the line number, and sees only lines with too
many fields (the C engine pads short ones with NaN, silently). Instead one pass counts each line's
fields (commas when the file has no quotes, else the csv module line by line; a line with an odd
number of quotes is malformed, as a record may not span lines), then pandas' C engine parses the
well-formed lines. The pass costs about as much as pandas' parse of every column (a 144 MB,
322-column FLUXNET HH file: 0.6 s each); the FLUXNET reader parses only the columns it uses, which
wins that back. A file with more than half of its lines malformed is a per-file error.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import io
import lzma
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.api import guess_datetime_format

from fluxmap.io.sites.table import SiteFileError, _file_check

__all__: list[str] = []

_DECOMPRESS = {".gz": gzip.decompress, ".bz2": bz2.decompress, ".xz": lzma.decompress}
_SHOWN = 200
"""Characters of a malformed line kept in its quarantine detail."""
_GUESS = 100
"""Cells a date column's format is guessed from (the most common guess wins)."""


@dataclass
class SiteFile:
    """The well-formed rows of one CSV file, the file line of each, and its malformed lines."""

    path: Path
    """The file."""
    frame: pd.DataFrame
    """The well-formed data rows as pandas parsed them (index 0..n-1)."""
    line: np.ndarray
    """File line number (1 = first line) of each row of ``frame``."""
    bad: pd.DataFrame
    """Malformed and repeated-header lines: columns ``row`` (line), ``reason``, ``detail``."""
    header: list[str]
    """The column names of the header line (all of them, whatever ``usecols`` kept)."""

    @property
    def rows_in(self) -> int:
        """Data lines read (well-formed and malformed; blank lines are not rows)."""
        return len(self.frame) + len(self.bad)


def _codec(path: Path, encoding: str) -> str:
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise SiteFileError(path, f"unknown encoding {encoding!r}") from None
    # utf-8-sig reads plain UTF-8 and drops the byte-order mark spreadsheet programs write.
    return "utf-8-sig" if name == "utf-8" else name


def _bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    unpack = _DECOMPRESS.get(path.suffix.lower())
    if unpack is None:
        return raw
    try:
        return unpack(raw)
    except (OSError, EOFError, lzma.LZMAError, ValueError) as e:
        raise SiteFileError(path, f"not a valid {path.suffix} file: {e}") from None


def _decode(path: Path, raw: bytes, codec: str) -> str:
    try:
        return raw.decode(codec)
    except UnicodeDecodeError as e:
        line = raw[: e.start].replace(b"\r\n", b"\n").replace(b"\r", b"\n").count(b"\n") + 1
        start = max(raw.rfind(b"\n", 0, e.start), raw.rfind(b"\r", 0, e.start)) + 1
        column = len(raw[start : e.start].decode(codec, errors="replace")) + 1
        raise SiteFileError(
            path,
            f"not valid {codec.removesuffix('-sig')} text: byte 0x{raw[e.start]:02x} at column {column}; "
            "re-encode the file as UTF-8 or name its encoding in the source's options (encoding: latin-1)",
            line=line,
        ) from None


def _read(
    path: str | Path,
    *,
    required: Iterable[str] = (),
    what: str = "a site file",
    encoding: str = "utf-8",
    strict: bool = False,
    usecols: Any = None,
    **pandas_kw: Any,
) -> SiteFile:
    """Read a comma-separated site file; see the module docstring for what is quarantined and
    what raises. A ``required`` column absent from the header raises (``not <what>: missing
    column(s)``). ``strict`` (metadata files: summaries, site tables) raises on the first
    malformed line instead of quarantining it. Other keywords go to :func:`pandas.read_csv`."""
    path = _file_check(path)
    codec = _codec(path, encoding)
    raw = _bytes(path)
    text = _decode(path, raw, codec)
    newlines = "\r" in text
    if newlines:  # CR (the FLUXNET YY files) and CRLF line ends, as universal newlines read them
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\x00" in text:
        raise SiteFileError(path, "holds a NUL byte (a binary file?)", line=text.count("\n", 0, text.index("\x00")) + 1)
    quoted = '"' in text
    lines = text.split("\n")
    del text
    header_at = next((i for i, s in enumerate(lines) if s.strip()), None)
    if header_at is None:
        raise SiteFileError(path, "empty file")
    header = next(csv.reader([lines[header_at]]))
    missing = sorted(set(required) - set(header))
    if missing:
        raise SiteFileError(path, f"not {what}: missing column(s) {missing}; it has {header}", line=header_at + 1)
    records, bad = _records(lines, header_at, header, quoted=quoted)
    if not records and not bad:
        raise SiteFileError(path, "has a header but no data rows", line=header_at + 1)
    if bad:
        first_line, first_detail = bad[0][0], bad[0][2]
        if strict:
            raise SiteFileError(path, f"{bad[0][1]}: {first_detail}", line=first_line)
        if len(bad) > len(records):
            raise SiteFileError(
                path,
                f"{len(bad)} of {len(bad) + len(records)} data lines do not match the header's {len(header)} "
                f"fields (the header does not describe this file); first: {first_detail}",
                line=first_line,
            )
    if bad or newlines:
        kept = [header_at] + [line - 1 for line in records]
        source = io.BytesIO("\n".join(lines[i] for i in kept).encode("utf-8"))
        codec = "utf-8"
    else:  # the common case: pandas reads the original bytes, no copy
        source = io.BytesIO(raw)
    del lines, raw
    try:
        frame = pd.read_csv(source, encoding=codec, usecols=usecols, **pandas_kw)
    except (pd.errors.ParserError, ValueError) as e:
        raise SiteFileError(path, f"could not be parsed: {e}") from None
    if len(frame) != len(records):
        raise SiteFileError(path, f"{len(frame)} rows parsed from {len(records)} lines (quoted line breaks?)")
    return SiteFile(
        path=path,
        frame=frame,
        line=np.array(records, dtype=np.int64),
        bad=pd.DataFrame(bad, columns=["row", "reason", "detail"]),
        header=header,
    )


def _records(
    lines: list[str], header_at: int, header: list[str], *, quoted: bool
) -> tuple[list[int], list[tuple[int, str, str]]]:
    """The file line (1-based) of each well-formed record, and (line, reason, detail) of each bad
    line. Each physical line is judged on its own: a record never spans lines, so a stray quote
    costs its own line only (pandas would run on into the next lines looking for the closing one)."""
    n = len(header)
    head = lines[header_at]
    records: list[int] = []
    bad: list[tuple[int, str, str]] = []
    for i in range(header_at + 1, len(lines)):
        s = lines[i]
        if not s.strip():
            continue  # a blank line: pandas skips it too
        if s == head:
            bad.append((i + 1, "repeated header line", s[:_SHOWN]))
            continue
        if not quoted:
            fields = s.count(",") + 1
        elif s.count('"') % 2:
            bad.append((i + 1, "malformed line", f"unbalanced quote: {s[:_SHOWN]}"))
            continue
        else:
            fields = len(next(csv.reader([s])))
        if fields != n:
            bad.append((i + 1, "malformed line", f"expected {n} fields, found {fields}: {s[:_SHOWN]}"))
        else:
            records.append(i + 1)
    return records, bad


def _mark(reason: pd.Series, detail: pd.Series, mask: pd.Series | np.ndarray, why: str, what: pd.Series) -> None:
    """Give rows of ``mask`` without a reason yet the reason ``why`` and the detail ``what``."""
    m = np.asarray(mask, dtype=bool) & reason.isna().to_numpy()
    if m.any():
        reason[m] = why
        detail[m] = what[m]


def _shown(column: str, raw: pd.Series) -> pd.Series:
    return column + "=" + raw.astype("object").map(repr).astype(str)


def _numeric(raw: pd.Series, *, column: str, what: str, reason: pd.Series, detail: pd.Series) -> pd.Series:
    """``raw`` as float64. A non-empty cell that is no number gives its row the reason
    ``non-numeric <what>`` (first reason wins) and the detail ``<column>='<cell>'``; the value
    becomes NaN. So does +-inf, except for a ``flux``, which keeps it for the common check
    (``non-finite value``). Empty cells and the na_values of the read (``NA``, ``n/a``, ``NaN``...)
    stay NaN without a reason: the caller's rules and the common checks decide."""
    num = pd.to_numeric(raw, errors="coerce")
    num = pd.Series(np.asarray(num, dtype="float64"), index=raw.index)
    bad = raw.notna() & num.isna()
    if what != "flux":
        bad |= np.isinf(num)
    if bad.any():
        _mark(reason, detail, bad, f"non-numeric {what}", _shown(column, raw))
    return num.where(~bad)


def _dates(
    raw: pd.Series, *, column: str, reason: pd.Series, detail: pd.Series, format: str | None = None, **kw: Any
) -> pd.Series:
    """``raw`` as timestamps in ``format`` (default: the format most of the first cells have, so a
    garbled first cell cannot switch pandas to guessing cell by cell); a non-empty cell that does not
    parse gives its row the reason ``unparseable date`` and the detail ``<column>='<cell>'``."""
    text = raw.astype("object")
    if pd.api.types.is_numeric_dtype(raw):  # YYYYMMDD... read as numbers (floats when a cell is empty)
        whole = raw.notna() & np.isfinite(raw) & (raw == np.floor(raw))
        text = text.where(~whole, raw.where(whole, 0).astype("int64").astype(str).astype("object"))
    text = text.where(raw.notna(), None)
    if format is None:
        guesses = [guess_datetime_format(str(c)) for c in text.dropna().iloc[:_GUESS]]
        found = pd.Series([g for g in guesses if g is not None], dtype="object")
        format = str(found.mode().iloc[0]) if len(found) else "mixed"
    out = pd.to_datetime(text, format=format, errors="coerce", **kw)
    bad = raw.notna() & out.isna()
    if bad.any():
        _mark(reason, detail, bad, "unparseable date", _shown(column, raw))
    return out


def _reasons(n: int) -> tuple[pd.Series, pd.Series]:
    """A fresh (reason, detail) pair for ``n`` rows: no reason, empty detail."""
    return pd.Series([None] * n, dtype="object"), pd.Series([""] * n, dtype="object")
