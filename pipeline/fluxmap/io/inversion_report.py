"""The inversion stage's Markdown: its own ``report.md`` and the section other reports carry
(:mod:`fluxmap.stages.inversion`)."""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["comparison_section", "inversion_report"]


def comparison_section(comparison: pd.DataFrame, chosen: float, prefix: str) -> str:
    """The comparison as a report section, its files under ``prefix``."""
    return "\n".join([
        "## Trained with an atmospheric-inversion constraint", "",
        f"lambda = {chosen:g} (trade-off: `{prefix}tradeoff.csv`; method, choice and regions: `{prefix}report.md`).", "",
        comparison.to_markdown(index=False, floatfmt=".3f"), "",
        f"![lambda trade-off]({prefix}tradeoff.png)", "", f"![regional seasonal cycles]({prefix}seasonal_cycles.png)", "",
    ])  # fmt: skip


def inversion_report(
    settings: dict[str, Any],
    regional: pd.DataFrame,
    tradeoff: pd.DataFrame,
    comparison: pd.DataFrame,
    chosen: float,
    figures: tuple[str, str],
    n_rows: int,
    n_sites: int,
    seconds: float,
    cut: list[str],
) -> str:
    """The inversion stage's ``report.md``: the method, the data, the lambda trade-off and the variants'
    comparison (``settings``: the ``model.inversion`` block as a mapping)."""
    fig_t, fig_s = figures
    edge = ([f"The grid's edge cuts {len(cut)} region(s) ({', '.join(cut)}): their sparse estimate covers only their part "
             "on the grid, which matches the inversion only if it was integrated over the same grid (as the demo's is).",
             ""] if cut else [])  # fmt: skip
    lines = [
        f"# {settings['target']} trained with an atmospheric-inversion constraint",
        "",
        'Upton et al., "Machine learning based estimation of regional NEE constrained by atmospheric inversions and '
        'ecosystem observations": the loss adds lambda x sum over regions and periods of ((sparse regional estimate - '
        "inversion flux) / spread)^2 to the towers' squared error; the sparse estimate is the area-weighted sum of the "
        f"model's predictions at {settings['points_per_region']} points per region (stratified by land area, seeded). "
        "XGBoost objective: sparse rows' gradients from their region's residual, Hessian row sums (a diagonal majorizer "
        "of the regional term's rank-one blocks; `fluxmap.science.inversion`).",
        "",
        f"{n_rows} site rows at {n_sites} physical sites; {regional.region.nunique()} regions of `{settings['regions']}` x "
        f"{regional.start.nunique()} periods; {len(regional)} regional fluxes (mean spread "
        f"{regional.spread_pg_c.mean():.4f} Pg C per period); {seconds:.0f} s.",
        "",
        *edge,
        "## Choosing lambda",
        "",
        f"Site skill from folds of whole physical sites; regional skill from folds of whole regions left out of the "
        f"constraint and estimated at {settings['evaluation_points_per_region']} independent points per region, against the "
        f"inversion. The rule: the best held-out regional RMSE among the lambdas whose site R2 is within "
        f"{settings['max_site_r2_loss']} of the unconstrained model's, here lambda = {float(tradeoff[tradeoff.by_rule]['lambda'].iloc[0]):g}; "
        + (
            f"**lambda = {chosen:g} used**."
            if settings["fixed_lambda"] is None
            else f"**lambda = {chosen:g} used, as `model.inversion.fixed_lambda` sets it** (not the rule's choice)."
        ),
        "",
        tradeoff.to_markdown(index=False, floatfmt=".4f"),
        "",
        f"![trade-off]({fig_t})",
        "",
        "## Constrained against unconstrained",
        "",
        "Every variant's regional fluxes are its predictions at the independent evaluation points, summed by area. "
        "The zone models are trained with the unified model's lambda, one zone at a time with the other zones' "
        "current predictions as the regions' offset (two sweeps); zones with too few physical sites take the "
        "unified model, as in the maps. Held-out regions are scored for the unified constrained model only.",
        "",
        comparison.to_markdown(index=False, floatfmt=".4f"),
        "",
        f"![seasonal cycles]({fig_s})",
        "",
    ]
    return "\n".join(lines) + "\n"
