"""The demo world's atmospheric "inversion" (``inversion/regional_nee.csv``): the truth's NEE
integrated over every IPCC AR6 land region with land on the grid, per calendar month, for an
ensemble of :data:`INVERSION_MEMBERS` inversions, each the truth plus independent Gaussian noise of
SD :data:`INVERSION_RELATIVE_SD` x |truth| + :data:`INVERSION_ABSOLUTE_SD_PG_C` (Pg C per month),
drawn from the world's stream ``[seed, 4]``. Written in fluxmap's generic regional table format
(region abbreviation, period_start, flux, units ``Pg C``, member), as a user's inversion table
would be (:func:`fluxmap.io.inversion.read_regional_table`).

The noise is the only error: no transport-model bias, no correlation between months or regions,
no missing lateral fluxes. A real inversion is worse on each count; the demo shows what the
constraint does when its regional fluxes are unbiased."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from fluxmap.io.regions import region_mask
from fluxmap.science.aggregate import cell_land_area, step_days
from fluxmap.science.inversion import field_region_sums, integrals_from_sums

__all__ = [
    "INVERSION_ABSOLUTE_SD_PG_C",
    "INVERSION_MEMBERS",
    "INVERSION_RELATIVE_SD",
    "TruthRegions",
    "truth_regions",
    "write_inversion",
]

INVERSION_MEMBERS = 4
INVERSION_RELATIVE_SD = 0.2
INVERSION_ABSOLUTE_SD_PG_C = 0.002


@dataclass(frozen=True)
class TruthRegions:
    """A demo world's truth with the AR6 land regions on its grid: the regions with land, each cell's
    land area, the 8-day periods and one group per region and calendar month."""

    truth: xr.Dataset
    codes: np.ndarray
    names: dict[int, str]
    area: np.ndarray
    regions: list[int]
    starts: pd.DatetimeIndex
    ends: pd.DatetimeIndex
    groups: pd.DataFrame


def truth_regions(root: Path) -> TruthRegions:
    """The AR6 land regions of the world under ``root`` and its truth store (lazy)."""
    truth = xr.open_zarr(Path(root) / "truth" / "truth.zarr", consolidated=None)
    land = truth["land_fraction"].load()
    codes_da, names = region_mask("ar6", "", truth["lat"], truth["lon"])
    codes = np.asarray(codes_da.values)
    area = cell_land_area(land, land).values
    regions = [c for c in names if (area[codes == c] > 0).any()]
    starts = pd.DatetimeIndex(truth["time"].values)
    ends = starts + pd.to_timedelta(step_days(truth["time"]).values, unit="D")
    months = pd.date_range(starts.min(), ends.max() - pd.Timedelta(days=1), freq="MS")
    groups = pd.DataFrame([(r, m, m + pd.offsets.MonthBegin()) for r in regions for m in months],
                          columns=["region", "start", "end"])  # fmt: skip
    return TruthRegions(truth, codes, names, area, regions, starts, ends, groups)


def write_inversion(root: Path, rng: np.random.Generator) -> Path:
    """Write ``root/inversion/regional_nee.csv`` from ``root/truth/truth.zarr``; its path."""
    t = truth_regions(root)
    sums = field_region_sums(t.truth["nee"], t.codes, t.area, t.regions)
    flux = integrals_from_sums(sums, t.regions, t.starts, t.ends, t.groups)
    sd = INVERSION_RELATIVE_SD * np.abs(flux) + INVERSION_ABSOLUTE_SD_PG_C
    rows = []
    for m in range(INVERSION_MEMBERS):
        noisy = flux + rng.normal(0.0, 1.0, flux.size) * sd
        rows.append(pd.DataFrame({"region": [t.names[r].split(" ")[0] for r in t.groups.region],
                                  "period_start": t.groups.start.dt.strftime("%Y-%m-%d"), "flux": noisy,
                                  "units": "Pg C", "member": m}))  # fmt: skip
    out = Path(root) / "inversion" / "regional_nee.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.concat(rows, ignore_index=True).to_csv(out, index=False, float_format="%.6g")
    return out
