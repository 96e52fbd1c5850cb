"""Stage 6 (after the maps), project: the trained 8-day models applied to a delta-changed climate
(:mod:`fluxmap.science.projection`), written as ``project/fluxmap.zarr`` with the maps' CF
metadata, with its totals beside the baseline's, the difference maps, and the share of the land
the models' area of applicability does not cover, before and after the change (``project/totals.csv``,
``project/report.md``, a section of ``predict/report.md``).

On by default for the demo world only (``project.enabled``): a projection is a scenario someone
chose, not a product of the data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import xarray as xr

from fluxmap.config import RunConfig, parse_ratio
from fluxmap.io import figures
from fluxmap.io.catalog import load_catalog
from fluxmap.io.progress import dask_progress
from fluxmap.io.provenance import write_table, write_text
from fluxmap.io.report import replace_marked_section
from fluxmap.io.store import open_for_tables
from fluxmap.science import aggregate
from fluxmap.science.projection import Delta, FieldDelta, monthly_deltas
from fluxmap.stages.common import Log
from fluxmap.stages.predict import predict_stage

__all__ = ["project_stage", "projection_enabled", "scenario_of"]

_BEGIN, _END = "<!-- fluxmap project: begin -->", "<!-- fluxmap project: end -->"


def projection_enabled(cfg: RunConfig) -> bool:
    """``project.enabled``, or unset: on the embedded demo world (no site sources of the user's)."""
    if cfg.project.enabled is not None:
        return cfg.project.enabled
    return cfg.demo is not None and not cfg.sites.sources


def scenario_of(cfg: RunConfig) -> Delta | FieldDelta:
    """The run's scenario: the uniform delta of ``project.warming_k`` and ``precipitation_factor``, or,
    with ``project.scenario_catalog``, a climate model's per-cell, per-month delta between the future
    and historical entries' periods. Errors name the catalog, the entry and what is wrong."""
    p = cfg.project
    if not p.scenario_catalog:
        return p.delta()
    cat = load_catalog(p.scenario_catalog, **p.scenario_params)
    for entry in (p.historical_entry, p.future_entry):
        if entry not in cat.entries:
            raise ValueError(f"project: {p.scenario_catalog}: no entry {entry!r}; it has {cat.entries}")
    fields = monthly_deltas(
        cat.open(p.historical_entry), cat.open(p.future_entry), p.historical_years, p.future_years,
        names=(f"{p.scenario_catalog}: {p.historical_entry}", f"{p.scenario_catalog}: {p.future_entry}"),
    )  # fmt: skip
    (h0, h1), (f0, f1) = p.historical_years, p.future_years
    return FieldDelta(fields, f"{p.future_entry} {f0}-{f1} minus {p.historical_entry} {h0}-{h1} "
                              f"({Path(p.scenario_catalog).name}), per model cell and month")  # fmt: skip


def project_stage(cfg: RunConfig, baseline: dict[str, Any], *, log: Log = print) -> dict[str, Any] | None:
    """The projection of the 8-day maps of ``baseline`` (:func:`predict_stage`'s result) under
    ``cfg.project``; None when disabled or without baseline maps. Returns the store, the totals
    table and the report's path."""
    if not projection_enabled(cfg) or not baseline:
        return None
    delta = scenario_of(cfg)
    written = predict_stage(cfg, scenario=delta, log=log)
    out = Path(written["store"]).parent
    base, proj = open_for_tables(baseline["store"]), open_for_tables(written["store"])
    land = base["land_fraction"]  # as the baseline's store keeps it (read whole when the store is small)
    names = [t.split(":")[0] for t in written["targets"] if parse_ratio(t.split(":")[0]) is None]
    fields: dict[str, tuple[xr.DataArray, xr.DataArray | None]] = {}
    for v in names:
        fields[f"baseline:{v}"] = (base[v], None)
        fields[f"projected:{v}"] = (proj[v], None)
        for label, ds in (("baseline", base), ("projected", proj)):
            if f"{v}_aoa" in ds:
                fields[f"{label}:{v}:outside"] = (ds[v].where(ds[f"{v}_aoa"] == 0), None)
    with dask_progress("project: totals", log):
        totals = aggregate.many_annual_totals(fields, land)
    rows = []
    for v in names:
        b, p = totals[f"baseline:{v}"], totals[f"projected:{v}"]
        for year in p.index:
            row = {"variable": v, "year": int(year), "baseline_pg_c_yr": float(b.total_pg_c_yr.get(year, float("nan"))),
                   "projected_pg_c_yr": float(p.total_pg_c_yr[year])}  # fmt: skip
            row["difference_pg_c_yr"] = row["projected_pg_c_yr"] - row["baseline_pg_c_yr"]
            for label in ("baseline", "projected"):
                o = totals.get(f"{label}:{v}:outside")
                if o is not None:
                    row[f"{label}_outside_aoa_area_fraction"] = float(o.covered_fraction.get(year, float("nan")))
                    row[f"{label}_from_outside_aoa_pg_c_yr"] = float(o.total_pg_c_yr.get(year, float("nan")))
            rows.append(row)
    table = pd.DataFrame(rows)
    write_table(table, out / "totals.csv", index=False)
    maps = []
    with dask_progress("project: difference maps", log):
        land_view = aggregate.display_field(land).load()
        for v in names:
            diff = aggregate.display_field((proj[v] - base[v]).mean("time")).load()
            maps.append(figures.map_figure(diff, out / f"difference_{v}.png", title=f"{v}: projected minus baseline, "
                                           f"mean over the periods ({delta.describe()})", units="g C m-2 d-1",
                                           cmap="RdBu_r", symmetric=True, land=land_view).name)  # fmt: skip
            if f"{v}_aoa" in proj:
                share = aggregate.display_field((proj[f"{v}_aoa"] == 0).where(proj[v].notnull()).mean("time")).load()
                maps.append(figures.map_figure(share, out / f"outside_aoa_{v}.png", title=f"{v}: share of the periods "
                                               "outside the area of applicability, projected", units="fraction",
                                               cmap="magma_r", vmin=0, vmax=1, land=land_view).name)  # fmt: skip
    report = _report(delta.describe(), table, maps, written)
    write_text(out / "report.md", report)
    predict_report = Path(baseline["store"]).parent / "report.md"
    if predict_report.is_file():
        summary = table.groupby("variable")[[c for c in table.columns if c not in ("variable", "year")]].mean()
        replace_marked_section(predict_report, _BEGIN, _END, "\n".join([
            "## Projection", "", f"The same models under {delta.describe()} (`../project/report.md`), mean over "
            "the years:", "", summary.reset_index().to_markdown(index=False, floatfmt=".3f"), ""]))  # fmt: skip
    log(f"project: {delta.describe()} -> {written['store']}; " + "; ".join(
        f"{r.variable} {r.baseline_pg_c_yr:.2f} -> {r.projected_pg_c_yr:.2f} Pg C yr-1 ({r.year})"
        for r in table.itertuples()))  # fmt: skip
    return {"store": written["store"], "totals": table, "report": out / "report.md"}


def _report(scenario: str, table: pd.DataFrame, maps: list[str], written: dict[str, Any]) -> str:
    lines = [
        f"# Projection: {scenario}",
        "",
        "The trained 8-day models (zone models, unified model, ensemble) applied to the baseline's predictors with "
        "every temperature warmed and precipitation scaled (delta change); reflectance, greenness, productivity, "
        "soil and terrain held at the baseline, and the zones assigned again from the changed long-term climate. "
        "`fluxmap.zarr` has the maps with the same CF metadata as the baseline's and the scenario in "
        "`fluxmap_scenario`.",
        "",
        "Totals (Pg C yr-1) per year, baseline and projected, and the share of land area-days outside the unified "
        "model's area of applicability (dissimilarity index above its cross-validated threshold: climates the "
        "sites' predictors did not cover) with the part of the total from there:",
        "",
        table.to_markdown(index=False, floatfmt=".3f"),
        "",
        "A projected flux outside the area of applicability is an extrapolation: its value is what the trees "
        "return at the edge of what they saw, not a prediction the validation supports.",
        "",
    ]
    lines += [f"![{m}]({m})" for m in maps]
    lines += ["", f"Store: `{written['store']}`."]
    return "\n".join(lines) + "\n"
