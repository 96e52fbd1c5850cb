"""The ground truth of the demo world: environmental zones and the noise-free fluxes of each."""

from __future__ import annotations

import numpy as np

from fluxmap.demo.physics import _PeriodState

ZONES: dict[int, str] = {
    1: "cold: mean annual air temperature < 3 C; flux driven by temperature (high Q10) and soil carbon",
    2: "arid: mean precipitation < 1.2 mm/d; flux driven by moisture and greenness",
    3: "temperate: 3-20 C, not arid; temperature and moisture co-limit",
    4: "tropical humid: >= 20 C, not arid; flux follows productivity, moisture optimum",
}
"""The environmental zones of the ground truth (see :func:`truth_fluxes`)."""


def _zone_flag_attrs(dtype: np.dtype | str) -> dict[str, object]:
    """CF ``flag_values``/``flag_meanings`` of a zone variable of ``dtype``, named after :data:`ZONES`.

    Each zone's meaning is its description up to ':' with spaces as underscores
    (``tropical humid`` -> ``tropical_humid``), so readers can name the zones without
    importing this package.
    """
    codes = sorted(ZONES)
    return {
        "flag_values": np.array(codes, dtype=dtype),
        "flag_meanings": " ".join(ZONES[z].split(":")[0].strip().replace(" ", "_") for z in codes),
    }


def truth_zone(t_annual_c: np.ndarray, p_annual_mm_d: np.ndarray) -> np.ndarray:
    """True environmental zone of each cell from its long-term climate.

    Parameters
    ----------
    t_annual_c : numpy.ndarray
        Mean annual 2 m air temperature (C).
    p_annual_mm_d : numpy.ndarray
        Mean precipitation (mm/d), broadcastable with ``t_annual_c``.

    Returns
    -------
    numpy.ndarray
        Zone codes 1-4 (uint8, see :data:`ZONES`): cold below 3 C, else arid below
        1.2 mm/d, else temperate below 20 C, else tropical humid.
    """
    zone = np.where(t_annual_c < 3.0, 1, np.where(p_annual_mm_d < 1.2, 2, np.where(t_annual_c < 20.0, 3, 4)))
    return zone.astype("uint8")


def truth_fluxes(st: _PeriodState, zone: np.ndarray, soc: np.ndarray) -> dict[str, np.ndarray]:
    """Noise-free fluxes (g C m-2 d-1) for one period: the function the models must learn.

    Each zone has its own drivers, so a single model fits worse than one per zone:
    cold zones follow temperature with a high Q10 and soil carbon, arid zones
    moisture and greenness, temperate zones temperature and moisture, tropical zones
    productivity with a moisture optimum.

    Parameters
    ----------
    st : _PeriodState
        The surface state of the period (air temperature, moisture, NDVI, LAI, GPP).
    zone : numpy.ndarray
        Zone code of each cell (see :func:`truth_zone`), broadcastable with ``st``.
    soc : numpy.ndarray
        Soil organic carbon (kg C m-2), used by the cold zone.

    Returns
    -------
    dict of str to numpy.ndarray
        ``sr`` (soil respiration), ``rh`` (heterotrophic), ``ra`` (autotrophic soil
        part, ``sr - rh``), ``reco`` (ecosystem respiration), ``gpp`` (the GPP a flux
        tower sees) and ``nee`` (``reco - gpp``), all in g C m-2 d-1.
    """
    t, m = st.tair, st.moisture
    sr_cold = 1.35 * np.exp(0.11 * (t - 10.0)) * (soc / 20.0) ** 0.3 * (0.6 + 0.4 * st.ndvi)
    sr_arid = 2.4 * np.exp(0.03 * (t - 10.0)) * m**1.5 * (0.3 + 0.7 * np.clip(st.ndvi, 0, 1)) * 2.5
    sr_temp = 3.3 * np.exp(0.07 * (t - 10.0)) * (1.3 * m / (m + 0.3)) * (0.5 + 0.1 * st.lai)
    sr_trop = 5.25 * np.exp(0.02 * (t - 25.0)) * (1.0 - (m - 0.7) ** 2) * (0.5 + 0.06 * st.gpp)
    sr = np.select([zone == 1, zone == 2, zone == 3], [sr_cold, sr_arid, sr_temp], sr_trop)
    sr = np.clip(sr, 0.01, 40.0)
    hr_frac = np.select([zone == 1, zone == 2, zone == 3], [0.65, 0.55, 0.6], 0.5) + 0.1 * (1 - np.clip(st.ndvi, 0, 1))
    rh = sr * np.clip(hr_frac, 0.3, 0.9)
    gpp_tower = st.gpp * np.select([zone == 1, zone == 2, zone == 3], [0.9, 0.8, 1.05], 1.25)
    reco = sr + 0.25 * gpp_tower + 0.05
    return {"sr": sr, "rh": rh, "ra": sr - rh, "reco": reco, "gpp": gpp_tower, "nee": reco - gpp_tower}
