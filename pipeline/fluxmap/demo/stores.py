"""Zarr writing helpers shared by the demo world's store writers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import xarray as xr


def _zarr_write(ds: xr.Dataset, path: Path, *, fmt: int, **kw: Any) -> None:
    """Write ``ds`` to ``path`` as Zarr format ``fmt`` (format 2 stores get consolidated metadata)."""
    ds.to_zarr(path, zarr_format=fmt, consolidated=(fmt == 2), **kw)


def _time_blocks(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` covering ``range(n)``."""
    for a in range(0, n, size):
        yield slice(a, min(a + size, n))
