"""``fluxmap evaluate``: gridded flux products (ecosystem models, FLUXCOM-style maps, another
fluxmap run) scored against the site observations, beside fluxmap's own nested predictions
(Lu et al. 2021, sect. 2.5 and fig. 4; ILAMB's scores, Collier et al. 2018).

Each product is opened in fluxmap's units, grid and time conventions
(:mod:`fluxmap.io.flux_products`), sampled at every observation's site and over its own period
(:func:`fluxmap.science.evaluate.sample_at_rows`), and scored per target, overall and per IGBP
class and zone (``evaluate/scores.csv``), with a Taylor diagram (``evaluate/taylor.png``), the
ranking by site RMSE (Lu's fig. 4) and a report (``evaluate/report.md``). Every sampled pair is
kept (``evaluate/samples_<target>.parquet``). A product that cannot be read, or that does not
overlap any observation, stops the stage with an error naming it before anything is written."""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from fluxmap.config import RunConfig
from fluxmap.config_evaluate import ProductConfig
from fluxmap.io.figures import plot_taylor, profile_figure
from fluxmap.io.flux_products import ProductError, ProductSpec, open_product
from fluxmap.io.provenance import write_table, write_text
from fluxmap.science.evaluate import product_profile, product_totals, sample_at_rows, scores_by
from fluxmap.science.extract import extract_at_sites, locate_sites
from fluxmap.stages.common import Log

__all__ = ["FLUXMAP_LABEL", "evaluate_stage"]

FLUXMAP_LABEL = "fluxmap (nested)"
"""The label of fluxmap's own predictions: the zone models' outer-fold predictions of each row."""

_KEYS = ["site_id", "start", "end"]


def _observations(workdir: Path, target: str) -> pd.DataFrame | None:
    """The target's site observations (extract stage) with fluxmap's nested predictions, zones,
    physical sites and (demo) truth of the same rows (models stage), where those exist."""
    var, _, tab = target.partition(":")
    path = workdir / "extract" / f"training_{tab}.parquet"
    if not path.is_file():
        return None
    t = pd.read_parquet(path)
    t = t.loc[t.variable == var, [c for c in (*_KEYS, "lat", "lon", "value", "ecosystem", "location") if c in t]]
    if t.empty:
        return None
    t = t.reset_index(drop=True)
    loso = workdir / "models" / target.replace(":", "_") / "loso_predictions.parquet"
    if loso.is_file():
        p = pd.read_parquet(loso)
        keep = [c for c in (*_KEYS, "zone", "site_group", "pred_zone", "truth") if c in p]
        t = t.merge(p[keep].drop_duplicates(_KEYS), on=_KEYS, how="left")
    # Rows the models stage did not validate (none, or not this one) count as their own place.
    t["site_group"] = t["site_group"].fillna(t.location) if "site_group" in t else t.location
    return t


def _sample(product: ProductSpec, ds: xr.Dataset, var: str, obs: pd.DataFrame, min_coverage: float) -> np.ndarray:
    """The product's ``var`` over each observation's site cell and period."""
    places = obs.drop_duplicates("location")[["location", "lat", "lon"]]
    where = locate_sites(ds, places.location.to_numpy(), places.lat.to_numpy(), places.lon.to_numpy())
    at = extract_at_sites(ds[[var]], where)[var].transpose("site", "time").values.astype("float64")
    at[~where.inside] = np.nan
    name = f"product {product.label!r} ({product.path}): variable {dict(product.variables)[var]!r} ({var})"
    if not where.inside.any():
        raise ProductError(f"{name}: no observation site falls on its grid")
    site = pd.Index(places.location).get_indexer(obs.location)
    try:
        mean, cover = sample_at_rows(
            at, ds["start"].values, ds["end"].values, site, obs.start.to_numpy(), obs.end.to_numpy(),
            min_coverage=min_coverage,
        )  # fmt: skip
    except ValueError as e:
        raise ProductError(f"{name}: {e}") from e
    if not np.any(cover > 0):
        span = f"{pd.Timestamp(ds['start'].values.min()):%Y-%m-%d} to {pd.Timestamp(ds['end'].values.max()):%Y-%m-%d}"
        seen = f"{obs.start.min():%Y-%m-%d} to {obs.end.max():%Y-%m-%d}"
        raise ProductError(
            f"{name} covers {span} at the observation sites, which does not overlap the observations ({seen})"
        )
    return mean


def evaluate_stage(
    cfg: RunConfig, products: tuple[ProductConfig, ...] = (), *, log: Log = print
) -> pd.DataFrame | None:
    """Score every configured product and ``products`` (e.g. the demo world's three faulty
    ecosystem models) against the site observations of each target it holds; ``None`` when there
    is no product."""
    workdir = Path(cfg.workdir)
    t0 = time.perf_counter()
    products = (*cfg.evaluate.products, *products)
    labels = [p.label for p in products]
    if len(set(labels)) != len(labels):
        raise ValueError(f"evaluate: product labels must be unique, got {labels}")
    if not products:
        log("evaluate: no products configured (evaluate.products)")
        return None
    specs = [ProductSpec(**dataclasses.asdict(p)) for p in products]
    opened = {s.label: (s, open_product(s)) for s in specs}  # every product checked before any sampling
    targets = [t for t in cfg.model.targets if any(t.partition(":")[0] in dict(p.variables) for p in products)]
    tables, samples = [], {}
    for target in targets:
        obs = _observations(workdir, target)
        if obs is None:
            log(f"evaluate {target}: no observations in {workdir / 'extract'}; skipped")
            continue
        tables.append(_target_scores(cfg, target, obs, opened))
        samples[target] = obs
        log(
            f"evaluate {target}: {len(obs)} observations at {obs.site_group.nunique()} physical sites, "
            f"{tables[-1]['product'].nunique()} products"
        )
    if not tables:
        log("evaluate: no target has both observations and a product")
        return None
    scores = pd.concat(tables, ignore_index=True)
    cols = ["target", "product", "by", "group"]
    scores = scores[cols + [c for c in scores.columns if c not in cols]]
    variables = sorted({t.partition(":")[0] for t in samples})
    totals, profiles = _against_map(workdir / "predict", opened, variables)
    _write(workdir / "evaluate", scores, samples, products, totals, profiles)
    log(f"evaluate: {len(products)} products, {len(samples)} targets in {time.perf_counter() - t0:.0f} s")
    return scores


def _target_scores(
    cfg: RunConfig, target: str, obs: pd.DataFrame, opened: dict[str, tuple[ProductSpec, xr.Dataset]]
) -> pd.DataFrame:
    """Every product holding ``target``'s variable sampled into ``obs`` (``prod_<label>``) and scored,
    beside fluxmap's nested predictions; on the demo world also against the truth of the same rows."""
    var = target.partition(":")[0]
    columns = {}
    for label, (spec, ds) in opened.items():
        if var in ds:
            obs[f"prod_{label}"] = _sample(spec, ds, var, obs, cfg.evaluate.min_coverage)
            columns[label] = f"prod_{label}"
    if "pred_zone" in obs:
        columns[FLUXMAP_LABEL] = "pred_zone"
    by = tuple(b for b in cfg.evaluate.by if b in obs)
    table = scores_by(obs, columns, by, site="site_group").assign(target=target)
    if "truth" in obs and obs.truth.notna().any():
        vs = scores_by(obs.assign(value=obs.truth), columns, (), site="site_group").set_index("product")
        overall = table.by == "all"
        table["rmse_vs_truth"] = np.where(overall, table["product"].map(vs.rmse), np.nan)
        table["bias_vs_truth"] = np.where(overall, table["product"].map(vs.bias), np.nan)
    return table


def _against_map(
    predict: Path, opened: dict[str, tuple[ProductSpec, xr.Dataset]], variables: list[str]
) -> tuple[pd.DataFrame, dict[str, dict[str, pd.DataFrame]]]:
    """Per variable, product and year the product's global total (Pg C yr-1, over its cells with
    values and its land fraction) beside fluxmap's map's (``predict/totals.csv``) and their
    difference; and per variable every product's latitudinal profile with fluxmap's."""
    mapped = pd.read_csv(predict / "totals.csv", index_col=0) if (predict / "totals.csv").is_file() else None
    rows: list[dict] = []
    profiles: dict[str, dict[str, pd.DataFrame]] = {}
    for var in variables:
        profiles[var] = {}
        if (predict / f"latitudinal_profile_{var}.csv").is_file():
            profiles[var][FLUXMAP_LABEL.replace(" (nested)", " map")] = pd.read_csv(
                predict / f"latitudinal_profile_{var}.csv", index_col=0
            )
        for label, (_, ds) in opened.items():
            if var not in ds:
                continue
            land = ds["land_fraction"] if "land_fraction" in ds else None
            for year, r in product_totals(ds[var], land).iterrows():
                fm = (
                    float(mapped.loc[year, var])
                    if mapped is not None and var in mapped and year in mapped.index
                    else np.nan
                )
                rows.append({"variable": var, "product": label, "year": int(year), "days": float(r.days),
                             "total_pg_c_yr": float(r.total_pg_c_yr), "fluxmap_map_pg_c_yr": fm,
                             "difference_pg_c_yr": float(r.total_pg_c_yr) - fm})  # fmt: skip
            profiles[var][label] = product_profile(ds[var], land).to_frame("mean_g_c_m2_d")
    return pd.DataFrame(rows), profiles


def _write(
    out: Path,
    scores: pd.DataFrame,
    samples: dict[str, pd.DataFrame],
    products: tuple,
    totals: pd.DataFrame,
    profiles: dict[str, dict[str, pd.DataFrame]],
) -> None:
    """Every output into a temporary folder renamed to ``out`` when complete: all or nothing."""
    work = out.with_name(f".{out.name}.partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        write_table(scores, work / "scores.csv", index=False)
        for target, obs in samples.items():
            write_table(obs, work / f"samples_{target.replace(':', '_')}.parquet")
        overall = scores[scores.by == "all"]
        plot_taylor(overall, work / "taylor.png", title="Products against the site observations")
        write_table(totals, work / "totals.csv", index=False)
        for var, prof in profiles.items():
            profile_figure(prof, work / f"profiles_{var}.png")
        write_text(work / "report.md", _report(overall, products, totals, list(profiles)))
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _report(
    overall: pd.DataFrame, products: tuple[ProductConfig, ...], totals: pd.DataFrame, variables: list[str]
) -> str:
    lines = [
        "# Gridded products against the site observations",
        "",
        "Each product is sampled at every observation's grid cell and over the observation's own period "
        "(its time steps weighted by the days they overlap it) and scored on the pairs (`scores.csv`; per "
        "IGBP class and zone there too). RMSE, bias and centred RMSE in g C m-2 d-1. ILAMB scores "
        "(Collier et al. 2018; ilamb3's formulas): bias and RMSE per physical site, averaged; spatial "
        "distribution over the sites' means; overall = (bias + 2 RMSE + spatial) / 4. "
        f"`{FLUXMAP_LABEL}`: fluxmap's zone models' outer-fold predictions (each site predicted by "
        "models that never saw it).",
        "",
        "![Taylor diagram](taylor.png)",
        "",
        "Products (ordered by site RMSE within each target, as Lu et al. 2021, fig. 4):",
        "",
    ]
    show = ["product", "n", "sites", "r", "rmse", "bias", "crmse", "sd_ratio", "score_bias", "score_rmse",
            "score_spatial", "score_overall"] + [c for c in ("rmse_vs_truth", "bias_vs_truth") if c in overall]  # fmt: skip
    for target, part in overall.groupby("target", sort=False):
        lines += [f"## {target}", "", part.sort_values("rmse")[show].to_markdown(index=False, floatfmt=".3f"), ""]
    if len(totals):
        lines += [
            "## Global totals against fluxmap's map",
            "",
            "Each product's total over its own cells with values, weighted by its land fraction (`sftlf`) "
            "where it gives one; fluxmap's from `predict/totals.csv`; Pg C yr-1 (annualized over the days "
            "the product covers in the year). `totals.csv` has every row.",
            "",
            totals.to_markdown(index=False, floatfmt=".2f"),
            "",
        ]
    for var in variables:
        lines += [f"![Latitudinal profiles of {var}](profiles_{var}.png)", ""]
    lines += ["## Sources", ""]
    lines += [f"- `{p.label}`: {p.path} ({', '.join(f'{k} = {v}' for k, v in p.variables)})" for p in products]
    return "\n".join(lines) + "\n"
