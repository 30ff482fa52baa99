"""The dead-letter and late topics: the original bytes, with headers that say why and where from,
in a record that always fits the producer.

Delivery: at-least-once. The dead-letter record is handed to the producer before the source
offset can be committed (Faust acknowledges an event only after the agent has finished with
it), so an invalid record is never lost; after a crash it may be dead-lettered twice.
:func:`dead_letter` and :func:`send_late` return the producer's delivery future, so that a
caller that acknowledges by hand can check it before it acknowledges.

Size. The producer refuses a record larger than its request size (Faust's
``producer_max_request_size``, 1,000,000 bytes by default) by raising ``ProducerSendError``
from ``send`` itself; a 10 MB poison record dead-lettered as is would make the dead-letter send
raise, then its ``processing_error`` fallback, and the agent would crash. So the record is
fitted first (:func:`fit`):

* a value longer than :attr:`Limits.max_value_bytes` (64 KiB, less when the producer's request
  size is small) is cut to that many bytes, with the headers ``truncated=true``,
  ``original_size`` (bytes) and ``original_sha256`` (hex digest of the whole original value);
* a key longer than :attr:`Limits.max_key_bytes` (1 KiB) likewise: ``key_truncated=true``,
  ``original_key_size``, ``original_key_sha256``;
* the headers of this module come first; the source record's own headers follow while they fit
  in :attr:`Limits.max_header_bytes` (16 KiB; each at most 1 KiB), and
  ``headers_dropped=<n>`` says how many did not.

Should the producer still refuse the fitted record for its size (a producer configured below
what the limits assume), it is sent again cut to 1 KiB with only this module's headers: a
dead-letter send never raises for size.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from app.metrics import TRANSACTIONS_INVALID, TRANSACTIONS_LATE
from contracts.rejections import Rejection

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]

#: Room the producer's size estimate needs beyond key, value and headers (aiokafka adds about
#: 88 bytes for a one-record batch; generous).
RECORD_OVERHEAD_BYTES = 1024
#: Faust's default ``producer_max_request_size``.
DEFAULT_MAX_REQUEST_BYTES = 1_000_000


@dataclass(frozen=True)
class Limits:
    """Bounds of a dead-letter record (see the module docstring)."""

    max_value_bytes: int = 64 * 1024
    max_key_bytes: int = 1024
    max_header_bytes: int = 16 * 1024
    max_header_value_bytes: int = 1024

    @classmethod
    def for_request_size(cls, max_request_bytes: int | None) -> Limits:
        """Limits whose largest record fits in ``max_request_bytes``.

        >>> Limits.for_request_size(1_000_000).max_value_bytes
        65536
        >>> small = Limits.for_request_size(40_000)
        >>> small.max_value_bytes + small.max_key_bytes + small.max_header_bytes < 40_000
        True
        """
        default = cls()
        if not max_request_bytes or max_request_bytes <= 0:
            return default
        room = max_request_bytes - RECORD_OVERHEAD_BYTES - default.max_key_bytes \
            - default.max_header_bytes
        if room >= default.max_value_bytes:
            return default
        quarter = max(64, max_request_bytes // 4)
        return cls(max_value_bytes=max(64, min(room, quarter)),
                   max_key_bytes=min(default.max_key_bytes, quarter // 4),
                   max_header_bytes=min(default.max_header_bytes, quarter),
                   max_header_value_bytes=min(default.max_header_value_bytes, quarter // 4))


#: The last-resort bounds after the producer refused a fitted record for its size.
MINIMAL = Limits(max_value_bytes=1024, max_key_bytes=256, max_header_bytes=4096,
                 max_header_value_bytes=512)


def limits_for(topic: Any) -> Limits:
    """The limits for the producer behind a Faust topic (its app's request size)."""
    conf = getattr(getattr(topic, "app", None), "conf", None)
    size = getattr(conf, "producer_max_request_size", None)
    return Limits.for_request_size(size if isinstance(size, int) else DEFAULT_MAX_REQUEST_BYTES)


def _cut(name: str, data: bytes, bound: int) -> tuple[bytes, Headers]:
    if len(data) <= bound:
        return data, []
    return data[:bound], [(f"{name}truncated", b"true"),
                          (f"original_{name}size", str(len(data)).encode()),
                          (f"original_{name}sha256", hashlib.sha256(data).hexdigest().encode())]


def _header_items(headers: Any) -> Iterable[tuple[str, bytes]]:
    if not headers:
        return ()
    if isinstance(headers, dict):
        return headers.items()
    return headers  # type: ignore[no-any-return]


def fit(key: bytes | None, value: bytes | None, own: Sequence[tuple[str, bytes]],
        original_headers: Any, limits: Limits) -> tuple[bytes | None, bytes | None, Headers]:
    """``(key, value, headers)`` of a record that respects ``limits``.

    ``own`` are the headers that say why (kept, each value bounded); the record's
    ``original_headers`` (list of pairs or a dict) follow while they fit, except names already
    in ``own``.

    >>> key, value, headers = fit(b"k", b"x" * 100, [("reason", b"r")], [("h", b"v")],
    ...                           Limits(max_value_bytes=10))
    >>> value, [name for name, _ in headers]
    (b'xxxxxxxxxx', ['reason', 'truncated', 'original_size', 'original_sha256', 'h'])
    >>> dict(headers)["original_size"]
    b'100'
    >>> fit(b"k", b"small", [("reason", b"r")], None, Limits())[1]
    b'small'
    """
    headers: Headers = []
    per_value = limits.max_header_value_bytes
    for name, raw in own:
        headers.append((name, raw[:per_value]))
    if value is not None:
        value, extra = _cut("", value, limits.max_value_bytes)
        headers.extend(extra)
    if key is not None:
        key, extra = _cut("key_", key, limits.max_key_bytes)
        headers.extend(extra)
    used = sum(len(name) + len(raw) for name, raw in headers)
    taken = {name for name, _ in headers}
    dropped = 0
    for name, raw in _header_items(original_headers):
        name = str(name)
        if name in taken:
            continue
        raw = raw if isinstance(raw, bytes) else str(raw).encode()
        size = len(name) + len(raw)
        if size > per_value or used + size > limits.max_header_bytes:
            dropped += 1
            continue
        headers.append((name, raw))
        used += size
    if dropped:
        headers.append(("headers_dropped", str(dropped).encode()))
    return key, value, headers


def _source_headers(message: Any) -> Headers:
    return [
        ("source_topic", str(message.topic).encode()),
        ("source_partition", str(message.partition).encode()),
        ("source_offset", str(message.offset).encode()),
    ]


def _reason_headers(rejection: Rejection) -> Headers:
    return [("reason", rejection.reason.value.encode()), ("error", rejection.error.encode())]


def dlq_headers(message: Any, rejection: Rejection) -> list[tuple[str, bytes]]:
    """Headers of a dead-letter record whose value fits (the source record's own headers are
    kept after them).

    >>> from types import SimpleNamespace
    >>> msg = SimpleNamespace(topic="transactions", partition=3, offset=41, headers=[("h", b"v")])
    >>> for name, value in dlq_headers(msg, Rejection("invalid_amount", "amount: must be > 0")):
    ...     print(name, value)
    reason b'invalid_amount'
    error b'amount: must be > 0'
    source_topic b'transactions'
    source_partition b'3'
    source_offset b'41'
    h b'v'
    """
    return fit(None, None, _reason_headers(rejection) + _source_headers(message),
               message.headers, Limits())[2]


def is_size_error(exc: BaseException) -> bool:
    """True when ``exc`` (or what it wraps) is the producer refusing a record for its size.

    >>> from aiokafka.errors import MessageSizeTooLargeError
    >>> wrapped = RuntimeError("send failed")
    >>> wrapped.__cause__ = MessageSizeTooLargeError("The message is 10000088 bytes")
    >>> is_size_error(wrapped), is_size_error(ValueError("x"))
    (True, False)
    """
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if type(current).__name__ in ("MessageSizeTooLargeError", "RecordTooLargeError",
                                      "RecordListTooLargeError"):
            return True
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        todo.extend(a for a in getattr(current, "args", ()) if isinstance(a, BaseException))
    return False


async def send_fitted(topic: Any, key: bytes | None, value: bytes | None,
                      own: Sequence[tuple[str, bytes]], original_headers: Any,
                      limits: Limits | None = None) -> Any:
    """Send a fitted record to ``topic`` (a Faust topic); never raises for size."""
    limits = limits or limits_for(topic)
    k, v, headers = fit(key, value, own, original_headers, limits)
    try:
        return await topic.send(key=k, value=v, headers=headers)
    except Exception as exc:
        if not is_size_error(exc):
            raise
        log.warning("the producer refused a %d-byte record for %s: sent again cut to %d bytes",
                    len(v or b""), getattr(topic, "get_topic_name", lambda: topic)(),
                    MINIMAL.max_value_bytes)
    k, v, headers = fit(key, value, own, None, MINIMAL)
    return await topic.send(key=k, value=v, headers=headers)


async def send_late(late_topic: Any, message: Any, stage: str, watermark: int | None) -> Any:
    """Route a transaction beyond the allowed lateness to the late topic (original bytes)."""
    own = [("reason", b"late"), ("stage", stage.encode()),
           ("watermark", str(watermark).encode()), *_source_headers(message)]
    future = await send_fitted(late_topic, message.key, message.value, own, None)
    TRANSACTIONS_LATE.labels(stage).inc()
    log.info("late at the %s stage: %s[%s]@%s", stage, message.topic, message.partition,
             message.offset)
    return future


async def dead_letter(dlq_topic: Any, message: Any, rejection: Rejection) -> Any:
    """Send the original key and value (fitted, see the module docstring) to the dead-letter
    topic and count it; the delivery future is returned."""
    future = await send_fitted(dlq_topic, message.key, message.value,
                               _reason_headers(rejection) + _source_headers(message),
                               message.headers)
    TRANSACTIONS_INVALID.labels(rejection.reason.value).inc()
    log.warning(
        "dead-lettered %s[%s]@%s: %s", message.topic, message.partition, message.offset,
        rejection.reason.value,
    )
    return future
