"""Site observations from SRDB, COSORE, FLUXNET2015 and generic CSV into one tidy schema.

Every reader returns a :class:`SiteTable`: the kept observations (one row each, in
g C m-2 d-1 averaged over ``[start, end)`` in UTC) and a quarantine of every
rejected candidate with its reason. Nothing is dropped silently:
``candidates == kept + quarantined`` for every reader, and every input row is
either the source of a candidate or quarantined itself (counted in ``report``).

Bad input never crashes a reader and never slips through. A cell that is no number or date
(coordinates, years, fluxes, timestamps, QC flags, covariates) quarantines its row with the
reason (``non-numeric latitude``, ``unparseable date``...), the cell in ``detail`` and the
file line in ``row``; so does a malformed line (``malformed line``, its raw text in
``detail``). A value outside its variable's plausible range (:class:`PlausibleRanges`) is
quarantined as ``implausible value``; a source whose values look like other units as a whole
raises a :class:`SiteUnitsWarning` and is listed in the report's ``units_warnings``. A file
that cannot be read as a whole raises :class:`SiteFileError`, naming the file and the line.

Formats as published:

- SRDB v5 (Jian et al. 2021, ESSD 13:255; github bpbond/srdb ``srdb-data.csv``):
  annual ``Rs_annual``/``Rh_annual``/``Ra_annual`` in g C m-2 yr-1. Read with
  ``keep_default_na=False`` so the literal ``None`` of ``Manipulation`` survives.
- COSORE (Bond-Lamberty et al. 2020, GCB 26:7268): fluxes in umol CO2 m-2 s-1;
  per-dataset files with ``CSR_TIMESTAMP_BEGIN``/``CSR_FLUX_CO2`` at any step, and
  the daily aggregate (``dataset,date,var,trt,flux_co2_umol_m2_s,...``).
- FLUXNET2015 (Pastorello et al. 2020, Sci. Data 7:225): files
  ``FLX_<SITE>_FLUXNET2015_<SET>_<RES>_<Y0>-<Y1>_<VER>.csv``, -9999 missing, NEE in
  umol m-2 s-1 at HH/HR, g C m-2 d-1 at DD/WW/MM, g C m-2 yr-1 at YY; ``*_QC`` is
  0-3 at HH/HR and the fraction of good data at DD and coarser; timestamps in local
  standard time. NEE is negative for uptake.
"""

from fluxmap.io.sites.checks import (
    PLAUSIBLE,
    PLAUSIBLE_SUBDAILY,
    TYPICAL_MAGNITUDE,
    PlausibleRanges,
    SiteUnitsWarning,
)
from fluxmap.io.sites.cosore import read_cosore_daily, read_cosore_halfhourly
from fluxmap.io.sites.fluxnet import read_fluxnet, read_fluxnet_monthly_table, read_fluxnet_site_info
from fluxmap.io.sites.generic import read_generic_csv
from fluxmap.io.sites.srdb import SrdbRules, read_srdb
from fluxmap.io.sites.table import OBS_COLUMNS, QUARANTINE_COLUMNS, SiteFileError, SiteTable, concat

__all__ = [
    "OBS_COLUMNS",
    "PLAUSIBLE",
    "PLAUSIBLE_SUBDAILY",
    "QUARANTINE_COLUMNS",
    "TYPICAL_MAGNITUDE",
    "PlausibleRanges",
    "SiteFileError",
    "SiteTable",
    "SiteUnitsWarning",
    "SrdbRules",
    "concat",
    "read_cosore_daily",
    "read_cosore_halfhourly",
    "read_fluxnet",
    "read_fluxnet_monthly_table",
    "read_fluxnet_site_info",
    "read_generic_csv",
    "read_srdb",
]
