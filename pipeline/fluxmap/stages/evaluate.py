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
from fluxmap.io.figures import map_figure, plot_product_totals, plot_taylor, profile_figure
from fluxmap.io.flux_products import ProductError, open_product
from fluxmap.io.provenance import write_table, write_text
from fluxmap.io.report import replace_marked_section
from fluxmap.io.store import open_for_tables
from fluxmap.science import aggregate
from fluxmap.science import products as catalogue
from fluxmap.science.evaluate import (
    classes_on_grid,
    difference_field,
    partition,
    product_profile,
    product_totals,
    product_totals_by_class,
    repeat_climatology,
    sample_at_rows,
    scores_by,
    time_mean,
)
from fluxmap.science.extract import extract_at_sites, locate_sites
from fluxmap.stages.common import Log, open_catalog
from fluxmap.stages.report import biome_classes

__all__ = ["FLUXMAP_LABEL", "FluxmapMap", "evaluate_stage", "fluxmap_maps"]

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


def _sample(product: ProductConfig, ds: xr.Dataset, var: str, obs: pd.DataFrame, min_coverage: float) -> np.ndarray:
    """The product's ``var`` over each observation's site cell and period."""
    places = obs.drop_duplicates("location")[["location", "lat", "lon"]]
    where = locate_sites(ds, places.location.to_numpy(), places.lat.to_numpy(), places.lon.to_numpy())
    at = extract_at_sites(ds[[var]], where)[var].transpose("site", "time").values.astype("float64")
    at[~where.inside] = np.nan
    name = f"product {product.label!r} ({product.path}): variable {dict(product.variables)[var]!r} ({var})"
    if not where.inside.any():
        raise ProductError(f"{name}: no observation site falls on its grid")
    site = pd.Index(places.location).get_indexer(obs.location)
    steps_start, steps_end = ds["start"].values, ds["end"].values
    if ds.attrs.get("climatology") == "true":  # its year in every year of the observations
        years = range(obs.start.min().year, obs.end.max().year + 1)
        at, steps_start, steps_end = repeat_climatology(at, steps_start, steps_end, years)
    try:
        mean, cover = sample_at_rows(
            at, steps_start, steps_end, site, obs.start.to_numpy(), obs.end.to_numpy(), min_coverage=min_coverage
        )
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
    # Every product checked before any sampling.
    opened = {p.label: (p, open_product(**dataclasses.asdict(p))) for p in products}
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
    maps = fluxmap_maps(cfg, variables)
    against = _against_map(maps, opened, variables)
    _write(workdir / "evaluate", scores, samples, products, against, maps)
    _into_main_reports(workdir, scores, against)
    log(f"evaluate: {len(products)} products, {len(samples)} targets in {time.perf_counter() - t0:.0f} s")
    return scores


def _target_scores(
    cfg: RunConfig, target: str, obs: pd.DataFrame, opened: dict[str, tuple[ProductConfig, xr.Dataset]]
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


@dataclasses.dataclass
class FluxmapMap:
    """fluxmap's map of one variable, as the products are set beside it: the field (time x lat x
    lon, g C m-2 d-1), its land fraction, its annual totals with the ensemble band (``low``,
    ``high``; ``band`` says what it is), its latitudinal profile, totals per IGBP class and the class
    map (when the run has one), and where it was read."""

    field: xr.DataArray
    land: xr.DataArray
    totals: pd.DataFrame
    band: str
    profile: pd.DataFrame | None
    biomes: pd.DataFrame | None
    classes: xr.DataArray | None
    source: str


_Z90 = 1.6449
"""The normal 95th percentile: the 5-95 % band of a total from an SD."""


def _csv(path: Path, **kw: object) -> pd.DataFrame | None:
    return pd.read_csv(path, **kw) if path.is_file() else None


def fluxmap_maps(cfg: RunConfig, variables: list[str]) -> dict[str, FluxmapMap]:
    """Each of ``variables`` as fluxmap mapped it: from the 8-day store (``predict/fluxmap.zarr``,
    totals from ``predict/totals.csv``) or, for a variable mapped only per year, the annual store
    (``predict/annual``). The band: the 5-95 % range of the bootstrap members' own totals where
    the store keeps their maps (the annual maps; ``predict.member_maps``), else the total
    +- 1.645 x the members' per-cell SD summed over the cells (an upper bound on the total's SD)."""
    predict = Path(cfg.workdir) / "predict"
    found: dict[str, FluxmapMap] = {}
    tot = _csv(predict / "totals.csv", index_col=0)
    if (predict / "fluxmap.zarr").is_dir() and tot is not None:
        ds = open_for_tables(predict / "fluxmap.zarr")
        biomes = _csv(predict / "totals_by_biome.csv")
        todo = [v for v in variables if v in ds and v in tot]
        classes = biome_classes(open_catalog(cfg), ds) if todo else None
        for v in todo:
            t = tot[[v]].rename(columns={v: "total_pg_c_yr"})
            if f"{v}_ensemble_p05" in tot:
                t["low"], t["high"] = tot[f"{v}_ensemble_p05"], tot[f"{v}_ensemble_p95"]
                band = "5-95 % of the bootstrap members' own totals"
            elif f"{v}_sd_upper_bound" in tot:
                ub = tot[f"{v}_sd_upper_bound"]
                t["low"], t["high"] = t.total_pg_c_yr - _Z90 * ub, t.total_pg_c_yr + _Z90 * ub
                band = ("+- 1.645 x the members' per-cell SD summed over the cells (an upper bound on the "
                        "total's; predict.member_maps gives the members' own totals)")  # fmt: skip
            else:
                t["low"] = t["high"] = np.nan
                band = "none (no bootstrap members: predict.ensemble off, or too few sites for them)"
            prof = _csv(predict / f"latitudinal_profile_{v}.csv", index_col=0)
            found[v] = FluxmapMap(ds[v], ds["land_fraction"], t, band, prof,
                                  None if biomes is None else biomes[biomes.target == v], classes,
                                  str(predict / "fluxmap.zarr"))  # fmt: skip
    annual, atot = predict / "annual", _csv(predict / "annual" / "totals.csv")
    if (annual / "annual.zarr").is_dir() and atot is not None:
        ds = open_for_tables(annual / "annual.zarr")
        biomes = _csv(annual / "totals_by_biome.csv")
        prof = _csv(annual / "latitudinal_profile.csv", index_col=0)
        for v in variables:
            if v in found or v not in ds or v not in set(atot.target):
                continue
            a = atot[atot.target == v].set_index("year")
            t = a[["total_pg_c_yr"]].assign(low=a.get("ensemble_p05_pg_c_yr", np.nan),
                                            high=a.get("ensemble_p95_pg_c_yr", np.nan))  # fmt: skip
            profile = None
            if prof is not None and f"{v}_mean_g_c_m2_d" in prof:
                profile = prof[[f"{v}_mean_g_c_m2_d"]].rename(columns=lambda c: "mean_g_c_m2_d")
            classes = ds["landcover_majority"].fillna(0).astype("int16") if "landcover_majority" in ds else None
            found[v] = FluxmapMap(ds[v], ds["land_fraction"], t, "5-95 % of the bootstrap members' own totals",
                                  profile, None if biomes is None else biomes[biomes.target == v], classes,
                                  str(annual / "annual.zarr"))  # fmt: skip
    return found


@dataclasses.dataclass
class _Against:
    """The products against fluxmap's maps: totals, per-class totals, partitions, profiles and
    difference fields (each product's time mean on fluxmap's grid minus fluxmap's)."""

    totals: pd.DataFrame
    biomes: pd.DataFrame
    partition: pd.DataFrame
    partition_by_biome: pd.DataFrame
    profiles: dict[str, dict[str, pd.DataFrame]]
    differences: dict[tuple[str, str], xr.DataArray]


def _against_map(
    maps: dict[str, FluxmapMap], opened: dict[str, tuple[ProductConfig, xr.Dataset]], variables: list[str]
) -> _Against:
    """Per variable, product and year the product's global total (Pg C yr-1, over its cells with
    values and its land fraction) beside fluxmap's map's total and ensemble band; per IGBP class
    (fluxmap's class map brought onto the product's grid) the same; AR = SR - HR and HR/SR where
    a product gives both; every product's latitudinal profile with fluxmap's; and each product's
    mean over fluxmap's years minus fluxmap's map, on fluxmap's grid."""
    rows: list[pd.DataFrame] = []
    by_class: list[pd.DataFrame] = []
    profiles: dict[str, dict[str, pd.DataFrame]] = {}
    differences: dict[tuple[str, str], xr.DataArray] = {}
    names = {c: n for c, n in catalogue.IGBP_CLASSES.items() if c != 0}
    for var in variables:
        m = maps.get(var)
        profiles[var] = {}
        if m is not None and m.profile is not None:
            profiles[var]["fluxmap map"] = m.profile
        if m is not None:
            ref = m.totals.reset_index().rename(columns={"index": "year"})
            rows.append(pd.DataFrame({"variable": var, "product": "fluxmap map", "year": ref.year,
                                      "total_pg_c_yr": ref.total_pg_c_yr}))  # fmt: skip
            if m.biomes is not None:
                by_class.append(m.biomes[["year", "name", "total_pg_c_yr"]].assign(variable=var, product="fluxmap map"))
        for label, (_, ds) in opened.items():
            if var not in ds:
                continue
            land = ds["land_fraction"] if "land_fraction" in ds else None
            t = product_totals(ds[var], land).reset_index()
            rows.append(t[["year", "days", "total_pg_c_yr"]].assign(variable=var, product=label))
            profiles[var][label] = product_profile(ds[var], land).to_frame("mean_g_c_m2_d")
            if m is None:
                continue
            if m.classes is not None:
                grid = classes_on_grid(m.classes.load(), m.land.load(), ds.lat.values, ds.lon.values, list(names))
                c = product_totals_by_class(ds[var], land, grid, names)
                by_class.append(c[["year", "name", "total_pg_c_yr"]].assign(variable=var, product=label))
            years = np.unique(pd.DatetimeIndex(m.field.time.values).year)
            own = pd.DatetimeIndex(ds["start"].values).year
            steps = np.isin(own, years) if np.isin(own, years).any() else np.ones(own.size, bool)
            differences[(var, label)] = difference_field(
                time_mean(ds[var].isel(time=np.flatnonzero(steps))), aggregate.annual_mean(m.field)
            )
    totals = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    biomes = pd.concat(by_class, ignore_index=True) if by_class else pd.DataFrame()
    if len(totals):
        for var, m in maps.items():
            band = m.totals.rename(columns={"total_pg_c_yr": "fluxmap_map_pg_c_yr", "low": "fluxmap_low_pg_c_yr",
                                            "high": "fluxmap_high_pg_c_yr"})  # fmt: skip
            here = totals.variable == var
            joined = totals.loc[here, ["year"]].join(band, on="year")
            for c in band:
                totals.loc[here, c] = joined[c].to_numpy()
        totals["difference_pg_c_yr"] = totals.total_pg_c_yr - totals.get("fluxmap_map_pg_c_yr", np.nan)
        low, high = totals.get("fluxmap_low_pg_c_yr", np.nan), totals.get("fluxmap_high_pg_c_yr", np.nan)
        inside = (totals.total_pg_c_yr >= low) & (totals.total_pg_c_yr <= high)
        totals["within_band"] = inside.astype("boolean").where(np.isfinite(low) & np.isfinite(high))
    return _Against(
        totals=totals,
        biomes=biomes,
        partition=partition(totals, ["product", "year"]) if len(totals) else pd.DataFrame(),
        partition_by_biome=partition(biomes, ["product", "year", "name"]) if len(biomes) else pd.DataFrame(),
        profiles=profiles,
        differences=differences,
    )


def _write(
    out: Path,
    scores: pd.DataFrame,
    samples: dict[str, pd.DataFrame],
    products: tuple,
    against: _Against,
    maps: dict[str, FluxmapMap],
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
        figures: dict[str, str] = {}
        if len(against.totals):
            write_table(against.totals, work / "totals.csv", index=False)
            if "fluxmap_map_pg_c_yr" in against.totals:
                figures["totals"] = plot_product_totals(
                    against.totals[against.totals["product"] != "fluxmap map"], work / "totals.png",
                    title="Global totals against fluxmap's map and its ensemble band",
                ).name  # fmt: skip
        for name, table in (("totals_by_biome", against.biomes), ("partition", against.partition),
                            ("partition_by_biome", against.partition_by_biome)):  # fmt: skip
            if len(table):
                write_table(table, work / f"{name}.csv", index=False)
        for var, prof in against.profiles.items():
            figures[f"profiles {var}"] = profile_figure(prof, work / f"profiles_{var}.png").name
        for (var, label), diff in against.differences.items():
            land = aggregate.display_field(maps[var].land).load()
            figures[f"difference {var} {label}"] = map_figure(
                aggregate.display_field(diff).load(), work / f"difference_{var}_{_slug(label)}.png",
                title=f"{var}: {label} minus fluxmap's map, mean over the map's years", units="g C m-2 d-1",
                cmap="RdBu_r", symmetric=True, land=land,
            ).name  # fmt: skip
        write_text(work / "report.md", _report(overall, products, against, maps, figures))
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in label)


_SHOW = ["product", "n", "sites", "r", "rmse", "bias", "crmse", "sd_ratio", "score_bias", "score_rmse",
         "score_spatial", "score_overall"]  # fmt: skip


def _report(
    overall: pd.DataFrame,
    products: tuple[ProductConfig, ...],
    against: _Against,
    maps: dict[str, FluxmapMap],
    figures: dict[str, str],
) -> str:
    lines = [
        "# Gridded products against the site observations and fluxmap's maps",
        "",
        "Each product is sampled at every observation's grid cell and over the observation's own period "
        "(its time steps weighted by the days they overlap it; a climatology over the same days of its "
        "year) and scored on the pairs (`scores.csv`; per IGBP class and zone there too). RMSE, bias and "
        "centred RMSE in g C m-2 d-1. ILAMB scores (Collier et al. 2018; ilamb3's formulas): bias and "
        "RMSE per physical site, averaged; spatial distribution over the sites' means; overall = (bias + "
        f"2 RMSE + spatial) / 4. `{FLUXMAP_LABEL}`: fluxmap's zone models' outer-fold predictions (each "
        "site predicted by models that never saw it).",
        "",
        "![Taylor diagram](taylor.png)",
        "",
        "Products ranked by site RMSE within each target (as Lu et al. 2021, fig. 4):",
        "",
    ]
    show = _SHOW + [c for c in ("rmse_vs_truth", "bias_vs_truth") if c in overall]
    for target, part in overall.groupby("target", sort=False):
        ranked = part.sort_values("rmse")[show]
        ranked.insert(0, "rank", np.arange(1, len(ranked) + 1))
        lines += [f"## {target}", "", ranked.to_markdown(index=False, floatfmt=".3f"), ""]
    t = against.totals
    if len(t):
        lines += [
            "## Global totals against fluxmap's map",
            "",
            "Each product's total over its own cells with values, weighted by its land fraction (`sftlf`) "
            "where it gives one; Pg C yr-1, annualized over the days the product covers in the year. "
            "fluxmap's band: " + "; ".join(f"{v}: {m.band}" for v, m in maps.items()) + ". `totals.csv` has "
            "every row.",
            "",
        ]
        if "totals" in figures:
            lines += [f"![Global totals]({figures['totals']})", ""]
        cols = [c for c in ("variable", "product", "year", "total_pg_c_yr", "fluxmap_map_pg_c_yr",
                            "fluxmap_low_pg_c_yr", "fluxmap_high_pg_c_yr", "difference_pg_c_yr", "within_band")
                if c in t]  # fmt: skip
        lines += [t[cols].to_markdown(index=False, floatfmt=".2f"), ""]
    if len(against.partition):
        lines += ["## AR = SR - HR and HR/SR", "", against.partition.to_markdown(index=False, floatfmt=".3f"), ""]
    if len(against.biomes):
        wide = against.biomes.groupby(["variable", "name", "product"]).total_pg_c_yr.mean().unstack("product")
        lines += [
            "## Totals per IGBP class (Pg C yr-1, mean over the years)",
            "",
            "fluxmap's class map brought onto each product's grid (each cell the class of most of its land). "
            "`totals_by_biome.csv` per year; `partition_by_biome.csv` AR/SR per class.",
            "",
            wide.reset_index().to_markdown(index=False, floatfmt=".2f"),
            "",
        ]
    for name, fig in figures.items():
        if name.startswith("profiles "):
            lines += [f"![Latitudinal profiles of {name.split()[1]}]({fig})", ""]
    diffs = [(n, f) for n, f in figures.items() if n.startswith("difference ")]
    if diffs:
        lines += ["## Difference maps (product minus fluxmap's map)", ""]
        lines += [f"![{n}]({f})" for n, f in diffs] + [""]
    lines += ["## Sources", ""]
    lines += [f"- `{p.label}`: {p.path} ({', '.join(f'{k} = {v}' for k, v in p.variables)})" for p in products]
    lines += [f"- fluxmap's map of {v}: {m.source}" for v, m in maps.items()]
    return "\n".join(lines) + "\n"


_BEGIN, _END = "<!-- fluxmap evaluate: begin -->", "<!-- fluxmap evaluate: end -->"


def _into_main_reports(workdir: Path, scores: pd.DataFrame, against: _Against) -> None:
    """The comparison's summary (the ranking, the totals against fluxmap's band) as a section of the
    maps' reports (``predict/report.md``, ``predict/annual/report.md``), replacing an earlier one."""
    overall = scores[scores.by == "all"]
    lines = [_BEGIN, "## Gridded products against the sites and this map", "",
             "Summary of `evaluate/report.md` (Taylor diagram, profiles, per-class totals, difference maps).", ""]  # fmt: skip
    for target, part in overall.groupby("target", sort=False):
        ranked = part.sort_values("rmse")[["product", "n", "r", "rmse", "bias", "score_overall"]]
        lines += [f"{target}, ranked by site RMSE:", "", ranked.to_markdown(index=False, floatfmt=".3f"), ""]
    if len(against.totals) and "fluxmap_map_pg_c_yr" in against.totals:
        t = against.totals[against.totals["product"] != "fluxmap map"]
        mean = t.groupby(["variable", "product"], sort=False)[
            ["total_pg_c_yr", "fluxmap_map_pg_c_yr", "fluxmap_low_pg_c_yr", "fluxmap_high_pg_c_yr"]
        ].mean()
        lines += ["Global totals (Pg C yr-1, mean over the years) beside this map's and its ensemble band:", "",
                  mean.reset_index().to_markdown(index=False, floatfmt=".2f"), ""]  # fmt: skip
    lines.append(_END)
    section = "\n".join(lines[1:-1])
    for path in (workdir / "predict" / "report.md", workdir / "predict" / "annual" / "report.md"):
        if path.is_file():
            rel = "../evaluate" if path.parent.name == "predict" else "../../evaluate"
            replace_marked_section(path, _BEGIN, _END, section.replace("`evaluate/", f"`{rel}/"))
