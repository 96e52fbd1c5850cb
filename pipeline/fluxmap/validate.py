"""Leave-one-site-out validation, metrics, and the comparison tables.

A site's observations are never in both the training and the test side of a fold:
for each site, the model is refitted without that site and predicts it. Zone models
are validated within their zone (trained on the zone's other sites), the unified
model on all other sites, so the two are compared on identical rows.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from fluxmap.train import fit

__all__ = ["compare", "loso_predict", "metrics", "metrics_table", "paired_site_bootstrap", "plot_obs_pred"]


def metrics(obs: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """R2 (1 - SSE/SST), RMSE, bias (mean pred - obs) and n over finite pairs."""
    obs, pred = np.asarray(obs, float), np.asarray(pred, float)
    ok = np.isfinite(obs) & np.isfinite(pred)
    o, p = obs[ok], pred[ok]
    if len(o) < 2:
        return {"r2": np.nan, "rmse": np.nan, "bias": np.nan, "n": int(len(o))}
    sse = float(((o - p) ** 2).sum())
    sst = float(((o - o.mean()) ** 2).sum())
    return {
        "r2": 1.0 - sse / sst if sst > 0 else np.nan,
        "rmse": float(np.sqrt(sse / len(o))),
        "bias": float((p - o).mean()),
        "n": int(len(o)),
    }


def _one_fold(
    kind: str, train: pd.DataFrame, test: pd.DataFrame, features: list[str], target: str, seed: int, params: dict | None
) -> np.ndarray:
    model = fit(kind, train, train[target], features=features, seed=seed, params=params)
    return model.predict(test)


def loso_predict(
    df: pd.DataFrame,
    *,
    features: list[str],
    target: str = "value",
    kind: str = "xgboost",
    group: str = "site_id",
    by: str | None = None,
    seed: int = 0,
    params: dict | None = None,
    n_jobs: int = 1,
    progress: Callable[[str], None] | None = None,
) -> pd.Series:
    """Out-of-site predictions for every row (leave-one-site-out).

    With ``by`` (e.g. ``"zone"``), each group of rows gets its own models trained
    only on that group's other sites; a group with a single site cannot be
    validated and gets NaN.
    """
    from joblib import Parallel, delayed

    out = pd.Series(np.nan, index=df.index, name="pred")
    parts = [(None, df)] if by is None else list(df.groupby(by))
    jobs, targets = [], []
    for _, part in parts:
        sites = part[group].unique()
        if len(sites) < 2:
            continue
        for s in sites:
            test = part[part[group] == s]
            jobs.append(delayed(_one_fold)(kind, part[part[group] != s], test, features, target, seed, params))
            targets.append(test.index)
    if progress:
        progress(f"    LOSO {kind}{' by ' + by if by else ''}: {len(jobs)} folds")
    results = Parallel(n_jobs=n_jobs)(jobs)
    for idx, pred in zip(targets, results):
        out.loc[idx] = pred
    return out


def metrics_table(
    df: pd.DataFrame, pred_cols: dict[str, str], *, obs: str = "value", by: str | None = "zone"
) -> pd.DataFrame:
    """Metrics of each prediction column, overall and per ``by`` group, on rows every column predicted."""
    ok = np.isfinite(df[list(pred_cols.values())]).all(axis=1) & np.isfinite(df[obs])
    d = df[ok]
    rows = []
    groups = [("all", d)] + (list(d.groupby(by)) if by else [])
    for g, part in groups:
        for label, col in pred_cols.items():
            rows.append(
                {
                    "group": g,
                    "model": label,
                    "sites": part["site_id"].nunique(),
                    **metrics(part[obs].to_numpy(), part[col].to_numpy()),
                }
            )
    return pd.DataFrame(rows)


def compare(table: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Side-by-side R2/RMSE of models ``a`` and ``b`` per group, with which one wins (lower RMSE;
    ``tie`` when equal, e.g. a zone model fitted on the same rows as the unified model)."""
    wide = table.pivot_table(index="group", columns="model", values=["r2", "rmse", "n", "sites"], aggfunc="first")
    out = pd.DataFrame(
        {
            "sites": wide[("sites", a)],
            "n": wide[("n", a)],
            f"r2_{a}": wide[("r2", a)],
            f"r2_{b}": wide[("r2", b)],
            f"rmse_{a}": wide[("rmse", a)],
            f"rmse_{b}": wide[("rmse", b)],
        }
    )
    ra, rb = out[f"rmse_{a}"], out[f"rmse_{b}"]
    out["better"] = np.select([ra < rb, rb < ra], [a, b], "tie")
    return out.reset_index()


def paired_site_bootstrap(
    df: pd.DataFrame,
    a: str,
    b: str,
    *,
    obs: str = "value",
    group: str = "site_id",
    n_resamples: int = 2000,
    interval: tuple[float, float] = (0.05, 0.95),
    seed: int = 0,
) -> dict[str, float]:
    """How sure is "``a`` beats ``b``"? Resample whole sites with replacement (rows of a site stay
    together, as in leave-one-site-out) and recompute R2 of both columns on the same resample.

    Returns the observed difference R2(a) - R2(b), its ``interval`` quantiles over the resamples,
    and the share of resamples in which ``a`` has the higher R2. Rows where either column is
    missing are left out.
    """
    d = df[np.isfinite(df[a]) & np.isfinite(df[b]) & np.isfinite(df[obs])]
    codes, sites = pd.factorize(d[group])
    if len(sites) < 2:
        raise ValueError(f"a site bootstrap needs >= 2 sites in column {group!r}, got {len(sites)}")
    o, pa, pb = (d[c].to_numpy(float) for c in (obs, a, b))
    # Per-site sufficient statistics; a resample's R2 follows from sums over its sites.
    k = len(sites)

    def sums(v: np.ndarray) -> np.ndarray:
        return np.bincount(codes, weights=v, minlength=k)

    n, so, soo = sums(np.ones_like(o)), sums(o), sums(o * o)
    ea, eb = sums((o - pa) ** 2), sums((o - pb) ** 2)
    draws = np.random.default_rng(seed).integers(0, k, size=(n_resamples, k))
    w = np.stack([np.bincount(r, minlength=k) for r in draws]).astype(float)  # site multiplicities
    nn, s1, s2 = w @ n, w @ so, w @ soo
    sst = s2 - s1 * s1 / nn
    delta = (w @ eb - w @ ea) / np.where(sst > 0, sst, np.nan)  # = R2(a) - R2(b)
    obs_delta = metrics(o, pa)["r2"] - metrics(o, pb)["r2"]
    lo, hi = np.nanquantile(delta, interval)
    return {
        "delta_r2": float(obs_delta),
        "delta_r2_lo": float(lo),
        "delta_r2_hi": float(hi),
        "share_a_better": float(np.nanmean(delta > 0)),
        "sites": int(k),
        "resamples": int(n_resamples),
    }


def plot_obs_pred(
    df: pd.DataFrame,
    pred_cols: dict[str, str],
    path: str | Path,
    *,
    obs: str = "value",
    title: str = "",
    units: str = "g C m-2 d-1",
) -> Path:
    """Observed vs predicted scatter, one panel per model, with the 1:1 line and metrics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(pred_cols), figsize=(4.2 * len(pred_cols), 4.2), squeeze=False)
    lo = float(np.nanmin([df[obs].min()] + [df[c].min() for c in pred_cols.values()]))
    hi = float(np.nanmax([df[obs].max()] + [df[c].max() for c in pred_cols.values()]))
    for ax, (label, col) in zip(axes[0], pred_cols.items()):
        m = metrics(df[obs].to_numpy(), df[col].to_numpy())
        ax.scatter(df[obs], df[col], s=4, alpha=0.4, color="tab:blue")
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel(f"observed ({units})")
        ax.set_ylabel(f"predicted, leave-one-site-out ({units})")
        ax.set_title(f"{label}\nR2 {m['r2']:.2f}  RMSE {m['rmse']:.2f}  bias {m['bias']:+.2f}  n {m['n']}", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
