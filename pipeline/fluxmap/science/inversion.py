"""Training with an atmospheric-inversion constraint: a sparse observation operator in the loss,
after Upton, Bastos, Gans, Kraft, Peters, Nelson, Walther, Jung and Reichstein, "Machine learning
based estimation of regional NEE constrained by atmospheric inversions and ecosystem observations".

The model ``f`` is trained on two kinds of rows:

- **site rows** ``i``: the towers' observations ``y_i`` (g C m-2 d-1), as without the constraint;
- **sparse rows** ``k``: points sampled in each region (:func:`sample_points`) at each model
  period, without a label. Row ``k`` belongs to one group ``g`` (a region and an inversion
  period) with a coefficient ``a_k`` (Pg C per g C m-2 d-1: the land area the point stands for x
  the days its model period shares with the inversion period / 1e15), so that the sparse estimate of
  the group's flux is ``E_g = offset_g + sum_k a_k f_k`` (``offset_g``: the part of the region
  another model predicts, 0 for a unified model).

The loss (:func:`constrained_loss`) is

    L = sum_i (f_i - y_i)^2 + lambda sum_g ((E_g - F_g) / s_g)^2

with ``F_g`` the inversion flux (Pg C in the period, positive to the atmosphere) and ``s_g`` its
spread (the inversion ensemble's SD). Its derivatives in the prediction of each row
(:func:`gradient_hessian`) are

- site row: ``dL/df_i = 2 (f_i - y_i)``, ``d2L/df_i2 = 2``;
- sparse row: ``dL/df_k = 2 lambda a_k r_g / s_g`` with ``r_g = (E_g - F_g) / s_g``.

The sparse rows' Hessian is not diagonal: within a group it is the rank-one block
``H_kj = 2 lambda a_k a_j / s_g^2``. XGBoost takes one value per row. Its plain diagonal
``2 lambda a_k^2 / s_g^2`` is the curvature of moving one point alone; a tree leaf moves all of a
group's points in it together, whose curvature is up to K times larger (K points per group), so
Newton steps with the plain diagonal overshoot by up to K and the training diverges for K of tens.
fluxmap uses the Hessian's **row sums**, ``h_k = 2 lambda a_k (sum_j a_j) / s_g^2``: a diagonal
that majorizes the block (``diag(H 1) - H`` is positive semi-definite for a block with positive
entries), exact when a leaf holds all of a group's points, so every boosting step lowers the
loss's quadratic model (majorization-minimization) instead of overshooting. A test checks the
gradient against finite differences and the row sums against the second difference along a shift
of a whole group.

The sparse estimate is unbiased for the area integral: within a region, points are drawn with
probability proportional to area x land fraction by systematic sampling over the cells in row
order (one uniform offset, K equally spaced draws on the cumulative weight: stratified by latitude
band, seeded), each standing for the region's land area / K. Its error falls as K grows
(``benchmarks/bench_inversion.py`` and a test measure it against the full integral).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

__all__ = [
    "VARIANTS",
    "ConstraintTerm",
    "compare_variants",
    "constrained_loss",
    "fit_constrained",
    "field_region_sums",
    "fit_zone_models",
    "gradient_hessian",
    "group_estimates",
    "integrals_from_sums",
    "operator_rows",
    "period_overlap_days",
    "period_region_sums",
    "predict_by_zone",
    "region_folds",
    "region_integrals",
    "regions_at_edges",
    "sample_points",
    "seasonal_correlation",
    "xgboost_objective",
]


def sample_points(
    codes: np.ndarray, land_area_m2: np.ndarray, regions: list[int], k: int, *, seed: int = 0
) -> pd.DataFrame:
    """``k`` points per region of ``regions`` on a grid (``codes``: region code per cell, lat x lon;
    ``land_area_m2``: each cell's land area), drawn with probability proportional to land area by
    systematic sampling in row order (seeded), each standing for the region's land area / ``k``.
    Returns one row per point: ``region``, ``i``, ``j`` (the cell's row and column) and
    ``area_m2``. A region without land raises ``ValueError`` naming it."""
    if k < 1:
        raise ValueError(f"inversion: points per region must be >= 1, got {k}")
    codes = np.asarray(codes)
    weight = np.where(np.isfinite(land_area_m2), np.asarray(land_area_m2, dtype=float), 0.0)
    rng = np.random.default_rng(seed)
    parts = []
    for r in regions:
        flat = np.flatnonzero((codes == r) & (weight > 0))
        if not flat.size:
            raise ValueError(f"inversion: region {r} has no land cell on the grid: no point can stand for it")
        w = weight.ravel()[flat]
        total = w.sum()
        cum = np.cumsum(w) / total
        u = (rng.random() + np.arange(k)) / k
        pick = flat[np.minimum(np.searchsorted(cum, u, side="right"), flat.size - 1)]
        i, j = np.unravel_index(pick, codes.shape)
        parts.append(pd.DataFrame({"region": r, "i": i, "j": j, "area_m2": total / k}))
    return pd.concat(parts, ignore_index=True)


def regions_at_edges(codes: np.ndarray, regions: list[int], *, wraps: bool) -> list[int]:
    """The regions of ``regions`` with cells on the grid's outer rows or (unless the grid ``wraps``
    around the globe in longitude) outer columns: a region the grid cuts, whose sparse estimate covers
    only its part on the grid while an inversion's flux is the whole region's."""
    edge = np.zeros(codes.shape, bool)
    edge[[0, -1], :] = True
    if not wraps:
        edge[:, [0, -1]] = True
    return [r for r in regions if bool(np.any(edge & (codes == r)))]


def operator_rows(
    points: pd.DataFrame, model_starts: pd.DatetimeIndex, model_ends: pd.DatetimeIndex, groups: pd.DataFrame
) -> pd.DataFrame:
    """The sparse rows: every point of a group's region at every model period overlapping the group's
    inversion period (``groups``: ``region``, ``start``, ``end`` (exclusive), one row per group, in
    the order of the groups' index), with ``point`` (``points``' index), ``period`` (index into the
    model periods), ``group`` (row number in ``groups``) and ``coef``: the point's area x the days
    its model period shares with the inversion period / 1e15 (Pg C per g C m-2 d-1). A group whose
    period no model period overlaps raises ``ValueError`` naming it."""
    starts = np.asarray(model_starts, dtype="datetime64[ns]")
    ends = np.asarray(model_ends, dtype="datetime64[ns]")
    by_region = {r: p for r, p in points.groupby("region")}
    parts = []
    for g, row in enumerate(groups.itertuples(index=False)):
        overlap = period_overlap_days(model_starts, model_ends, row.start, row.end)
        periods = np.flatnonzero(overlap > 0)
        if not periods.size:
            raise ValueError(
                f"inversion: region {row.region}, period {pd.Timestamp(row.start):%Y-%m-%d} to "
                f"{pd.Timestamp(row.end):%Y-%m-%d} lies outside the model periods "
                f"({pd.Timestamp(starts.min()):%Y-%m-%d} to {pd.Timestamp(ends.max()):%Y-%m-%d})"
            )
        if row.region not in by_region:
            raise ValueError(f"inversion: region {row.region} has no sampled point")
        p = by_region[row.region]
        n, m = len(p), periods.size
        parts.append(
            pd.DataFrame(
                {
                    "point": np.repeat(p.index.to_numpy(), m),
                    "period": np.tile(periods, n),
                    "group": g,
                    "coef": np.repeat(p.area_m2.to_numpy(), m) * np.tile(overlap[periods], n) / 1e15,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def period_overlap_days(
    model_starts: pd.DatetimeIndex, model_ends: pd.DatetimeIndex, start: pd.Timestamp, end: pd.Timestamp
) -> np.ndarray:
    """Days every model period ``[start, end)`` shares with ``[start, end)`` of one inversion period."""
    lo, hi = np.datetime64(pd.Timestamp(start), "ns"), np.datetime64(pd.Timestamp(end), "ns")
    s = np.asarray(model_starts, dtype="datetime64[ns]")
    e = np.asarray(model_ends, dtype="datetime64[ns]")
    return np.clip((np.minimum(e, hi) - np.maximum(s, lo)) / np.timedelta64(1, "D"), 0.0, None)


def period_region_sums(flux: np.ndarray, codes: np.ndarray, land_area_m2: np.ndarray, regions: list[int]) -> np.ndarray:  # fmt: skip
    """Per model period and region of ``regions``: ``flux`` (g C m-2 d-1, period x lat x lon; NaN counts
    as 0) summed over the region's land (g C d-1), period x region. A block of periods at a time keeps
    memory to the block."""
    area = np.where(np.isfinite(land_area_m2), land_area_m2, 0.0)
    values = np.nan_to_num(np.asarray(flux, dtype=float))
    weights = np.stack([np.where(codes == r, area, 0.0) for r in regions], axis=-1)  # lat x lon x region
    return np.einsum("tyx,yxr->tr", values, weights)


def field_region_sums(flux: xr.DataArray, codes: np.ndarray, land_area_m2: np.ndarray, regions: list[int], *, block: int = 23) -> np.ndarray:  # fmt: skip
    """:func:`period_region_sums` of a lazy (time, lat, lon) field, ``block`` periods read at a time (memory
    bounded by the block, not the time axis)."""
    n = flux.sizes["time"]
    return np.concatenate([period_region_sums(flux.isel(time=slice(a, a + block)).values, codes, land_area_m2, regions)
                           for a in range(0, n, block)])  # fmt: skip


def integrals_from_sums(
    sums: np.ndarray,
    regions: list[int],
    model_starts: pd.DatetimeIndex,
    model_ends: pd.DatetimeIndex,
    groups: pd.DataFrame,
) -> np.ndarray:
    """Each group's integral (Pg C) from the per-period regional sums of :func:`period_region_sums`:
    the sums times the days each period shares with the group's period."""
    column = {r: n for n, r in enumerate(regions)}
    return np.array(
        [
            float(sums[:, column[g.region]] @ period_overlap_days(model_starts, model_ends, g.start, g.end)) / 1e15
            for g in groups.itertuples(index=False)
        ]
    )


def region_integrals(
    flux: np.ndarray,
    codes: np.ndarray,
    land_area_m2: np.ndarray,
    model_starts: pd.DatetimeIndex,
    model_ends: pd.DatetimeIndex,
    groups: pd.DataFrame,
) -> np.ndarray:
    """The full integral (Pg C) of ``flux`` (g C m-2 d-1, model period x lat x lon; NaN counts as 0)
    over every land cell of each group's region and the days of its period: what the sparse estimate
    estimates."""
    regions = sorted(set(groups.region))
    sums = period_region_sums(flux, codes, land_area_m2, regions)
    return integrals_from_sums(sums, regions, model_starts, model_ends, groups)


def group_estimates(pred: np.ndarray, group: np.ndarray, coef: np.ndarray, n_groups: int) -> np.ndarray:
    """The sparse estimate of every group's flux, ``sum_k a_k f_k`` (Pg C)."""
    return np.bincount(group, weights=coef * np.asarray(pred, dtype=float), minlength=n_groups)


@dataclass(frozen=True)
class ConstraintTerm:
    """The regional term of the loss: the sparse rows' group and coefficient, and per group the
    inversion flux, its spread and the offset (Pg C; what other models predict in the region)."""

    group: np.ndarray
    coef: np.ndarray
    flux: np.ndarray
    spread: np.ndarray
    lam: float
    offset: np.ndarray | None = None

    def __post_init__(self) -> None:
        if np.any(~(np.asarray(self.spread) > 0)):
            raise ValueError("inversion: every regional flux needs a spread > 0 (the inversion ensemble's SD)")
        if self.lam < 0:
            raise ValueError(f"inversion: lambda must be >= 0, got {self.lam}")

    @property
    def n_groups(self) -> int:
        return len(self.flux)

    def residual(self, pred_sparse: np.ndarray) -> np.ndarray:
        """``r_g = (E_g - F_g) / s_g`` of every group."""
        est = group_estimates(pred_sparse, self.group, self.coef, self.n_groups)
        if self.offset is not None:
            est = est + self.offset
        return (est - self.flux) / self.spread


def constrained_loss(pred: np.ndarray, y_site: np.ndarray, term: ConstraintTerm) -> float:
    """The loss of predictions ``pred`` (the site rows first, then the sparse rows)."""
    n = len(y_site)
    site = float(np.sum((pred[:n] - y_site) ** 2))
    return site + term.lam * float(np.sum(term.residual(pred[n:]) ** 2))


def gradient_hessian(pred: np.ndarray, y_site: np.ndarray, term: ConstraintTerm) -> tuple[np.ndarray, np.ndarray]:
    """The loss's gradient and the diagonal XGBoost takes (site rows: exact; sparse rows: the
    Hessian's row sums, the majorizer in the module's notes) at ``pred``."""
    n = len(y_site)
    grad, hess = np.empty(len(pred)), np.empty(len(pred))
    grad[:n], hess[:n] = 2.0 * (pred[:n] - y_site), 2.0
    r = term.residual(pred[n:])
    s = term.spread[term.group]
    grad[n:] = 2.0 * term.lam * term.coef * r[term.group] / s
    group_coef = np.bincount(term.group, weights=term.coef, minlength=term.n_groups)
    hess[n:] = 2.0 * term.lam * term.coef * group_coef[term.group] / s**2
    # XGBoost needs a positive Hessian on every row to split; a sparse row of a group with lambda 0
    # (or a zero coefficient) contributes nothing and gets a vanishing one.
    hess[n:] = np.maximum(hess[n:], 1e-12)
    return grad, hess


def xgboost_objective(y_site: np.ndarray, term: ConstraintTerm) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:  # fmt: skip
    """A custom objective for ``xgboost.XGBRegressor(objective=...)`` fitted on the site rows
    followed by the sparse rows (their labels ignored)."""

    def objective(_labels: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return gradient_hessian(np.asarray(pred, dtype=float), y_site, term)

    return objective


def fit_constrained(
    site_x: np.ndarray,
    site_y: np.ndarray,
    sparse_x: np.ndarray,
    term: ConstraintTerm | None,
    *,
    params: dict[str, object],
    seed: int = 0,
    n_jobs: int = 1,
) -> object:
    """An ``xgboost.XGBRegressor`` trained on the site rows and, with a ``term`` of lambda > 0, on the
    sparse rows with the constrained objective; without one (or lambda 0), on the site rows alone
    with squared error: the unconstrained model, the same loss without its second term."""
    import xgboost as xgb

    p = {k: v for k, v in params.items() if k != "objective"}
    base = float(np.mean(site_y))
    if term is None or term.lam == 0 or not len(sparse_x):
        model = xgb.XGBRegressor(random_state=seed, n_jobs=n_jobs, base_score=base, **p)
        model.fit(site_x, site_y)
        return model
    model = xgb.XGBRegressor(random_state=seed, n_jobs=n_jobs, base_score=base, objective=xgboost_objective(site_y, term), **p)  # fmt: skip
    model.fit(np.vstack([site_x, sparse_x]), np.concatenate([site_y, np.zeros(len(sparse_x))]))
    return model


def region_folds(regions: list[int], n_folds: int, *, seed: int = 0) -> list[list[int]]:
    """``regions`` shuffled (seeded) into ``n_folds`` folds of whole regions (one region per fold when
    ``n_folds`` is 0 or at least the number of regions)."""
    order = list(np.random.default_rng(seed).permutation(regions))
    n = len(order) if n_folds <= 0 or n_folds >= len(order) else n_folds
    return [[int(r) for r in part] for part in np.array_split(np.asarray(order), n) if len(part)]


def seasonal_correlation(table: pd.DataFrame, estimate: str, reference: str) -> pd.Series:
    """Per region: the correlation of the mean seasonal cycle (the mean per calendar month over the
    years) of ``estimate`` with that of ``reference`` (``table``: ``region``, ``start`` and both)."""
    month = pd.DatetimeIndex(table["start"]).month
    cycle = table.assign(month=month).groupby(["region", "month"])[[estimate, reference]].mean()
    return cycle.groupby(level="region").apply(lambda c: float(np.corrcoef(c[estimate], c[reference])[0, 1]) if len(c) > 2 else np.nan)  # fmt: skip


def fit_zone_models(
    site_x: np.ndarray,
    site_y: np.ndarray,
    site_zone: np.ndarray,
    sparse_x: np.ndarray,
    sparse_zone: np.ndarray,
    term: ConstraintTerm,
    *,
    zones: list[int],
    fallback: object,
    params: dict[str, object],
    seed: int = 0,
    n_jobs: int = 1,
    sweeps: int = 2,
) -> dict[int, object]:
    """One model per zone of ``zones`` trained with the constraint by block coordinate descent: each
    zone's model in turn, on its own site rows and its own sparse rows, with the rest of every
    group's estimate (the other zones' current predictions at their points) as the group's offset;
    ``sweeps`` passes over the zones. Sparse rows of a zone not in ``zones`` (too few sites for a model
    of its own) are predicted by ``fallback`` (the unified model, as the maps do) and stay fixed. The
    start is every zone's model without the constraint. With lambda 0 that start is the result."""
    models: dict[int, object] = {}
    for z in zones:
        rows = site_zone == z
        models[z] = fit_constrained(site_x[rows], site_y[rows], sparse_x[:0], None, params=params, seed=seed, n_jobs=n_jobs)  # fmt: skip
    if term.lam == 0 or not len(sparse_x):
        return models
    pred = np.empty(len(sparse_x))
    for z in set(np.unique(sparse_zone).tolist()):
        mine = sparse_zone == z
        pred[mine] = (models.get(z, fallback)).predict(sparse_x[mine])  # type: ignore[attr-defined]
    for _ in range(sweeps):
        for z in zones:
            mine = sparse_zone == z
            if not mine.any():
                continue
            others = group_estimates(np.where(mine, 0.0, pred), term.group, term.coef, term.n_groups)
            zone_term = ConstraintTerm(group=term.group[mine], coef=term.coef[mine], flux=term.flux, spread=term.spread,
                                       lam=term.lam, offset=others)  # fmt: skip
            rows = site_zone == z
            models[z] = fit_constrained(site_x[rows], site_y[rows], sparse_x[mine], zone_term, params=params, seed=seed, n_jobs=n_jobs)  # fmt: skip
            pred[mine] = models[z].predict(sparse_x[mine])  # type: ignore[attr-defined]
    return models


def predict_by_zone(models: dict[int, object], fallback: object, x: np.ndarray, zone: np.ndarray) -> np.ndarray:
    """Each row predicted by its zone's model, or ``fallback`` where its zone has none."""
    out = np.empty(len(x))
    for z in np.unique(zone):
        rows = zone == z
        out[rows] = models.get(int(z), fallback).predict(x[rows])  # type: ignore[attr-defined]
    return out


VARIANTS = {
    "unconstrained": "unified, unconstrained",
    "constrained": "unified, constrained",
    "zones_unconstrained": "zone models, unconstrained",
    "zones_constrained": "zone models, constrained",
}


def compare_variants(regional: pd.DataFrame, site_r2: dict[str, float], has_truth: bool, loso_r2: dict[str, float]) -> pd.DataFrame:  # fmt: skip
    """The variants side by side (one column each): against the truth where there is one (the demo),
    else against the inversion."""
    ref = "truth_pg_c" if has_truth else "flux_pg_c"
    against = "the truth" if has_truth else "the inversion"
    variants = [v for v in VARIANTS if f"{v}_pg_c" in regional]
    year = pd.DatetimeIndex(regional.start).year
    rows: list[dict[str, Any]] = []

    def add(measure: str, values: dict[str, float]) -> None:
        rows.append({"measure": measure, **values})

    rmse = {v: float(np.sqrt(np.mean((regional[f"{v}_pg_c"] - regional[ref]) ** 2))) for v in variants}
    add(f"regional RMSE against {against} (Pg C per period)", rmse)
    if has_truth:
        own = float(np.sqrt(np.mean((regional.flux_pg_c - regional.truth_pg_c) ** 2)))
        add("the inversion's own RMSE against the truth (Pg C per period)", dict.fromkeys(variants, own))
    for y in sorted(set(year)):
        part = regional[year == y]
        add(f"total of the regions {y} (Pg C yr-1; {against}: {part[ref].sum():.3f})",
            {v: float(part[f"{v}_pg_c"].sum()) for v in variants})  # fmt: skip
    add(f"seasonal cycle: median correlation with {against} over the regions",
        {v: float(seasonal_correlation(regional, f"{v}_pg_c", ref).median()) for v in variants})  # fmt: skip
    held = float(np.sqrt(np.mean((regional.heldout_constrained_pg_c - regional[ref]) ** 2)))
    add(f"held-out regions: RMSE against {against} (Pg C per period; unified constrained model only)",
        {v: held if v == "constrained" else np.nan for v in variants})  # fmt: skip
    add("site R2 (folds of whole physical sites)", {v: site_r2.get(v, np.nan) for v in variants})
    if loso_r2:
        add("site R2, leave one physical site out (unified models)", {v: loso_r2.get(v, np.nan) for v in variants})
    return pd.DataFrame(rows).rename(columns={v: VARIANTS[v] for v in variants})
