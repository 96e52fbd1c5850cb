"""The annual maps' report (``predict/annual/report.md``): totals beside published figures, where
the run differs from them (latitude bands, biomes, zones, from the held-out sites), components."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from fluxmap.io.provenance import write_text

__all__ = ["annual_report"]

_PUBLISHED_NAMES = {"sr": "SR", "rh": "HR", "ra": "AR = SR - HR", "rh_over_sr": "HR/SR"}


def _ours(tables: dict[str, pd.DataFrame], name: str) -> tuple[float, float, float]:
    """The run's global figure for a published quantity (first year), with its ensemble 5-95 %
    range where there is one (NaN otherwise)."""
    nan = float("nan")
    tot = tables["totals"].reset_index()
    comp = tables.get("components")
    if name in set(tot.target):
        r = tot[tot.target == name].iloc[0]
        return (
            float(r.total_pg_c_yr),
            float(r.get("ensemble_p05_pg_c_yr", nan)),
            float(r.get("ensemble_p95_pg_c_yr", nan)),
        )
    if comp is not None and len(comp):
        g = comp[comp.scope == "global"].iloc[0]
        if name == "ra":
            return float(g.ar_pg_c_yr), nan, nan
        if name == "rh_over_sr":
            return float(g.rh_over_sr), nan, nan
    return nan, nan, nan


def _where_lines(where: pd.DataFrame, v: str) -> list[str]:
    """Sentences on where a flux's map stands on its held-out sites: by latitude band and biome, the
    regions whose site bias times land area is largest, and where the area outside the area of
    applicability carries its flux."""
    lines: list[str] = []
    w = where[(where.target == v)]
    if not len(w):
        return lines
    year = w.year.min()
    w = w[w.year == year]
    for scope in ("latitude band", "biome", "zone"):
        part = w[w.scope == scope]
        if "site_bias_x_land_pg_c_yr" not in part or not part.site_bias_x_land_pg_c_yr.notna().any():
            continue
        ranked = (
            part.dropna(subset=["site_bias_x_land_pg_c_yr"])
            .reindex(part.site_bias_x_land_pg_c_yr.abs().sort_values(ascending=False).index)
            .dropna(subset=["site_bias_x_land_pg_c_yr"])
        )
        items = [
            f"{r['name']} {r.site_bias_x_land_pg_c_yr:+.1f} (held-out bias {r.sites_bias:+.3f} g C m-2 d-1 at "
            f"{int(r.physical_sites)} sites, R2 {r.sites_r2:.2f}; map {r.total_pg_c_yr:.1f} Pg C yr-1)"
            for _, r in ranked.head(3).iterrows()
        ]
        unsampled = (
            part[part.sites_records.isna() & (part.total_pg_c_yr.abs() > 0.05)]
            if "sites_records" in part
            else part.iloc[:0]
        )
        lines.append(
            f"- By {scope}, the map's total would move most if it were off as its held-out sites are: "
            + "; ".join(items)
            + (
                f". No site in: {', '.join(unsampled['name'])} (carrying {unsampled.total_pg_c_yr.sum():.1f} Pg C yr-1)."
                if len(unsampled)
                else "."
            )
        )
    bands = w[w.scope == "latitude band"]
    if "from_outside_aoa_pg_c_yr" in bands and bands.from_outside_aoa_pg_c_yr.notna().any():
        top = bands.sort_values("from_outside_aoa_pg_c_yr", ascending=False).iloc[0]
        lines.append(
            f"- Outside the area of applicability: {bands.from_outside_aoa_pg_c_yr.sum():.1f} Pg C yr-1, most in "
            f"{top['name']} ({top.from_outside_aoa_pg_c_yr:.1f} Pg C yr-1, {top.outside_aoa_area_fraction:.0%} of "
            "its land outside)."
        )
    return lines


def annual_report(
    path: Path,
    *,
    tables: dict[str, pd.DataFrame],
    published: dict[str, float],
    source: str,
    summary: pd.DataFrame,
    mappings: dict[str, dict[str, Any] | None],
    store: str,
    climatological: bool,
) -> Path:
    """The annual maps' report: totals with the ensemble's range, the published figures beside them
    and where the run differs (latitude bands, biomes, zones: the held-out sites' bias there times
    the land it maps, and the area outside the area of applicability), the components, how each
    flux was mapped and the nested validation."""
    tot = tables["totals"].reset_index()
    keep = [c for c in ("target", "year", "total_pg_c_yr", "unified_total_pg_c_yr", "ensemble_members",
                        "ensemble_sd_pg_c_yr", "ensemble_p05_pg_c_yr", "ensemble_p95_pg_c_yr",
                        "outside_aoa_area_fraction", "from_outside_aoa_pg_c_yr") if c in tot]  # fmt: skip
    lines = [
        "# fluxmap annual maps report",
        "",
        f"Gridded output: `{store}`"
        + (
            " (one climatological year: the predictors are climatologies and static layers)." if climatological else "."
        ),
        "",
        "## Global totals (Pg C yr-1)",
        "",
        tot[keep].round(3).to_markdown(index=False),
        "",
        "`total_pg_c_yr`: the zone models' map (the unified model's where a zone has none); `unified_total_pg_c_yr`: "
        "the unified model's map; `ensemble_*`: each bootstrap member's own map summed, their SD and 5-95 % range; "
        "`outside_aoa_*`: land area outside the area of applicability (Meyer & Pebesma 2021) and the flux mapped "
        "there. The members are unified models fitted on site bootstraps (80 % of the physical sites, rows "
        "stratified by vegetation class): their range is the spread of that model, not an interval around the "
        "zone models' total.",
        "",
    ]
    if published:
        rows = []
        for name, value in published.items():
            ours, lo, hi = _ours(tables, name)
            rows.append({"quantity": _PUBLISHED_NAMES.get(name, name), "fluxmap": ours, "ensemble_p05": lo,
                         "ensemble_p95": hi, "published": value, "difference": ours - value,
                         "relative": (ours - value) / value if value else float("nan")})  # fmt: skip
        lines += [
            f"## Beside the published figures{f' ({source})' if source else ''}",
            "",
            pd.DataFrame(rows).round(3).to_markdown(index=False),
            "",
            "The published figures are a yardstick: nothing in the run is tuned to them. Where the run stands on "
            "the held-out sites, region by region (the full table is `where.csv`):",
            "",
        ]
        for name in published:
            if name in set(tot.target):
                ours = _ours(tables, name)[0]
                lines.append(f"**{_PUBLISHED_NAMES.get(name, name)}** ({ours:.1f} vs {published[name]:.1f} published, "
                             f"{ours - published[name]:+.1f} Pg C yr-1):")  # fmt: skip
                lines += _where_lines(tables["where"], name) + [""]
    elif "where" in tables and len(tables["where"]):
        lines += ["## Where the maps stand on their held-out sites", ""]
        for v in tot.target.unique():
            lines += [f"**{v}**:"] + _where_lines(tables["where"], v) + [""]
    if "components" in tables:
        c = tables["components"]
        lines += ["## Components: AR = SR - HR and HR/SR (Pg C yr-1)", "", c.round(3).to_markdown(index=False), ""]
    for target, note in mappings.items():
        if not note:
            continue
        v = target.partition(":")[0]
        row = summary[summary.target == target]
        how = (
            f"{note['denominator'].partition(':')[0]} x {note['ratio'].partition(':')[0]}"
            if note["mapped_as"] == "ratio"
            else "its own model"
        )
        lines += [f"## How {v} is mapped", "", f"{v} is mapped as {how} ({note['why']})."]
        if len(row) and "paired_composed_r2" in row:
            r = row.iloc[0]
            lines.append(
                f"On the records giving both, held out (nested): {v} by its own model R2 {r.paired_independent_r2:.3f} "
                f"(RMSE {r.paired_independent_rmse:.3f}), as the product R2 {r.paired_composed_r2:.3f} (RMSE "
                f"{r.paired_composed_rmse:.3f}); difference {r.paired_composed_minus_independent_r2:+.3f}, site "
                f"bootstrap 5-95 % [{r.paired_composed_minus_independent_r2_lo:+.3f}, "
                f"{r.paired_composed_minus_independent_r2_hi:+.3f}]."
            )
        lines.append("")
    cols = [c for c in ("target", "physical_sites", "rows", "r2_unified", "r2_zone", "best_reference",
                        "skill_unified", "bootstrap_members", "mapped_as") if c in summary]  # fmt: skip
    lines += [
        "## Nested validation (held-out physical sites)",
        "",
        summary[cols].round(3).fillna("").to_markdown(index=False),
        "",
        "Per target: `models/<target>/report.md`.",
    ]
    write_text(path, "\n".join(lines) + "\n")
    return path
