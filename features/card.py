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
>>> state.record({"txn_id": "b", "card_id": "c1", "terminal_id": "T9", "amount": 30.0,
...     "currency": "EUR", "ts": t0 + 600_000})      # redelivered: nothing changes
<Arrival.DUPLICATE: 'duplicate'>
>>> len(state)
2
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_right
from collections.abc import Callable
from typing import Any

from features.eventlog import NONE, EventLog, Layout, generate, interleave, prefix
from features.geo import COORD_SCALE, haversine_km, implied_speed_kmh, mean_from_fixed
from features.rows import TxnRow, clean_category, clean_coords
from features.spec import DEFAULT_SPEC, MISSING, FeatureSpec

__all__ = ["CardState", "clean_category", "clean_coords"]

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
_intern = sys.intern
# row layout in _d: id hash, cents, lat, lon (NONE: no coordinates), then the exclusive
# prefix sums of cents, of "has coordinates", of lat and of lon
_H, _C, _LAT, _LON, _XC, _XN, _XLAT, _XLON = range(8)


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
    STRIDE = 8
    RAW = 4  # leading raw columns of a row in _d (the rest: prefix sums)

    __slots__ = ("_cat", "before_ts", "before_geo")

    def __init__(self, spec: FeatureSpec = DEFAULT_SPEC, **config: Any) -> None:
        super().__init__(spec, **config)
        self._cat: list[str | None] = []  # categorical columns, interleaved (fields per row)
        self.before_ts: int | None = None
        self.before_geo: tuple[int, int, int] | None = None

    @classmethod
    def _compile(cls, spec: FeatureSpec) -> tuple[list[tuple[int, int]], list[tuple[int, int]],
                                                  list[str]]:
        bounds: list[tuple[int, int]] = []
        plan = []
        fields: list[str] = []
        for f in spec.for_entity("card"):
            slot = -1
            if f.window_ms:
                key = (f.window_ms, f.delay_ms)
                if key not in bounds:
                    bounds.append(key)
                slot = bounds.index(key)
            code = _CODES[f.aggregation]
            if code == _DISTINCT:
                name = str(f.source_field)
                if name not in fields:
                    fields.append(name)
                slot = slot * 256 + fields.index(name)
            plan.append((code, slot))
        return bounds, plan, fields

    @property
    def cat(self) -> dict[str, list[str | None]]:
        """The categorical columns of the live rows, by field (a copy)."""
        fields = self._lay.fields
        k = len(fields)
        h = self.head * k
        return {name: self._cat[h + j :: k] for j, name in enumerate(fields)}

    def row(self, txn: Any) -> tuple[Any, ...]:
        """The internal row ``(ts, txn_id, cents, lat, lon, *categories)`` of a transaction
        (a dict, or a :class:`~features.rows.TxnRow` whose values are already clean)."""
        fields = self._lay.fields
        if type(txn) is TxnRow:
            cats = [None if (v := getattr(txn, c)) is None else _intern(v) for c in fields]
            return (txn.ts, txn.txn_id, txn.cents, txn.lat, txn.lon, *cats)
        # clean_coords, clean_category and to_cents, inlined (the hot path of every update)
        lat = txn.get("lat")
        lon = txn.get("lon")
        if lat is None or lon is None or lat != lat or lon != lon:
            lat = lon = None
        else:
            lat = round(float(lat) * COORD_SCALE)
            lon = round(float(lon) * COORD_SCALE)
        cats = [None if (v := txn.get(c)) is None or v != v else _intern(str(v))
                for c in fields]
        return (int(txn["ts"]), str(txn["txn_id"]), round(float(txn["amount"]) * 100), lat, lon,
                *cats)

    def update(self, txn: Any) -> dict[str, float]:
        """Apply a transaction and return its card features.

        Raises :class:`~features.lateness.LateEventError` for a LATE event (check
        :meth:`arrival` first); a DUPLICATE leaves the state unchanged.
        """
        return dict(zip(self._lay.names, self._ingest(self.row(txn)), strict=True))

    # -- storage -----------------------------------------------------------------------------
    def _put(self, pos: int, row: tuple[Any, ...], h: int) -> None:
        cents = row[2]
        lat = row[3]
        lon = row[4]
        d = self._d
        n = len(d) >> 3
        if pos == n:
            if n:
                b = 8 * n - 8
                xc = d[b + _XC] + d[b + _C]
                plat = d[b + _LAT]
                if plat == NONE:
                    xn, xlat, xlon = d[b + _XN], d[b + _XLAT], d[b + _XLON]
                else:
                    xn, xlat, xlon = d[b + _XN] + 1, d[b + _XLAT] + plat, d[b + _XLON] + d[b + _LON]
            else:
                xc = xn = xlat = xlon = 0
            if lat is None:
                d.extend((h, cents, NONE, NONE, xc, xn, xlat, xlon))
            else:
                d.extend((h, cents, lat, lon, xc, xn, xlat, xlon))
            if len(row) > 5:
                self._cat.extend(row[5:])
            return
        b = 8 * pos
        xc, xn, xlat, xlon = d[b + _XC], d[b + _XN], d[b + _XLAT], d[b + _XLON]
        if lat is None:
            d[b:b] = array("q", (h, cents, NONE, NONE, xc, xn, xlat, xlon))
        else:
            d[b:b] = array("q", (h, cents, lat, lon, xc, xn, xlat, xlon))
        for j in range(b + 8, len(d), 8):
            d[j + _XC] += cents
            if lat is not None:
                d[j + _XN] += 1
                d[j + _XLAT] += lat
                d[j + _XLON] += lon
        k = len(self._lay.fields)
        if k:
            self._cat[pos * k : pos * k] = row[5:]

    def _drop(self, lo: int, hi: int, forced: bool) -> None:
        self.before_ts = self._ts[hi - 1]
        d = self._d
        for i in range(hi - 1, lo - 1, -1):
            lat = d[8 * i + _LAT]
            if lat != NONE:
                self.before_geo = (self._ts[i], lat, d[8 * i + _LON])
                break

    def _compact(self, k: int) -> None:
        if self._lay.fields:
            del self._cat[: k * len(self._lay.fields)]

    # -- features ----------------------------------------------------------------------------
    def _prev_geo(self, pos: int) -> tuple[int, int, int] | None:
        d = self._d
        i = pos - 1
        head = self.head
        while i >= head:
            lat = d[8 * i + _LAT]
            if lat != NONE:
                return self._ts[i], lat, d[8 * i + _LON]
            i -= 1
        return self.before_geo

    def _distance(self, pos: int, at: int, lat_q: int, lon_q: int) -> tuple[float, float]:
        """``(distance_prev_km, speed_prev_kmh)`` of the event at ``pos``."""
        prev = None if lat_q == NONE else self._prev_geo(pos)
        if prev is None:
            return MISSING, MISSING
        km = haversine_km(prev[1] / COORD_SCALE, prev[2] / COORD_SCALE,
                          lat_q / COORD_SCALE, lon_q / COORD_SCALE)
        return km, implied_speed_kmh(km, at - prev[0])

    @classmethod
    def _generate(cls, lay: Layout) -> tuple[Callable[..., list[float]], str]:
        """Straight-line code for ``lay.plan``: per window ``k``, bounds ``lo{k}, hi{k}``
        (two bisections), count ``n{k}`` and, when used, total cents ``t{k}`` (prefix sums)."""
        k_fields = len(lay.fields)
        lines = ["def compute(self, pos, at, end, fast):",
                 "    ts = self._ts", "    d = self._d", "    head = self.head",
                 "    b = 8 * pos", "    cents = d[b + 1]", "    lat_q = d[b + 2]"]
        totals = {slot for code, slot in lay.plan if _SUM <= code <= _RATIO}
        same: dict[int, int] = {}  # windows with one delay end at the same row
        for k, (w, delay) in enumerate(lay.bounds):
            if delay in same:
                lines.append(f"    hi{k} = hi{same[delay]}")
            else:
                same[delay] = k
                lines.append(f"    hi{k} = bisect_right(ts, at - {delay}, head, end)" if delay
                             else f"    hi{k} = end")
            lines.append(f"    lo{k} = bisect_right(ts, at - {delay + w}, head, hi{k})")
            lines.append(f"    n{k} = hi{k} - lo{k}")
            if k in totals:
                lines.append(f"    t{k} = d[8 * hi{k} - 4] + d[8 * hi{k} - 7] - d[8 * lo{k} + 4]"
                             f" if n{k} else 0")
        out = []
        for code, slot in lay.plan:
            k = slot
            if code == _COUNT:
                out.append(f"float(n{k})")
            elif code == _SUM:
                out.append(f"t{k} / 100")
            elif code == _MEAN:
                out.append(f"(t{k} / (n{k} * 100) if n{k} else 0.0)")
            elif code == _RATIO:
                out.append(f"(cents * n{k} / t{k} if t{k} > 0 else MISSING)")
            elif code == _SINCE:
                if "    prev_ts = " not in "\n".join(lines):
                    lines.append("    prev_ts = ts[pos - 1] if pos > head else self.before_ts")
                out.append("(MISSING if prev_ts is None else (at - prev_ts) / 1000)")
            elif code == _DIST or code == _SPEED:
                if "    dist = " not in "\n".join(lines):
                    lines.append("    dist = self._distance(pos, at, lat_q, d[b + 3])")
                out.append("dist[0]" if code == _DIST else "dist[1]")
            elif code == _USUAL:
                out.append(f"self._usual_distance((lo{k}, hi{k}), pos, lat_q, d[b + 3])")
            else:
                k, j = slot >> 8, slot & 255
                var = f"u{k}_{j}"
                if f"    {var} = " not in "\n".join(lines):
                    cut = (f"lo{k}:hi{k}" if k_fields == 1 else
                           f"lo{k} * {k_fields} + {j} : hi{k} * {k_fields} : {k_fields}")
                    lines.append(f"    {var} = set(self._cat[{cut}])")
                out.append(f"float(len({var}) - (None in {var}))")
        lines.append("    return [" + ", ".join(out) + "]")
        return generate(lines, {"bisect_right": bisect_right, "MISSING": MISSING})

    def _usual_distance(self, span: tuple[int, int], pos: int, lat_q: int, lon_q: int) -> float:
        if lat_q == NONE:
            return MISSING
        lo, hi = span
        if hi == lo:
            return MISSING
        d = self._d
        e = 8 * hi - 8
        s = 8 * lo
        last = d[e + _LAT]
        if last == NONE:
            n, lat_sum, lon_sum = d[e + _XN], d[e + _XLAT], d[e + _XLON]
        else:
            n, lat_sum, lon_sum = d[e + _XN] + 1, d[e + _XLAT] + last, d[e + _XLON] + d[e + _LON]
        n -= d[s + _XN]
        lat_sum -= d[s + _XLAT]
        lon_sum -= d[s + _XLON]
        if lo <= pos < hi:  # the transaction itself is in the window: take it out
            n -= 1
            lat_sum -= lat_q
            lon_sum -= lon_q
        if n == 0:
            return MISSING
        return haversine_km(lat_q / COORD_SCALE, lon_q / COORD_SCALE,
                            mean_from_fixed(lat_sum, n), mean_from_fixed(lon_sum, n))

    # -- serialisation -----------------------------------------------------------------------
    def _columns(self) -> dict[str, list[Any]]:
        s = self.head * 8
        d = self._d
        out: dict[str, list[Any]] = {
            "lat": [None if v == NONE else v for v in d[s + _LAT :: 8]],
            "lon": [None if v == NONE else v for v in d[s + _LON :: 8]],
        }
        for name, col in self.cat.items():
            out[f"cat:{name}"] = col
        return out

    def _set_columns(self, n: int, cols: dict[str, Any]) -> None:
        lat = cols.get("lat") or [None] * n
        lon = cols.get("lon") or [None] * n
        self._set_rows(array("q", cols["h"]), array("q", cols["c"]),
                       array("q", [NONE if v is None else v for v in lat]),
                       array("q", [NONE if v is None else v for v in lon]))
        fields = self._lay.fields
        self._set_cats(n, [cols.get(f"cat:{name}") for name in fields])

    def _set_rows(self, h: array, c: array, lat: array, lon: array) -> None:
        """Rebuild ``_d`` from its raw columns (NONE for missing coordinates)."""
        n = len(h)
        missing = lat.count(NONE)
        if missing == n:  # no row has coordinates
            geo = [array("q", bytes(8 * n)) for _ in range(3)]
        elif missing:
            geo = [prefix([v != NONE for v in lat]),
                   prefix([v if v != NONE else 0 for v in lat]),
                   prefix([v if w != NONE else 0 for v, w in zip(lon, lat, strict=True)])]
        else:  # every row has coordinates
            geo = [array("q", range(n)), prefix(lat), prefix(lon)]
        self._d = interleave([h, c, lat, lon, prefix(c), *geo], n)

    def _set_cats(self, n: int, columns: list[list[str | None] | None]) -> None:
        """Set the categorical columns (one list per field, None: a field not saved)."""
        k = len(columns)
        cat: list[str | None] = [None] * (n * k)
        for j, col in enumerate(columns):
            if col:
                cat[j::k] = [None if v is None else _intern(v) for v in col]
        self._cat = cat

    def _extras_to_dict(self) -> dict[str, Any]:
        geo = self.before_geo
        return {"bts": self.before_ts, "bgeo": None if geo is None else list(geo)}

    def _extras_from_dict(self, data: dict[str, Any]) -> None:
        self.before_ts = data["bts"]
        geo = data["bgeo"]
        self.before_geo = None if geo is None else (geo[0], geo[1], geo[2])
