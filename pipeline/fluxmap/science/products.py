"""Canonical variables of fluxmap and decoders for the real product encodings.

Every decoder is a pure array function: it takes the raw, still-encoded integer
arrays of one product (as xarray objects, numpy- or dask-backed) and returns
physical values in canonical units with CF attributes. Nothing here reads files
or computes dask graphs.

Sources (cited per decoder):

- MOD11A2 C6.1 user guide: Wan, Z. (2019) "MODIS Land Surface Temperature Products
  Users' Guide, Collection 6.1", tables 13-14 (SDS encodings and QC bits).
- MOD09A1 C6.1 user guide: Vermote, E. (2015/2021) "MODIS Surface Reflectance User's
  Guide, Collection 6.1", table 10 (500 m state QA bits) and table 13 (SDS attributes).
- MOD15A2H C6.1 user guide: Myneni, Knyazikhin, Park (2021) "MODIS LAI/FPAR Product
  User's Guide, Collection 6.1", tables 4-5 (SDS and FparLai_QC bits).
- MOD17A2H C6.1 user guide: Running, Mu, Zhao, Moreno (2021) "MODIS GPP/NPP Project
  (MOD17) User's Guide", table 2 (Gpp_500m: int16, scale 1e-4 kg C m-2, fill 32761-32767).
- MOD16A2 C6.1 user guide: Running, Mu, Zhao, Moreno (2019) "MODIS Global Terrestrial
  Evapotranspiration (MOD16A2/A3) User's Guide", table 2 (ET_500m: scale 0.1 kg m-2).
- MCD12Q1/MCD12C1 C6 user guide: Sulla-Menashe & Friedl (2018) "User Guide to
  Collection 6 MODIS Land Cover (MCD12Q1 and MCD12C1) Product", table 3 (IGBP classes).
- ERA5: Hersbach et al. (2020) QJRMS 146:1999, and the ERA5 documentation on the
  Copernicus Climate Data Store: ``2m_temperature`` in K, ``total_precipitation`` in
  m of water accumulated over the step.
- Indices: NDVI (Tucker 1979), EVI with the MODIS coefficients (Huete et al. 2002,
  RSE 83:195: G=2.5, C1=6, C2=7.5, L=1), LSWI (Xiao et al. 2004, RSE 89:519).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

__all__ = [
    "IGBP_CLASSES",
    "TARGETS",
    "UMOL_CO2_M2_S_TO_G_C_M2_D",
    "VARIABLES",
    "VariableSpec",
    "apply_cf",
    "bits",
    "decode_era5_precipitation",
    "decode_era5_temperature",
    "decode_mcd12",
    "decode_mod09a1",
    "decode_reflectance",
    "decode_mod11a2",
    "decode_mod15a2h",
    "decode_mod16a2",
    "decode_mod17a2h",
    "evi",
    "lswi",
    "ndvi",
    "spec",
]

# Fluxes are grams of carbon; UDUNITS has no "g C", so the CF ``units`` string is the
# parsable "g m-2 d-1" and the carbon is stated by the ``_expressed_as_carbon``
# standard names and the long names.
FLUX_UNITS = "g m-2 d-1"

UMOL_CO2_M2_S_TO_G_C_M2_D = 12.011e-6 * 86400.0
"""1 umol CO2 m-2 s-1 in g C m-2 d-1 with the exact molar mass of carbon, 12.011 g/mol
(= 1.03775; 1.0368 with 12.0 g/mol, as some papers use: a 0.09 % difference)."""


@dataclass(frozen=True)
class VariableSpec:
    """Canonical name, units and CF attributes of one fluxmap variable."""

    name: str
    """Canonical short name, used as the xarray variable name."""
    units: str
    """UDUNITS-parsable units of the canonical, decoded values."""
    long_name: str
    """Human-readable description, including the physical units' meaning."""
    valid_min: float
    """Smallest physically valid decoded value."""
    valid_max: float
    """Largest physically valid decoded value."""
    standard_name: str | None = None
    """CF standard name, only where the CF table has one."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Further CF attributes (flag values, comments)."""

    def attrs(self) -> dict[str, Any]:
        """CF attributes for a DataArray holding this variable."""
        out: dict[str, Any] = {
            "units": self.units,
            "long_name": self.long_name,
            "valid_min": self.valid_min,
            "valid_max": self.valid_max,
        }
        if self.standard_name:
            out["standard_name"] = self.standard_name
        out.update(self.extra)
        return out


IGBP_CLASSES: dict[int, str] = {
    1: "evergreen_needleleaf_forest",
    2: "evergreen_broadleaf_forest",
    3: "deciduous_needleleaf_forest",
    4: "deciduous_broadleaf_forest",
    5: "mixed_forest",
    6: "closed_shrublands",
    7: "open_shrublands",
    8: "woody_savannas",
    9: "savannas",
    10: "grasslands",
    11: "permanent_wetlands",
    12: "croplands",
    13: "urban_and_built_up",
    14: "cropland_natural_vegetation_mosaic",
    15: "snow_and_ice",
    16: "barren",
    17: "water",
}
"""IGBP classes of MCD12Q1 LC_Type1 (Sulla-Menashe & Friedl 2018, table 3)."""

IGBP_ABBREV: dict[int, str] = dict(
    zip(range(1, 18), "ENF EBF DNF DBF MF CSH OSH WSA SAV GRA WET CRO URB CVM SNO BSV WAT".split())
)
"""The abbreviations FLUXNET and SRDB use for the same IGBP classes."""

_REFL_LONG = {
    "b01": "red, 620-670 nm",
    "b02": "near infrared, 841-876 nm",
    "b03": "blue, 459-479 nm",
    "b04": "green, 545-565 nm",
    "b05": "near infrared, 1230-1250 nm",
    "b06": "shortwave infrared, 1628-1652 nm",
    "b07": "shortwave infrared, 2105-2155 nm",
}

_SPECS: list[VariableSpec] = [
    VariableSpec("lst_day", "K", "daytime land surface temperature (MOD11A2)", 150.0, 1310.7, "surface_temperature"),
    VariableSpec(
        "lst_night", "K", "night-time land surface temperature (MOD11A2)", 150.0, 1310.7, "surface_temperature"
    ),
    *[
        VariableSpec(
            f"refl_{b}",
            "1",
            f"surface reflectance, MODIS band {b[1:].lstrip('0')} ({w})",
            -0.01,
            1.6,
            "surface_bidirectional_reflectance",
        )
        for b, w in _REFL_LONG.items()
    ],
    VariableSpec("ndvi", "1", "normalized difference vegetation index (b2, b1)", -1.0, 1.0),
    VariableSpec("evi", "1", "enhanced vegetation index, MODIS coefficients", -1.0, 1.0),
    VariableSpec("lswi", "1", "land surface water index (b2, b6)", -1.0, 1.0),
    VariableSpec("lai", "1", "one-sided green leaf area index (MOD15A2H)", 0.0, 10.0, "leaf_area_index"),
    VariableSpec(
        "fpar",
        "1",
        "fraction of absorbed photosynthetically active radiation (MOD15A2H)",
        0.0,
        1.0,
        "fraction_of_surface_downwelling_photosynthetic_radiative_flux_absorbed_by_vegetation",
    ),
    VariableSpec(
        "gpp",
        FLUX_UNITS,
        "gross primary production, g C m-2 d-1",
        -5.0,
        60.0,
        "gross_primary_productivity_of_biomass_expressed_as_carbon",
    ),
    VariableSpec("et", "mm d-1", "evapotranspiration, mm of water per day (MOD16A2)", -5.0, 30.0),
    VariableSpec(
        "landcover",
        "1",
        "IGBP land cover class (MCD12Q1 LC_Type1 numbering)",
        1,
        17,
        "area_type",
        {"flag_values": np.arange(1, 18, dtype="uint8"), "flag_meanings": " ".join(IGBP_CLASSES.values())},
    ),
    VariableSpec("t2m", "K", "air temperature at 2 m", 170.0, 340.0, "air_temperature"),
    VariableSpec(
        "tp", "mm d-1", "total precipitation rate, mm of water per day", 0.0, 2000.0, "lwe_precipitation_rate"
    ),
    VariableSpec("elevation", "m", "surface elevation above mean sea level", -500.0, 9000.0, "surface_altitude"),
    VariableSpec("land_fraction", "1", "fraction of the cell that is land", 0.0, 1.0, "land_area_fraction"),
    VariableSpec("soc", "kg m-2", "soil organic carbon stock, 0-100 cm, kg C m-2", 0.0, 500.0),
    VariableSpec(
        "sr",
        FLUX_UNITS,
        "soil respiration (total soil CO2 efflux), g C m-2 d-1",
        -1.0,
        80.0,
        "surface_upward_mass_flux_of_carbon_dioxide_expressed_as_carbon_due_to_respiration_in_soil",
    ),
    VariableSpec(
        "rh",
        FLUX_UNITS,
        "heterotrophic soil respiration, g C m-2 d-1",
        -1.0,
        60.0,
        "surface_upward_mass_flux_of_carbon_dioxide_expressed_as_carbon_due_to_heterotrophic_respiration",
        {"comment": "heterotrophic respiration of the soil (chamber measurements), the CF name's term for it"},
    ),
    VariableSpec(
        "ra",
        FLUX_UNITS,
        "autotrophic (root) respiration, g C m-2 d-1",
        -20.0,
        60.0,
        "surface_upward_mass_flux_of_carbon_dioxide_expressed_as_carbon_due_to_plant_respiration_in_roots",
    ),
    VariableSpec(
        "nee",
        FLUX_UNITS,
        "net ecosystem exchange of CO2, positive to the atmosphere, g C m-2 d-1",
        -40.0,
        40.0,
        None,
        {
            "comment": "positive upward (a source to the atmosphere), as FLUXNET reports NEE. CF has no upward "
            "name for it; its surface_net_downward_mass_flux_of_carbon_dioxide_expressed_as_carbon_due_to_"
            "all_land_processes is -nee (and counts fire and land-use fluxes a tower does not see), so no "
            "standard name is given."
        },
    ),
    VariableSpec("reco", FLUX_UNITS, "ecosystem respiration, g C m-2 d-1", -5.0, 80.0),
]

VARIABLES: dict[str, VariableSpec] = {s.name: s for s in _SPECS}
"""Every canonical variable by name."""

TARGETS: tuple[str, ...] = ("sr", "rh", "ra", "nee", "gpp", "reco")
"""Fluxes fluxmap can be trained on, all in g C m-2 d-1."""


def spec(name: str) -> VariableSpec:
    """Look up a canonical variable, with an error listing the known ones."""
    try:
        return VARIABLES[name]
    except KeyError:
        raise KeyError(f"unknown variable {name!r}; fluxmap knows: {', '.join(sorted(VARIABLES))}") from None


def apply_cf(da: xr.DataArray, name: str) -> xr.DataArray:
    """Name ``da`` canonically and give it the canonical CF attributes."""
    return da.rename(name).assign_attrs(spec(name).attrs())


def bits(qc: xr.DataArray, first: int, last: int) -> xr.DataArray:
    """Unsigned integer held in bits ``first``..``last`` (inclusive, 0 = LSB) of ``qc``."""
    width = last - first + 1
    return (qc.astype("uint32") >> first) & ((1 << width) - 1)


def _scaled(raw: xr.DataArray, valid: xr.DataArray, scale: float) -> xr.DataArray:
    return (raw.astype("float32") * np.float32(scale)).where(valid)


# --- MOD11A2 land surface temperature ---------------------------------------------

LST_SCALE = 0.02
LST_FILL = 0
LST_VALID = (7500, 65535)


def decode_mod11a2(
    lst: xr.DataArray,
    qc: xr.DataArray,
    *,
    name: str = "lst_day",
    max_error_class: int = 3,
    accept_other_quality: bool = True,
) -> xr.DataArray:
    """Decode MOD11A2 ``LST_Day_1km``/``LST_Night_1km`` to K with QC masking.

    Encoding (Wan 2019, tables 13-14): uint16, K = DN x 0.02, fill 0, valid DN
    7500-65535. ``QC_Day``/``QC_Night`` bits 0-1 mandatory QA (0 good, 1 other
    quality, 2 not produced due to cloud, 3 not produced other), bits 6-7 average LST
    error class (0 <= 1 K, 1 <= 2 K, 2 <= 3 K, 3 > 3 K).

    Parameters
    ----------
    lst, qc
        Raw uint16 LST and uint8 QC arrays of the same shape.
    name
        Canonical output name, ``lst_day`` or ``lst_night``.
    max_error_class
        Keep pixels whose LST error class (bits 6-7) is at most this (3 keeps all).
    accept_other_quality
        Keep mandatory-QA class 1 ("other quality"); class 0 is always kept.
    """
    mandatory = bits(qc, 0, 1)
    ok_qa = (mandatory == 0) | ((mandatory == 1) if accept_other_quality else False)
    valid = (lst != LST_FILL) & (lst >= LST_VALID[0]) & ok_qa & (bits(qc, 6, 7) <= max_error_class)
    return apply_cf(_scaled(lst, valid, LST_SCALE), name)


# --- MOD09A1 surface reflectance --------------------------------------------------

REFL_SCALE = 1e-4
REFL_FILL = -28672
REFL_VALID = (-100, 16000)


def state_clear(
    state: xr.DataArray,
    *,
    mask_adjacent: bool = True,
    mask_snow: bool = True,
) -> xr.DataArray:
    """True where the MOD09A1 ``sur_refl_state_500m`` flags say the pixel is usable.

    Bits (Vermote, MOD09 C6.1 guide, table 10): 0-1 cloud state (0 clear, 1 cloudy,
    2 mixed, 3 not set, assumed clear), 2 cloud shadow, 13 adjacent to cloud,
    15 internal snow mask.
    """
    cloud = bits(state, 0, 1)
    ok = ((cloud == 0) | (cloud == 3)) & (bits(state, 2, 2) == 0)
    if mask_adjacent:
        ok = ok & (bits(state, 13, 13) == 0)
    if mask_snow:
        ok = ok & (bits(state, 15, 15) == 0)
    return ok


def decode_mod09a1(
    refl: xr.DataArray,
    state: xr.DataArray,
    *,
    band: str,
    mask_adjacent: bool = True,
    mask_snow: bool = True,
) -> xr.DataArray:
    """Decode one MOD09A1 ``sur_refl_bNN`` band to reflectance (1) with state-QA masking.

    Encoding (Vermote, MOD09 C6.1 guide, table 13): int16, reflectance = DN x 1e-4,
    fill -28672, valid DN -100..16000. ``band`` is ``"b01"``..``"b07"``.
    """
    return decode_reflectance(refl, state_clear(state, mask_adjacent=mask_adjacent, mask_snow=mask_snow), band=band)


def decode_reflectance(refl: xr.DataArray, clear: xr.DataArray | bool, *, band: str) -> xr.DataArray:
    """:func:`decode_mod09a1` with the state mask already decoded (:func:`state_clear`): the seven
    bands of a granule share one mask, decoded once."""
    valid = (refl != REFL_FILL) & (refl >= REFL_VALID[0]) & (refl <= REFL_VALID[1]) & clear
    return apply_cf(_scaled(refl, valid, REFL_SCALE), f"refl_{band}")


def ndvi(red: xr.DataArray, nir: xr.DataArray) -> xr.DataArray:
    """NDVI = (NIR - red) / (NIR + red) from decoded reflectance (MODIS b2, b1)."""
    out = (nir - red) / (nir + red)
    return apply_cf(out.where(np.abs(out) <= 1), "ndvi")


def evi(red: xr.DataArray, nir: xr.DataArray, blue: xr.DataArray) -> xr.DataArray:
    """EVI = 2.5 (NIR - red) / (NIR + 6 red - 7.5 blue + 1) (Huete et al. 2002).

    Values outside -1..1 arise from bright or snowy pixels where the formula is
    unstable; they are masked, not clipped.
    """
    out = 2.5 * (nir - red) / (nir + 6.0 * red - 7.5 * blue + 1.0)
    return apply_cf(out.where(np.abs(out) <= 1), "evi")


def lswi(nir: xr.DataArray, swir: xr.DataArray) -> xr.DataArray:
    """LSWI = (NIR - SWIR) / (NIR + SWIR), MODIS b2 and b6 (Xiao et al. 2004)."""
    out = (nir - swir) / (nir + swir)
    return apply_cf(out.where(np.abs(out) <= 1), "lswi")


# --- MOD15A2H LAI / FPAR ----------------------------------------------------------

LAI_SCALE = 0.1
FPAR_SCALE = 0.01
LAIFPAR_VALID_MAX = 100  # 249-255 are fill and non-vegetated classes


def decode_mod15a2h(
    raw: xr.DataArray,
    qc: xr.DataArray,
    *,
    name: str,
    main_algorithm_only: bool = True,
) -> xr.DataArray:
    """Decode MOD15A2H ``Lai_500m`` (``name="lai"``) or ``Fpar_500m`` (``"fpar"``).

    Encoding (Myneni et al. 2021, tables 4-5): uint8; LAI = DN x 0.1, FPAR = DN x 0.01;
    valid DN 0-100 (LAI 0-100 -> 0-10); 249-255 fill and special classes.
    ``FparLai_QC`` bits 5-7 SCF_QC: 0 main method best, 1 main method with
    saturation, 2 backup (geometry), 3 backup (other), 4 not produced.
    """
    if name not in ("lai", "fpar"):
        raise ValueError(f"decode_mod15a2h: name must be 'lai' or 'fpar', got {name!r}")
    scf = bits(qc, 5, 7)
    ok_qc = (scf <= 1) if main_algorithm_only else (scf <= 3)
    valid = (raw <= LAIFPAR_VALID_MAX) & ok_qc
    return apply_cf(_scaled(raw, valid, LAI_SCALE if name == "lai" else FPAR_SCALE), name)


# --- MOD17A2H GPP and MOD16A2 ET: sums over the compositing period ----------------

PERIOD_SUM_FILL_MIN = 32761  # 32761-32766 non-vegetated classes, 32767 fill


def _per_day(raw: xr.DataArray, period_days: xr.DataArray | np.ndarray, scale: float, valid_max: int) -> xr.DataArray:
    valid = (raw < PERIOD_SUM_FILL_MIN) & (raw <= valid_max)
    days = xr.DataArray(period_days, dims=("time",)) if not isinstance(period_days, xr.DataArray) else period_days
    return _scaled(raw, valid, scale) / days.astype("float32")


def decode_mod17a2h(gpp: xr.DataArray, period_days: xr.DataArray | np.ndarray) -> xr.DataArray:
    """Decode MOD17A2H(GF) ``Gpp_500m`` to g C m-2 d-1.

    Encoding (Running et al. 2021, table 2): int16, kg C m-2 summed over the
    compositing period = DN x 1e-4; valid DN 0-30000, 32761-32767 fill and special
    classes. g C m-2 d-1 = DN x 1e-4 x 1000 / days = DN x 0.1 / days, with ``days``
    the length of each period (8, or 5/6 for the last period of a year).
    """
    return apply_cf(_per_day(gpp, period_days, 0.1, 30000), "gpp")


def decode_mod16a2(et: xr.DataArray, period_days: xr.DataArray | np.ndarray) -> xr.DataArray:
    """Decode MOD16A2 ``ET_500m`` to mm d-1.

    Encoding (Running et al. 2019, table 2): int16, kg m-2 (= mm) summed over the
    period = DN x 0.1; valid DN -32767..32700, 32761-32767 fill and special
    classes. mm d-1 = DN x 0.1 / days.
    """
    return apply_cf(_per_day(et, period_days, 0.1, 32700), "et")


# --- Land cover -------------------------------------------------------------------

LANDCOVER_FILL = 255


def decode_mcd12(lc: xr.DataArray, *, product: str = "MCD12Q1") -> xr.DataArray:
    """Decode IGBP land cover to canonical classes 1-17 (uint8, 255 = missing).

    MCD12Q1 ``LC_Type1`` uses 1-17 with 17 water and 255 fill; the MCD12C1 0.05 deg
    ``Majority_Land_Cover_Type_1`` uses 0 for water and 1-16 for the same classes
    (Sulla-Menashe & Friedl 2018, table 3); canonical output numbers water 17.
    """
    if product not in ("MCD12Q1", "MCD12C1"):
        raise ValueError(f"decode_mcd12: unknown product {product!r} (MCD12Q1 or MCD12C1)")
    raw = lc.astype("uint8")
    if product == "MCD12C1":
        out = xr.where(raw == 0, np.uint8(17), raw)
        out = xr.where(raw > 16, np.uint8(LANDCOVER_FILL), out)
    else:
        out = xr.where((raw >= 1) & (raw <= 17), raw, np.uint8(LANDCOVER_FILL))
    out = out.astype("uint8")
    da = apply_cf(out, "landcover")
    da.attrs["missing_value"] = np.uint8(LANDCOVER_FILL)
    return da


# --- fill values of the assets, for readers that must say what "no data" is ------

ASSET_FILL: dict[str, dict[str, int]] = {
    "MOD11A2": {"LST_Day_1km": LST_FILL, "LST_Night_1km": LST_FILL},
    "MOD09A1": {f"sur_refl_b0{b}": REFL_FILL for b in range(1, 8)},
    "MOD15A2H": {"Lai_500m": 255, "Fpar_500m": 255},
    "MOD17A2H": {"Gpp_500m": 32767},
    "MOD16A2": {"ET_500m": 32767},
    "MCD12Q1": {"LC_Type1": LANDCOVER_FILL},
}
"""Per product, the fill value of each data asset (the guides cited above): what a reader writes
where no tile lies, so that it decodes as missing, never as a value (a reflectance of 0, an LAI of
0). Quality-assurance layers have none: where the data are fill, their QA is not read."""


# --- ERA5 -------------------------------------------------------------------------


STANDARD_GRAVITY = 9.80665
"""m s-2: ERA5's geopotential / g is height (ECMWF parameter 129)."""


def decode_era5_temperature(t2m: xr.DataArray) -> xr.DataArray:
    """ERA5 ``2m_temperature`` is already K (Hersbach et al. 2020); name and attribute it."""
    return apply_cf(t2m.astype("float32"), "t2m")


def decode_era5_precipitation(tp: xr.DataArray, *, step_hours: float) -> xr.DataArray:
    """ERA5 ``total_precipitation`` (m of water accumulated over each step) to mm d-1.

    mm d-1 = m x 1000 x 24 / step_hours, so hourly and daily accumulations give
    rates that average correctly over any period. ERA5's packing leaves tiny
    negative accumulations; those are set to 0.
    """
    if step_hours <= 0:
        raise ValueError(f"step_hours must be positive, got {step_hours}")
    rate = tp.astype("float32") * np.float32(1000.0 * 24.0 / step_hours)
    return apply_cf(rate.clip(min=0.0), "tp")
