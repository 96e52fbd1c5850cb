"""What governs a flux: exact tree SHAP values of a fitted model, summarized per group of rows
(ecosystem type, zone, season) and per driver (predictors of one physical quantity together),
the strongest pairwise interactions, and partial dependence.

SHAP values (Lundberg et al. 2020, Nat. Mach. Intell. 2:56, "From local explanations to global
understanding with explainable AI for trees") come from XGBoost's own TreeSHAP
(``Booster.predict(pred_contribs=True)`` and ``pred_interactions=True``). A scikit-learn random
forest is first written as an XGBoost model of the same trees (:func:`forest_booster`), so the
values are exact for both families without another dependency. Per row the contributions plus
the bias add up to the model's prediction (local accuracy); a driver's contribution is the sum of
its predictors' (SHAP values are additive).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from fluxmap.science.train import FittedModel

__all__ = [
    "DRIVER_PREFIXES",
    "driver_of",
    "forest_booster",
    "interaction_table",
    "partial_dependence",
    "season_of",
    "shap_values",
    "summarize",
]

DRIVER_PREFIXES: dict[str, tuple[str, ...]] = {
    "temperature": ("lst_", "t2m", "tair", "tsoil", "tower_ta_f", "tower_ts_"),
    "water": ("lswi", "tp", "swc", "et", "tower_p_f", "tower_swc", "smap", "sm_"),
    "atmospheric demand": ("tower_vpd", "vpd"),
    "radiation": ("tower_sw_in", "tower_lw_in", "tower_netrad", "sw_in", "ssrd"),
    "energy partition": ("tower_le_", "tower_h_", "tower_g_"),
    "greenness": ("ndvi", "evi", "lai", "fpar", "refl_"),
    "productivity": ("gpp", "psn"),
    "wind and pressure": ("tower_ws", "tower_pa"),
    "season": ("doy_",),
    "soil and terrain": ("soc", "elevation", "landcover", "clay", "sand"),
}
"""Drivers and the predictor-name prefixes that measure them (first match wins; a predictor
matching none is a driver of its own name)."""


def driver_of(feature: str, prefixes: dict[str, tuple[str, ...]] | None = None) -> str:
    """The driver a predictor measures (:data:`DRIVER_PREFIXES`), or the predictor's own name."""
    for driver, starts in (prefixes or DRIVER_PREFIXES).items():
        if any(feature.startswith(s) for s in starts):
            return driver
    return feature


def season_of(start: pd.Series, lat: pd.Series) -> pd.Series:
    """Meteorological season of each row's period start, by hemisphere (DJF is winter in the north,
    summer in the south): ``winter``, ``spring``, ``summer``, ``autumn``."""
    month = pd.to_datetime(start).dt.month.to_numpy()
    south = np.asarray(lat, dtype=float) < 0
    names = np.array(["winter", "spring", "summer", "autumn"])
    index = (month % 12) // 3  # DJF 0, MAM 1, JJA 2, SON 3
    return pd.Series(names[np.where(south, (index + 2) % 4, index)], index=start.index)


def forest_booster(forest: Any) -> Any:
    """A fitted scikit-learn regression forest as an XGBoost booster of the same trees, for XGBoost's
    TreeSHAP (and predictions equal to the forest's to float32 rounding). Built in memory from the
    trees' arrays; never saved (the forest's own file stays the model of record).

    The forest's mean becomes a sum of leaves divided by the number of trees, base score 0; node
    covers are the training samples per node, as TreeSHAP needs. scikit-learn sends a row left when
    ``x <= threshold`` (float32 x), XGBoost when ``x < split`` in float32: the split is the float32
    just above the largest float32 not above the threshold. XGBoost finds a right child at left + 1,
    so nodes are numbered breadth first. Missing values go where scikit-learn sends them."""
    import xgboost as xgb

    if getattr(forest, "n_outputs_", 1) != 1:
        raise ValueError("forest_booster converts single-output regression forests only")
    n_trees = len(forest.estimators_)
    n_features = int(forest.n_features_in_)
    trees = [_tree_json(est.tree_, i, n_trees, n_features) for i, est in enumerate(forest.estimators_)]
    model = {
        "learner": {
            "attributes": {}, "feature_names": [], "feature_types": [],
            "gradient_booster": {
                "model": {
                    "cats": {"enc": [], "feature_segments": [], "sorted_idx": []},
                    "gbtree_model_param": {"num_parallel_tree": "1", "num_trees": str(n_trees)},
                    "iteration_indptr": list(range(n_trees + 1)), "tree_info": [0] * n_trees, "trees": trees,
                },
                "name": "gbtree",
            },
            "learner_model_param": {"base_score": "[0E0]", "boost_from_average": "0", "num_class": "0",
                                    "num_feature": str(n_features), "num_target": "1"},
            "objective": {"name": "reg:squarederror", "reg_loss_param": {"scale_pos_weight": "1"}},
        },
        "version": [int(v) for v in xgb.__version__.split(".")[:3]],
    }  # fmt: skip
    booster = xgb.Booster()
    booster.load_model(bytearray(json.dumps(model).encode()))
    booster.set_param({"nthread": 1})
    return booster


def _tree_json(t: Any, i: int, n_trees: int, n_features: int) -> dict[str, Any]:
    order = [0]
    for node in order:  # breadth first, siblings side by side
        if t.children_left[node] >= 0:
            order += [t.children_left[node], t.children_right[node]]
    old = np.asarray(order)
    new_id = np.empty(t.node_count, dtype=np.int64)
    new_id[old] = np.arange(t.node_count)
    leaf = t.children_left[old] < 0
    left = np.where(leaf, -1, new_id[t.children_left[old]])
    right = np.where(leaf, -1, new_id[t.children_right[old]])
    thr = t.threshold[old]
    thr32 = thr.astype(np.float32)
    thr32 = np.where(thr32.astype(np.float64) > thr, np.nextafter(thr32, np.float32(-np.inf)), thr32)
    value = (t.value[old, 0, 0] / n_trees).astype(np.float32)
    cond = np.where(leaf, value, np.nextafter(thr32, np.float32(np.inf)))
    parents = np.full(t.node_count, 2147483647, dtype=np.int64)
    inner = np.flatnonzero(~leaf)
    parents[left[inner]] = inner
    parents[right[inner]] = inner
    missing_left = getattr(t, "missing_go_to_left", np.zeros(t.node_count, dtype=np.uint8))[old]
    return {
        "base_weights": value.tolist(), "categories": [], "categories_nodes": [],
        "categories_segments": [], "categories_sizes": [],
        "default_left": np.where(leaf, 0, missing_left).astype(int).tolist(), "id": i,
        "left_children": left.tolist(), "right_children": right.tolist(),
        "loss_changes": [0.0] * t.node_count, "parents": parents.tolist(),
        "split_conditions": [float(c) for c in cond],
        "split_indices": np.where(leaf, 0, t.feature[old]).tolist(), "split_type": [0] * t.node_count,
        "sum_hessian": t.weighted_n_node_samples[old].astype(float).tolist(),
        "tree_param": {"num_deleted": "0", "num_feature": str(n_features), "num_nodes": str(t.node_count),
                       "size_leaf_vector": "1"},
    }  # fmt: skip


def _booster(model: FittedModel) -> Any:
    if model.kind == "xgboost":
        return model.estimator.get_booster()
    if model.kind == "rf":
        return forest_booster(model.estimator)
    raise ValueError(f"tree SHAP is built for 'xgboost' and 'rf' models, not {model.kind!r}")


def _dmatrix(model: FittedModel, booster: Any, x: pd.DataFrame) -> Any:
    import xgboost as xgb

    missing = [f for f in model.features if f not in x.columns]
    if missing:
        raise KeyError(f"predictor column(s) {missing} missing from the rows to attribute")
    return xgb.DMatrix(x[model.features].to_numpy(dtype="float32"), feature_names=booster.feature_names)


def shap_values(model: FittedModel, x: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Exact tree SHAP values of ``model`` at the rows ``x``: a frame ``(rows, model.features)`` in
    the flux's units and the bias (the expected prediction) per row; each row's values plus its bias
    equal the model's prediction."""
    booster = _booster(model)
    out = booster.predict(_dmatrix(model, booster, x), pred_contribs=True)
    values = pd.DataFrame(out[:, :-1].astype("float64"), columns=model.features, index=x.index)
    return values, out[:, -1].astype("float64")


def interaction_table(model: FittedModel, x: pd.DataFrame, *, top: int = 10) -> pd.DataFrame:
    """The strongest pairwise interactions: mean over the rows of |SHAP interaction value| of each
    pair of predictors (both off-diagonal halves), largest first, ``top`` of them."""
    booster = _booster(model)
    out = booster.predict(_dmatrix(model, booster, x), pred_interactions=True)[:, :-1, :-1]
    strength = 2 * np.abs(out).mean(axis=0)
    f = model.features
    rows = [
        {"feature_a": f[i], "feature_b": f[j], "driver_a": driver_of(f[i]), "driver_b": driver_of(f[j]),
         "mean_abs_interaction": float(strength[i, j])}
        for i in range(len(f)) for j in range(i + 1, len(f))
    ]  # fmt: skip
    table = pd.DataFrame(rows, columns=["feature_a", "feature_b", "driver_a", "driver_b", "mean_abs_interaction"])
    return table.sort_values("mean_abs_interaction", ascending=False).head(top).reset_index(drop=True)


def summarize(
    values: pd.DataFrame,
    groups: dict[str, pd.Series],
    *,
    prefixes: dict[str, tuple[str, ...]] | None = None,
) -> pd.DataFrame:
    """Mean |SHAP| per group of rows, per driver and per predictor, ranked within each group.

    ``groups``: grouping name -> the group label of every row (``all`` is added). Rows:
    ``grouping, group, level (driver|predictor), name, driver, mean_abs_shap, share, rank, rows``;
    ``share`` is the name's part of the group's total mean |SHAP| at that level."""
    drivers = {f: driver_of(f, prefixes) for f in values.columns}
    by_driver = values.T.groupby(pd.Series(drivers)).sum().T  # a driver's SHAP: its predictors' sum
    labels = {"all": pd.Series("all", index=values.index), **groups}
    parts = []
    for grouping, label in labels.items():
        label = pd.Series(np.asarray(label, dtype=object), index=values.index)
        for group, rows in label.groupby(label, sort=True).groups.items():
            for level, frame in (("driver", by_driver), ("predictor", values)):
                mean_abs = frame.loc[rows].abs().mean().sort_values(ascending=False)
                total = float(mean_abs.sum())
                parts.append(
                    pd.DataFrame(
                        {
                            "grouping": grouping,
                            "group": str(group),
                            "level": level,
                            "name": mean_abs.index,
                            "driver": [n if level == "driver" else drivers[n] for n in mean_abs.index],
                            "mean_abs_shap": mean_abs.to_numpy(),
                            "share": mean_abs.to_numpy() / total if total > 0 else np.nan,
                            "rank": np.arange(1, len(mean_abs) + 1),
                            "rows": len(rows),
                        }
                    )
                )
    return pd.concat(parts, ignore_index=True)


def partial_dependence(model: FittedModel, x: pd.DataFrame, feature: str, *, points: int = 20) -> pd.DataFrame:
    """Partial dependence of the prediction on ``feature`` (Friedman 2001): the mean prediction over
    the rows ``x`` with ``feature`` set to each of ``points`` values spanning its 2-98 % range.
    Columns ``feature, value, mean_prediction``."""
    col = pd.to_numeric(x[feature], errors="coerce").dropna()
    if col.empty:
        raise ValueError(f"partial dependence: no value of {feature!r} in the rows")
    grid = np.unique(np.quantile(col, np.linspace(0.02, 0.98, points)))
    base = x[model.features].to_numpy(dtype="float32")
    j = model.features.index(feature)
    means = []
    for v in grid:
        base_v = base.copy()
        base_v[:, j] = v
        means.append(float(np.mean(model.predict(base_v))))
    return pd.DataFrame({"feature": feature, "value": grid, "mean_prediction": means})
