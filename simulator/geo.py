"""The grid mapped onto real coordinates, countries of the bounding box, great-circle distances.

The grid's x axis runs west to east over ``[lon_min, lon_max]`` and its y axis south to north
over ``[lat_min, lat_max]`` (linear in degrees). The box is split into the ``countries`` grid
of :class:`~simulator.config.GeoConfig` (equal bands of longitude per column, of latitude per
row). With the default box, 100 grid units are about 1,000 km, so the handbook's radius of 5
units is about 50 km.

>>> cfg = GeoConfig()
>>> lat, lon = to_latlon(np.array([0.0, 100.0]), np.array([0.0, 100.0]), 100.0, cfg)
>>> lat.tolist(), lon.tolist()
([45.0, 54.0], [0.0, 14.0])
>>> country_of(np.array([1.0, 50.0, 99.0]), np.array([1.0, 99.0, 20.0]), 100.0, cfg).tolist()
['FR', 'DE', 'AT']
>>> round(float(haversine_km(45.0, 0.0, 54.0, 0.0)), 1)
1000.8
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.config import GeoConfig

EARTH_RADIUS_KM = 6371.0088


@dataclass(frozen=True)
class Places:
    """Coordinates and country code of a set of grid points."""

    lat: np.ndarray
    lon: np.ndarray
    country: np.ndarray  # '<U2'


def to_latlon(x: np.ndarray, y: np.ndarray, grid_size: float,
              cfg: GeoConfig) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude (degrees, rounded to 1e-5, about a metre) of grid points."""
    lat = cfg.lat_min + y / grid_size * (cfg.lat_max - cfg.lat_min)
    lon = cfg.lon_min + x / grid_size * (cfg.lon_max - cfg.lon_min)
    return np.round(lat, 5), np.round(lon, 5)


def country_of(x: np.ndarray, y: np.ndarray, grid_size: float, cfg: GeoConfig) -> np.ndarray:
    """ISO 3166 alpha-2 code of the country cell holding each grid point."""
    table = np.array(cfg.countries, dtype="<U2")
    rows, cols = table.shape
    row = np.clip((y / grid_size * rows).astype(np.int64), 0, rows - 1)
    col = np.clip((x / grid_size * cols).astype(np.int64), 0, cols - 1)
    return table[row, col]


def places(x: np.ndarray, y: np.ndarray, grid_size: float, cfg: GeoConfig) -> Places:
    """Coordinates and countries of grid points."""
    lat, lon = to_latlon(x, y, grid_size, cfg)
    return Places(lat=lat, lon=lon, country=country_of(x, y, grid_size, cfg))


def haversine_km(lat1: np.ndarray | float, lon1: np.ndarray | float,
                 lat2: np.ndarray | float, lon2: np.ndarray | float) -> np.ndarray:
    """Great-circle distance in km (element-wise)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp = p2 - p1
    dl = np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
