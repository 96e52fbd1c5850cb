"""The Markdown reports: the run report and the model stage's per-target and summary reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
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
) -> Path:
    """The run report: totals, partition, the validation tables, figures, and (demo) the error vs truth."""
    lines = [
        "# fluxmap run report",
        "",
        f"Gridded output: `{store}` ({formats}).",
        "",
        "## Global totals (Pg C yr-1)",
        "",
        totals.round(3).to_markdown(),
        "",
    ]
    if any(str(c).endswith("_unified") for c in totals.columns):
        lines += ["A target's column is the zone models' map; `<target>_unified` is the unified model's.", ""]
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
    path.write_text("\n".join(lines) + "\n")
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
    scores = pd.DataFrame([{"model": "zone", **pieces["zone"]}, {"model": "unified", **pieces["unified"]}])
    return [
        "",
        "Against the demo world's noise-free truth:",
        "",
        scores.round(3).to_markdown(index=False),
        "",
        bootstrap_sentence(pieces["bootstrap"], "the noise-free truth"),
        "",
        f"Zone models on the demo world's {summary['true_zones']} true zones (the unified model's "
        f"predictors), leave-one-site-out: R2 {o_obs['r2']:.3f} against the observations, "
        f"{o_truth['r2']:.3f} against the noise-free truth.",
        "",
        bootstrap_sentence(oboot, "observations", a="true-zone"),
    ]


def target_report(
    name: str,
    comparison: pd.DataFrame,
    boot: dict[str, float],
    summary: dict[str, Any],
    *,
    truth: dict[str, Any] | None,
    meteo: tuple[pd.DataFrame, int] | None,
    quantiles: tuple[float, ...],
) -> str:
    """The Markdown report of one target of the model stage (``models/<target>/report.md``)."""
    md = [
        f"# {name}: zone models vs the unified model (leave-one-site-out)",
        "",
        comparison.round(3).to_markdown(index=False),
    ]
    md += ["", bootstrap_sentence(boot, "observations")]
    if truth is not None:
        md += _truth_lines(summary, truth)
    if meteo is not None:
        table, sites = meteo
        md += [
            "",
            f"Remote sensing only vs with site meteorology ({sites} sites):",
            "",
            table.round(3).to_markdown(index=False),
        ]
    md += [
        "",
        f"Quantile regression forest, leave-one-site-out: {summary['qrf_loso_coverage']:.1%} of observations inside the "
        f"{quantiles[0]:g}-{quantiles[-1]:g} quantile interval.",
    ]
    if "bootstrap_members" in summary:
        md += [
            "",
            f"Bootstrap ensemble ({summary['bootstrap_members']} members, 80 % of sites each, rows stratified by IGBP "
            f"class in proportion to its global land area): held-out R2 median {summary['bootstrap_r2_median']:.3f}; "
            f"prediction SD median {summary['bootstrap_sd_median']:.3f}, MAD median "
            f"{summary['bootstrap_mad_median']:.3f} g C m-2 d-1, "
            f"CV median {summary['bootstrap_cv_median']:.2f}.",
        ]
    return "\n".join(md) + "\n"


def target_log_lines(s: dict[str, Any]) -> list[str]:
    """The console lines of one target's result."""
    lines = [
        f"  LOSO R2 zone {s['r2_zone']:.3f} vs unified {s['r2_unified']:.3f}; RMSE {s['rmse_zone']:.3f} vs "
        f"{s['rmse_unified']:.3f}"
        + (f"; vs truth R2 {s['truth_r2_zone']:.3f} vs {s['truth_r2_unified']:.3f}" if "truth_r2_zone" in s else ""),
        f"  R2 zone - unified {s['delta_r2_zone_minus_unified']:+.4f}, site-bootstrap 5-95 % "
        f"[{s['delta_r2_lo_zone_minus_unified']:+.4f}, {s['delta_r2_hi_zone_minus_unified']:+.4f}]",
    ]
    if "r2_true_zones" in s:
        lines.append(
            f"  zone models on the {s['true_zones']} true zones: R2 {s['r2_true_zones']:.3f}, minus unified "
            f"{s['delta_r2_true_zones_minus_unified']:+.4f} [{s['delta_r2_lo_true_zones_minus_unified']:+.4f}, "
            f"{s['delta_r2_hi_true_zones_minus_unified']:+.4f}]"
        )
    return lines


def summary_markdown(summary: pd.DataFrame) -> str:
    """``models/summary.md``: one row per target."""
    table = summary.drop(columns=[c for c in summary.columns if c in ("zones", "zone_wins_in")], errors="ignore")
    return "# Model summary (leave-one-site-out)\n\n" + table.round(3).to_markdown(index=False) + "\n"
