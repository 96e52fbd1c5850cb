"""The Markdown reports: the run report and the model stage's per-target and summary reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fluxmap.io.provenance import write_text

__all__ = [
    "bootstrap_sentence",
    "opening_lines",
    "totals_sentences",
    "truth_disagreements",
    "variable_table",
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
    names: list[str] | None = None,
    variables: pd.DataFrame | None = None,
    license: str = "",
    cell: tuple[float, float] = (50.5, 10.5),
) -> Path:
    """The run report: totals with their spread and what they rest on, what disagrees with the
    demo's truth, partition, the validation tables, figures, and how to open the store.
    ``unmodelled``: the zones mapped without a validated model of their own, and their area;
    ``names``: the mapped fluxes; ``variables``: :func:`variable_table` of the store; ``cell``: (lat, lon)
    of a cell of the grid for the example of how to open it."""
    names = names or [c for c in totals.columns if c in ("sr", "rh", "nee", "reco", "gpp", "ra")]
    lines = [
        "# fluxmap run report",
        "",
        f"Gridded output: `{store}` ({formats}).",
        "",
        "## Global totals (Pg C yr-1)",
        "",
        *totals_sentences(totals, names),
        "",
        *(truth_disagreements(truth) if truth is not None else []),
        totals.round(3).to_markdown(),
        "",
        "Each total is the sum over the 8-day periods present in that year, annualized: divided by "
        "`time_fraction` (the periods' `days` over the year's 365 or 366), so a year with missing periods says so "
        "instead of reporting a part-year sum as a year. `covered_fraction_min`: the lowest share of land "
        "area-days with a value over the maps. `land_km2_never_predicted_max`: land (cell area x land fraction) "
        "with no value in any period (cells with land fraction <= 0.5 carry no zone and are not predicted), "
        "counted as zero. `<target>_from_missing_predictors`: the part of the total from cell-periods predicted "
        "with a predictor missing (the model's learned default direction), and "
        "`<target>_missing_predictors_area_fraction` their share of the land area-days. `<target>_sd_upper_bound`: "
        "the bootstrap members' standard deviation summed over the cells, which is the total's standard deviation "
        "if the members' errors were perfectly correlated across cells and an upper bound on it otherwise (the "
        "8-day store keeps the members' spread per cell, not the members; the annual maps' totals give the exact "
        "spread of the members' own totals).",
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
    lines += ["", *opening_lines(store, variables, license, flux=names[0] if names else "sr", cell=cell)]
    write_text(path, "\n".join(lines) + "\n")
    return path


def _mean(table: pd.DataFrame, column: str) -> float:
    return float(table[column].mean()) if column in table else float("nan")


def totals_sentences(totals: pd.DataFrame, names: list[str]) -> list[str]:
    """Per mapped flux, in words: its total (mean over the years), the upper bound of its ensemble
    spread, and the shares resting on missing predictors and on cells outside the area of applicability."""
    out = []
    for v in names:
        if v not in totals:
            continue
        parts = [f"- **{v}**: {_mean(totals, v):.2f} Pg C yr-1 (mean over {len(totals)} year(s))"]
        if "time_fraction" in totals and (totals["time_fraction"] < 0.999).any():
            parts[0] = (f"- **{v}**: {_mean(totals, v):.2f} Pg C yr-1, annualized from {int(totals['days'].sum())} mapped "
                        "days (not a whole year: the season mapped stands for the year)")  # fmt: skip
        sd = _mean(totals, f"{v}_sd_upper_bound")
        if np.isfinite(sd):
            parts.append(f"ensemble SD at most {sd:.2f} (the cells' spreads added as if fully correlated)")
        share = _mean(totals, f"{v}_missing_predictors_area_fraction")
        if np.isfinite(share):
            parts.append(
                f"{share:.0%} of the land area-days predicted with a predictor missing (the model's default "
                f"direction), {_mean(totals, f'{v}_from_missing_predictors'):.2f} Pg C yr-1 of the total from them"
            )
        outside = _mean(totals, f"{v}_outside_aoa_area_fraction")
        if np.isfinite(outside):
            parts.append(
                f"{outside:.0%} outside the unified model's area of applicability "
                f"({_mean(totals, f'{v}_from_outside_aoa'):.2f} Pg C yr-1)"
            )
        out.append("; ".join(parts) + ".")
    return out


def truth_disagreements(truth: pd.DataFrame, *, tolerance: float = 0.1) -> list[str]:
    """Plain sentences for every total whose sign, or size by more than ``tolerance``, disagrees with
    the demo world's truth (``truth``: the error-vs-truth table, one row per target)."""
    lines = []
    for target, row in truth.iterrows():
        pred, true = float(row["predicted_total_pg_c_yr"]), float(row["truth_total_pg_c_yr"])
        if np.sign(pred) != np.sign(true) and abs(true) > 1e-9:
            what = (" (a net source to the atmosphere)" if pred > 0 else " (a net sink)") if target == "nee" else ""
            lines.append(
                f"- **{target}: the sign is wrong.** The map's total is {pred:+.2f} Pg C yr-1{what}, "
                f"the truth's {true:+.2f}."
            )
        elif abs(pred - true) > tolerance * abs(true):
            lines.append(
                f"- **{target}: the total is {abs(pred - true) / abs(true):.0%} "
                f"{'too high' if abs(pred) > abs(true) else 'too low'}** ({pred:.2f} vs the truth's {true:.2f} Pg C yr-1)."
            )
    if not lines:
        return [f"Every total is within {tolerance:.0%} of the demo world's truth, with the right sign.", ""]
    return ["Against the demo world's known truth:", "", *lines, ""]


def variable_table(ds: Any) -> pd.DataFrame:
    """The store's variables: name, dimensions, units and long name."""
    rows = [
        {"variable": str(v), "dimensions": ", ".join(map(str, ds[v].dims)), "units": ds[v].attrs.get("units", ""),
         "meaning": ds[v].attrs.get("long_name", "")}
        for v in sorted(ds.data_vars, key=str)
        if not str(v).endswith("_bnds")
    ]  # fmt: skip
    return pd.DataFrame(rows)


def opening_lines(
    store: str,
    variables: pd.DataFrame | None,
    license: str,
    *,
    flux: str = "sr",
    cell: tuple[float, float] = (50.5, 10.5),
) -> list[str]:
    """How to open the store (with a mapped ``flux`` and a ``cell`` (lat, lon) of its grid), what it
    holds, and its licence."""
    lines = [
        "## Opening the output",
        "",
        "```python",
        "import xarray as xr",
        f'ds = xr.open_zarr("{store}")  # lazy: nothing is read until used',
        f'ds.{flux}.sel(lat={cell[0]:g}, lon={cell[1]:g}, method="nearest").plot()  # a cell\'s 8-day series (needs matplotlib)',
        "```",
        "",
        f"Total of a flux from the store alone: `(ds.{flux} * days * ds.cell_area * ds.land_fraction).sum() / 1e15` "
        "(Pg C over the days of `time_bnds`). For GDAL before 3.9, Panoply or CDO, `fluxmap export --format "
        "netcdf` writes one CF-1.10 netCDF file per flux and year.",
        "",
    ]
    if variables is not None and len(variables):
        lines += [variables.to_markdown(index=False), ""]
    if license:
        lines += [
            f"Licence of the maps: {license} (the store's `license` attribute; its `references` cite the data).",
            "",
        ]
    return lines


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
        wide = table.pivot_table(index=["group", "physical_sites"], columns="experiment", values="r2", sort=False)
        md += [
            "",
            f"## Site meteorology: remote sensing only, with the site's meteorology, the site's meteorology only "
            f"({sites} physical sites)",
            "",
            "Nested R2 of each experiment on the held-out rows all three predicted (the site covariates: "
            f"{', '.join(pieces.get('meteo_covariates', [])) or 'the configured ones'}), overall and per IGBP class "
            "(`experiments.csv` has RMSE, bias and n):",
            "",
            wide.reset_index().round(3).to_markdown(index=False),
            "",
            "![experiments](experiments.png)",
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
    if "frontier" in pieces:
        md += _frontier_lines(summary, pieces["frontier"], cfg)
    if "attribution" in pieces:
        md += _attribution_lines(pieces["attribution"])
    md += _protocol_lines(summary, cfg)
    return "\n".join(md) + "\n"


def _attribution_lines(a: dict[str, Any]) -> list[str]:
    """What governs the flux: the ranked drivers per grouping, the strongest interactions, the
    partial dependence of the top predictors (:mod:`fluxmap.stages.attribution`)."""
    drivers = a["drivers"]
    level = drivers[(drivers.level == "driver") & (drivers["rank"] <= 3)]
    ranked = (
        level.assign(entry=level.name + " " + level.share.map(lambda v: f"{v:.0%}" if pd.notna(v) else "(no spread)"))
        .pivot_table(index=["grouping", "group", "rows"], columns="rank", values="entry", aggfunc="first")
        .rename(columns=lambda r: f"driver {r}")
        .reset_index()
    )
    inter = a["interactions"].head(5).round(4)
    return [
        "",
        "## What governs the flux: driver attribution",
        "",
        f"Exact tree SHAP values of the final models on {a['rows']} training rows (SHAP + bias = the prediction to "
        f"{a['additivity']:.1e}). A driver's value is the sum of its predictors' (`drivers.csv` has every predictor); "
        "shares are of the group's mean |SHAP|. `all`, `ecosystem`, `zone`, `season` (by hemisphere) and `true zone` "
        "explain the unified model; `zone model` each zone's own model on its rows.",
        "",
        ranked.to_markdown(index=False),
        "",
        "![drivers](drivers.png)",
        "",
        "Strongest pairwise interactions of the unified model (mean |SHAP interaction value|, g C m-2 d-1):",
        "",
        inter.to_markdown(index=False),
        "",
        f"Partial dependence of the unified model on its top predictors ({', '.join(a['top'])}):",
        "",
        "![partial dependence](partial_dependence.png)",
    ]


def _frontier_lines(summary: dict[str, Any], frontier: pd.DataFrame, cfg: dict[str, Any]) -> list[str]:
    """The skill-cost frontier: every configuration's nested R2 and cost, the choice and why."""
    t = frontier.assign(m_rows_per_s=frontier.rows_per_s_per_core / 1e6)[
        ["label", "r2", "rmse", "m_rows_per_s", "folds_chosen", "on_frontier", "chosen"]
    ]
    return [
        "",
        "## Model family and size: the skill-cost frontier",
        "",
        t.rename(columns={"m_rows_per_s": "M predictions/s per core"}).round(3).to_markdown(index=False),
        "",
        f"Each configuration's R2 is its own nested score: fitted in every outer fold on the predictors chosen there. "
        f"Inside each outer fold the configurations were scored on {cfg['search_folds']} inner folds of whole "
        "physical sites and the fastest within one standard error of the best inner RMSE was taken (`folds_chosen`); "
        "the headline scores above are of those choices. The final models are "
        f"**{summary['model']}**, chosen the same way on all rows (`model_search.csv`); the best configuration here "
        f"is {summary['best_configuration']} (R2 {summary['r2_best_configuration']:.3f}, chosen one "
        f"{summary['r2_chosen_configuration']:.3f}). Cost: predictions per second on one core, each configuration "
        "fitted on all rows and timed once before the folds. Figure: `frontier.png`.",
    ]


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


def replace_marked_section(path: Path, begin: str, end: str, section: str) -> None:
    """Append ``section`` to the Markdown report ``path`` between the ``begin`` and ``end`` marker
    lines, in place of an earlier section with the same markers (a rerun replaces, never repeats)."""
    text = path.read_text()
    if begin in text and end in text:
        text = text[: text.index(begin)] + text[text.index(end) + len(end) :].lstrip("\n")
    write_text(path, text.rstrip("\n") + "\n\n" + "\n".join([begin, section.rstrip("\n"), end]) + "\n")
