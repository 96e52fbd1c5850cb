"""Stage 1, sites: every configured site source read into one tidy observation table and a
quarantine (``sites/observations.parquet``, ``sites/quarantine.parquet``, ``provenance.json``)."""

from __future__ import annotations

import dataclasses
import glob
import json
import time
from pathlib import Path

import pandas as pd

from fluxmap.config import RunConfig, SourceSpec
from fluxmap.io import sites
from fluxmap.io.provenance import cache_key, is_cached, sha256, write_provenance
from fluxmap.stages.common import Log

__all__ = ["read_source", "sites_stage"]

_FILES = ["observations.parquet", "quarantine.parquet"]


def read_source(spec: SourceSpec, *, srdb_min_year: float | None) -> list[sites.SiteTable]:
    """The site tables of one configured source (a glob of FLUXNET files gives one per file)."""
    kw = spec.kwargs()
    if spec.kind == "srdb":
        return [sites.read_srdb(spec.path, sites.SrdbRules(min_year=srdb_min_year))]
    if spec.kind == "cosore_daily":
        return [sites.read_cosore_daily(spec.path, kw["summary"])]
    if spec.kind == "cosore_halfhourly":
        dataset = kw.get("dataset", Path(spec.path).stem)
        return [sites.read_cosore_halfhourly(spec.path, dataset=dataset, summary=kw["summary"])]
    if spec.kind == "fluxnet":
        files = sorted(glob.glob(spec.path))
        if not files:
            raise FileNotFoundError(f"no FLUXNET files match {spec.path}")
        info = pd.read_csv(kw["site_info"])
        opts = {k: v for k, v in kw.items() if k != "site_info"}
        return [sites.read_fluxnet(f, site_info=info, **opts) for f in files]
    if spec.kind == "fluxnet_monthly":
        return [sites.read_fluxnet_monthly_table(spec.path)]
    if spec.kind == "csv":
        return [sites.read_generic_csv(spec.path, kw["mapping"], source=kw.get("source", "csv"))]
    raise ValueError(
        f"unknown site source kind {spec.kind!r} (srdb, cosore_daily, cosore_halfhourly, fluxnet, fluxnet_monthly, csv)"
    )


def _input_files(specs: tuple[SourceSpec, ...]) -> list[Path]:
    files: list[Path] = []
    for spec in specs:
        files += [Path(f) for f in sorted(glob.glob(spec.path))] or [Path(spec.path)]
        files += [Path(v) for k, v in spec.options if k in ("summary", "site_info")]
    return files


def sites_stage(cfg: RunConfig, specs: tuple[SourceSpec, ...], *, log: Log = print) -> sites.SiteTable:
    """Read every site source into ``sites/observations.parquet`` and ``sites/quarantine.parquet``."""
    out = Path(cfg.workdir) / "sites"
    out.mkdir(parents=True, exist_ok=True)
    inputs = {str(p): sha256(p) for p in _input_files(specs)}
    settings = {"sources": [dataclasses.asdict(s) for s in specs], "srdb_min_year": cfg.sites.srdb_min_year}
    key = cache_key(settings, inputs)
    if is_cached(out, key, _FILES):
        log(f"sites: cached in {out}")
        report = json.loads((out / "provenance.json").read_text())["report"]
        return sites.SiteTable(pd.read_parquet(out / _FILES[0]), pd.read_parquet(out / _FILES[1]), report)
    t0 = time.perf_counter()
    table = sites.concat([t for spec in specs for t in read_source(spec, srdb_min_year=cfg.sites.srdb_min_year)])
    table.observations.to_parquet(out / _FILES[0], index=False)
    table.quarantine.astype({"row": "Int64"}).to_parquet(out / _FILES[1], index=False)
    write_provenance(out, key, inputs=inputs, settings=settings, report=table.report)
    n_in = sum(r["candidates"] for r in table.report.values())
    log(
        f"sites: {n_in} candidate observations -> {len(table.observations)} kept, "
        f"{len(table.quarantine)} quarantined ({time.perf_counter() - t0:.1f} s)"
    )
    for reason, n in table.quarantine.reason.value_counts().items():
        log(f"    quarantined: {n:7d}  {reason}")
    return table
