"""The transaction contract: every bad input gets its reason, every good one passes unchanged."""

from __future__ import annotations

import json

import pytest

from contracts.rejections import REASONS, Rejection
from contracts.transactions import Rules, Transaction, validate
from tests.bad_inputs import BAD_INPUTS, GOOD_INPUTS, MAX_PAYLOAD, VALID

NOW_MS = 1_700_000_000_000
RULES = Rules(
    max_amount=50_000.0,
    currencies=frozenset({"EUR", "USD"}),
    max_future_skew_ms=300_000,
    max_payload_bytes=MAX_PAYLOAD,
)


@pytest.mark.parametrize(("case", "raw", "reason"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_rejected_with_its_reason(case: str, raw: bytes | None, reason: str) -> None:
    result = validate(raw, RULES, now_ms=NOW_MS)
    assert isinstance(result, Rejection), case
    assert result.reason == reason, (case, result)
    assert result.reason in REASONS
    assert result.error


@pytest.mark.parametrize(("case", "raw"), GOOD_INPUTS, ids=[c[0] for c in GOOD_INPUTS])
def test_good_input_passes(case: str, raw: bytes) -> None:
    result = validate(raw, RULES, now_ms=NOW_MS)
    assert isinstance(result, Transaction), (case, result)
    source = json.loads(raw)
    assert result.txn_id == source["txn_id"]
    assert result.amount == source["amount"]
    assert result.ts == VALID["ts"]  # every ISO variant names the same instant


def test_error_text_never_contains_the_payload() -> None:
    secret_card = "4111111111111111"
    for raw in (
        json.dumps({**VALID, "card_id": secret_card, "amount": -1}).encode(),
        json.dumps({**VALID, "card_id": secret_card, "currency": "ZZZ"}).encode(),
        json.dumps({**VALID, "card_id": secret_card, "amount": "12"}).encode(),
    ):
        result = validate(raw, RULES, now_ms=NOW_MS)
        assert isinstance(result, Rejection)
        assert secret_card not in result.error


def test_skew_is_relative_to_the_wall_clock() -> None:
    raw = json.dumps({**VALID, "ts": NOW_MS + 299_000}).encode()
    assert isinstance(validate(raw, RULES, now_ms=NOW_MS), Transaction)
    raw = json.dumps({**VALID, "ts": NOW_MS + 301_000}).encode()
    assert validate(raw, RULES, now_ms=NOW_MS).reason == "future_timestamp"


def test_normalised_record_round_trips() -> None:
    raw = json.dumps({**VALID, "ts": "2018-04-01T00:00:31Z"}).encode()
    txn = validate(raw, RULES, now_ms=NOW_MS)
    again = validate(txn.model_dump_json().encode(), RULES, now_ms=NOW_MS)
    assert again == txn
    assert isinstance(json.loads(txn.model_dump_json())["ts"], int)
