"""Per-key event history shared by :class:`~features.card.CardState` and
:class:`~features.terminal.TerminalState`: ordering, lateness, retention, serialisation.

Storage
-------
A key's history is two :class:`array.array` of signed 64-bit integers, sorted by event time
(ties in arrival order): ``_ts`` (epoch ms, searched with :mod:`bisect`) and ``_d``, the
other columns interleaved, ``STRIDE`` values per row. Every row holds the 64-bit hash of its
``txn_id`` (:func:`txn_hash`), its amount in cents, the subclass's values and *exclusive prefix
sums* (the sum of the column over all earlier rows). A window ``(t - d - w, t - d]`` is then
two bisections for its bounds and a difference of prefix sums for its aggregates: no window
object and no per-window pointer is stored, a window of an out-of-order or duplicate event
costs the same as one of an in-order event, and a restored state is identical to the saved
one (prefix sums are rebuilt, aggregates are integers). Everything that is rarely non-empty
(categorical columns without a field, fraud labels, held labels) is created on first use,
and the configuration (spec, lateness, cap, compiled plan) is one shared :class:`Layout`.

Rows before ``head`` are dead and are compacted away in bulk. Duplicates are found by hash
among the live rows with the event's own ``ts`` (a redelivery carries the same event time;
a reused ``txn_id`` with another ``ts`` is a new transaction). Two different ids of one key
with the same ``ts`` and the same 64-bit hash would be taken for duplicates (probability
about 2**-64 per such pair).

Memory bound
------------
After every update a key holds at most ``max_events`` transactions (default 10,000), all
with ``ts > watermark - retention_ms`` where ``retention_ms`` = widest ``window + delay`` in
the spec + the allowed lateness (37 days for :data:`~features.spec.DEFAULT_SPEC`), plus
fewer dead rows awaiting compaction than a seventh of the live ones; a new transaction's
windows see at most ``max_events`` earlier ones plus itself. If the cap bites, the oldest
transactions are dropped even though still inside a window (counted in ``evicted``): the
windows then under-count, identically in streaming and batch, because both run this code.

Cost per event
--------------
An in-order update is a few bisections (``O(log n)`` in C) plus constant work, whatever the
history: a ``distinct`` feature builds the set of its window's values (``O(rows in that
window)`` at C speed), a card's previous location is searched back over the rows without
coordinates. An out-of-order insert also shifts and adjusts the later rows (``O(rows after
it)``), a compaction moves the live rows (amortised ``O(1)``). The states are plain objects
without locks: use one from one thread at a time.

Ranges: values are int64. Prefix sums of cents over a key's lifetime must stay below 2**63
(about 9e16 currency units) and coordinates within +-9e11 degrees, or an ``OverflowError`` is
raised; validated transactions are far inside both.

Serialisation
-------------
``to_dict()`` (JSON-able) and ``dumps()`` (compact binary, see :mod:`features.snapshot`) hold
only the raw history (ts, id hashes, cents, the subclass's columns and extras); prefix sums
are rebuilt on load. Both cost time and bytes proportional to the rows held. ``from_dict``
also reads the format 1 of the previous implementation (txn ids as strings).

Examples
--------
>>> txn_hash("tx-1") == txn_hash("tx-1"), txn_hash("tx-1") == txn_hash("tx-2")
(True, False)
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from hashlib import blake2b
from itertools import accumulate
from typing import Any, ClassVar, Self

from features.lateness import Arrival, LateEventError, LatenessPolicy
from features.rows import TxnRow, to_cents
from features.spec import DEFAULT_SPEC, FeatureSpec

DEFAULT_MAX_EVENTS = 10_000
FORMAT = 2
NONE = -(2**63)
"""Missing value in an int64 column (a transaction without coordinates)."""

_LAYOUTS: dict[tuple[Any, ...], Layout] = {}
_EMPTY: tuple[()] = ()

__all__ = ["DEFAULT_MAX_EVENTS", "NONE", "EventLog", "Layout", "generate", "interleave",
           "prefix", "to_cents", "txn_hash"]


def txn_hash(txn_id: str) -> int:
    """Stable signed 64-bit hash of a transaction id (BLAKE2b), the same in every process."""
    return int.from_bytes(blake2b(txn_id.encode(), digest_size=8).digest(), "little",
                          signed=True)


class Layout:
    """What every state of one class, spec and configuration shares (built once, cached).

    Attributes
    ----------
    spec, policy, max_events, retention_ms
        The configuration.
    names : list of str
        The entity's feature names in vector order.
    bounds : list of (width_ms, delay_ms)
        The distinct windows of the entity's features.
    plan : list of (code, slot)
        Per feature: the subclass's aggregation code and its index in ``bounds`` (-1: none).
    fields : list of str
        Categorical columns kept (card states: the ``distinct`` source fields).
    compute : callable
        ``compute(state, pos, at, end, fast) -> list[float]``: the features, straight-line
        code generated from ``plan`` by the subclass (its text is in ``source``).
    """

    __slots__ = ("spec", "policy", "max_events", "retention_ms", "names", "bounds", "plan",
                 "fields", "compute", "source")

    def __init__(self, spec: FeatureSpec, policy: LatenessPolicy, max_events: int,
                 names: list[str], bounds: list[tuple[int, int]],
                 plan: list[tuple[int, int]], fields: list[str]) -> None:
        self.spec = spec
        self.policy = policy
        self.max_events = max_events
        self.names = names
        self.bounds = bounds
        self.plan = plan
        self.fields = fields
        span = max((w + d for w, d in bounds), default=0)
        self.retention_ms = span + policy.allowed_lateness_ms
        self.compute: Callable[..., list[float]] = _unset
        self.source = ""


def _unset(*args: Any) -> list[float]:
    raise NotImplementedError


def generate(lines: list[str], namespace: dict[str, Any]) -> tuple[Callable[..., Any], str]:
    """Compile the source ``lines`` of one function named ``compute``; ``(function, text)``.

    Examples
    --------
    >>> fn, text = generate(["def compute(x):", "    return x + k"], {"k": 2})
    >>> fn(1)
    3
    """
    text = "\n".join(lines) + "\n"
    scope = dict(namespace)
    exec(compile(text, "<features.generated>", "exec"), scope)  # noqa: S102 - our own text
    return scope["compute"], text


class EventLog:
    """Base class. Subclasses set ``ENTITY``, ``STRIDE`` and implement the hooks."""

    ENTITY: ClassVar[str] = ""
    STRIDE: ClassVar[int] = 2  # values per row in _d: hash, cents, then the subclass's

    __slots__ = ("_lay", "watermark", "evicted", "head", "_ts", "_d")

    def __init__(
        self,
        spec: FeatureSpec = DEFAULT_SPEC,
        *,
        allowed_lateness_ms: int = 0,
        max_events: int = DEFAULT_MAX_EVENTS,
    ) -> None:
        key = (type(self), spec.version, allowed_lateness_ms, max_events)
        lay = _LAYOUTS.get(key)
        if lay is None:
            if max_events < 1:
                raise ValueError("max_events must be >= 1")
            policy = LatenessPolicy(allowed_lateness_ms)
            lay = Layout(spec, policy, max_events, spec.names_for(self.ENTITY),
                         *self._compile(spec))
            lay.compute, lay.source = self._generate(lay)
            _LAYOUTS[key] = lay
        self._lay = lay
        self.watermark: int | None = None
        self.evicted = 0
        self.head = 0
        self._ts = array("q")
        self._d = array("q")

    # -- configuration -----------------------------------------------------------------------
    @property
    def spec(self) -> FeatureSpec:
        """The feature spec."""
        return self._lay.spec

    @property
    def policy(self) -> LatenessPolicy:
        """The lateness policy."""
        return self._lay.policy

    @property
    def max_events(self) -> int:
        """The per-key cap on transactions held."""
        return self._lay.max_events

    @property
    def retention_ms(self) -> int:
        """How far behind the watermark transactions are kept."""
        return self._lay.retention_ms

    @property
    def names(self) -> list[str]:
        """The entity's feature names, in vector order."""
        return self._lay.names

    @property
    def ts(self) -> list[int]:
        """A copy of the event-time column, dead rows included (for tests and debugging)."""
        return self._ts.tolist()

    # -- hooks -------------------------------------------------------------------------------
    @classmethod
    def _compile(cls, spec: FeatureSpec) -> tuple[list[tuple[int, int]], list[tuple[int, int]],
                                                  list[str]]:
        """``(bounds, plan, fields)`` of the :class:`Layout` for ``spec``."""
        raise NotImplementedError

    def _put(self, pos: int, row: tuple[Any, ...], h: int) -> None:
        """Store ``row`` (``(ts, txn_id, cents, *extras)``) with id hash ``h`` at ``pos``."""
        raise NotImplementedError

    @classmethod
    def _generate(cls, lay: Layout) -> tuple[Callable[..., list[float]], str]:
        """``Layout.compute`` and its source text (see :func:`generate`)."""
        raise NotImplementedError

    def _compute(self, pos: int, at: int, end: int, fast: bool) -> list[float]:
        """Features of the event at ``pos`` at time ``at`` over rows ``head .. end - 1``
        (``fast``: in order, every stored label was reported at or before ``at``)."""
        return self._lay.compute(self, pos, at, end, fast)

    def _advance_time(self, now: int) -> None:
        """The watermark is about to move to ``now``."""

    def _recorded(self, txn_id: str, pos: int) -> None:
        """A transaction was added at ``pos``."""

    def _drop(self, lo: int, hi: int, forced: bool) -> None:
        """Rows ``lo .. hi - 1`` leave the history (retention, or the size cap when ``forced``)."""

    def _prune_extras(self, cutoff: int) -> None:
        """Drop subclass state about events at or before ``cutoff``."""

    def _compact(self, k: int) -> None:
        """Delete the first ``k`` (dead) rows of the subclass's own columns."""

    # -- public ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ts) - self.head

    def __contains__(self, txn_id: object) -> bool:
        if not isinstance(txn_id, str):
            return False
        return txn_hash(txn_id) in self._d[self.head * self.STRIDE :: self.STRIDE]

    def _find(self, ts: int, h: int) -> int:
        """Position of the live row with event time ``ts`` and id hash ``h``, or -1."""
        t = self._ts
        i = bisect_left(t, ts, self.head)
        n = len(t)
        d = self._d
        s = self.STRIDE
        while i < n and t[i] == ts:
            if d[i * s] == h:
                return i
            i += 1
        return -1

    def classify(self, txn_id: str, ts: int) -> Arrival:
        """IN_ORDER, OUT_OF_ORDER, DUPLICATE or LATE (see :mod:`features.lateness`)."""
        wm = self.watermark
        if wm is not None and ts > wm:
            return Arrival.IN_ORDER
        arrival = self._lay.policy.classify(ts, wm)
        if arrival is not Arrival.LATE and wm is not None and self._find(ts, txn_hash(txn_id)) >= 0:
            return Arrival.DUPLICATE
        return arrival

    def arrival(self, txn: Any) -> Arrival:
        """:meth:`classify` for a transaction (a dict or a :class:`~features.rows.TxnRow`);
        LATE events must go to the late topic."""
        if type(txn) is TxnRow:
            return self.classify(txn.txn_id, txn.ts)
        return self.classify(str(txn["txn_id"]), int(txn["ts"]))

    def row(self, txn: Any) -> tuple[Any, ...]:
        """The internal row ``(ts, txn_id, cents, *extras)`` of a transaction."""
        raise NotImplementedError

    def update(self, txn: Any) -> dict[str, float]:
        """Apply a transaction and return its features (see the subclass)."""
        return dict(zip(self._lay.names, self._ingest(self.row(txn)), strict=True))

    def record(self, txn: Any) -> Arrival:
        """Apply a transaction without computing its features; return how it arrived.

        For recovery replays and replicated views. The state ends exactly as after
        :meth:`update`; a LATE event is not applied (no exception), a DUPLICATE changes
        nothing. ``txn`` is a transaction dict or a :class:`~features.rows.TxnRow`.
        """
        return self._record(self.row(txn))

    # -- the ingestion path, used by update()/record() and by the batch recomputation -------
    def _ingest(self, row: tuple[Any, ...]) -> list[float]:
        """Apply one transaction given as ``(ts, txn_id, cents, *extras)``; return features."""
        ts = row[0]
        wm = self.watermark
        h = txn_hash(row[1])
        if wm is None or ts > wm:
            pos = self._append(row, h)
            out = self._lay.compute(self, pos, ts, pos + 1, True)
            self._prune()
            return out
        arrival = self._lay.policy.classify(ts, wm)
        if arrival is Arrival.LATE:
            raise LateEventError(row[1], ts, wm, self._lay.policy.allowed_lateness_ms)
        pos = self._find(ts, h)
        if pos >= 0:  # DUPLICATE: as of its position, state unchanged
            return self._lay.compute(self, pos, ts, pos + 1, False)
        if ts == wm:
            pos = self._append(row, h)
            out = self._lay.compute(self, pos, ts, pos + 1, True)
        else:  # OUT_OF_ORDER: insert at its event-time position, after equal timestamps
            pos = bisect_right(self._ts, ts, self.head)
            self._ts.insert(pos, ts)
            self._put(pos, row, h)
            self._recorded(row[1], pos)
            out = self._lay.compute(self, pos, ts, pos + 1, False)
        self._prune()
        return out

    def _record(self, row: tuple[Any, ...]) -> Arrival:
        ts = row[0]
        wm = self.watermark
        h = txn_hash(row[1])
        if wm is None or ts > wm:
            self._append(row, h)
            self._prune()
            return Arrival.IN_ORDER
        arrival = self._lay.policy.classify(ts, wm)
        if arrival is Arrival.LATE:
            return arrival
        if self._find(ts, h) >= 0:
            return Arrival.DUPLICATE
        if ts == wm:
            self._append(row, h)
        else:
            pos = bisect_right(self._ts, ts, self.head)
            self._ts.insert(pos, ts)
            self._put(pos, row, h)
            self._recorded(row[1], pos)
        self._prune()
        return arrival

    def _append(self, row: tuple[Any, ...], h: int) -> int:
        ts = row[0]
        self._advance_time(ts)
        self.watermark = ts
        pos = len(self._ts)
        self._ts.append(ts)
        self._put(pos, row, h)
        self._recorded(row[1], pos)
        return pos

    def _prune(self) -> None:
        assert self.watermark is not None
        cutoff = self.watermark - self._lay.retention_ms
        ts = self._ts
        n = len(ts)
        head = self.head
        if head < n and ts[head] <= cutoff:
            new = bisect_right(ts, cutoff, head, n)
            self._drop(head, new, False)
            head = new
        excess = n - head - self._lay.max_events
        if excess > 0:
            self._drop(head, head + excess, True)
            self.evicted += excess
            head += excess
        self.head = head
        self._prune_extras(cutoff)
        if head and 8 * head >= n:
            del ts[:head]
            del self._d[: head * self.STRIDE]
            self._compact(head)
            self.head = 0

    # -- serialisation -----------------------------------------------------------------------
    def _columns(self) -> dict[str, list[Any]]:
        """The subclass's raw columns of the live rows (JSON-able, None for missing)."""
        return {}

    def _set_columns(self, n: int, cols: dict[str, Any]) -> None:
        """Rebuild ``_d`` from the hashes, cents and the subclass's raw columns."""
        raise NotImplementedError

    def _extras_to_dict(self) -> dict[str, Any]:
        return {}

    def _extras_from_dict(self, data: dict[str, Any]) -> None:
        """Restore the subclass's non-column state."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able snapshot of the live history (see the module docstring)."""
        h = self.head
        s = self.STRIDE
        ts = self._ts[h:].tolist()
        deltas = [b - a for a, b in zip(ts, ts[1:], strict=False)]
        d = self._d
        data: dict[str, Any] = {
            "fmt": FORMAT,
            "wm": self.watermark,
            "ev": self.evicted,
            "ts": ts[:1] + deltas,
            "h": d[h * s :: s].tolist(),
            "c": d[h * s + 1 :: s].tolist(),
            "x": self._columns(),
        }
        data.update(self._extras_to_dict())
        return data

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], spec: FeatureSpec = DEFAULT_SPEC, **config: Any
    ) -> Self:
        """Rebuild a state saved by :meth:`to_dict`; ``config`` as for the constructor."""
        fmt = data.get("fmt")
        if fmt not in (1, FORMAT):
            raise ValueError(f"unsupported state format {fmt!r}")
        state = cls(spec, **config)
        state.watermark = data["wm"]
        state.evicted = data["ev"]
        state._ts = array("q", accumulate(data["ts"]))
        hashes = data["h"] if fmt == FORMAT else [txn_hash(i) for i in data["id"]]
        state._set_columns(len(state._ts), {"h": hashes, "c": data["c"], **data["x"]})
        state._extras_from_dict(data)
        return state

    def dumps(self) -> bytes:
        """Compact binary snapshot of this key (:func:`features.snapshot.dumps`)."""
        from features.snapshot import dumps

        return dumps(self)

    @classmethod
    def loads(cls, blob: bytes, spec: FeatureSpec = DEFAULT_SPEC, **config: Any) -> Self:
        """Inverse of :meth:`dumps` (``config`` as for the constructor)."""
        from features.snapshot import loads

        state = cls(spec, **config)
        loads(state, blob)
        return state


def prefix(values: Any) -> array:
    """Exclusive prefix sums of ``values`` as an int64 array (``[0, v0, v0 + v1, ...]``, the
    last total left out).

    Examples
    --------
    >>> prefix([3, 4, 5]).tolist()
    [0, 3, 7]
    """
    out = array("q", accumulate(values, initial=0))
    out.pop()
    return out


def interleave(columns: list[Any], n: int) -> array:
    """One int64 array of ``n`` rows holding ``columns`` (each of length ``n``) interleaved.

    Examples
    --------
    >>> interleave([[1, 2], [10, 20], array("q", [7, 8])], 2).tolist()
    [1, 10, 7, 2, 20, 8]
    """
    s = len(columns)
    out = array("q", bytes(8 * s * n))
    for k, col in enumerate(columns):
        out[k::s] = col if isinstance(col, array) else array("q", col)
    return out
