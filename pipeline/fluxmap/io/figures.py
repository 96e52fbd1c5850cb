"""Figures (PNG): maps drawn from small display views, latitudinal profiles, observed vs
predicted, the zone map. Nothing here reads a whole grid: maps refuse fields larger than a
figure can show (pass :func:`fluxmap.science.aggregate.display_field` of them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from fluxmap.io.provenance import atomic_path
from fluxmap.science.validate import metrics

__all__ = [
    "map_figure",
    "plot_frontier",
    "plot_obs_pred",
    "plot_product_totals",
    "plot_taylor",
    "plot_zone_map",
    "profile_figure",
]

_MAX_DRAWN = 4_000_000  # cells: display_field's largest view is 1,500 x 1,500 = 2.25 M
_DENSE = 1_000  # records above which observed vs predicted is drawn as density (hexbin)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _projection(lon: np.ndarray, lat: np.ndarray) -> tuple[Any, bool]:
    """Robinson for a (nearly) global map, else plate carrée over the field; and whether global."""
    import cartopy.crs as ccrs

    span = float(np.nanmax(lon) - np.nanmin(lon)) if lon.size > 1 else 0.0
    wide = span >= 300.0
    return (ccrs.Robinson() if wide else ccrs.PlateCarree()), wide


def _geo_axes(plt: Any, da: xr.DataArray, size: tuple[float, float] = (9.5, 4.8)) -> tuple[Any, Any, Any]:
    """A figure and map axes fitted to ``da``'s extent, and the data's CRS (plate carrée)."""
    import cartopy.crs as ccrs

    lon, lat = np.asarray(da.lon.values, float), np.asarray(da.lat.values, float)
    proj, wide = _projection(lon, lat)
    fig = plt.figure(figsize=size)
    ax = fig.add_subplot(1, 1, 1, projection=proj)
    dlon = float(np.abs(np.diff(lon)).min()) / 2 if lon.size > 1 else 0.5
    dlat = float(np.abs(np.diff(lat)).min()) / 2 if lat.size > 1 else 0.5
    if wide:
        ax.set_global()
    else:
        ax.set_extent([lon.min() - dlon, lon.max() + dlon, lat.min() - dlat, lat.max() + dlat], ccrs.PlateCarree())
    grid = ax.gridlines(draw_labels=not wide, linewidth=0.3, color="0.6", alpha=0.6)
    if not wide:
        grid.top_labels = grid.right_labels = False
    return fig, ax, ccrs.PlateCarree()


def _coastline(ax: Any, land: xr.DataArray | None, data_crs: Any) -> None:
    """The coastline of the map's own land (its land fraction at 0.5): it matches the data's land
    exactly and needs no download (the demo's and real runs' land come from MCD12C1)."""
    if land is None:
        return
    land = land.compute()
    if np.isfinite(land.values).any() and np.nanmax(land.values) > 0.5 > np.nanmin(land.values):
        ax.contour(land.lon, land.lat, land.fillna(0.0), levels=[0.5], colors="0.15", linewidths=0.5,
                   transform=data_crs)  # fmt: skip


def map_figure(
    da: xr.DataArray,
    path: Path,
    *,
    title: str,
    units: str,
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    symmetric: bool = False,
    land: xr.DataArray | None = None,
    categories: dict[int, str] | None = None,
) -> Path:
    """A map (cartopy: Robinson when global, else plate carrée) of a 2-D field small enough to draw
    (see :func:`fluxmap.science.aggregate.display_field`), with the coastline of ``land`` (a land
    fraction on the same view). ``symmetric``: a diverging scale centred on 0 (NEE, differences).
    ``categories``: a categorical field (value -> name) drawn with one colour per class and a legend."""
    if da.size > _MAX_DRAWN:
        raise ValueError(
            f"{path.name}: {da.name or 'field'} has {da.size:,} cells {dict(da.sizes)}, more than a figure "
            f"draws ({_MAX_DRAWN:,}); pass fluxmap.science.aggregate.display_field(...) of it"
        )
    da = da.compute()  # the small view: computed once
    plt = _plt()
    from matplotlib import colors
    from matplotlib.patches import Patch

    fig, ax, data_crs = _geo_axes(plt, da)
    finite = da.values[np.isfinite(da.values)]
    if categories:
        keys = sorted(categories)
        palette = plt.get_cmap("tab20" if len(keys) > 10 else "tab10")
        listed = colors.ListedColormap([palette(i % palette.N) for i in range(len(keys))])
        norm = colors.BoundaryNorm([k - 0.5 for k in keys] + [keys[-1] + 0.5], listed.N)
        ax.pcolormesh(da.lon, da.lat, da, cmap=listed, norm=norm, shading="auto", transform=data_crs)
        present = set(np.unique(finite).astype(int))
        handles = [Patch(color=listed(i), label=categories[k]) for i, k in enumerate(keys) if k in present]
        ax.legend(handles=handles, loc="lower left", fontsize=7, framealpha=0.8, title=units, title_fontsize=7)
    else:
        lo = vmin if vmin is not None else (np.percentile(finite, 2) if finite.size else 0)
        hi = vmax if vmax is not None else (np.percentile(finite, 98) if finite.size else 1)
        if symmetric:
            hi = float(np.percentile(np.abs(finite), 98)) if finite.size else 1.0
            hi = hi if hi > 0 else 1.0
            lo = -hi
        im = ax.pcolormesh(da.lon, da.lat, da, cmap=cmap, vmin=lo, vmax=hi, shading="auto", transform=data_crs)
        fig.colorbar(im, ax=ax, label=units, shrink=0.8, extend="both" if symmetric else "neither")
    _coastline(ax, land, data_crs)
    ax.set_title(title, fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def profile_figure(profiles: dict[str, pd.DataFrame], path: Path) -> Path:
    """Latitudinal profiles of the annual mean flux of each target."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, prof in profiles.items():
        ax.plot(prof.mean_g_c_m2_d, prof.index, label=name)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel("land mean flux (g C m-2 d-1)")
    ax.set_ylabel("latitude")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path


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
    plt = _plt()
    fig, axes = plt.subplots(1, len(pred_cols), figsize=(4.2 * len(pred_cols), 4.2), squeeze=False)
    lo = float(np.nanmin([df[obs].min()] + [df[c].min() for c in pred_cols.values()]))
    hi = float(np.nanmax([df[obs].max()] + [df[c].max() for c in pred_cols.values()]))
    for ax, (label, col) in zip(axes[0], pred_cols.items()):
        m = metrics(df[obs].to_numpy(), df[col].to_numpy())
        if len(df) > _DENSE:  # overlapping points: their density, not a blot
            both = df[[obs, col]].dropna()
            hb = ax.hexbin(both[obs], both[col], gridsize=45, bins="log", mincnt=1, cmap="Blues",
                           extent=(lo, hi, lo, hi))  # fmt: skip
            fig.colorbar(hb, ax=ax, label="records per hexagon", shrink=0.8)
        else:
            ax.scatter(df[obs], df[col], s=6, alpha=0.5, color="tab:blue")
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel(f"observed ({units})")
        ax.set_ylabel(f"predicted, leave-one-site-out ({units})")
        ax.set_title(f"{label}\nR2 {m['r2']:.2f}  RMSE {m['rmse']:.2f}  bias {m['bias']:+.2f}  n {m['n']}", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(plt, fig, path)


def _save(plt: Any, fig: Any, path: str | Path) -> Path:
    """Lay out ``fig``, write it to ``path`` (atomically, 110 dpi) and close it."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path


def plot_frontier(table: pd.DataFrame, path: str | Path, *, title: str = "") -> Path:
    """The skill-cost frontier: every configuration of ``table`` (:func:`fluxmap.science.frontier.
    frontier_table`) as a point, nested R2 against predictions per second per core (log axis), the
    frontier (no other point both better and faster) joined, the chosen configuration ringed."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    colours = {"rf": "tab:green", "xgboost": "tab:blue", "qrf": "tab:olive"}
    for kind, part in table.groupby("kind"):
        ax.scatter(part.rows_per_s_per_core, part.r2, s=30, color=colours.get(str(kind), "tab:gray"), label=str(kind))
    for _, r in table.iterrows():
        ax.annotate(r.label.split(" ", 1)[1], (r.rows_per_s_per_core, r.r2), fontsize=7, xytext=(4, 3),
                    textcoords="offset points")  # fmt: skip
    front = table[table.on_frontier].sort_values("rows_per_s_per_core")
    ax.plot(front.rows_per_s_per_core, front.r2, color="k", lw=0.8, label="frontier")
    c = table[table.chosen]
    ax.scatter(c.rows_per_s_per_core, c.r2, s=160, facecolors="none", edgecolors="tab:red", lw=1.5,
               label="chosen (one-SE rule, cheapest)")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("predictions per second per core")
    ax.set_ylabel("R2, nested outer folds of whole sites")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(plt, fig, path)


def plot_zone_map(zmap: xr.DataArray, k: int, path: Path, *, land: xr.DataArray | None = None) -> None:
    """The zones (1..k; 0 = not land, left blank) of a display-sized zone map, one colour and a
    legend entry per zone."""
    map_figure(
        zmap.where(zmap > 0),
        path,
        title="environmental zones (PCA + k-means on long-term climate, vegetation, elevation, soil carbon)",
        units="zone",
        categories={z: f"zone {z}" for z in range(1, k + 1)},
        land=land if land is not None else (zmap > 0).astype("float32"),
    )


def plot_taylor(scores: pd.DataFrame, path: str | Path, *, title: str = "") -> Path:
    """A Taylor (2001) diagram per target: each product (rows of ``scores``: ``target``, ``product``,
    ``r``, ``sd_ratio``) at radius = its standard deviation over the observations' and angle =
    arccos(its correlation with them); the observations at (1, 0); arcs of equal centred RMSE."""
    plt = _plt()
    targets = list(dict.fromkeys(scores.target))
    fig = plt.figure(figsize=(5.2 * len(targets), 4.8))
    top = max(1.6, float(np.nanmax(scores.sd_ratio.to_numpy(dtype=float), initial=1.0)) * 1.15)
    colours = plt.get_cmap("tab10")
    labels = list(dict.fromkeys(scores["product"]))
    for k, target in enumerate(targets):
        ax = fig.add_subplot(1, len(targets), k + 1, projection="polar")
        ax.set_thetamin(0)
        ax.set_thetamax(90)
        ax.set_rlim(0, top)
        rs = np.array([0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.99])
        ax.set_thetagrids(np.degrees(np.arccos(rs)), [f"{r:g}" for r in rs], fontsize=7)
        half = np.linspace(0, np.pi, 100)
        for c in (0.25, 0.5, 0.75, 1.0):  # centred RMSE (in units of the observations' SD) about (1, 0)
            x, y = 1 + c * np.cos(half), c * np.sin(half)
            ax.plot(np.arctan2(y, x), np.hypot(x, y), color="0.8", lw=0.6)
        ax.plot([0], [1.0], marker="*", ms=12, color="k", ls="", label="observations")
        for _, row in scores[scores.target == target].iterrows():
            if not (np.isfinite(row.r) and np.isfinite(row.sd_ratio)):
                continue
            ax.plot([np.arccos(np.clip(row.r, -1, 1))], [row.sd_ratio], marker="o", ls="",
                    color=colours(labels.index(row["product"]) % 10), label=str(row["product"]))  # fmt: skip
        ax.set_title(f"{target}", fontsize=10)
        ax.text(np.radians(45), top * 1.12, "correlation", fontsize=8, ha="center")
        ax.set_xlabel("standard deviation / observations'", fontsize=8, labelpad=14)
    # One legend for every panel: a product scored for one target only is listed too.
    handles: dict[str, Any] = {}
    for ax in fig.axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    fig.legend(list(handles.values()), list(handles), fontsize=7, loc="upper right")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(plt, fig, path)


def plot_product_totals(totals: pd.DataFrame, path: str | Path, *, title: str = "") -> Path:
    """Per variable (a panel each): every product's global total (Pg C yr-1, mean over its years;
    rows of ``totals``: ``variable``, ``product``, ``total_pg_c_yr``) as a point, fluxmap's map's
    total (``fluxmap_map_pg_c_yr``) as a line and its ensemble band (``fluxmap_low_pg_c_yr`` to
    ``fluxmap_high_pg_c_yr``) shaded behind them."""
    plt = _plt()
    variables = list(dict.fromkeys(totals.variable))
    fig, axes = plt.subplots(1, len(variables), figsize=(3.6 * len(variables), 3.8), squeeze=False)
    for ax, var in zip(axes[0], variables):
        part = totals[totals.variable == var].groupby("product", sort=False).mean(numeric_only=True)
        x = np.arange(len(part))
        ref = float(part.fluxmap_map_pg_c_yr.mean())
        low, high = float(part.fluxmap_low_pg_c_yr.mean()), float(part.fluxmap_high_pg_c_yr.mean())
        if np.isfinite(low) and np.isfinite(high):
            ax.axhspan(low, high, color="0.85", label="fluxmap ensemble band")
        if np.isfinite(ref):
            ax.axhline(ref, color="k", lw=1, label="fluxmap map")
        ax.plot(x, part.total_pg_c_yr, "o", color="C3", label="products")
        ax.set_xticks(x, [str(p) for p in part.index], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(f"{var} global total (Pg C yr-1)")
        ax.set_title(var, fontsize=10)
    axes[0][0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(plt, fig, path)


def plot_drivers(drivers: pd.DataFrame, path: str | Path, *, title: str = "", top: int = 6) -> Path:
    """Driver attribution (:func:`fluxmap.science.attribution.summarize` rows at the driver level):
    one panel per grouping (all rows, ecosystem type, zone model, season, ...), each group a
    horizontal stack of its ``top`` drivers' shares of mean |SHAP|; the rest as ``other``."""
    plt = _plt()
    level = drivers[drivers.level == "driver"]
    groupings = list(dict.fromkeys(level.grouping))
    names = list(level.groupby("name").mean_abs_shap.sum().sort_values(ascending=False).index[:top])
    colours = dict(zip(names, plt.get_cmap("tab10").colors))
    fig, axes = plt.subplots(len(groupings), 1, figsize=(7.5, 0.9 + 0.34 * len(level.group.unique()) + 0.6 * len(groupings)),
                             squeeze=False)  # fmt: skip
    for ax, grouping in zip(axes[:, 0], groupings):
        part = level[level.grouping == grouping]
        groups = sorted(part.group.unique(), key=lambda g: (len(g), g))
        for y, group in enumerate(groups):
            share = part[part.group == group].set_index("name").share
            left = 0.0
            for n in names:
                v = float(share.get(n, 0.0))
                ax.barh(y, v, left=left, color=colours[n], label=n if y == 0 else None)
                left += v
            ax.barh(y, max(0.0, 1.0 - left), left=left, color="0.85", label="other" if y == 0 else None)
        ax.set_yticks(range(len(groups)), [f"{g} (n {int(part[part.group == g].rows.iloc[0])})" for g in groups],
                      fontsize=7)  # fmt: skip
        ax.set_xlim(0, 1)
        ax.set_title(grouping, fontsize=8, loc="left")
    axes[-1, 0].set_xlabel("share of mean |SHAP| (a driver: its predictors' SHAP values summed)")
    axes[0, 0].legend(fontsize=7, ncol=4, loc="lower left", bbox_to_anchor=(0, 1.15))
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(plt, fig, path)


def plot_partial_dependence(pdp: pd.DataFrame, path: str | Path, *, title: str = "",
                            units: str = "g C m-2 d-1") -> Path:  # fmt: skip
    """Partial dependence curves (:func:`fluxmap.science.attribution.partial_dependence`), one
    panel per predictor."""
    plt = _plt()
    features = list(dict.fromkeys(pdp.feature))
    fig, axes = plt.subplots(1, max(1, len(features)), figsize=(3.6 * max(1, len(features)), 3.3), squeeze=False)
    for ax, f in zip(axes[0], features):
        part = pdp[pdp.feature == f]
        ax.plot(part.value, part.mean_prediction, color="tab:blue", marker=".")
        ax.set_xlabel(f)
        ax.set_ylabel(f"mean prediction ({units})")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(plt, fig, path)


def plot_experiments(table: pd.DataFrame, path: str | Path, *, title: str = "") -> Path:
    """Nested R2 of the site-meteorology experiments (:func:`fluxmap.science.experiments.
    experiment_scores`): grouped bars per group (all rows, each IGBP class), one bar per experiment."""
    plt = _plt()
    groups = list(dict.fromkeys(table.group))
    names = list(dict.fromkeys(table.experiment))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(groups) + 2.5), 3.8))
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        part = table[table.experiment == name].set_index("group").reindex(groups)
        ax.bar(np.arange(len(groups)) + (i - (len(names) - 1) / 2) * width, part.r2.clip(lower=-1), width, label=name)
    ax.axhline(0, color="k", lw=0.6)
    labels = [f"{g}\n({int(table[table.group == g].physical_sites.iloc[0])} sites)" for g in groups]
    ax.set_xticks(range(len(groups)), labels, fontsize=7)
    ax.set_ylabel("nested R2 (below -1 drawn at -1)")
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(plt, fig, path)


def plot_anomalies(regional: pd.DataFrame, path: str | Path, *, title: str = "") -> Path:
    """Annual anomalies (:mod:`fluxmap.science.variability`) per variable (panels) and region (bar
    groups, one bar per year), with the ensemble's 5-95 % band as error bars where present."""
    plt = _plt()
    variables = list(dict.fromkeys(regional.variable))
    fig, axes = plt.subplots(1, len(variables), figsize=(4.8 * len(variables), 3.8), squeeze=False)
    for ax, v in zip(axes[0], variables):
        part = regional[regional.variable == v]
        regions = list(dict.fromkeys(part.name))
        years = sorted(part.year.unique())
        width = 0.8 / len(years)
        for i, y in enumerate(years):
            r = part[part.year == y].set_index("name").reindex(regions)
            x = np.arange(len(regions)) + (i - (len(years) - 1) / 2) * width
            err = None
            if "anomaly_p05_pg_c_yr" in r and r.anomaly_p05_pg_c_yr.notna().any():
                err = np.vstack([r.anomaly_pg_c_yr - r.anomaly_p05_pg_c_yr, r.anomaly_p95_pg_c_yr - r.anomaly_pg_c_yr])
                err = np.clip(err, 0, None)
            ax.bar(x, r.anomaly_pg_c_yr, width, yerr=err, capsize=2, label=str(y))
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xticks(range(len(regions)), regions, fontsize=7, rotation=30, ha="right")
        ax.set_ylabel("anomaly (Pg C yr-1)")
        ax.set_title(v, fontsize=9)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(plt, fig, path)


def plot_inversion_tradeoff(tradeoff: pd.DataFrame, path: str | Path, *, title: str = "") -> Path:
    """Site R2 (folds of sites) against the held-out regional RMSE (folds of regions) per lambda of the
    inversion constraint (:mod:`fluxmap.stages.inversion`), the chosen one ringed."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 4.0))
    ax.plot(tradeoff.heldout_region_rmse_pg_c, tradeoff.site_r2, "o-", color="C0")
    for lam, x, y in zip(tradeoff["lambda"], tradeoff.heldout_region_rmse_pg_c, tradeoff.site_r2):
        ax.annotate(f"lambda {lam:g}", (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
    pick = tradeoff[tradeoff.chosen]
    ax.plot(pick.heldout_region_rmse_pg_c, pick.site_r2, "o", ms=14, mfc="none", mec="C3", label="chosen")
    ax.set_xlabel("held-out regions: RMSE against the inversion (Pg C per period)")
    ax.set_ylabel("site R2 (folds of physical sites)")
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    return _save(plt, fig, path)


def plot_regional_cycles(regional: pd.DataFrame, path: str | Path, *, reference: str, top: int = 12) -> Path:
    """Mean seasonal cycle per region (the ``top`` regions by mean |reference|): the reference (truth or
    inversion), the inversion with its spread, and both variants' estimates."""
    plt = _plt()
    month = pd.DatetimeIndex(regional.start).month
    cols = [c for c in dict.fromkeys([reference, "flux_pg_c", "spread_pg_c", "unconstrained_pg_c", "constrained_pg_c"])]
    cycle = regional.assign(month=month).groupby(["name", "month"])[cols].mean().reset_index()
    size = cycle.groupby("name")[reference].apply(lambda v: v.abs().mean()).sort_values(ascending=False)
    names = list(size.index[:top])
    n = len(names)
    ncol = min(4, n)
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.4 * nrow), squeeze=False, sharex=True)
    for ax, name in zip(axes.ravel(), names):
        c = cycle[cycle.name == name]
        ax.fill_between(c.month, c.flux_pg_c - c.spread_pg_c, c.flux_pg_c + c.spread_pg_c, color="0.85", label="inversion ± spread")  # fmt: skip
        if reference != "flux_pg_c":
            ax.plot(c.month, c[reference], "k-", lw=1.5, label="truth")
        ax.plot(c.month, c.unconstrained_pg_c, "-", color="C0", label="unconstrained")
        ax.plot(c.month, c.constrained_pg_c, "-", color="C3", label="constrained")
        ax.axhline(0, color="k", lw=0.4)
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=6)
    fig.supylabel("NEE (Pg C per month)", fontsize=8)
    return _save(plt, fig, path)
