"""Figures and the Markdown report of a run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["map_figure", "profile_figure", "write_report"]

_MAX_DRAWN = 4_000_000  # cells: display_field's largest view is 1,500 x 1,500 = 2.25 M


def _plt():
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
    """A lat/lon map of a 2-D field small enough to draw (see :func:`fluxmap.aggregate.display_field`).
    ``symmetric``: a colour scale centred on 0 (differences)."""
    if da.size > _MAX_DRAWN:
        raise ValueError(
            f"{path.name}: {da.name or 'field'} has {da.size:,} cells {dict(da.sizes)}, more than a figure "
            f"draws ({_MAX_DRAWN:,}); pass fluxmap.aggregate.display_field(...) of it"
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
    fig.savefig(path, dpi=110)
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
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(
    path: Path,
    *,
    totals: pd.DataFrame,
    partition: pd.DataFrame | None,
    figures: dict[str, str],
    validation: str,
    truth: pd.DataFrame | None,
    store: str,
    truth_by_zone: pd.DataFrame | None = None,
    formats: str,
) -> Path:
    """The run report: totals, partition, the validation tables, figures, and (demo) the error vs truth."""
    lines = [
        "# fluxmap run report",
        "",
        f"Gridded output: `{store}` ({formats}).",
        "",
        "## Global totals (Pg C yr-1)",
        "",
        totals.round(3).to_markdown(),
        "",
    ]
    if any(str(c).endswith("_unified") for c in totals.columns):
        lines += ["A target's column is the zone models' map; `<target>_unified` is the unified model's.", ""]
    if partition is not None:
        lines += ["## Soil respiration partition (AR = SR - HR)", "", partition.round(3).to_markdown(), ""]
    if truth is not None:
        lines += [
            "## Error of the predicted maps against the demo world's known truth",
            "",
            "Per cell and 8-day period over land; totals from the truth map with the same areas. `r2`, `rmse`, "
            "`bias`: the zone models' map; `*_unified`: the unified model's map on the same cells.",
            "",
            truth.round(3).to_markdown(),
            "",
        ]
    if truth_by_zone is not None and len(truth_by_zone):
        lines += [
            "The same within each of the world's true zones:",
            "",
            truth_by_zone.round(3).to_markdown(index=False),
            "",
        ]
    lines += ["## Figures", ""] + [f"![{k}]({v})" for k, v in figures.items()] + ["", "## Validation", "", validation]
    path.write_text("\n".join(lines) + "\n")
    return path
