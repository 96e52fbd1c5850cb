"""The models stage's driver attribution of one target: what governs the flux, from exact tree SHAP
values of the final models (:mod:`fluxmap.science.attribution`), per ecosystem type, zone and
season, with the strongest interactions and the partial dependence of the top drivers.

Writes to ``models/<target>/``: ``drivers.csv`` (mean |SHAP| per group, driver and predictor,
ranked), ``interactions.csv``, ``partial_dependence.csv``, ``drivers.png`` and
``partial_dependence.png``. The unified model is attributed on every row (a sample of
``model.attribution_rows``), grouped by ecosystem type (IGBP), by fitted zone, by season and, on the
demo world, by true zone; each zone model on its own zone's rows (grouping ``zone model``: the
drivers within a zone, which the unified model partly spends on telling zones apart).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fluxmap.io.figures import plot_drivers, plot_partial_dependence
from fluxmap.io.provenance import write_table
from fluxmap.science.attribution import interaction_table, partial_dependence, season_of, shap_values, summarize
from fluxmap.science.train import FittedModel
from fluxmap.stages.common import Log

__all__ = ["attribute_target"]

_INTERACTION_ROWS = 1000
"""Rows for the SHAP interaction values (their cost grows with the square of the predictors)."""


def attribute_target(
    name: str,
    unified: FittedModel,
    zone_models: dict[int, FittedModel],
    d: pd.DataFrame,
    out: Path,
    *,
    rows: int,
    seed: int,
    log: Log,
) -> dict[str, Any]:
    """Attribute ``name``'s final models on the training rows ``d``; write the tables and figures;
    return the report's pieces (``drivers``, ``interactions``, ``top``)."""
    sample = d.sample(min(len(d), rows), random_state=seed) if len(d) > rows else d
    values, bias = shap_values(unified, sample)
    additivity = float(np.max(np.abs(values.sum(axis=1).to_numpy() + bias - unified.predict(sample)), initial=0.0))
    groups: dict[str, pd.Series] = {}
    if "ecosystem" in sample and sample["ecosystem"].astype(str).str.len().gt(0).any():
        groups["ecosystem"] = sample["ecosystem"].astype(str).replace({"": "unknown", "nan": "unknown"})
    if "zone" in sample:
        groups["zone"] = sample["zone"].astype(int).astype(str)
    sub_annual = "end" not in sample or bool(((sample["end"] - sample["start"]).dt.days < 360).all())
    if {"start", "lat"} <= set(sample.columns) and sub_annual:  # a site-year has no season
        groups["season"] = season_of(sample["start"], sample["lat"])
    if "true_zone" in sample and sample["true_zone"].notna().any():
        groups["true zone"] = sample["true_zone"].fillna(0).astype(int).astype(str)
    tables = [summarize(values, groups)]
    for z, model in sorted(zone_models.items()):
        part = d[d["zone"] == z]
        part = part.sample(min(len(part), rows), random_state=seed) if len(part) > rows else part
        zone_values, _ = shap_values(model, part)
        t = summarize(zone_values, {})
        tables.append(t.assign(grouping="zone model", group=str(z)))
    drivers = pd.concat(tables, ignore_index=True)
    interactions = interaction_table(unified, sample.iloc[:_INTERACTION_ROWS])
    overall = drivers[(drivers.grouping == "all") & (drivers.level == "predictor")]
    top = overall.sort_values("rank")["name"].head(3).tolist()
    pdp = pd.concat([partial_dependence(unified, sample, f) for f in top], ignore_index=True)
    write_table(drivers, out / "drivers.csv", index=False)
    write_table(interactions, out / "interactions.csv", index=False)
    write_table(pdp, out / "partial_dependence.csv", index=False)
    plot_drivers(drivers, out / "drivers.png", title=f"{name}: mean |SHAP| per driver")
    plot_partial_dependence(pdp, out / "partial_dependence.png", title=f"{name}: partial dependence (unified model)")
    first = drivers[(drivers.grouping == "all") & (drivers.level == "driver") & (drivers["rank"] == 1)]
    log(
        f"  drivers: {first['name'].iloc[0]} first ({first['share'].iloc[0]:.0%} of mean |SHAP|, "
        f"{len(sample)} rows; SHAP + bias = prediction to {additivity:.1e})"
    )
    return {"drivers": drivers, "interactions": interactions, "top": top, "additivity": additivity,
            "rows": int(len(sample))}  # fmt: skip
