"""Sites of the demo world: where they lie, their truth series, and their files as stage inputs.

Sites are clustered like real networks, biased to northern mid-latitudes and kept on
vegetated land; their observation files (SRDB-, COSORE- and FLUXNET-like, see
:mod:`fluxmap.demo.networks`) derive from the noise-free truth at each site's cell plus
seeded site effects and observation noise, so later stages can measure how well they
recover it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fluxmap.config import DemoConfig, SourceSpec
from fluxmap.demo.networks import DailySeries, _write_cosore, _write_fluxnet, _write_srdb
from fluxmap.demo.physics import _Surface
from fluxmap.science import products
from fluxmap.science.grids import LatLonGrid

DEMO_MICROMET = ("TA_F", "P_F", "SWC_F_MDS_1", "VPD_F")
"""The micrometeorology the demo towers' FULLSET files carry with QC columns, read beside NEE."""


def demo_sources(root: str | Path) -> tuple[SourceSpec, ...]:
    """The demo world's site files as stage inputs.

    The COSORE half-hourly files are left out here because the daily file already
    holds those datasets' daily means (reading both would count them twice).

    Parameters
    ----------
    root : str or pathlib.Path
        Folder of a demo world (see :func:`fluxmap.demo.build_world`).

    Returns
    -------
    tuple of fluxmap.config.SourceSpec
        The SRDB file, the COSORE daily file (with its dataset summary) and the
        FLUXNET DD files (with their site information and the towers' micrometeorology,
        :data:`DEMO_MICROMET`), in that order.
    """
    s = Path(root) / "sites"
    return (
        SourceSpec("srdb", str(s / "srdb" / "srdb-data.csv")),
        SourceSpec(
            "cosore_daily",
            str(s / "cosore" / "cosore_daily_all.csv"),
            (("summary", str(s / "cosore" / "cosore_datasets_summary.csv")),),
        ),
        SourceSpec(
            "fluxnet",
            str(s / "fluxnet" / "FLX_*_FULLSET_DD_*.csv"),
            (("micromet", DEMO_MICROMET), ("site_info", str(s / "fluxnet" / "siteinfo_demo.csv"))),
        ),
    )


# --- placement ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sites:
    """The demo world's sites, one entry per site, networks in order (SRDB, COSORE, FLUXNET)."""

    site_id: np.ndarray
    network: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    row: np.ndarray  # grid cell
    col: np.ndarray
    zone: np.ndarray  # true zone of the cell
    igbp: np.ndarray  # majority land cover of the cell
    effect: np.ndarray  # multiplicative site random effect


def _site_weights(cfg: DemoConfig, grid: LatLonGrid, surf: _Surface, majority: np.ndarray) -> np.ndarray:
    """Flattened sampling weight of every cell: high at northern mid-latitudes, 0 off vegetated land."""
    lat_c = grid.lat[:, None] * np.ones(grid.shape)
    ok = (surf.land > 0.6) & ~np.isin(majority, [15, 16, 17, products.LANDCOVER_FILL])
    weight = 0.15 + 3.0 * np.exp(-(((lat_c - 45.0) / 12.0) ** 2)) + 0.6 * np.exp(-(((lat_c - 5.0) / 15.0) ** 2))
    weight = np.where(ok, weight, 0.0).ravel()
    if weight.sum() == 0:
        raise ValueError(f"the demo domain {cfg.bbox} holds no vegetated land for sites")
    return weight


def _site_cells(
    networks: list[str], centers: np.ndarray, grid: LatLonGrid, usable: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Grid row and column of each site: a usable cell near a random cluster center.

    Two sites of one network never share a cell; after 200 failed tries a site takes
    the cell of the last center drawn.
    """
    ny, nx = grid.shape
    rows, cols = [], []
    taken: set[tuple[int, int, str]] = set()
    for net in networks:
        for _ in range(200):
            c = centers[rng.integers(len(centers))]
            r0, c0 = divmod(int(c), nx)
            spread = max(1, round(2.5 / grid.resolution))
            r = int(np.clip(r0 + rng.integers(-spread, spread + 1), 0, ny - 1))
            k = int((c0 + rng.integers(-spread, spread + 1)) % nx)
            if usable[r, k] and (r, k, net) not in taken:
                break
        else:
            r, k = r0, c0
        taken.add((r, k, net))
        rows.append(r)
        cols.append(k)
    return np.array(rows), np.array(cols)


def _site_ids(networks: list[str]) -> np.ndarray:
    """S001, S002, ... for SRDB, C001, ... for COSORE and F001, ... for FLUXNET sites."""
    prefix = {"srdb": "S", "cosore": "C", "fluxnet": "F"}
    counters: dict[str, int] = {}
    ids = []
    for net in networks:
        counters[net] = counters.get(net, 0) + 1
        ids.append(f"{prefix[net]}{counters[net]:03d}")
    return np.array(ids)


def _place_sites(
    cfg: DemoConfig, grid: LatLonGrid, surf: _Surface, majority: np.ndarray, zone: np.ndarray, rng: np.random.Generator
) -> _Sites:
    """Sites clustered like real networks, biased to northern mid-latitudes, on land."""
    weight = _site_weights(cfg, grid, surf, majority)
    networks = ["srdb"] * cfg.n_srdb_sites + ["cosore"] * cfg.n_cosore_sites + ["fluxnet"] * cfg.n_fluxnet_sites
    n_clusters = max(3, len(networks) // 6)
    centers = (
        rng.choice(weight.size, size=n_clusters, replace=False, p=weight / weight.sum())
        if n_clusters <= np.count_nonzero(weight)
        else rng.choice(weight.size, size=n_clusters, p=weight / weight.sum())
    )
    usable = weight.reshape(grid.shape) > 0  # vegetated land
    rows, cols = _site_cells(networks, centers, grid, usable, rng)
    half = grid.resolution / 2.0
    lat = np.round(grid.lat[rows] + rng.uniform(-0.9 * half, 0.9 * half, len(rows)), 4)
    lon = np.round(grid.lon[cols] + rng.uniform(-0.9 * half, 0.9 * half, len(rows)), 4)
    return _Sites(
        site_id=_site_ids(networks),
        network=np.array(networks),
        lat=lat,
        lon=lon,
        row=rows,
        col=cols,
        zone=zone[rows, cols],
        igbp=majority[rows, cols],
        effect=np.exp(rng.normal(0.0, 0.1, len(rows))),
    )


# --- files ---------------------------------------------------------------------------------------


def _site_table(sites: _Sites, t_ann: np.ndarray, p_ann: np.ndarray) -> pd.DataFrame:
    """``sites.csv``: every site with its grid cell, true zone, site effect and long-term climate."""
    return pd.DataFrame(
        {
            "site_id": sites.site_id,
            "network": sites.network,
            "lat": sites.lat,
            "lon": sites.lon,
            "row": sites.row,
            "col": sites.col,
            "zone": sites.zone,
            "igbp": sites.igbp,
            "site_effect": np.round(sites.effect, 6),
            "mat_c": np.round(t_ann[sites.row, sites.col], 3),
            "map_mm": np.round(p_ann[sites.row, sites.col] * 365.0, 1),
        }
    )


def _write_sites(
    out: Path,
    cfg: DemoConfig,
    sites: _Sites,
    series: dict[str, np.ndarray],
    starts: pd.DatetimeIndex,
    ndays: np.ndarray,
    t_ann: np.ndarray,
    p_ann: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Write ``sites.csv`` and the SRDB-, COSORE- and FLUXNET-like files under ``out``.

    ``series[name]`` is ``(n_sites, n_periods)`` truth at each site's cell. The networks
    draw from ``rng`` in a fixed order: SRDB, then COSORE, then FLUXNET.
    """
    out.mkdir(parents=True, exist_ok=True)
    table = _site_table(sites, t_ann, p_ann)
    table.to_csv(out / "sites.csv", index=False)
    days = pd.date_range(starts[0], starts[-1] + pd.Timedelta(days=int(ndays[-1]) - 1), freq="D")
    # Index of the period each day falls in; daily truth is the period value.
    period_of_day = np.searchsorted(starts.values, days.values, side="right") - 1
    _write_srdb(out / "srdb", table, series, starts, ndays, rng, ids_per_location=cfg.ids_per_location)
    daily = DailySeries(table, series, days, period_of_day)
    _write_cosore(out / "cosore", cfg, daily, rng)
    _write_fluxnet(out / "fluxnet", cfg, daily, rng)
