"""Geo maths for the card features: great-circle distance, implied speed, coordinate sums.

All functions are pure and deterministic. Coordinates are WGS84 degrees; the Earth is a sphere
of radius :data:`EARTH_RADIUS_KM` (the haversine formula, good to ~0.5 %).

The card state keeps coordinates as integers of :data:`COORD_SCALE` units per degree (1e-7
degree, about 1 cm): they serialise exactly and compactly, and the running sums behind the
"usual location" (the mean position of a card's recent transactions) are exact, so adding and
removing transactions in any order, or rebuilding the sum after a restart, gives the same mean.

Examples
--------
>>> round(haversine_km(48.8566, 2.3522, 51.5074, -0.1278), 1)   # Paris - London
343.6
>>> implied_speed_kmh(343.6, 30 * 60_000)                       # in 30 minutes
687.2
"""

from __future__ import annotations

import math

EARTH_RADIUS_KM = 6371.0088
"""Mean Earth radius (IUGG)."""

MIN_SPEED_DELTA_MS = 1_000
"""Time deltas below this (including 0) are raised to it before computing a speed."""

COORD_SCALE = 10_000_000
"""Fixed-point units per degree for exact coordinate sums (1e-7 degree)."""

_RAD = math.pi / 180.0


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km between two points given in degrees.

    Parameters
    ----------
    lat1, lon1, lat2, lon2 : float
        Latitudes and longitudes in degrees.

    Returns
    -------
    float
        Distance in km, >= 0; exactly 0.0 for identical points.

    Examples
    --------
    >>> haversine_km(10.0, 20.0, 10.0, 20.0)
    0.0
    >>> round(haversine_km(0.0, 0.0, 0.0, 1.0), 3)      # one degree along the equator
    111.195
    >>> round(haversine_km(0.0, 179.5, 0.0, -179.5), 3)  # across the antimeridian
    111.195
    """
    p1 = lat1 * _RAD
    p2 = lat2 * _RAD
    s_lat = math.sin((p2 - p1) * 0.5)
    s_lon = math.sin((lon2 - lon1) * _RAD * 0.5)
    a = s_lat * s_lat + math.cos(p1) * math.cos(p2) * s_lon * s_lon
    if a > 1.0:
        a = 1.0
    return 2.0 * EARTH_RADIUS_KM * math.asin(math.sqrt(a))


def implied_speed_kmh(distance_km: float, delta_ms: int) -> float:
    """Speed in km/h needed to cover ``distance_km`` in ``delta_ms`` milliseconds.

    A zero distance gives 0.0 whatever the delta. A delta below :data:`MIN_SPEED_DELTA_MS`
    (1 s), including 0 and negative deltas, is raised to 1 s, so the result is always finite:
    two transactions 500 km apart within the same second imply 1,800,000 km/h.

    Examples
    --------
    >>> implied_speed_kmh(100.0, 3_600_000)
    100.0
    >>> implied_speed_kmh(0.0, 0)
    0.0
    >>> implied_speed_kmh(500.0, 0)
    1800000.0
    """
    if distance_km == 0.0:
        return 0.0
    if delta_ms < MIN_SPEED_DELTA_MS:
        delta_ms = MIN_SPEED_DELTA_MS
    return distance_km * 3_600_000.0 / delta_ms


def to_fixed(degrees: float) -> int:
    """Degrees as an integer number of 1e-7 degree units (rounded half to even).

    Examples
    --------
    >>> to_fixed(48.8566), to_fixed(-0.1278)
    (488566000, -1278000)
    """
    return round(degrees * COORD_SCALE)


def mean_from_fixed(total: int, count: int) -> float:
    """Mean in degrees of ``count`` coordinates whose fixed-point sum is ``total``.

    One correctly rounded division of two integers, so the result does not depend on the order
    in which the coordinates were added.

    Examples
    --------
    >>> mean_from_fixed(to_fixed(10.0) + to_fixed(11.0), 2)
    10.5
    """
    return total / (count * COORD_SCALE)
