"""Zone models against the unified model for one target, validated with every choice nested.

Pure functions of a training table (one row per site and period or site-year, with the
physical-site column named by the :class:`Protocol`'s ``spec.group``, ``location``, ``value``
and the predictors). The outer folds leave out whole physical sites. Inside each outer fold,
on its training rows only: the zones are refitted (k chosen again), the predictors selected
(correlation filter, then backward elimination scored on inner folds of whole sites), and
every model fitted: the unified model, one model per zone with at least ``min_zone_sites``
physical sites (other zones use the unified model), the reference models, the zone models on
the known true zones (demo), remote sensing + site meteorology, and the quantile forest. The
held-out rows get every prediction. Nothing the held-out sites hold reaches a choice made for
them, so these are the headline scores; the non-nested score of the final selection (chosen
and scored on the same folds) is reported beside, under that name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from fluxmap.science.baselines import fit_reference
from fluxmap.science.experiments import covariate_predictions, experiment_scores, site_covariates
from fluxmap.science.frontier import Candidate, inner_scores, one_se_choice, prediction_rates
from fluxmap.science.selection import backward_elimination, correlation_filter, exhaustive_search
from fluxmap.science.train import FitSpec, fit, fit_predict
from fluxmap.science.validate import compare, group_folds, metrics, metrics_table, paired_site_bootstrap

__all__ = [
    "FinalChoice",
    "FitSpec",
    "Protocol",
    "Validated",
    "ZoneFitter",
    "candidate_predictors",
    "composed_scores",
    "coverage",
    "nested_cv",
    "scores",
    "select_predictors",
    "selection_stability",
    "summarize",
    "validate",
    "validation_tasks",
    "zone_fallbacks",
]

_STATIC = ("elevation", "soc", "doy_sin", "doy_cos")

ZoneFitter = Callable[[set[str]], pd.Series]
"""Given the held-out locations, zones fitted without them: the zone of every location (0 = none:
e.g. no k meets the zoning minima without those sites; such rows get the unified model)."""


@dataclass(frozen=True)
class Protocol:
    """What is chosen from the data, and how every choice is validated."""

    spec: FitSpec
    """The models' settings; ``spec.group`` is the physical-site column, ``spec.folds`` the outer folds."""
    selection: FitSpec = field(default_factory=FitSpec)
    """Lighter settings while selecting predictors; its ``folds`` are the inner folds."""
    correlation_threshold: float = 0.9
    backward: bool = True
    exhaustive: bool = False
    """With ``backward``: the complete-combination search instead of backward elimination."""
    exhaustive_max: int = 8
    min_zone_sites: int = 2
    """A zone needs this many physical sites for a model of its own; otherwise the unified model."""
    reference: str = "mean"
    """The target's published-form reference model (``climate``, ``class_mean``), beside the mean."""
    climate: tuple[str, str] = ("t2m", "tp")
    """Temperature (K) and precipitation columns of the climate reference."""
    site_meteo: tuple[str, ...] = ()
    quantiles: tuple[float, ...] = (0.05, 0.5, 0.95)
    grid: tuple[Candidate, ...] = ()
    """Model configurations searched inside each outer fold (:mod:`fluxmap.science.frontier`);
    empty: ``spec``'s family and settings everywhere."""
    search_folds: int = 3
    """Inner folds of whole physical sites scoring the ``grid`` configurations."""


def candidate_predictors(df: pd.DataFrame, predictors: tuple[str, ...], *, annual: bool) -> list[str]:
    """The configured predictors present in ``df`` (and their annual statistics), not all missing."""
    out = []
    for p in predictors:
        names = [f"{p}_ann_{s}" for s in ("mean", "max", "min")]
        if not annual:
            names = [p, *names]
        static = p in _STATIC or (annual and p in df.columns)  # a static layer (e.g. landcover)
        for n in [p] if static else names:
            if annual and n in ("doy_sin", "doy_cos"):
                continue
            if n in df.columns and df[n].notna().any() and n not in out:
                out.append(n)
    return out


def select_predictors(
    df: pd.DataFrame, features: list[str], protocol: Protocol, *, log: Callable[[str], None] | None = None
) -> tuple[list[str], list[str], list[Any], pd.DataFrame]:
    """The |r| filter, then (``protocol.backward``) backward elimination, or (``protocol.exhaustive``)
    the complete-combination search, scored on folds of whole physical sites of ``df``. Returns the selected predictors, those the filter kept and dropped,
    and the elimination path (empty without elimination)."""
    kept, dropped = correlation_filter(df, features, threshold=protocol.correlation_threshold)
    if not protocol.backward or df[protocol.spec.group].nunique() < 3:
        return kept, kept, dropped, pd.DataFrame()
    sel = replace(protocol.selection, group=protocol.spec.group)
    if protocol.exhaustive:
        chosen, path = exhaustive_search(df, kept, spec=sel, max_candidates=protocol.exhaustive_max)
        if log:
            log(f"      complete-combination search: {len(path)} subsets of {len(kept)}, best {chosen} "
                f"(CV RMSE {path.rmse.iloc[0]:.4f})")  # fmt: skip
        return chosen, kept, dropped, path
    chosen, path = backward_elimination(df, kept, spec=sel, drop_fraction=0.2, log=log)
    return chosen, kept, dropped, path


def zone_fallbacks(df: pd.DataFrame, zone: str, group: str, min_sites: int) -> list[int]:
    """Zones of ``df[zone]`` with fewer than ``min_sites`` physical sites: no model of their own."""
    sites = df.groupby(zone)[group].nunique()
    return sorted(int(z) for z in sites.index[sites < min_sites])


def _by_zone(
    p: Protocol,
    train: pd.DataFrame,
    test: pd.DataFrame,
    tz: pd.Series,
    sz: pd.Series,
    feats: list[str],
    uni: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Predictions of the test rows by their zone's model (``tz``/``sz``: zone of train/test rows),
    the unified prediction ``uni`` where the zone has too few physical sites; and that fallback flag."""
    pred, fell_back = uni.copy(), np.ones(len(test), bool)
    for z in np.unique(sz.dropna()):
        if z == 0:  # no zone (none could be fitted in this fold, or factors missing): the unified model
            continue
        part = train[tz.to_numpy() == z]
        at = sz.to_numpy() == z
        if part[p.spec.group].nunique() >= p.min_zone_sites:
            pred[at] = fit_predict(p.spec, part, test[at], feats)
            fell_back[at] = False
    return pred, fell_back


def _quantiles(p: Protocol, train: pd.DataFrame, test: pd.DataFrame, feats: list[str]) -> dict[str, np.ndarray]:
    """The quantile forest's outer quantiles (missing predictors: the training rows' medians)."""
    use = [f for f in feats if train[f].notna().any()]
    fill = {f: train[f].median() for f in use}
    qrf = fit("qrf", train.fillna(fill), train.value, features=use, seed=p.spec.seed, params={"n_estimators": 100})
    q = qrf.quantiles(test.fillna(fill), [p.quantiles[0], p.quantiles[-1]])
    return {"q_lo": np.asarray(q)[:, 0], "q_hi": np.asarray(q)[:, -1]}


@dataclass
class _FoldChoices:
    """What one outer fold chooses on its training rows: the predictors and, with a ``grid``, every
    configuration's inner scores (the choice waits for the costs) and outer predictions."""

    features: list[str]
    search: pd.DataFrame | None = None
    preds: dict[str, np.ndarray] = field(default_factory=dict)


def _fold_choices(p: Protocol, d: pd.DataFrame, test_mask: np.ndarray, features: list[str]) -> _FoldChoices:
    """The first half of an outer fold: predictor selection and the configurations' inner scores on
    its training rows, and every configuration's predictions of its held-out rows (the frontier's
    skill axis)."""
    train, test = d[~test_mask], d[test_mask]
    feats = select_predictors(train, features, p)[0]
    if not p.grid:
        return _FoldChoices(feats)
    search = inner_scores(train, feats, p.grid, base=p.spec, folds=p.search_folds)
    preds = {f"pred_cand_{i}": fit_predict(c.spec(p.spec), train, test, feats) for i, c in enumerate(p.grid)}
    return _FoldChoices(feats, search, preds)


def _fold_models(
    p: Protocol,
    d: pd.DataFrame,
    test_mask: np.ndarray,
    choices: _FoldChoices,
    pick: int,
    zones: ZoneFitter,
    truth: bool,
) -> pd.DataFrame:
    """The second half of an outer fold: every prediction of its held-out rows with the predictors
    and configuration (``pick``; -1: ``p.spec``) chosen on its training rows."""
    train, test = d[~test_mask], d[test_mask]
    zone_of = zones(set(test.location))
    tz, sz = train.location.map(zone_of), test.location.map(zone_of)
    feats = choices.features
    out: dict[str, Any] = dict(choices.preds)
    if pick >= 0:
        p = replace(p, spec=p.grid[pick].spec(p.spec))
    uni = out[f"pred_cand_{pick}"] if pick >= 0 else fit_predict(p.spec, train, test, feats)
    pz, fell_back = _by_zone(p, train, test, tz, sz, feats, uni)
    out.update({"zone_in_fold": sz.to_numpy(), "pred_unified": uni, "pred_zone": pz, "zone_fallback": fell_back})
    out["pred_mean"] = fit_reference("mean", train)(test)
    if p.reference != "mean":
        out["pred_reference"] = fit_reference(p.reference, train, climate=p.climate)(test)
    if truth:
        out["pred_true_zones"] = _by_zone(p, train, test, train.true_zone, test.true_zone, feats, uni)[0]
    out.update(covariate_predictions(p.spec, train, test, feats, site_covariates(train, p.site_meteo)))
    out.update(_quantiles(p, train, test, feats))
    return pd.DataFrame(out, index=test.index)


@dataclass
class FinalChoice:
    """The choices made on all rows for the final models: the predictors (and what the correlation
    filter kept and dropped, the elimination path) and, with a ``grid``, the configuration."""

    selected: list[str]
    kept: list[str]
    dropped: list[Any]
    path: pd.DataFrame
    search: pd.DataFrame | None = None
    """Per configuration: inner-fold mean RMSE, its standard error, its rate, ``chosen``."""
    pick: int = -1
    log: list[str] = field(default_factory=list)
    """The selection's progress lines (it runs as a task; the caller prints them)."""


def _final_choice(p: Protocol, d: pd.DataFrame, features: list[str]) -> FinalChoice:
    """The selection and the configurations' inner scores on all rows (the costs come later)."""
    lines: list[str] = []
    selected, kept, dropped, path = select_predictors(d, features, p, log=lines.append)
    search = inner_scores(d, selected, p.grid, base=p.spec, folds=p.search_folds) if p.grid else None
    return FinalChoice(selected, kept, dropped, path, search, -1, lines)


def _rate(c: Candidate, d: pd.DataFrame, features: list[str], seed: int) -> float:
    return float(prediction_rates(d, features, (c,), seed=seed)[0])


def _task(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` as a task: whatever runs it (a loky process, a Dask worker), the fits inside
    it run one after the other. (joblib's Dask backend ignores ``n_jobs=1`` and would send every
    inner fit back to the cluster as a task of its own: 4x slower per fold, measured.)"""
    from joblib import parallel_config

    with parallel_config(backend="sequential"):
        return fn(*args)


def validation_tasks(folds: int, protocol: Protocol, *, final: bool = True) -> int:
    """How many tasks :func:`validate` runs for ``folds`` outer folds (its ``progress`` total)."""
    return 2 * folds + len(protocol.grid) + int(final)


@dataclass
class Validated:
    """:func:`validate`'s result."""

    d: pd.DataFrame
    """The rows with their outer fold and every prediction column."""
    chosen: pd.DataFrame
    """Per outer fold: held-out sites, zones, the predictors and configuration chosen inside it."""
    rates: np.ndarray
    """Predictions per second per core of each ``grid`` configuration (empty without one)."""
    final: FinalChoice | None


def validate(
    df: pd.DataFrame,
    features: list[str],
    protocol: Protocol,
    *,
    zones: ZoneFitter,
    n_jobs: int = 1,
    final: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> Validated:
    """The nested validation of one target and (``final``) the final choices on all rows.

    Outer folds of whole physical sites (``protocol.spec.folds``; 0 = one site per fold), every
    choice nested (see the module). ``df`` may carry ``true_zone`` (the demo's truth): zone models
    on the true zones are then fitted too. Two rounds of ``n_jobs`` parallel tasks (joblib, whichever
    backend is active; the results do not depend on it or on the order the tasks run in):

    1. every fold's predictor selection, inner search scores and configurations' outer predictions;
       the final selection and search on all rows; each ``grid`` configuration's cost
       (:func:`prediction_rates`; timed on a core of its own, while the folds run);
    2. with each fold's configuration chosen from its scores and the costs (:func:`one_se_choice`),
       its zone, reference, site-meteorology and quantile models.

    ``progress(done, total)`` is called as tasks finish (total: :func:`validation_tasks`)."""
    from joblib import Parallel, delayed

    p, g = protocol, protocol.spec.group
    d = df.copy()
    d["fold"] = group_folds(d[g], p.spec.folds, seed=p.spec.seed)
    folds = sorted(d.fold.unique())
    masks = [(d.fold == f).to_numpy() for f in folds]
    truth = "true_zone" in d and d.true_zone.notna().any()
    total, done = validation_tasks(len(folds), p, final=final), 0
    # The largest tasks first (all rows' selection, then the folds), the cost timings fill the gaps.
    first = [delayed(_task)(_final_choice, p, d, features)] if final else []
    first += [delayed(_task)(_fold_choices, p, d, m, features) for m in masks]
    first += [delayed(_task)(_rate, c, d, features, p.spec.seed) for c in p.grid]
    results = []
    for r in Parallel(n_jobs=n_jobs, return_as="generator", batch_size=1)(first):
        results.append(r)
        done += 1
        if progress is not None:
            progress(done, total)
    last: FinalChoice | None = results.pop(0) if final else None
    choices: list[_FoldChoices] = results[: len(folds)]
    rates = np.asarray(results[len(folds) :], dtype="float64")
    picks = [one_se_choice(c.search.assign(rows_per_s=rates)) if c.search is not None else -1 for c in choices]
    parts = []
    for part in Parallel(n_jobs=n_jobs, return_as="generator", batch_size=1)(
        delayed(_task)(_fold_models, p, d, m, c, k, zones, truth) for m, c, k in zip(masks, choices, picks)
    ):
        parts.append(part)
        done += 1
        if progress is not None:
            progress(done, total)
    d = d.join(pd.concat(parts))
    if last is not None and last.search is not None:
        search = last.search.assign(rows_per_s=rates)
        last.pick = one_se_choice(search)
        last.search = search.assign(chosen=search.candidate == last.pick)
    chosen = pd.DataFrame(
        {
            "fold": folds,
            "held_out_sites": [int(d.loc[d.fold == f, g].nunique()) for f in folds],
            "zones": [int(part.zone_in_fold[part.zone_in_fold > 0].nunique()) for part in parts],
            "n_features": [len(c.features) for c in choices],
            "features": [",".join(c.features) for c in choices],
            "candidate": picks,
            "model": [p.grid[k].label if k >= 0 else p.spec.kind for k in picks],
        }
    )
    return Validated(d, chosen, rates, last)


def nested_cv(
    df: pd.DataFrame,
    features: list[str],
    protocol: Protocol,
    *,
    zones: ZoneFitter,
    n_jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`validate` without the final choices: the rows with their fold and predictions, and
    per fold its held-out sites, its number of zones (0: none could be fitted) and the predictors
    and configuration chosen inside it."""
    v = validate(df, features, protocol, zones=zones, n_jobs=n_jobs, final=False, progress=progress)
    return v.d, v.chosen


def selection_stability(chosen: pd.DataFrame, final: list[str]) -> pd.DataFrame:
    """In how many outer folds each predictor was chosen, beside whether the final model uses it."""
    counts = pd.Series([f for fs in chosen.features for f in fs.split(",") if f]).value_counts()
    names = list(dict.fromkeys([*final, *counts.index]))
    return pd.DataFrame(
        {
            "predictor": names,
            "folds_chosen": [int(counts.get(n, 0)) for n in names],
            "folds": len(chosen),
            "in_final_model": [n in final for n in names],
        }
    )


def coverage(d: pd.DataFrame) -> float:
    """Share of observations inside the nested quantile forest's interval."""
    ok = d[["q_lo", "q_hi", "value"]].notna().all(axis=1)
    return float(((d.value[ok] >= d.q_lo[ok]) & (d.value[ok] <= d.q_hi[ok])).mean())


def scores(d: pd.DataFrame, columns: dict[str, str], *, obs: str = "value") -> pd.DataFrame:
    """R2/RMSE/bias/n of each prediction column on the rows all of them predicted."""
    ok = d[[*columns.values(), obs]].notna().all(axis=1)
    return pd.DataFrame(
        [{"model": k, **metrics(d[obs][ok].to_numpy(), d[c][ok].to_numpy())} for k, c in columns.items()]
    )


def _boot(d: pd.DataFrame, a: str, b: str, g: str, seed: int, obs: str = "value") -> dict[str, float]:
    ok = d[[a, b, obs]].notna().all(axis=1)
    return paired_site_bootstrap(d[ok], a, b, obs=obs, group=g, seed=seed)


def _flat(prefix: str, b: dict[str, float], keys: tuple[str, ...] = ("delta", "share")) -> dict[str, float]:
    return {f"{k}_{prefix}": v for k, v in b.items() if k.startswith(keys)}


def _references(d: pd.DataFrame, p: Protocol) -> tuple[dict[str, Any], dict[str, Any]]:
    """The references' scores, the best of them (lowest error), and each model's skill over it."""
    g, seed = p.spec.group, p.spec.seed
    refs = {"mean": "pred_mean", **({p.reference: "pred_reference"} if "pred_reference" in d else {})}
    table = scores(
        d, {"zone": "pred_zone", "unified": "pred_unified", **{f"reference: {k}": c for k, c in refs.items()}}
    )
    rmse = {k: float(table.set_index("model").loc[f"reference: {k}", "rmse"]) for k in refs}
    best = min(rmse, key=lambda k: rmse[k])
    summary: dict[str, Any] = {
        f"r2_ref_{k}": float(table.set_index("model").loc[f"reference: {k}", "r2"]) for k in refs
    }
    summary["best_reference"] = best
    skills = {}
    for model in ("unified", "zone"):
        b = _boot(d, f"pred_{model}", refs[best], g, seed)
        skills[model] = b
        summary.update(
            {f"skill_{model}": b["skill"], f"skill_lo_{model}": b["skill_lo"], f"skill_hi_{model}": b["skill_hi"]}
        )
    return summary, {"table": table, "best": best, "skills": skills}


def _truth_summary(d: pd.DataFrame, p: Protocol) -> tuple[dict[str, Any], dict[str, Any]]:
    """Scores against the known noise-free truth (``truth`` column), and the true-zone models'."""
    g, seed = p.spec.group, p.spec.seed
    on_truth = scores(d, {"zone": "pred_zone", "unified": "pred_unified"}, obs="truth").set_index("model")
    tboot = _boot(d, "pred_zone", "pred_unified", g, seed, obs="truth")
    o_obs = scores(d, {"true zones": "pred_true_zones"}).iloc[0].to_dict()
    o_truth = scores(d, {"true zones": "pred_true_zones"}, obs="truth").iloc[0].to_dict()
    oboot = _boot(d, "pred_true_zones", "pred_unified", g, seed)
    summary = {
        "truth_r2_zone": float(on_truth.loc["zone", "r2"]),
        "truth_r2_unified": float(on_truth.loc["unified", "r2"]),
        "truth_rmse_zone": float(on_truth.loc["zone", "rmse"]),
        "truth_rmse_unified": float(on_truth.loc["unified", "rmse"]),
        **{f"truth_{k}": v for k, v in _flat("zone_minus_unified", tboot).items()},
        "true_zones": int(d.true_zone.nunique()),
        "r2_true_zones": float(o_obs["r2"]),
        "truth_r2_true_zones": float(o_truth["r2"]),
        **_flat("true_zones_minus_unified", oboot),
    }
    pieces = {"scores": on_truth.reset_index(), "bootstrap": tboot, "true_zones": (o_obs, o_truth, oboot)}
    return summary, pieces


def summarize(d: pd.DataFrame, protocol: Protocol) -> tuple[dict[str, Any], dict[str, Any]]:
    """The nested scores of one target (``d``: :func:`nested_cv`'s rows): zone vs unified per zone
    and overall with a paired site bootstrap, the references and each model's skill over the
    best of them, and where present the truth, site-meteorology and quantile-forest figures.
    Returns the summary entries and the pieces of the report."""
    p, g = protocol, protocol.spec.group
    table = metrics_table(d, {"zone": "pred_zone", "unified": "pred_unified"}, group=g)
    cmp = compare(table, "zone", "unified")
    # Share of each group's rows scored with the unified model (their zone lacked sites in the fold).
    on_unified = d.groupby("zone").zone_fallback.mean()
    cmp["on_unified_share"] = [
        float(d.zone_fallback.mean()) if g == "all" else float(on_unified.get(g, 0.0)) for g in cmp.group
    ]
    overall = cmp.set_index("group").loc["all"]
    boot = _boot(d, "pred_zone", "pred_unified", g, p.spec.seed)
    summary: dict[str, Any] = {
        "r2_zone": float(overall.r2_zone),
        "r2_unified": float(overall.r2_unified),
        "rmse_zone": float(overall.rmse_zone),
        "rmse_unified": float(overall.rmse_unified),
        "zone_wins_in": [str(z) for z in cmp[(cmp.better == "zone") & (cmp.group != "all")].group],
        **_flat("zone_minus_unified", boot),
        "rows_on_unified_in_folds": int(d.zone_fallback.sum()),
    }
    ref_summary, refs = _references(d, p)
    summary.update(ref_summary)
    pieces: dict[str, Any] = {"metrics": table, "comparison": cmp, "bootstrap": boot, "references": refs}
    if "truth" in d and "pred_true_zones" in d:
        truth_summary, pieces["truth"] = _truth_summary(d, p)
        summary.update(truth_summary)
    experiments, meteo_sites = experiment_scores(d, group=g)
    if meteo_sites:
        r2 = experiments[experiments.group == "all"].set_index("experiment").r2
        summary.update({"r2_rs_only": float(r2["remote sensing only"]),
                        "r2_rs_plus_meteo": float(r2["remote sensing + site meteorology"]),
                        "r2_meteo_only": float(r2["site meteorology only"]), "meteo_sites": meteo_sites})  # fmt: skip
        pieces["meteo"] = (experiments, meteo_sites)
        pieces["meteo_covariates"] = site_covariates(d, p.site_meteo)
    summary.update({"qrf_interval": f"{p.quantiles[0]:g}-{p.quantiles[-1]:g}", "qrf_coverage": coverage(d)})
    return summary, pieces


def composed_scores(
    num: pd.DataFrame, den: pd.DataFrame, ratio: pd.DataFrame, *, group: str = "site_group", seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A flux predicted two ways on the records that give it and its denominator: its own model
    (``independent``) and the denominator's prediction times the ratio's (``composed``), for the
    unified and the zone models, from each target's nested (held-out) predictions.

    ``num``, ``den``, ``ratio``: nested predictions (``value``, ``pred_unified``, ``pred_zone``,
    ``group``) indexed by training row; ``ratio`` is indexed by the numerator's rows and carries
    ``den_row``. Every prediction used was made with the row's physical site held out (in each
    target's own folds), so their product is held out too. Returns the paired rows (observed
    numerator and the four predictions) and per model kind the scores of both ways with the
    paired site bootstrap of composed minus independent (R2 difference and its 5-95 % interval,
    share of resamples where composed is better)."""
    r = ratio[ratio.index.isin(num.index) & ratio.den_row.isin(den.index)]
    rows = pd.DataFrame(
        {
            "value": num.value.reindex(r.index).to_numpy(),
            group: num[group].reindex(r.index).to_numpy(),
            "den_value": den.value.reindex(r.den_row).to_numpy(),
            "ratio_value": r.value.to_numpy(),
        },
        index=r.index,
    )
    table = []
    for kind in ("unified", "zone"):
        col = f"pred_{kind}"
        rows[f"independent_{kind}"] = num[col].reindex(r.index).to_numpy()
        rows[f"composed_{kind}"] = den[col].reindex(r.den_row).to_numpy() * r[col].to_numpy()
        ok = rows[[f"independent_{kind}", f"composed_{kind}", "value"]].notna().all(axis=1)
        if ok.sum() < 2 or rows.loc[ok, group].nunique() < 2:
            continue
        s = scores(rows[ok], {"independent": f"independent_{kind}", "composed": f"composed_{kind}"})
        boot = _boot(rows[ok], f"composed_{kind}", f"independent_{kind}", group, seed)
        for _, m in s.iterrows():
            table.append({"models": kind, "way": m.model, **{k: m[k] for k in ("r2", "rmse", "bias", "n")}})
        table[-1].update(_flat("composed_minus_independent", boot))
        table[-1]["physical_sites"] = int(rows.loc[ok, group].nunique())
    return rows, pd.DataFrame(table)
