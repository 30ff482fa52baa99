"""Per-card state and the card (customer) features.

Card aggregations (``t`` = the transaction's event time; windows ``(t - d - w, t - d]``, with
``d = 0`` they include the current transaction and earlier-arrived ones at the same ``t``):

``count``               transactions in the window.
``sum``                 sum of amounts in the window (exact, from integer cents).
``mean``                mean amount in the window; 0.0 for an empty window (only possible
                        with a delay).
``ratio_to_mean``       amount / mean amount of the window; MISSING if the window sums to 0.
``seconds_since_prev``  seconds since the card's previous transaction (any age); MISSING for
                        the card's first transaction. Equal timestamps give 0.0.
``distance_prev_km``    haversine km from the card's latest earlier transaction that had
                        coordinates; MISSING if this one or every earlier one has none.
``speed_prev_kmh``      that distance / that time (see :func:`features.geo.implied_speed_kmh`:
                        time deltas under 1 s count as 1 s; zero distance is 0 km/h);
                        MISSING when the distance is.
``distance_usual_km``   haversine km from the card's *usual location*: the mean latitude and
                        mean longitude (plain arithmetic means, exact in fixed point) of the
                        card's transactions with coordinates in the window, this transaction
                        excluded (earlier-arrived ones at the same ``t`` included). MISSING if
                        this transaction has no coordinates or none of those has.
``distinct``            distinct non-null values of ``source_field`` in the window, this
                        transaction included.

MISSING is :data:`features.spec.MISSING` (-1.0). A transaction's coordinates are used only
when both ``lat`` and ``lon`` are present (not None / NaN). They are stored, serialised and
used quantised to 1e-7 degree (about 1 cm, :func:`features.geo.to_fixed`), so that sums are
exact and a restored state computes the same distances as the live one.

Examples
--------
>>> state = CardState()
>>> t0 = 1_522_540_800_000                      # 2018-04-01 00:00 UTC
>>> first = state.update({"txn_id": "a", "card_id": "c1", "terminal_id": "T1", "amount": 10.0,
...     "currency": "EUR", "ts": t0, "lat": 48.85, "lon": 2.35, "country": "FR"})
>>> first["card_tx_count_1d"], first["card_seconds_since_prev"], first["card_distance_prev_km"]
(1.0, -1.0, -1.0)
>>> second = state.update({"txn_id": "b", "card_id": "c1", "terminal_id": "T9", "amount": 30.0,
...     "currency": "EUR", "ts": t0 + 600_000, "lat": 51.51, "lon": -0.13, "country": "GB"})
>>> second["card_amount_mean_1d"], second["card_amount_sum_10m"], second["card_countries_1d"]
(20.0, 30.0, 2.0)
>>> round(second["card_speed_prev_kmh"]), second["card_amount_to_mean_30d"]
(2067, 1.5)
>>> CardState.loads(state.dumps()).to_dict() == state.to_dict()
True
"""

from __future__ import annotations

from typing import Any

from features.eventlog import EventLog, to_cents
from features.geo import COORD_SCALE, haversine_km, implied_speed_kmh, mean_from_fixed, to_fixed
from features.spec import MISSING
from features.windows import CountSum, Distinct, GeoSum, Window

_COUNT, _SUM, _MEAN, _RATIO, _SINCE, _DIST, _SPEED, _USUAL, _DISTINCT = range(9)
_CODES = {
    "count": _COUNT,
    "sum": _SUM,
    "mean": _MEAN,
    "ratio_to_mean": _RATIO,
    "seconds_since_prev": _SINCE,
    "distance_prev_km": _DIST,
    "speed_prev_kmh": _SPEED,
    "distance_usual_km": _USUAL,
    "distinct": _DISTINCT,
}

_CATEGORY_FIELDS: dict[str, list[str]] = {}  # spec version -> fields of "distinct" features


def clean_category(value: Any) -> str | None:
    """A categorical value as str, or None for None / NaN.

    Examples
    --------
    >>> clean_category("FR"), clean_category(None), clean_category(float("nan"))
    ('FR', None, None)
    """
    if value is None or value != value:
        return None
    return str(value)


def clean_coords(lat: Any, lon: Any) -> tuple[int | None, int | None]:
    """``(lat, lon)`` in 1e-7 degree units, or ``(None, None)`` unless both are present.

    Examples
    --------
    >>> clean_coords(1, 2.5), clean_coords(1.0, None), clean_coords(float("nan"), 2.0)
    ((10000000, 25000000), (None, None), (None, None))
    """
    if lat is None or lon is None or lat != lat or lon != lon:
        return None, None
    return to_fixed(float(lat)), to_fixed(float(lon))


class CardState(EventLog):
    """History of one card and its features (see the module docstring).

    Parameters
    ----------
    spec : FeatureSpec
        Only the ``card`` features are computed here.
    allowed_lateness_ms : int
        See :mod:`features.lateness`.
    max_events : int
        Hard cap on transactions kept (see :mod:`features.eventlog`).
    """

    ENTITY = "card"

    def _init_extras(self) -> None:
        self.lat: list[int | None] = []  # 1e-7 degree units
        self.lon: list[int | None] = []
        self.cat: dict[str, list[str | None]] = {}
        self._extra = {"lat": self.lat, "lon": self.lon}
        fields = _CATEGORY_FIELDS.get(self.spec.version)
        if fields is None:
            fields = _CATEGORY_FIELDS[self.spec.version] = list(dict.fromkeys(
                str(f.source_field) for f in self.spec.for_entity("card")
                if f.aggregation == "distinct"))
        for name in fields:
            col: list[str | None] = []
            self.cat[name] = col
            self._extra[f"cat:{name}"] = col
        self.before_ts: int | None = None
        self.before_geo: list[Any] | None = None

    def _compile(self) -> None:
        index: dict[tuple[Any, ...], int] = {}
        plan = []
        for f in self.spec.for_entity("card"):
            w, d = f.window_ms, f.delay_ms
            key: tuple[Any, ...] | None = None
            win: Window | None = None
            if f.aggregation in ("count", "sum", "mean", "ratio_to_mean"):
                key, win = ("sum", w, d), CountSum(w, d)
            elif f.aggregation == "distinct":
                key, win = ("distinct", w, d, f.source_field), Distinct(w, d, str(f.source_field))
            elif f.aggregation == "distance_usual_km":
                key, win = ("geo", w, d), GeoSum(w, d)
            slot = -1
            if key is not None and win is not None:
                if key not in index:
                    index[key] = len(self.windows)
                    self.windows.append(win)
                slot = index[key]
            plan.append((_CODES[f.aggregation], slot))
        self._plan = plan

    def row(self, txn: dict[str, Any]) -> tuple[Any, ...]:
        """The internal row ``(ts, txn_id, cents, lat, lon, *categories)`` of a transaction."""
        lat, lon = clean_coords(txn.get("lat"), txn.get("lon"))
        cats = [clean_category(txn.get(c)) for c in self.cat]
        return (int(txn["ts"]), str(txn["txn_id"]), to_cents(float(txn["amount"])), lat, lon,
                *cats)

    def update(self, txn: dict[str, Any]) -> dict[str, float]:
        """Apply a transaction and return its card features.

        Raises :class:`~features.lateness.LateEventError` for a LATE event (check
        :meth:`arrival` first); a DUPLICATE leaves the state unchanged.
        """
        return dict(zip(self.names, self._ingest(self.row(txn)), strict=True))

    def _prev_geo(self, pos: int) -> list[Any] | None:
        lat = self.lat
        i = pos - 1
        while i >= self.head:
            if lat[i] is not None:
                return [self.ts[i], lat[i], self.lon[i]]
            i -= 1
        return self.before_geo

    def _compute(self, pos: int, at: int, windows: list[Window], fast: bool) -> list[float]:
        cents = self.cents[pos]
        lat_q = self.lat[pos]
        lon_q = self.lon[pos]
        out: list[float] = []
        dist = None
        for code, slot in self._plan:
            win: Any = windows[slot] if slot >= 0 else None
            if code == _COUNT:
                out.append(float(win.count))
            elif code == _SUM:
                out.append(win.total / 100)
            elif code == _MEAN:
                out.append(win.total / (win.count * 100) if win.count else 0.0)
            elif code == _RATIO:
                out.append(cents * win.count / win.total if win.total > 0 else MISSING)
            elif code == _SINCE:
                prev_ts = self.ts[pos - 1] if pos > self.head else self.before_ts
                out.append(MISSING if prev_ts is None else (at - prev_ts) / 1000)
            elif code == _DIST or code == _SPEED:
                if dist is None:
                    prev = None if lat_q is None else self._prev_geo(pos)
                    if prev is None or lat_q is None or lon_q is None:
                        dist = (MISSING, MISSING)
                    else:
                        km = haversine_km(prev[1] / COORD_SCALE, prev[2] / COORD_SCALE,
                                          lat_q / COORD_SCALE, lon_q / COORD_SCALE)
                        dist = (km, implied_speed_kmh(km, at - prev[0]))
                out.append(dist[0] if code == _DIST else dist[1])
            elif code == _USUAL:
                out.append(self._usual_distance(win, pos, lat_q, lon_q))
            else:
                out.append(float(len(win.counts)))
        return out

    def _usual_distance(self, win: GeoSum, pos: int, lat_q: Any, lon_q: Any) -> float:
        if lat_q is None:
            return MISSING
        n, lat_sum, lon_sum = win.n, win.lat_sum, win.lon_sum
        if win.lo <= pos < win.hi:  # the transaction itself is in the window: take it out
            n -= 1
            lat_sum -= lat_q
            lon_sum -= lon_q
        if n == 0:
            return MISSING
        return haversine_km(lat_q / COORD_SCALE, lon_q / COORD_SCALE,
                            mean_from_fixed(lat_sum, n), mean_from_fixed(lon_sum, n))

    def _dropping(self, i: int, forced: bool) -> None:
        self.before_ts = self.ts[i]
        if self.lat[i] is not None:
            self.before_geo = [self.ts[i], self.lat[i], self.lon[i]]

    def _extras_to_dict(self) -> dict[str, Any]:
        return {"bts": self.before_ts, "bgeo": self.before_geo}

    def _extras_from_dict(self, data: dict[str, Any]) -> None:
        self.before_ts = data["bts"]
        self.before_geo = data["bgeo"]
