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
from fluxmap.io.provenance import begin_stage, cache_key, is_cached, sha256, write_provenance, write_table
from fluxmap.stages.common import Log

__all__ = ["plausible_ranges", "read_source", "sites_stage"]

_FILES = ["observations.parquet", "quarantine.parquet"]


def read_source(
    spec: SourceSpec, *, srdb_min_year: float | None, plausible: sites.PlausibleRanges | None = None
) -> list[sites.SiteTable]:
    """The site tables of one configured source (a glob of FLUXNET files gives one per file).

    Raises :class:`fluxmap.io.sites.SiteFileError` (naming the file and line) for a file that
    cannot be read as a whole; every problem of a single row is quarantined instead."""
    kw = spec.kwargs()
    common = {"encoding": kw.get("encoding", "utf-8"), "plausible": plausible}
    if spec.kind == "srdb":
        return [sites.read_srdb(spec.path, sites.SrdbRules(min_year=srdb_min_year), **common)]
    if spec.kind == "cosore_daily":
        return [sites.read_cosore_daily(spec.path, kw["summary"], **common)]
    if spec.kind == "cosore_halfhourly":
        dataset = kw.get("dataset", Path(spec.path).stem)
        return [sites.read_cosore_halfhourly(spec.path, dataset=dataset, summary=kw["summary"], **common)]
    if spec.kind == "fluxnet":
        files = sorted(glob.glob(spec.path))
        if not files:
            raise FileNotFoundError(f"no FLUXNET files match {spec.path}")
        info = sites.read_fluxnet_site_info(kw["site_info"], encoding=common["encoding"])
        opts = {k: v for k, v in kw.items() if k not in ("site_info", "encoding")}
        return [sites.read_fluxnet(f, site_info=info, **opts, **common) for f in files]
    if spec.kind == "fluxnet_monthly":
        return [sites.read_fluxnet_monthly_table(spec.path, micromet=tuple(kw.get("micromet", ())), **common)]
    if spec.kind == "csv":
        return [sites.read_generic_csv(spec.path, kw["mapping"], source=kw.get("source", "csv"), **common)]
    raise ValueError(
        f"unknown site source kind {spec.kind!r} (srdb, cosore_daily, cosore_halfhourly, fluxnet, fluxnet_monthly, csv)"
    )


def plausible_ranges(cfg: RunConfig) -> sites.PlausibleRanges:
    """The plausible ranges of the run: the defaults with the config's ``sites: plausible`` and
    ``sites: plausible_subdaily`` overrides."""
    return sites.PlausibleRanges.with_overrides(cfg.sites.plausible, cfg.sites.plausible_subdaily)


def _log_units_warnings(report: dict, log: Log) -> None:
    for r in report.values():
        for w in r.get("units_warnings", []):
            log(f"sites: WARNING: {w['message']}")


def _input_files(specs: tuple[SourceSpec, ...]) -> list[Path]:
    files: list[Path] = []
    for spec in specs:
        files += [Path(f) for f in sorted(glob.glob(spec.path))] or [Path(spec.path)]
        files += [Path(v) for k, v in spec.options if k in ("summary", "site_info")]
    return files


def sites_stage(cfg: RunConfig, specs: tuple[SourceSpec, ...], *, log: Log = print) -> sites.SiteTable:
    """Read every site source into ``sites/observations.parquet`` and ``sites/quarantine.parquet``.

    Values outside the run's plausible ranges (:func:`plausible_ranges`) are quarantined; a source
    whose values look like other units is warned about by its reader and logged here (again when
    the stage is cached). A file that cannot be read as a whole stops the stage with a
    :class:`fluxmap.io.sites.SiteFileError` naming the file and line."""
    out = Path(cfg.workdir) / "sites"
    out.mkdir(parents=True, exist_ok=True)
    inputs = {str(p): sha256(p) for p in _input_files(specs)}
    ranges = plausible_ranges(cfg)
    settings = {
        "sources": [dataclasses.asdict(s) for s in specs],
        "srdb_min_year": cfg.sites.srdb_min_year,
        "plausible": ranges.as_dict(),
    }
    key = cache_key(settings, inputs)
    if is_cached(out, key, _FILES):
        log(f"sites: cached in {out}")
        report = json.loads((out / "provenance.json").read_text())["report"]
        _log_units_warnings(report, log)
        return sites.SiteTable(pd.read_parquet(out / _FILES[0]), pd.read_parquet(out / _FILES[1]), report)
    begin_stage(out)
    t0 = time.perf_counter()
    table = sites.concat(
        [t for spec in specs for t in read_source(spec, srdb_min_year=cfg.sites.srdb_min_year, plausible=ranges)]
    )
    write_table(table.observations, out / _FILES[0], index=False)
    write_table(table.quarantine.astype({"row": "Int64"}), out / _FILES[1], index=False)
    write_provenance(out, key, inputs=inputs, settings=settings, report=table.report)
    n_in = sum(r["candidates"] for r in table.report.values())
    log(
        f"sites: {n_in} candidate observations -> {len(table.observations)} kept, "
        f"{len(table.quarantine)} quarantined ({time.perf_counter() - t0:.1f} s)"
    )
    for reason, n in table.quarantine.reason.value_counts().items():
        log(f"    quarantined: {n:7d}  {reason}")
    _log_units_warnings(table.report, log)
    # What later stages get is what was written (their keys hash it): read back, as a cached run does.
    return sites.SiteTable(pd.read_parquet(out / _FILES[0]), pd.read_parquet(out / _FILES[1]), table.report)
