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

__all__ = ["map_figure", "plot_obs_pred", "plot_zone_map", "profile_figure"]

_MAX_DRAWN = 4_000_000  # cells: display_field's largest view is 1,500 x 1,500 = 2.25 M


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
) -> Path:
    """A lat/lon map of a 2-D field small enough to draw (see :func:`fluxmap.science.aggregate.display_field`).
    ``symmetric``: a colour scale centred on 0 (differences)."""
    if da.size > _MAX_DRAWN:
        raise ValueError(
            f"{path.name}: {da.name or 'field'} has {da.size:,} cells {dict(da.sizes)}, more than a figure "
            f"draws ({_MAX_DRAWN:,}); pass fluxmap.science.aggregate.display_field(...) of it"
        )
    da = da.compute()  # the small view: computed once
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 4))
    finite = da.values[np.isfinite(da.values)]
    lo = vmin if vmin is not None else (np.percentile(finite, 2) if finite.size else 0)
    hi = vmax if vmax is not None else (np.percentile(finite, 98) if finite.size else 1)
    if symmetric:
        hi = float(np.percentile(np.abs(finite), 98)) if finite.size else 1.0
        lo = -hi
    im = ax.pcolormesh(da.lon, da.lat, da, cmap=cmap, vmin=lo, vmax=hi, shading="auto")
    fig.colorbar(im, ax=ax, label=units)
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path


def plot_zone_map(zmap: xr.DataArray, k: int, path: Path) -> None:
    """The zones (1..k; 0 = not land, left blank) of a display-sized zone map."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 4))
    cmap = plt.get_cmap("tab10", k)
    im = ax.pcolormesh(zmap.lon, zmap.lat, zmap.where(zmap > 0), cmap=cmap, vmin=0.5, vmax=k + 0.5, shading="auto")
    fig.colorbar(im, ax=ax, ticks=range(1, k + 1), label="zone")
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title(
        "environmental zones (PCA + k-means on long-term climate, vegetation, elevation, soil carbon)", fontsize=9
    )
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
