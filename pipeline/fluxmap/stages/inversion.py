"""Stage 3b (after the models, with ``model.inversion``), inversion: the target trained with an
atmospheric-inversion constraint (:mod:`fluxmap.science.inversion`, Upton et al.) beside the same
model without it, both validated, in ``inversion/<target>/`` (cached like every stage):

- ``regional_fluxes.csv``: the inversion's regional fluxes used (mean, spread, members, per region
  and month) and ``inversion_quarantine.csv``: the table's rejected rows with their reasons;
- ``tradeoff.csv`` / ``tradeoff.png``: per lambda, the site skill (folds of whole physical sites)
  and the held-out regional skill (folds of whole regions left out of the constraint), and the
  lambda chosen from them;
- ``regional.csv``: per region and month the inversion's flux, each variant's estimate (at an
  independent draw of evaluation points), the held-out estimates, and the truth's integral on the
  demo; ``comparison.csv``: the two variants side by side (regional RMSE, global total and its sign,
  seasonal-cycle correlation, held-out regions, site R2); ``seasonal_cycles.png``;
- ``model_constrained.ubj`` (+ ``.json``): the constrained XGBoost model (a non-executable format);
- ``report.md``, and a section of ``predict/report.md`` when maps are made.

Nothing here is tuned on the demo truth: lambda is chosen from the site folds and the inversion's
own held-out regions; the truth only scores the result.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from fluxmap.config import RunConfig
from fluxmap.config_analysis import InversionConfig
from fluxmap.io import figures
from fluxmap.io.inversion import expand_files, read_gridded, read_regional_table
from fluxmap.io.inversion_report import comparison_section, inversion_report
from fluxmap.io.models import load_model, load_zones, model_files, save_model
from fluxmap.io.progress import dask_progress
from fluxmap.io.provenance import (
    begin_stage,
    cache_key,
    data_fingerprint,
    frame_sha256,
    is_cached,
    sha256,
    write_provenance,
    write_table,
    write_text,
)
from fluxmap.io.regions import region_mask
from fluxmap.io.report import replace_marked_section
from fluxmap.io.store import period_mean_stores
from fluxmap.science.aggregate import cell_land_area, step_days
from fluxmap.science.inversion import (
    VARIANTS,
    ConstraintTerm,
    compare_variants,
    field_region_sums,
    fit_constrained,
    fit_zone_models,
    group_estimates,
    integrals_from_sums,
    operator_rows,
    predict_by_zone,
    region_folds,
    regions_at_edges,
    sample_points,
)
from fluxmap.science.predict import predictor_cube
from fluxmap.science.train import DEFAULT_PARAMS, FittedModel
from fluxmap.science.validate import metrics
from fluxmap.science.zones import site_zones
from fluxmap.stages.common import Log, catalog_inputs, catalog_location, open_catalog
from fluxmap.stages.models import fit_parallelism, physical_site_groups
from fluxmap.stages.predict import MODIS_GRID_ENTRIES

__all__ = ["inversion_report_section", "inversion_stage"]

_BEGIN, _END = "<!-- fluxmap inversion: begin -->", "<!-- fluxmap inversion: end -->"


class _Points:
    """Sampled points' predictors at every model period, and the sparse rows over the groups."""

    def __init__(self, cube: xr.Dataset, features: list[str], points: pd.DataFrame) -> None:
        cells = points[["i", "j"]].drop_duplicates().reset_index(drop=True)
        at = {
            "lat": xr.DataArray(cells.i.to_numpy(), dims="cell"),
            "lon": xr.DataArray(cells.j.to_numpy(), dims="cell"),
        }
        x = cube[features].isel(at).compute()
        shape = xr.DataArray(np.zeros((cube.sizes["time"], len(cells)), "float32"), dims=("time", "cell"),
                             coords={"time": cube["time"].values})  # fmt: skip
        # every feature as time x cell (static layers repeat over time, the day-of-year terms over cells)
        values = np.stack([x[f].drop_vars([c for c in x[f].coords if c != "time"]).broadcast_like(shape)
                           .transpose("time", "cell").values.astype("float32") for f in features], axis=-1)  # fmt: skip
        index = pd.MultiIndex.from_frame(cells)
        self.cell_of_point = index.get_indexer(pd.MultiIndex.from_frame(points[["i", "j"]]))
        self.values = values
        self.cells = cells

    def rows(self, rows: pd.DataFrame) -> np.ndarray:
        return self.values[rows.period.to_numpy(), self.cell_of_point[rows.point.to_numpy()]]


@dataclass(frozen=True)
class _Data:
    """What every fit of the stage reads: the site rows, the training sparse rows with their groups and
    coefficients, the regional fluxes and spreads, the evaluation rows, the XGBoost settings."""

    site_x: np.ndarray
    site_y: np.ndarray
    sparse_x: np.ndarray
    sparse_group: np.ndarray
    sparse_coef: np.ndarray
    flux: np.ndarray
    spread: np.ndarray
    eval_x: np.ndarray
    eval_group: np.ndarray
    eval_coef: np.ndarray
    params: dict[str, Any]
    seed: int

    def estimate(self, model: Any) -> np.ndarray:
        """The model's estimate of every group's flux at the evaluation points (Pg C)."""
        pred = model.predict(self.eval_x).astype(float)
        return group_estimates(pred, self.eval_group, self.eval_coef, len(self.flux))


def _fit_model(data: _Data, lam: float, site_keep: np.ndarray, group_keep: np.ndarray, threads: int) -> Any:
    """The model fitted on the kept site rows and, with ``lam`` > 0, the kept groups' sparse rows."""
    rows = group_keep[data.sparse_group]
    renumber = np.cumsum(group_keep) - 1  # the kept groups, numbered 0..
    term = ConstraintTerm(group=renumber[data.sparse_group[rows]], coef=data.sparse_coef[rows],
                          flux=data.flux[group_keep], spread=data.spread[group_keep], lam=lam)  # fmt: skip
    return fit_constrained(data.site_x[site_keep], data.site_y[site_keep], data.sparse_x[rows], term,
                           params=data.params, seed=data.seed, n_jobs=threads)  # fmt: skip


def _run_jobs(cfg: RunConfig, data: _Data, jobs: list[tuple[float, np.ndarray, np.ndarray, np.ndarray | None]], *, log: Log) -> list[np.ndarray]:  # fmt: skip
    """Every fit as a joblib task (:func:`_fit_job`): serially with XGBoost's threads, or with a Dask
    client on its workers (joblib's Dask backend, the data scattered once, not inside every task)."""
    import joblib

    mc, parallel = fit_parallelism(cfg.model, log=log)
    on_cluster = mc is not cfg.model
    threads = 1 if on_cluster else max(1, cfg.model.n_jobs)
    with parallel(scatter=[data]) if on_cluster else parallel():
        return list(joblib.Parallel(n_jobs=mc.n_jobs if on_cluster else 1)(
            joblib.delayed(_fit_job)(data, lam, keep_s, keep_g, test, threads) for lam, keep_s, keep_g, test in jobs))  # fmt: skip


def _fit_job(data: _Data, lam: float, site_keep: np.ndarray, group_keep: np.ndarray, test: np.ndarray | None, threads: int) -> np.ndarray:  # fmt: skip
    """One fit of the validation: the held-out sites' predictions (``test``), else every group's estimate."""
    model = _fit_model(data, lam, site_keep, group_keep, threads)
    if test is not None:
        return np.asarray(model.predict(data.site_x[test]), dtype=float)
    return data.estimate(model)


def _source_path(cfg: RunConfig, source: str) -> Path:
    """The file of a ``model.inversion`` source (``demo``: the demo world's inversion table)."""
    if source == "demo":
        return Path(catalog_location(cfg)[1].get("DEMO_ROOT", Path(cfg.workdir) / "demo-world")) / "inversion" / "regional_nee.csv"  # fmt: skip
    return Path(source)


def _fingerprint(path: Path) -> str:
    """A file's or a glob's fingerprint for the cache key (``missing`` when nothing is there)."""
    files = expand_files(path)
    return ",".join(data_fingerprint(f) if f.exists() else "missing" for f in files) or "missing"


def _inputs(cfg: RunConfig, inv: InversionConfig, names: dict[int, str], land_km2: dict[int, float], out: Path, *, log: Log) -> pd.DataFrame:  # fmt: skip
    """The regional fluxes (one row per region and period) of the configured source."""
    if inv.gridded:
        table, _ = read_gridded(inv.gridded, inv.regions, inv.region_variable, variable=inv.flux_variable,
                                relative_spread=inv.relative_spread, min_spread_pg_c=inv.min_spread_pg_c)  # fmt: skip
        return table
    path = _source_path(cfg, inv.source)
    table, rejected = read_regional_table(path, names, land_km2, relative_spread=inv.relative_spread,
                                          min_spread_pg_c=inv.min_spread_pg_c)  # fmt: skip
    write_table(rejected, out / "inversion_quarantine.csv", index=False)
    if len(rejected):
        log(f"inversion: {len(rejected)} rows of {path} quarantined with their reasons -> {out / 'inversion_quarantine.csv'}")  # fmt: skip
    return table


def inversion_stage(cfg: RunConfig, tables: dict[str, pd.DataFrame], *, log: Log = print) -> dict[str, Any] | None:
    """Train and compare the constrained and unconstrained models of ``model.inversion.target``;
    None when ``model.inversion`` is not set."""
    inv = cfg.model.inversion
    if inv is None:
        return None
    t0 = time.perf_counter()
    if inv.target not in cfg.model.targets:
        raise ValueError(f"model.inversion.target {inv.target!r} is not among model.targets {list(cfg.model.targets)}")
    var = inv.target.split(":")[0]
    folder = Path(cfg.workdir) / "models" / inv.target.replace(":", "_")
    found = model_files(folder, "model_unified*")
    if not found:
        log(f"inversion: skipped, no unified model of {inv.target} in {folder}")
        return None
    features = list(load_model(found[0]).features)
    out = Path(cfg.workdir) / "inversion" / inv.target.replace(":", "_")
    out.mkdir(parents=True, exist_ok=True)
    # Cached on everything the result depends on: its settings, the site tables, the unified model (its
    # features), the catalog's data and the inversion's own files.
    sources = [*(f for member in inv.gridded for f in member)] or [inv.source]
    key = cache_key({"inversion": dataclasses.asdict(inv), "seed": cfg.model.seed, "min_zone_sites": cfg.model.min_zone_sites,
                     "group_distance_km": cfg.model.group_distance_km},  # fmt: skip
                    {"training": frame_sha256(tables["training_8day"]), "sites": frame_sha256(tables["site_factors"]),
                     "unified": sha256(found[0]), "zones": _fingerprint(folder.parent / "zones.json"),
                     "catalog": catalog_inputs(cfg, cfg.extract.entries),
                     "inversion": {str(f): _fingerprint(_source_path(cfg, f)) for f in sources}})  # fmt: skip
    if is_cached(out, key, ["comparison.csv", "tradeoff.csv", "regional.csv"]):
        log(f"inversion: cached in {out} (key and every output file's checksum match)")
        tradeoff = pd.read_csv(out / "tradeoff.csv")
        return {"tradeoff": tradeoff, "regional": pd.read_csv(out / "regional.csv"),
                "comparison": pd.read_csv(out / "comparison.csv"),
                "lambda": float(tradeoff[tradeoff.chosen]["lambda"].iloc[0]), "report": out / "report.md"}  # fmt: skip
    begin_stage(out)

    site = tables["training_8day"]
    site = site[(site.variable == var) & site.value.notna()].copy()
    site["site_group"] = site.location.map(physical_site_groups(cfg.model, tables["site_factors"], site.location))
    site_x = site[features].to_numpy(dtype="float32")
    site_y = site.value.to_numpy(dtype=float)

    lacking = sorted(set(MODIS_GRID_ENTRIES) - set(cfg.extract.entries))
    if lacking:
        raise ValueError(
            f"model.inversion samples its points on the MODIS-like grid, which needs the entries {lacking} "
            f"(extract.entries: {list(cfg.extract.entries)}); a regular predict.resolution grid alone is not built for it"
        )
    cat = open_catalog(cfg)
    cubes = {e: cat.open(e) for e in cfg.extract.entries}
    period_mean_stores(
        cubes, Path(cfg.workdir) / "predict", catalog_inputs(cfg, cfg.extract.entries)
    )  # reused by predict
    cube = predictor_cube(cubes)
    land = cube["land_fraction"].load()
    codes_da, names = region_mask(inv.regions, inv.region_variable, cube["lat"], cube["lon"])
    codes = np.asarray(codes_da.values)
    area = cell_land_area(land, land).values
    land_km2 = {c: float(area[codes == c].sum()) / 1e6 for c in names}
    starts = pd.DatetimeIndex(cube["time"].values)
    ends = starts + pd.to_timedelta(step_days(cube["time"]).values, unit="D")

    table = _inputs(cfg, inv, names, land_km2, out, log=log)
    years = list(inv.years) or sorted(set(starts.year))
    groups = table[pd.DatetimeIndex(table.start).year.isin(years)].reset_index(drop=True)
    if groups.empty:
        have = sorted(set(pd.DatetimeIndex(table.start).year))
        raise ValueError(f"inversion: no regional flux in the years {years}; the inversion gives {have}")
    regions = sorted(int(r) for r in groups.region.unique())
    lon = np.asarray(cube["lon"].values)
    wraps = bool(len(lon) > 1 and abs((lon[-1] - lon[0]) + (lon[1] - lon[0]) - 360) < 1e-6)
    cut = regions_at_edges(codes, regions, wraps=wraps)
    if cut:
        log(f"inversion: warning: the grid's edge cuts {len(cut)} region(s) ({', '.join(names[r].split(' ')[0] for r in cut)}): "
            "their sparse estimate covers only their part on the grid; an inversion's flux of the whole region "
            "does not match it unless the inversion was integrated over the same grid")  # fmt: skip
    seed = cfg.model.seed
    train_pts = sample_points(codes, area, regions, inv.points_per_region, seed=seed)
    eval_pts = sample_points(codes, area, regions, inv.evaluation_points_per_region, seed=seed + 1)
    train_rows = operator_rows(train_pts, starts, ends, groups)  # raises for a period outside the cube's
    eval_rows = operator_rows(eval_pts, starts, ends, groups)
    with dask_progress(f"inversion: predictors at {len(train_pts) + len(eval_pts)} sampled points", log):
        train_at, eval_at = _Points(cube, features, train_pts), _Points(cube, features, eval_pts)
    sparse_x = train_at.rows(train_rows)
    eval_x = eval_at.rows(eval_rows)
    flux, spread = groups.flux_pg_c.to_numpy(), groups.spread_pg_c.to_numpy()
    params = {**DEFAULT_PARAMS["xgboost"], **inv.params}
    log(f"inversion: {inv.target}, {len(site)} site rows ({site.site_group.nunique()} physical sites), "
        f"{len(groups)} regional fluxes ({len(regions)} regions x {groups.start.nunique()} periods), "
        f"{inv.points_per_region} points per region -> {len(train_rows)} sparse rows; lambdas {[0.0, *inv.lambdas]}")  # fmt: skip

    all_sites = np.ones(len(site), bool)
    all_groups = np.ones(len(groups), bool)
    site_groups = site.site_group.to_numpy()
    units = sorted(set(site_groups))
    n_site_folds = len(units) if inv.site_folds <= 0 else min(inv.site_folds, len(units))
    unit_fold = dict(zip(np.random.default_rng(seed).permutation(units), np.arange(len(units)) % n_site_folds))
    site_fold = np.array([unit_fold[u] for u in site_groups])
    folds_r = region_folds(regions, inv.region_folds, seed=seed)
    group_region = groups.region.to_numpy()
    data = _Data(site_x, site_y, sparse_x, train_rows.group.to_numpy(), train_rows.coef.to_numpy(), flux, spread,
                 eval_x, eval_rows.group.to_numpy(), eval_rows.coef.to_numpy(), params, seed)  # fmt: skip

    # Every fit of the validation is one task: local (XGBoost's own threads) or, with a Dask cluster, on
    # its workers (joblib's Dask backend, as the models stage's folds); each returns arrays, not a model.
    lambdas = [0.0, *inv.lambdas]
    jobs: list[tuple[str, float, int, np.ndarray, np.ndarray, np.ndarray | None]] = []
    for lam in lambdas:
        for k in range(n_site_folds):
            jobs.append(("site", lam, k, site_fold != k, all_groups, site_fold == k))
        if lam == 0:
            jobs.append(("region", 0.0, -1, all_sites, all_groups, None))  # nothing to hold out without the constraint
        else:
            for i, fold in enumerate(folds_r):
                jobs.append(("region", lam, i, all_sites, ~np.isin(group_region, fold), None))
    results = _run_jobs(cfg, data, [(lam, keep_s, keep_g, test) for _, lam, _, keep_s, keep_g, test in jobs], log=log)
    held_site = {lam: np.full(len(site), np.nan) for lam in lambdas}
    held_region = {lam: np.full(len(groups), np.nan) for lam in lambdas}
    for (kind, lam, k, _, keep_g, test), result in zip(jobs, results):
        if kind == "site":
            held_site[lam][test] = result
        elif k < 0:
            held_region[lam] = result
        else:
            held_region[lam][~keep_g] = result[~keep_g]
    trade = []
    for lam in lambdas:
        est, s = held_region[lam], metrics(site_y, held_site[lam])
        trade.append({"lambda": lam, "site_r2": s["r2"], "site_rmse": s["rmse"],
                      "heldout_region_rmse_pg_c": float(np.sqrt(np.mean((est - flux) ** 2))),
                      "heldout_region_chi2": float(np.mean(((est - flux) / spread) ** 2))})  # fmt: skip
        log(f"inversion: lambda {lam:g}: site R2 {s['r2']:.3f} ({n_site_folds} folds of sites), held-out regions "
            f"RMSE {trade[-1]['heldout_region_rmse_pg_c']:.4f} Pg C per period against the inversion ({len(folds_r)} folds)")  # fmt: skip
    tradeoff = pd.DataFrame(trade)
    base_r2 = float(tradeoff.site_r2.iloc[0])
    eligible = tradeoff[tradeoff.site_r2 >= base_r2 - inv.max_site_r2_loss]
    by_rule = float(eligible.sort_values("heldout_region_rmse_pg_c").iloc[0]["lambda"])
    tradeoff["by_rule"] = tradeoff["lambda"] == by_rule
    chosen = by_rule if inv.fixed_lambda is None else float(inv.fixed_lambda)
    if chosen not in lambdas:
        raise ValueError(f"model.inversion.fixed_lambda {chosen:g} is not among the lambdas scored {lambdas}")
    tradeoff["chosen"] = tradeoff["lambda"] == chosen

    final_threads = max(1, cfg.model.n_jobs)
    unconstrained = _fit_model(data, 0.0, all_sites, all_groups, final_threads)
    constrained = _fit_model(data, chosen, all_sites, all_groups, final_threads) if chosen > 0 else unconstrained
    save_model(FittedModel("xgboost", constrained, features, {
        "target": inv.target, "inversion_lambda": chosen, "points_per_region": inv.points_per_region,
        "regions": inv.regions, "params": params, "seed": seed, "training_rows": len(site), "sparse_rows": len(train_rows)}),
        out / "model_constrained")  # fmt: skip

    regional = groups[["region", "start", "end", "flux_pg_c", "spread_pg_c", "members"]].copy()
    regional.insert(1, "name", regional.region.map(names))
    regional["unconstrained_pg_c"] = data.estimate(unconstrained)
    regional["constrained_pg_c"] = data.estimate(constrained)
    regional["heldout_constrained_pg_c"] = held_region[chosen]
    site_r2 = {"unconstrained": float(tradeoff.site_r2.iloc[0]), "constrained": float(tradeoff.set_index("lambda").site_r2.loc[chosen])}  # fmt: skip
    loso_r2: dict[str, float] = {}
    if inv.loso:
        # Leave-one-physical-site-out for the two unified variants (the lambda is the folds' choice).
        loso_jobs = [
            (lam, site_groups != u, all_groups, site_groups == u) for lam in dict.fromkeys((0.0, chosen)) for u in units
        ]
        loso = _run_jobs(cfg, data, loso_jobs, log=log)
        for lam, name in ((0.0, "unconstrained"), (chosen, "constrained")):
            pred = np.full(len(site), np.nan)
            for (lam_j, _, _, test), result in zip(loso_jobs, loso):
                if lam_j == lam:
                    pred[test] = result
            loso_r2[name] = metrics(site_y, pred)["r2"]
        log(f"inversion: site R2 leaving one physical site out ({len(units)} folds): {loso_r2['unconstrained']:.3f} "
            f"-> {loso_r2['constrained']:.3f}")  # fmt: skip
    if inv.zone_models:
        zoned = _zone_variant(cfg, tables, site, data, train_at, eval_at, train_rows, eval_rows, chosen, site_fold,
                              {0.0: held_site[0.0], chosen: held_site[chosen]}, unconstrained, constrained, log=log)  # fmt: skip
        if zoned is not None:
            for variant, (estimate, r2) in zoned.items():
                regional[f"{variant}_pg_c"] = estimate
                site_r2[variant] = r2
    truth = _truth_integrals(cat, codes, area, regions, starts, ends, groups, var)
    if truth is not None:
        regional["truth_pg_c"] = truth
    comparison = compare_variants(regional, site_r2, truth is not None, loso_r2)
    write_table(groups.assign(name=groups.region.map(names), cut_by_grid_edge=groups.region.isin(cut)),
                out / "regional_fluxes.csv", index=False)  # fmt: skip
    write_table(tradeoff, out / "tradeoff.csv", index=False)
    write_table(regional, out / "regional.csv", index=False)
    write_table(comparison, out / "comparison.csv", index=False)
    fig_t = figures.plot_inversion_tradeoff(tradeoff, out / "tradeoff.png", title=f"{inv.target}: site skill against held-out regions")  # fmt: skip
    fig_s = figures.plot_regional_cycles(regional, out / "seasonal_cycles.png", reference="truth_pg_c" if truth is not None else "flux_pg_c")  # fmt: skip
    seconds = time.perf_counter() - t0
    write_text(out / "report.md", inversion_report(dataclasses.asdict(inv), regional, tradeoff, comparison, chosen, (fig_t.name, fig_s.name),
                                          len(site), site.site_group.nunique(), seconds,
                                          [names[r].split(" ")[0] for r in cut]))  # fmt: skip
    unc, con = VARIANTS["unconstrained"], VARIANTS["constrained"]
    write_provenance(out, key, settings=dataclasses.asdict(inv), chosen_lambda=chosen)
    log(f"inversion: lambda {chosen:g} chosen; unified model without -> with the constraint: " + "; ".join(
        f"{r['measure']}: {r[unc]:.3f} -> {r[con]:.3f}" for r in comparison.to_dict("records")) + f" ({seconds:.0f} s) -> {out}")  # fmt: skip
    return {
        "tradeoff": tradeoff,
        "regional": regional,
        "comparison": comparison,
        "lambda": chosen,
        "report": out / "report.md",
    }


def inversion_report_section(cfg: RunConfig) -> None:
    """The inversion comparison as a section of ``predict/report.md`` (after the report stage wrote it)."""
    inv = cfg.model.inversion
    if inv is None:
        return
    folder = Path(cfg.workdir) / "inversion" / inv.target.replace(":", "_")
    report = Path(cfg.workdir) / "predict" / "report.md"
    if not (folder / "comparison.csv").is_file() or not report.is_file():
        return
    chosen = pd.read_csv(folder / "tradeoff.csv").query("chosen")["lambda"].iloc[0]
    rel = f"../inversion/{inv.target.replace(':', '_')}/"
    replace_marked_section(
        report, _BEGIN, _END, comparison_section(pd.read_csv(folder / "comparison.csv"), float(chosen), rel)
    )


def _truth_integrals(cat: Any, codes: np.ndarray, area: np.ndarray, regions: list[int], starts: pd.DatetimeIndex,
                     ends: pd.DatetimeIndex, groups: pd.DataFrame, var: str) -> np.ndarray | None:  # fmt: skip
    """The demo truth's integral of ``var`` per group (None without a truth entry): it scores, never trains."""
    if "truth" not in cat.entries:
        return None
    truth = cat.open("truth")
    if var not in truth or truth.sizes["lat"] != codes.shape[0] or truth.sizes["lon"] != codes.shape[1]:
        return None
    sums = field_region_sums(truth[var].sel(time=starts), codes, area, regions)
    return integrals_from_sums(sums, regions, starts, ends, groups)


def _zone_variant(
    cfg: RunConfig,
    tables: dict[str, pd.DataFrame],
    site: pd.DataFrame,
    data: _Data,
    train_at: _Points,
    eval_at: _Points,
    train_rows: pd.DataFrame,
    eval_rows: pd.DataFrame,
    lam: float,
    site_fold: np.ndarray,
    unified_held: dict[float, np.ndarray],
    unconstrained: Any,
    constrained: Any,
    *,
    log: Log,
) -> dict[str, tuple[np.ndarray, float]] | None:
    """The zone models without and with the constraint (the unified model's lambda; block coordinate
    descent over the zones, :func:`fluxmap.science.inversion.fit_zone_models`): every group's estimate at
    the evaluation points and the site R2 over the same folds of physical sites as the unified model's
    (held-out rows of a zone without a model of its own take the unified model's held-out prediction,
    as the maps map such zones with the unified model)."""
    models_dir = Path(cfg.workdir) / "models"
    zone_store = models_dir / "zone_map.zarr"
    if not zone_store.is_dir() or not (models_dir / "zones.json").is_file():
        log(f"inversion: zone models skipped, no zone map in {models_dir}")
        return None
    zone_of = site_zones(load_zones(models_dir / "zones.json"), tables["site_factors"])
    site_zone = site.location.map(zone_of).to_numpy()
    zmap = xr.open_zarr(zone_store, consolidated=None)["zone"]

    def zone_at(points: _Points) -> np.ndarray:
        cells = points.cells
        at = {
            "lat": xr.DataArray(cells.i.to_numpy(), dims="cell"),
            "lon": xr.DataArray(cells.j.to_numpy(), dims="cell"),
        }
        return np.nan_to_num(zmap.isel(at).values.astype(float), nan=0).astype(int)[points.cell_of_point]

    sparse_zone = zone_at(train_at)[train_rows.point.to_numpy()]
    eval_zone = zone_at(eval_at)[eval_rows.point.to_numpy()]
    sites_per_zone = site.groupby(site_zone).site_group.nunique()
    zones = sorted(int(z) for z, n in sites_per_zone.items() if n >= cfg.model.min_zone_sites)
    term = ConstraintTerm(group=data.sparse_group, coef=data.sparse_coef, flux=data.flux, spread=data.spread, lam=lam)
    threads = max(1, cfg.model.n_jobs)
    common: dict[str, Any] = {"params": data.params, "seed": data.seed, "n_jobs": threads}
    out: dict[str, tuple[np.ndarray, float]] = {}
    for variant, lam_v, fallback in (
        ("zones_unconstrained", 0.0, unconstrained),
        ("zones_constrained", lam, constrained),
    ):
        t = ConstraintTerm(group=term.group, coef=term.coef, flux=term.flux, spread=term.spread, lam=lam_v)
        held = unified_held[lam_v].copy()  # zones without a model of their own: the unified model's held-out rows
        for k in np.unique(site_fold):
            train, test = site_fold != k, site_fold == k
            fold_zones = [z for z in zones if (site_zone[train] == z).any()]
            models = fit_zone_models(data.site_x[train], data.site_y[train], site_zone[train], data.sparse_x, sparse_zone,
                                     t, fallback=fallback, zones=fold_zones, **common)  # fmt: skip
            own = test & np.isin(site_zone, fold_zones)
            held[own] = predict_by_zone(models, fallback, data.site_x[own], site_zone[own])
        models = fit_zone_models(data.site_x, data.site_y, site_zone, data.sparse_x, sparse_zone, t, fallback=fallback,
                                 zones=zones, **common)  # fmt: skip
        estimate = group_estimates(predict_by_zone(models, fallback, data.eval_x, eval_zone), data.eval_group,
                                   data.eval_coef, len(data.flux))  # fmt: skip
        out[variant] = (estimate, metrics(data.site_y, held)["r2"])
    log(f"inversion: zone models ({len(zones)} zones with >= {cfg.model.min_zone_sites} physical sites) without and with "
        f"the constraint: site R2 {out['zones_unconstrained'][1]:.3f} -> {out['zones_constrained'][1]:.3f}")  # fmt: skip
    return out
