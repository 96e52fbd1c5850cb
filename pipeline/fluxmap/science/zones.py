"""Environmentally similar zones: standardize site factors, PCA, k-means, applied to any grid.

Following Zhu et al. (2024): long-term site factors (air temperature, precipitation,
NDVI, growing-season LSWI, elevation, soil carbon) are standardized, reduced by PCA
to the components explaining >= 80 % of the variance, and clustered by k-means.
The k-means objective is searched globally with many random restarts (k-means++
seeding; the lowest inertia is kept and reported). k is chosen by the mean
silhouette among the candidates whose every zone holds at least ``min_sites`` sites
and ``min_obs`` observations.

The fitted transform is a handful of arrays (means, scales, components, centroids)
stored as JSON; :func:`assign_zones` applies it to every cell of a lazy cube with
``xr.apply_ufunc`` so zone maps are computed chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

__all__ = [
    "ZoneModel",
    "ZonesNotFound",
    "assign_zones",
    "fit_zones",
    "site_zones",
    "zone_array",
    "zone_map",
    "zone_profiles",
]


class ZonesNotFound(ValueError):
    """No candidate k gives every zone the minimum of sites and observations (or too few sites)."""


@dataclass(frozen=True)
class ZoneModel:
    """A fitted zoning: standardization, PCA projection and k-means centroids."""

    factors: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    components: np.ndarray  # (n_components, n_factors)
    centroids: np.ndarray  # (k, n_components)
    explained_variance_ratio: np.ndarray
    inertia: float

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers and lists (JSON-ready; nothing executable)."""
        return {
            "factors": list(self.factors),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "components": self.components.tolist(),
            "centroids": self.centroids.tolist(),
            "explained_variance_ratio": self.explained_variance_ratio.tolist(),
            "inertia": self.inertia,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ZoneModel:
        """The inverse of :meth:`to_dict`."""
        return cls(
            tuple(d["factors"]),
            np.array(d["mean"]),
            np.array(d["scale"]),
            np.array(d["components"]),
            np.array(d["centroids"]),
            np.array(d["explained_variance_ratio"]),
            float(d["inertia"]),
        )


def zone_array(model: ZoneModel, x: np.ndarray) -> np.ndarray:
    """Zone (1..k) of each row of ``x`` (..., n_factors).

    A missing factor (NaN: no growing season, NDVI masked by snow) is set to its
    training mean, i.e. it does not pull the cell towards any zone; cells with
    every factor missing (ocean) get 0.
    """
    x = np.asarray(x, dtype="float64")
    z = np.nan_to_num((x - model.mean) / model.scale, nan=0.0)
    p = z @ model.components.T
    d = ((p[..., None, :] - model.centroids) ** 2).sum(-1)
    zone = np.argmin(d, axis=-1).astype("uint8") + 1
    return np.where(np.isnan(x).all(axis=-1), np.uint8(0), zone)


def _zone_block(x: np.ndarray, *, model: ZoneModel) -> np.ndarray:
    return zone_array(model, x)


def _candidates(
    scores: np.ndarray,
    k_candidates: Sequence[int],
    n_obs: np.ndarray,
    *,
    min_sites: int,
    min_obs: float,
    restarts: int,
    seed: int,
) -> tuple[pd.DataFrame, dict[int, Any]]:
    """k-means (k-means++, ``restarts`` starts) on the PCA scores for every k: silhouette, objective,
    the smallest zone's sites and observations, whether the minima hold; and the fits."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    rows, fits = [], {}
    for k in k_candidates:
        km = KMeans(n_clusters=k, init="k-means++", n_init=restarts, random_state=seed).fit(scores)
        labels = km.labels_
        sil = float(silhouette_score(scores, labels)) if k > 1 else np.nan
        per_sites = np.bincount(labels, minlength=k)
        per_obs = np.array([n_obs[labels == j].sum() for j in range(k)])
        ok = bool(per_sites.min() >= min_sites and per_obs.min() >= min_obs)
        rows.append(
            {
                "k": k,
                "silhouette": sil,
                "inertia": float(km.inertia_),
                "min_sites": int(per_sites.min()),
                "min_obs": float(per_obs.min()),
                "meets_minima": ok,
            }
        )
        fits[k] = km
    return pd.DataFrame(rows), fits


def fit_zones(
    site_factors: pd.DataFrame,
    *,
    factors: list[str],
    k_candidates: range | list[int] = range(2, 9),
    min_sites: int = 5,
    obs_per_site: pd.Series | None = None,
    min_obs: int = 30,
    variance: float = 0.8,
    restarts: int = 200,
    seed: int = 0,
) -> tuple[ZoneModel, pd.DataFrame]:
    """Fit zones on one row per site (index = site id) and report every candidate k.

    Returns the chosen model and a table with, per k: silhouette, inertia (k-means
    objective on the PCA scores), the smallest zone's site and observation counts,
    and whether it satisfied the minima.
    """
    from sklearn.decomposition import PCA

    missing = [f for f in factors if f not in site_factors.columns]
    if missing:
        raise KeyError(f"zone factor(s) {missing} not in the site table; it has {list(site_factors.columns)}")
    x = site_factors[factors].to_numpy(dtype="float64")
    complete = ~np.isnan(x).any(axis=1)
    if complete.sum() < min(k_candidates) * min_sites:
        raise ZonesNotFound(
            f"only {complete.sum()} sites have every zone factor; too few for k = {min(k_candidates)} with {min_sites} sites per zone"
        )
    x = x[complete]
    sites = site_factors.index[complete]
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    z = (x - mean) / scale
    pca = PCA(random_state=seed).fit(z)
    n_comp = int(np.searchsorted(np.cumsum(pca.explained_variance_ratio_), variance) + 1)
    n_comp = min(n_comp, len(factors))
    scores = z @ pca.components_[:n_comp].T
    n_obs = (
        obs_per_site.reindex(sites).fillna(0).to_numpy() if obs_per_site is not None else np.full(len(sites), np.inf)
    )
    table, fits = _candidates(
        scores, k_candidates, n_obs, min_sites=min_sites, min_obs=min_obs, restarts=restarts, seed=seed
    )
    eligible = table[table.meets_minima]
    if eligible.empty:
        raise ZonesNotFound(
            f"no k in {list(k_candidates)} gives every zone >= {min_sites} sites and >= {min_obs} "
            f"observations:\n{table.to_string(index=False)}"
        )
    best = int(eligible.sort_values(["silhouette", "k"], ascending=[False, True]).iloc[0].k)
    table["chosen"] = table.k == best
    km = fits[best]
    # Order zones by their first principal score so zone numbers are stable across refits.
    order = np.argsort(km.cluster_centers_[:, 0])
    model = ZoneModel(
        factors=tuple(factors),
        mean=mean,
        scale=scale,
        components=pca.components_[:n_comp],
        centroids=km.cluster_centers_[order],
        explained_variance_ratio=pca.explained_variance_ratio_[:n_comp],
        inertia=float(km.inertia_),
    )
    return model, table


def assign_zones(model: ZoneModel, factors: xr.Dataset) -> xr.DataArray:
    """Zone of every cell of a (lazy) Dataset holding the model's factors as variables.

    Computed block by block with ``xr.apply_ufunc(dask="parallelized")``; cells with
    every factor missing get zone 0.
    """
    missing = [f for f in model.factors if f not in factors]
    if missing:
        raise KeyError(f"the cube lacks zone factor(s) {missing}")
    stacked = xr.concat([factors[f].astype("float64") for f in model.factors], dim="factor")
    stacked = stacked.transpose(..., "factor")
    if stacked.chunks is not None:
        stacked = stacked.chunk({"factor": -1})
    out = xr.apply_ufunc(
        _zone_block,
        stacked,
        kwargs={"model": model},
        input_core_dims=[["factor"]],
        dask="parallelized",
        output_dtypes=[np.uint8],
        keep_attrs="drop",  # the factors' attributes (air temperature's) are not the zone's
    )
    return out.rename("zone").assign_attrs(
        long_name="environmental zone (0 = every factor is missing)",
        flag_values=np.arange(0, model.k + 1, dtype="uint8"),
    )


def site_zones(model: ZoneModel, site_factors: pd.DataFrame) -> pd.Series:
    """Zone of every location of a site-factor table (index = location)."""
    return pd.Series(zone_array(model, site_factors[list(model.factors)].to_numpy()), index=site_factors.index)


def zone_profiles(
    site_factors: pd.DataFrame, zone_of: pd.Series, obs_per_site: pd.Series, *, factors: list[str]
) -> pd.DataFrame:
    """Per zone: its sites, observations and the mean of each of ``factors`` over the sites with
    observations (``obs_per_site``, index = location)."""
    used = site_factors.index[site_factors.index.isin(obs_per_site.index)]
    placed = site_factors.assign(zone=zone_of).loc[used]
    prof = placed.groupby("zone")[factors].mean()
    prof.insert(0, "sites", placed.groupby("zone").size())
    prof.insert(1, "observations", obs_per_site.groupby(zone_of.reindex(obs_per_site.index)).sum())
    return prof


def zone_map(model: ZoneModel, factors: xr.Dataset, land: xr.DataArray) -> xr.DataArray:
    """Lazy zone (uint8) of every cell of a grid: :func:`assign_zones` on land (``land`` True),
    0 elsewhere."""
    zone = assign_zones(model, factors).where(land, 0).astype("uint8")
    zone.attrs.update({"long_name": "environmental zone (0: not land)", "units": "1"})
    return zone
