"""The embedded demo world: a seeded, deterministic, physically plausible Earth whose
products are written in the encodings of the real ones, and whose site fluxes come
from a known ground-truth function that differs between environmental zones.

What it writes under ``root`` (see :func:`build_world`):

- ``modis/mod11a2.zarr`` ... ``modis/mod16a2.zarr``: MODIS-like 8-day cubes on a
  regular lat/lon grid, raw integer encodings (scale factors, fill values, QC bits
  as in the C6.1 products, see :mod:`fluxmap.science.products`), cloud gaps flagged in QC.
- ``era5/era5_daily.zarr``: ERA5-like daily 2 m temperature (K) and precipitation
  (m accumulated per day) on ERA5's own grid (0.25 deg, latitude 90 to -90,
  longitude 0 to 360), a different grid from the MODIS-like one.
- ``static/static.zarr``: elevation (m), soil organic carbon (kg C m-2), and the
  real MODIS MCD12C1 2019 land cover aggregated to the grid (majority class and
  class fractions).
- ``truth/truth.zarr``: the noise-free target fluxes (sr, rh, ra, reco, nee, and
  the tower GPP) for every cell and 8-day period, and the true zone of each cell
  (named in CF ``flag_values``/``flag_meanings``).
- ``sites/``: observations in three raw formats: SRDB-like annual records
  (``srdb/srdb-data.csv``, upstream columns), COSORE-like daily and half-hourly
  chamber series in umol CO2 m-2 s-1 (``cosore/``), FLUXNET2015-like DD and HH
  tower files with -9999 gaps (``fluxnet/``); ``sites.csv`` lists every site with
  its grid cell and true zone.
- ``inversion/regional_nee.csv``: an atmospheric "inversion" ensemble of the truth's NEE per IPCC AR6
  land region and month, with stated noise (:mod:`fluxmap.demo.inversion`).
- ``world.json``: the configuration, the zone definitions and a checksum of
  every file written.

Climate, phenology and fluxes are smooth analytic functions of latitude, elevation,
land cover, day of year and a seeded "weather" field of travelling waves, so every
cube can be generated chunk by chunk with bounded memory and without storing the
whole world.

The generator's parts, in the order :func:`build_world` uses them:
:mod:`fluxmap.demo.physics` (surface, climate, phenology), :mod:`fluxmap.demo.truth`
(zones and noise-free fluxes), :mod:`fluxmap.demo.encode` (the products' raw encodings
and the ERA5-like store), :mod:`fluxmap.demo.sites` and :mod:`fluxmap.demo.networks`
(site placement and the site files), :mod:`fluxmap.demo.world` (the stores, the order
of generation and ``world.json``).
"""

from __future__ import annotations

from fluxmap.demo.networks import SRDB_COLUMNS
from fluxmap.demo.sites import demo_sources
from fluxmap.demo.truth import ZONES, truth_fluxes, truth_zone
from fluxmap.demo.world import WORLD_FORMAT, DemoWorld, build_world, world_is_current

__all__ = [
    "SRDB_COLUMNS",
    "WORLD_FORMAT",
    "ZONES",
    "DemoWorld",
    "build_world",
    "demo_sources",
    "truth_fluxes",
    "truth_zone",
    "world_is_current",
]
