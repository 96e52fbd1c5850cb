"""Grids: regular lat/lon grids, ERA5's grid, the MODIS sinusoidal grid, cell areas,
and aggregation of class maps to coarser grids.

Pure functions of coordinates and arrays; reprojection uses rioxarray/GDAL.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from fluxmap.science import products

__all__ = [
    "EARTH_RADIUS_M",
    "IGBP",
    "MODIS_SINUSOIDAL_PROJ4",
    "LatLonGrid",
    "cell_area",
    "class_fractions",
    "era5_grid",
    "landcover_at_points",
    "landcover_on_grid",
    "majority_class",
    "reproject_to_latlon",
]

EARTH_RADIUS_M = 6_371_007.181
"""Sphere radius of the MODIS sinusoidal grid (MODIS Land grid documentation)."""

MODIS_SINUSOIDAL_PROJ4 = "+proj=sinu +R=6371007.181 +nadgrids=@null +wktext"
"""CRS of the MODIS tiled land products (sphere of radius 6,371,007.181 m)."""


@dataclass(frozen=True)
class LatLonGrid:
    """A regular lat/lon grid of cell centres, latitude north to south (like MODIS CMG)."""

    resolution: float
    """Cell size in degrees."""
    west: float = -180.0
    """Western edge, degrees east."""
    south: float = -90.0
    """Southern edge, degrees north."""
    east: float = 180.0
    """Eastern edge, degrees east."""
    north: float = 90.0
    """Northern edge, degrees north."""

    def __post_init__(self) -> None:
        for edge, size in (("longitude", self.east - self.west), ("latitude", self.north - self.south)):
            n = size / self.resolution
            if size <= 0 or abs(n - round(n)) > 1e-6:
                raise ValueError(
                    f"grid {edge} extent {size} is not a positive multiple of the resolution {self.resolution}"
                )

    @property
    def shape(self) -> tuple[int, int]:
        """(n_lat, n_lon)."""
        return (
            round((self.north - self.south) / self.resolution),
            round((self.east - self.west) / self.resolution),
        )

    @property
    def lat(self) -> np.ndarray:
        """Cell-centre latitudes, north to south."""
        return self.north - self.resolution * (np.arange(self.shape[0]) + 0.5)

    @property
    def lon(self) -> np.ndarray:
        """Cell-centre longitudes, west to east."""
        return self.west + self.resolution * (np.arange(self.shape[1]) + 0.5)

    def coords(self) -> dict[str, xr.DataArray]:
        """CF-attributed ``lat``/``lon`` coordinates for a Dataset on this grid."""
        axes = (
            ("lat", self.lat, "latitude", "degrees_north", "Y"),
            ("lon", self.lon, "longitude", "degrees_east", "X"),
        )
        return {
            name: xr.DataArray(
                values,
                dims=name,
                attrs={"standard_name": std, "units": units, "axis": axis, "long_name": f"{std} of cell centre"},
            )
            for name, values, std, units, axis in axes
        }

    def index_of(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row and column of the cells holding points (-1 where outside the grid)."""
        row = np.floor((self.north - np.asarray(lat, float)) / self.resolution).astype(int)
        col = np.floor((np.asarray(lon, float) - self.west) / self.resolution).astype(int)
        inside = (row >= 0) & (row < self.shape[0]) & (col >= 0) & (col < self.shape[1])
        return np.where(inside, row, -1), np.where(inside, col, -1)


def era5_grid(resolution: float = 0.25) -> dict[str, np.ndarray]:
    """ERA5's grid points: latitude 90 to -90 inclusive, longitude 0 to 360 - res.

    ERA5 analysis fields on the 0.25 deg regular grid (ECMWF ERA5 documentation;
    ARCO-ERA5 keeps this order): 721 x 1440 points at 0.25 deg.
    """
    n_lat = round(180 / resolution) + 1
    n_lon = round(360 / resolution)
    return {
        "latitude": 90.0 - resolution * np.arange(n_lat),
        "longitude": resolution * np.arange(n_lon),
    }


def cell_area(
    lat: np.ndarray, resolution_lat: float, resolution_lon: float | None = None, *, radius: float = EARTH_RADIUS_M
) -> np.ndarray:
    """True area (m2) on the sphere of cells centred at ``lat`` with the given sizes (deg).

    A = R^2 dlon (sin(lat_north) - sin(lat_south)), angles in radians.
    """
    dlon = np.deg2rad(resolution_lon if resolution_lon is not None else resolution_lat)
    half = resolution_lat / 2.0
    lat = np.asarray(lat, float)
    north = np.deg2rad(np.clip(lat + half, -90, 90))
    south = np.deg2rad(np.clip(lat - half, -90, 90))
    return radius**2 * dlon * (np.sin(north) - np.sin(south))


def class_fractions(
    classes: np.ndarray, factor: int, class_values: np.ndarray, *, missing: int | None = None
) -> np.ndarray:
    """Fraction of each class in ``factor x factor`` blocks of a 2-D class map.

    Returns an array ``(len(class_values), rows // factor, cols // factor)``; cells
    equal to ``missing`` count in no class, so fractions of a partly missing block
    sum to less than one.
    """
    rows, cols = classes.shape
    if rows % factor or cols % factor:
        raise ValueError(f"class map {classes.shape} is not a multiple of the block size {factor}")
    blocks = classes.reshape(rows // factor, factor, cols // factor, factor)
    out = np.empty((len(class_values), rows // factor, cols // factor), dtype="float32")
    for i, c in enumerate(class_values):
        if missing is not None and c == missing:
            raise ValueError("the missing value cannot also be a class")
        out[i] = (blocks == c).mean(axis=(1, 3), dtype="float32")
    return out


def majority_class(fractions: np.ndarray, class_values: np.ndarray, *, fill: int) -> np.ndarray:
    """Class with the largest fraction per cell (first on ties; ``fill`` where all zero)."""
    best = np.asarray(class_values)[np.argmax(fractions, axis=0)]
    return np.where(fractions.sum(axis=0) > 0, best, fill).astype(np.asarray(class_values).dtype)


def reproject_to_latlon(
    da: xr.DataArray,
    *,
    resolution: float,
    src_crs: str | None = None,
    nodata: float | None = None,
    resampling: str = "nearest",
) -> xr.DataArray:
    """Reproject a projected raster (e.g. MODIS sinusoidal) to lat/lon (EPSG:4326).

    Uses rioxarray (GDAL warp). ``src_crs`` sets the source CRS where the file does
    not carry one rioxarray can read (MODIS HDF-EOS attributes, plain proj strings).
    Returns ``lat``/``lon`` coordinates, latitude north to south.
    """
    import rioxarray  # noqa: F401  (registers the .rio accessor)
    from rasterio.enums import Resampling

    src = da
    if src.rio.crs is None:
        if src_crs is None:
            raise ValueError(f"{da.name!r} has no CRS; pass src_crs (e.g. MODIS_SINUSOIDAL_PROJ4)")
        src = src.rio.write_crs(src_crs)
    if nodata is not None:
        src = src.rio.write_nodata(nodata, encoded=False)
    out = src.rio.reproject("EPSG:4326", resolution=resolution, resampling=getattr(Resampling, resampling))
    return out.rename({"x": "lon", "y": "lat"})


# --- land cover on a grid (the 0.05 deg MCD12C1 map's classes) ----------------------------

IGBP = np.arange(1, 18, dtype="uint8")
"""The canonical IGBP classes 1-17 (17: water)."""


def landcover_on_grid(lc005: np.ndarray, grid: LatLonGrid) -> tuple[np.ndarray, np.ndarray]:
    """Class fractions (17, ny, nx) and majority class of the 0.05 deg map on ``grid``."""
    ny, nx = grid.shape
    if grid.resolution < 0.05 - 1e-9:
        # Finer than the map (500 m): each cell takes the class of the 0.05 deg cell it lies in.
        cls = landcover_at_points(lc005, *np.meshgrid(grid.lat, grid.lon, indexing="ij"))
        frac = np.stack([(cls == c) for c in IGBP]).astype("float32")
        return frac, majority_class(frac, IGBP, fill=products.LANDCOVER_FILL)
    factor = round(grid.resolution / 0.05)
    r0 = round((90 - grid.north) / 0.05)
    c0 = round((grid.west + 180) / 0.05)
    sub = lc005[r0 : r0 + ny * factor, c0 : c0 + nx * factor]
    frac = class_fractions(sub, factor, IGBP, missing=products.LANDCOVER_FILL)
    return frac, majority_class(frac, IGBP, fill=products.LANDCOVER_FILL)


def landcover_at_points(lc005: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Nearest 0.05 deg class at points (longitudes in any convention)."""
    lon180 = (np.asarray(lon) + 180.0) % 360.0 - 180.0
    row = np.clip(np.floor((90.0 - np.asarray(lat)) / 0.05).astype(int), 0, lc005.shape[0] - 1)
    col = np.clip(np.floor((lon180 + 180.0) / 0.05).astype(int), 0, lc005.shape[1] - 1)
    return lc005[row, col]
