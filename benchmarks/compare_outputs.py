"""Are two ``fluxmap run`` workdirs' outputs the same? (Used to prove that a restructuring moved
no figure: run README command 1 before and after, then compare the two ``fluxmap-output``.)

Compares, and prints one JSON line (exit status 1 when anything differs):
- every CSV, Markdown report and JSON of ``models/`` and ``predict/`` byte for byte;
- every model file under ``models/`` (``.ubj``, ``.skops`` and their ``.json`` metadata) by SHA-256;
- every Parquet table (sites, extract, LOSO predictions) as data frames;
- every array of the Zarr stores (``predict/fluxmap.zarr``, ``models/zone_map.zarr``): values
  (NaN equal to NaN), dtype and shape; their attributes too, except the ones that name the run
  rather than its numbers (``--ignore-attr``, default: the git revision, the input checksums and
  the run key, which contain the source tree's revision and the demo world's ``world.json``).

    python benchmarks/compare_outputs.py BEFORE/fluxmap-output AFTER/fluxmap-output
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from fluxmap.io.provenance import sha256

BYTES = ("*.csv", "*.md", "zones.json", "selected_predictors.json", "zone_map_vs_truth.json")
MODELS = ("*.ubj", "*.skops")
RUN_ATTRS = ("fluxmap_git_revision", "fluxmap_input_sha256", "fluxmap_run_key")


def _files(root: Path, patterns: tuple[str, ...], under: tuple[str, ...]) -> set[str]:
    return {str(p.relative_to(root)) for d in under for pat in patterns for p in (root / d).rglob(pat) if p.is_file()}


def _compare_zarr(a: Path, b: Path, ignore: tuple[str, ...]) -> list[str]:
    da, db = xr.open_zarr(a, consolidated=True), xr.open_zarr(b, consolidated=True)
    diffs = []
    if set(da.variables) != set(db.variables):
        diffs.append(f"{a.name}: variables {sorted(set(da.variables) ^ set(db.variables))} in one store only")
    for v in sorted(set(da.variables) & set(db.variables)):
        x, y = da[v].values, db[v].values
        if x.dtype != y.dtype or x.shape != y.shape:
            diffs.append(f"{a.name}/{v}: {x.dtype}{x.shape} vs {y.dtype}{y.shape}")
        elif not np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"):
            diffs.append(f"{a.name}/{v}: values differ")
        if da[v].attrs != db[v].attrs:
            diffs.append(f"{a.name}/{v}: attributes differ")
    for k in sorted((set(da.attrs) | set(db.attrs)) - set(ignore)):
        if da.attrs.get(k) != db.attrs.get(k):
            diffs.append(f"{a.name}: global attribute {k} differs")
    return diffs


def compare(a: str | Path, b: str | Path, *, ignore_attrs: tuple[str, ...] = RUN_ATTRS) -> dict:
    """Every difference between the outputs of workdirs ``a`` and ``b``, and what was compared."""
    a, b = Path(a), Path(b)
    diffs: list[str] = []
    checked = {"bytes": 0, "models": 0, "parquet": 0, "zarr_arrays": 0}
    for kind, patterns, under, same in (
        ("bytes", BYTES, ("models", "predict"), lambda x, y: x.read_bytes() == y.read_bytes()),
        ("models", MODELS, ("models",), lambda x, y: sha256(x) == sha256(y) and sha256(x.with_suffix(".json")) == sha256(y.with_suffix(".json"))),
        ("parquet", ("*.parquet",), ("sites", "extract", "models"), lambda x, y: pd.read_parquet(x).equals(pd.read_parquet(y))),
    ):  # fmt: skip
        fa, fb = _files(a, patterns, under), _files(b, patterns, under)
        diffs += [f"{f}: only in {a if f in fa else b}" for f in sorted(fa ^ fb)]
        for f in sorted(fa & fb):
            checked[kind] += 1
            if not same(a / f, b / f):
                diffs.append(f"{f}: differs")
    for store in ("predict/fluxmap.zarr", "models/zone_map.zarr"):
        if (a / store).is_dir() or (b / store).is_dir():
            diffs += _compare_zarr(a / store, b / store, ignore_attrs)
            checked["zarr_arrays"] += len(xr.open_zarr(a / store, consolidated=True).variables)
    return {"identical": not diffs, "differences": diffs, "checked": checked}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", help="first workdir (e.g. before/fluxmap-output)")
    p.add_argument("b", help="second workdir")
    p.add_argument("--ignore-attr", action="append", help=f"store attributes to skip (default: {', '.join(RUN_ATTRS)})")
    args = p.parse_args(argv)
    result = compare(args.a, args.b, ignore_attrs=tuple(args.ignore_attr or RUN_ATTRS))
    print(json.dumps(result))
    return 0 if result["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
