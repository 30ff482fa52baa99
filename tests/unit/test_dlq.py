"""Dead-letter records always fit the producer: oversized values and keys are truncated with
their size and hash, headers are bounded, and a send never raises for size."""

from __future__ import annotations

import asyncio
import hashlib
from types import SimpleNamespace

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from faust.exceptions import ProducerSendError

from app.dlq import MINIMAL, Limits, dead_letter, fit, send_late
from contracts.reasons import Reason
from contracts.rejections import Rejection

FAUST_DEFAULT_REQUEST = 1_000_000


class FakeProducerTopic:
    """A Faust topic whose producer refuses records as aiokafka does (estimated batch size
    above ``max_request_size``, raised by ``send`` itself, wrapped as Faust wraps it)."""

    def __init__(self, max_request_size: int = FAUST_DEFAULT_REQUEST,
                 conf_request_size: int | None = None) -> None:
        self.max_request_size = max_request_size
        size = max_request_size if conf_request_size is None else conf_request_size
        self.app = SimpleNamespace(conf=SimpleNamespace(producer_max_request_size=size))
        self.sent: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
        self.refused = 0

    def get_topic_name(self) -> str:
        return "transactions-dlq"

    async def send(self, *, key, value, headers):
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)
        if size > self.max_request_size:
            self.refused += 1
            try:
                raise MessageSizeTooLargeError(f"The message is {size} bytes")
            except MessageSizeTooLargeError as exc:
                raise ProducerSendError(f"Error while sending: {exc!r}") from exc
        self.sent.append((key, value, list(headers)))
        return SimpleNamespace(done=lambda: True)


def message(value: bytes | None, key: bytes | None = b"card-1", headers=None):
    return SimpleNamespace(topic="transactions", partition=2, offset=7, key=key, value=value,
                           headers=headers or [])


def run(coro):
    return asyncio.run(coro)


def test_a_10_mb_value_is_dead_lettered_truncated_with_its_size_and_hash():
    value = bytes(range(256)) * (10 * 1024 * 1024 // 256)
    topic = FakeProducerTopic()
    rejection = Rejection(Reason.PAYLOAD_TOO_LARGE, "value is 10485760 bytes")
    run(dead_letter(topic, message(value, headers=[("trace", b"abc")]), rejection))

    assert topic.refused == 0 and len(topic.sent) == 1
    key, sent, headers = topic.sent[0]
    h = dict(headers)
    assert key == b"card-1"
    assert sent == value[:Limits().max_value_bytes]
    assert h["truncated"] == b"true"
    assert h["original_size"] == str(len(value)).encode()
    assert h["original_sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert h["reason"] == b"payload_too_large"
    assert (h["source_topic"], h["source_partition"], h["source_offset"]) == (
        b"transactions", b"2", b"7")
    assert h["trace"] == b"abc"
    assert [n for n, _ in headers][:5] == ["reason", "error", "source_topic",
                                           "source_partition", "source_offset"]


def test_a_value_that_fits_goes_as_is_without_truncation_headers():
    topic = FakeProducerTopic()
    value = b'{"txn_id": "t1"}' + b" " * 60_000
    run(dead_letter(topic, message(value), Rejection("malformed_json", "x")))
    _, sent, headers = topic.sent[0]
    assert sent == value
    assert not {"truncated", "original_size", "original_sha256"} & {n for n, _ in headers}


def test_a_long_key_is_truncated_the_same_way():
    topic = FakeProducerTopic()
    key = b"k" * 5_000_000
    run(dead_letter(topic, message(b"{}", key=key), Rejection("missing_field", "txn_id")))
    sent_key, value, headers = topic.sent[0]
    h = dict(headers)
    assert sent_key == key[:Limits().max_key_bytes] and value == b"{}"
    assert h["key_truncated"] == b"true"
    assert h["original_key_size"] == b"5000000"
    assert h["original_key_sha256"] == hashlib.sha256(key).hexdigest().encode()
    assert "truncated" not in h


def test_original_headers_are_bounded_and_the_dropped_ones_counted():
    topic = FakeProducerTopic()
    big = [(f"h{i}", b"v" * 900) for i in range(100)] + [("huge", b"x" * 2_000_000)]
    run(dead_letter(topic, message(b"{}", headers=big), Rejection("null_value", "x")))
    _, _, headers = topic.sent[0]
    total = sum(len(n) + len(v) for n, v in headers)
    limits = Limits()
    assert total <= limits.max_header_bytes + 64
    h = dict(headers)
    assert "huge" not in h
    kept = [n for n, _ in headers if n.startswith("h") and n[1:].isdigit()]
    assert 0 < len(kept) < 100
    assert int(h["headers_dropped"]) == 101 - len(kept)


def test_a_producer_smaller_than_its_configuration_still_gets_a_record():
    # The app says 1,000,000 but the producer refuses anything above 8,000 bytes: the fitted
    # record (64 KiB) is refused, the minimal one is sent; nothing raises.
    topic = FakeProducerTopic(max_request_size=8_000, conf_request_size=1_000_000)
    value = b"x" * 10_000_000
    run(dead_letter(topic, message(value), Rejection("payload_too_large", "big")))
    assert topic.refused == 1 and len(topic.sent) == 1
    _, sent, headers = topic.sent[0]
    h = dict(headers)
    assert sent == value[:MINIMAL.max_value_bytes]
    assert h["original_size"] == b"10000000" and h["reason"] == b"payload_too_large"


@pytest.mark.parametrize("request_size", [20_000, 100_000, 1_000_000, 10_000_000])
def test_limits_follow_the_configured_request_size(request_size):
    topic = FakeProducerTopic(max_request_size=request_size)
    run(dead_letter(topic, message(b"y" * 20_000_000, key=b"k" * 100_000,
                                   headers=[(f"h{i}", b"v" * 1000) for i in range(50)]),
                    Rejection("payload_too_large", "big")))
    assert topic.refused == 0 and len(topic.sent) == 1


def test_errors_other_than_size_are_not_swallowed():
    class Down(FakeProducerTopic):
        async def send(self, *, key, value, headers):
            raise ProducerSendError("down") from KafkaConnectionError("no broker")

    with pytest.raises(ProducerSendError):
        run(dead_letter(Down(), message(b"{}"), Rejection("null_value", "x")))


def test_late_records_are_fitted_too():
    topic = FakeProducerTopic()
    run(send_late(topic, message(b"z" * 2_000_000), "card", 123))
    _, sent, headers = topic.sent[0]
    h = dict(headers)
    assert len(sent) == Limits().max_value_bytes and h["reason"] == b"late"
    assert h["original_size"] == b"2000000" and h["watermark"] == b"123"


def test_fit_keeps_own_headers_first_and_never_duplicates_them():
    _, _, headers = fit(b"k", b"v", [("reason", b"r"), ("error", b"e")],
                        {"reason": b"spoofed", "x": b"1"}, Limits())
    assert headers == [("reason", b"r"), ("error", b"e"), ("x", b"1")]
