"""The Markdown reports: the run report and the model stage's per-target and summary reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from fluxmap.io.provenance import write_text

__all__ = [
    "annual_report",
    "bootstrap_sentence",
    "summary_markdown",
    "target_log_lines",
    "target_report",
    "write_report",
]


def write_report(
    path: Path,
    *,
    totals: pd.DataFrame,
    partition: pd.DataFrame | None,
    figures: dict[str, str],
    validation: str,
    truth: pd.DataFrame | None,
    store: str,
    truth_by_zone: pd.DataFrame | None = None,
    formats: str,
    unmodelled: pd.DataFrame | None = None,
) -> Path:
    """The run report: totals, partition, the validation tables, figures, and (demo) the error vs truth.
    ``unmodelled``: the zones mapped without a validated model of their own, and their area."""
    lines = [
        "# fluxmap run report",
        "",
        f"Gridded output: `{store}` ({formats}).",
        "",
        "## Global totals (Pg C yr-1)",
        "",
        totals.round(3).to_markdown(),
        "",
        "Each total is the sum over the 8-day periods present in that year, annualized: divided by "
        "`time_fraction` (the periods' `days` over the year's 365 or 366), so a year with missing periods says so "
        "instead of reporting a part-year sum as a year. `covered_fraction_min`: the lowest share of land "
        "area-days with a value over the maps. `land_km2_never_predicted_max`: land (cell area x land fraction) "
        "with no value in any period (cells with land fraction <= 0.5 carry no zone and are not predicted), "
        "counted as zero. `<target>_from_missing_predictors`: the part of the total from cell-periods predicted "
        "with a predictor missing (the model's learned default direction).",
        "",
    ]
    if any(str(c).endswith("_unified") for c in totals.columns):
        lines += ["A target's column is the zone models' map; `<target>_unified` is the unified model's.", ""]
    lines += [
        "## Zones without a model of their own",
        "",
        "A zone with too few physical sites for a target cannot be validated on a held-out site: it is mapped "
        "with the unified model (or left empty, `mask`).",
        "",
        unmodelled.round(4).to_markdown(index=False)
        if unmodelled is not None
        else "None: every zone has a validated model.",
        "",
    ]
    if partition is not None:
        lines += ["## Soil respiration partition (AR = SR - HR)", "", partition.round(3).to_markdown(), ""]
    if truth is not None:
        lines += [
            "## Error of the predicted maps against the demo world's known truth",
            "",
            "Per cell and 8-day period over land; totals from the truth map with the same areas. `r2`, `rmse`, "
            "`bias`: the zone models' map; `*_unified`: the unified model's map on the same cells.",
            "",
            truth.round(3).to_markdown(),
            "",
        ]
    if truth_by_zone is not None and len(truth_by_zone):
        lines += [
            "The same within each of the world's true zones:",
            "",
            truth_by_zone.round(3).to_markdown(index=False),
            "",
        ]
    lines += ["## Figures", ""] + [f"![{k}]({v})" for k, v in figures.items()] + ["", "## Validation", "", validation]
    write_text(path, "\n".join(lines) + "\n")
    return path


# --- the model stage's reports ----------------------------------------------------------------


def bootstrap_sentence(b: dict[str, float], against: str, a: str = "zone") -> str:
    """One sentence on a paired site bootstrap of R2(a) - R2(unified) and its verdict."""
    verdict = (
        f"{a} models better"
        if b["delta_r2_lo"] > 0
        else "unified model better"
        if b["delta_r2_hi"] < 0
        else "no clear difference"
    )
    return (
        f"R2 {a} - unified against {against}: {b['delta_r2']:+.4f}, 5-95 % interval over "
        f"{b['resamples']} resamples of the {b['sites']} sites [{b['delta_r2_lo']:+.4f}, {b['delta_r2_hi']:+.4f}]; "
        f"{a} models better in {b['share_a_better']:.0%} of resamples ({verdict})."
    )


def _truth_lines(summary: dict[str, Any], pieces: dict[str, Any]) -> list[str]:
    o_obs, o_truth, oboot = pieces["true_zones"]
    return [
        "",
        "Against the demo world's noise-free truth:",
        "",
        pieces["scores"].round(3).to_markdown(index=False),
        "",
        bootstrap_sentence(pieces["bootstrap"], "the noise-free truth"),
        "",
        f"Zone models on the demo world's {summary['true_zones']} true zones (the fold's predictors, "
        f"same outer folds): R2 {o_obs['r2']:.3f} against the observations, "
        f"{o_truth['r2']:.3f} against the noise-free truth.",
        "",
        bootstrap_sentence(oboot, "observations", a="true-zone"),
    ]


def _reference_lines(summary: dict[str, Any], refs: dict[str, Any]) -> list[str]:
    """The reference models' table and each model's skill over the best one, in words."""
    best = refs["best"]
    lines = [
        "",
        "## Against simple references (same outer folds)",
        "",
        "`reference: mean` is the training rows' mean; `climate` is R = a exp(bT) P/(c+P) (Raich et al. 2002); "
        "`class_mean` is the mean of the row's vegetation class. Skill = 1 - SSE(model) / SSE(best reference), "
        "5-95 % interval over resamples of whole physical sites.",
        "",
        refs["table"].round(3).to_markdown(index=False),
        "",
    ]
    for model, b in refs["skills"].items():
        verdict = (
            "beats the reference"
            if b["skill_lo"] > 0
            else "does NOT beat the reference"
            if b["skill_hi"] <= 0
            else "is not clearly better than the reference"
        )
        lines.append(
            f"- The {model} model's skill over `{best}`: {b['skill']:+.3f} [{b['skill_lo']:+.3f}, {b['skill_hi']:+.3f}]: "
            f"machine learning {verdict} here."
        )
    return lines


def _protocol_lines(summary: dict[str, Any], cfg: dict[str, Any]) -> list[str]:
    nn = summary.get("r2_unified_non_nested")
    lines = [
        "",
        "## What is nested",
        "",
        f"Every score above comes from {summary['outer_folds']} outer folds of whole physical sites "
        f"({summary['physical_sites']} physical sites: the {summary['sites']} site ids grouped by location within "
        f"{cfg['group_distance_km']:g} km or on shared predictor cells). Inside each outer fold, on its training "
        "rows only: the zones and their number k were refitted, the predictors selected (correlation filter, then "
        f"backward elimination scored on {cfg['inner_folds']} inner folds of whole sites), and every model fitted. "
        "The held-out sites took part in no choice made for them.",
    ]
    if nn is not None and nn == nn:
        lines += [
            "",
            f"Not nested, for comparison: the final predictor set ({summary['selected']} predictors, chosen on all "
            f"rows) scores R2 {nn:.3f} on the inner folds that chose it (lighter selection models); the nested "
            f"unified R2 is {summary['r2_unified']:.3f}.",
        ]
    fallback = summary.get("zones_without_model") or []
    lines += [
        "",
        f"Zones with fewer than {cfg['min_zone_sites']} physical sites get no model of their own (it could not be "
        f"validated on a held-out site): {', '.join(map(str, fallback)) if fallback else 'none'}"
        + (f"; they are mapped with: {cfg['unvalidated_zones']}." if fallback else ".")
        + f" In the outer folds, {summary['rows_on_unified_in_folds']} held-out rows fell in such a zone and were "
        "scored with the unified model's prediction"
        + (
            f" (in {summary['folds_without_zones']} of the {summary['outer_folds']} folds no k met the zoning "
            "minima without the held-out sites: all their rows)."
            if summary.get("folds_without_zones")
            else "."
        ),
    ]
    return lines


def target_report(name: str, summary: dict[str, Any], pieces: dict[str, Any], *, cfg: dict[str, Any]) -> str:
    """The Markdown report of one target of the model stage (``models/<target>/report.md``).
    ``pieces``: :func:`fluxmap.science.comparison.summarize`'s; ``cfg``: the model settings."""
    md = [
        f"# {name}: zone models vs the unified model (nested cross-validation by physical site)",
        "",
        pieces["comparison"].round(3).to_markdown(index=False),
        "",
        "`sites`: physical sites. `on_unified_share`: share of the group's held-out rows whose zone kept fewer "
        "than the minimum of physical sites in the fold's training rows, scored with the unified model (a `tie` "
        "there is that, not a zone model as good as the unified one).",
        "",
        bootstrap_sentence(pieces["bootstrap"], "observations"),
    ]
    md += _reference_lines(summary, pieces["references"])
    if "truth" in pieces:
        md += _truth_lines(summary, pieces["truth"])
    if "meteo" in pieces:
        table, sites = pieces["meteo"]
        md += [
            "",
            f"Remote sensing only vs with site meteorology ({sites} physical sites):",
            "",
            table.round(3).to_markdown(index=False),
        ]
    md += [
        "",
        f"Quantile regression forest, nested: {summary['qrf_coverage']:.1%} of observations inside the "
        f"{summary['qrf_interval']} quantile interval.",
    ]
    if "bootstrap_members" in summary:
        md += [
            "",
            f"Bootstrap ensemble ({summary['bootstrap_members']} members, 80 % of physical sites each, rows stratified "
            f"by IGBP class in proportion to its global land area): held-out R2 median {summary['bootstrap_r2_median']:.3f}; "
            f"prediction SD median {summary['bootstrap_sd_median']:.3f}, MAD median "
            f"{summary['bootstrap_mad_median']:.3f} g C m-2 d-1, "
            f"CV median {summary['bootstrap_cv_median']:.2f}.",
        ]
    md += _protocol_lines(summary, cfg)
    return "\n".join(md) + "\n"


def target_log_lines(s: dict[str, Any]) -> list[str]:
    """The console lines of one target's result."""
    lines = [
        f"  nested R2 zone {s['r2_zone']:.3f} vs unified {s['r2_unified']:.3f}; RMSE {s['rmse_zone']:.3f} vs "
        f"{s['rmse_unified']:.3f}"
        + (f"; vs truth R2 {s['truth_r2_zone']:.3f} vs {s['truth_r2_unified']:.3f}" if "truth_r2_zone" in s else ""),
        f"  R2 zone - unified {s['delta_r2_zone_minus_unified']:+.4f}, site-bootstrap 5-95 % "
        f"[{s['delta_r2_lo_zone_minus_unified']:+.4f}, {s['delta_r2_hi_zone_minus_unified']:+.4f}]",
        f"  skill of the unified model over the best reference ({s['best_reference']}): {s['skill_unified']:+.3f} "
        f"[{s['skill_lo_unified']:+.3f}, {s['skill_hi_unified']:+.3f}]",
    ]
    if s.get("r2_unified_non_nested") == s.get("r2_unified_non_nested"):
        lines.append(
            f"  not nested (final predictors scored on the folds that chose them): R2 {s['r2_unified_non_nested']:.3f}"
        )
    if "r2_true_zones" in s:
        lines.append(
            f"  zone models on the {s['true_zones']} true zones: R2 {s['r2_true_zones']:.3f}, minus unified "
            f"{s['delta_r2_true_zones_minus_unified']:+.4f} [{s['delta_r2_lo_true_zones_minus_unified']:+.4f}, "
            f"{s['delta_r2_hi_true_zones_minus_unified']:+.4f}]"
        )
    return lines


def summary_markdown(summary: pd.DataFrame) -> str:
    """``models/summary.md``: one row per target."""
    drop = ("zones", "zone_wins_in", "zones_without_model")
    table = summary.drop(columns=[c for c in summary.columns if c in drop], errors="ignore")
    return (
        "# Model summary (nested cross-validation, whole physical sites held out)\n\n"
        "Every score is nested (zones, k, predictors and models refitted inside each outer fold) except "
        "`r2_unified_non_nested`. `skill_*`: 1 - SSE(model) / SSE(best reference), `best_reference` among the "
        "training mean and the target's published-form model.\n\n" + table.round(3).to_markdown(index=False) + "\n"
    )


# --- the annual maps' report -------------------------------------------------------------------

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
