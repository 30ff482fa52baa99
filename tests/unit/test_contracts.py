"""The contracts: one Reason enum for every dead-letter reason, one depth-limited decoder that
never raises anything but ContractError, no Infinity anywhere, and one encode/decode per
internal record whose wire format readers of the old encoding still parse."""

from __future__ import annotations

import ast
import json
import math
import re
from pathlib import Path

import pytest

from contracts import records as R
from contracts.reasons import Reason
from contracts.rejections import REASONS, ContractError, Rejection
from contracts.transactions import Rules, validate, validate_label
from contracts.wire import depth, loads, loads_object

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("config", "contracts", "features", "models", "training", "app", "infra", "simulator",
            "bench")
DEEP = b"[" * 10_000 + b"]" * 10_000
DEEP_OBJECT = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
LABEL = {"txn_id": "t1", "card_id": "c1", "terminal_id": "x1", "is_fraud": 1,
         "ts": 1522540831000, "reported_at": 1523145631000}
BIG_RULES = Rules(50_000.0, frozenset({"EUR"}), 300_000, 1_048_576)


# -- one Reason enum ---------------------------------------------------------------------------

def _emitted_reasons() -> list[tuple[str, str]]:
    """Every reason literal the code can put on a dead-letter record: the first argument of
    ``Rejection(...)``, ``ContractError(...)`` and ``_reject(...)``, and every ``Reason.X``."""
    found: list[tuple[str, str]] = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            where = str(path.relative_to(ROOT))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call):
                    name = getattr(node.func, "id", getattr(node.func, "attr", None))
                    if name in ("Rejection", "ContractError", "_reject") and node.args:
                        first = node.args[0]
                        if isinstance(first, ast.Constant) and isinstance(first.value, str):
                            found.append((where, first.value))
                elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                      and node.value.id == "Reason" and node.attr.isupper()):
                    found.append((where, node.attr))
    return found


def test_every_reason_the_code_can_emit_is_a_member_of_the_enum():
    found = _emitted_reasons()
    assert len(found) > 20  # the scan sees the call sites
    members = {r.value for r in Reason}
    unknown = [(where, value) for where, value in found
               if value not in members and value not in Reason.__members__]
    assert unknown == []


def test_an_unknown_reason_cannot_be_dead_lettered():
    with pytest.raises(ValueError, match="not a dead-letter reason"):
        Rejection("typo_reason", "x")
    with pytest.raises(ValueError):
        ContractError("typo_reason", "x")
    assert Rejection("no_model", "x").reason is Reason.NO_MODEL
    assert REASONS == tuple(r.value for r in Reason)


def test_the_readme_lists_exactly_the_enum_in_its_order():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Dead-letter reasons", 1)[1].split("\n#", 1)[0]
    listed_paragraph = section.split("(a test keeps this list equal to it):", 1)[1]
    listed_paragraph = listed_paragraph.split("(a record that made the code fail", 1)[0]
    listed = re.findall(r"`([a-z0-9_]+)`", listed_paragraph)
    assert listed == [r.value for r in Reason]


# -- the decoder -------------------------------------------------------------------------------

@pytest.mark.parametrize("raw", [DEEP, DEEP_OBJECT, b"[" * 10_000, b'{"a":' * 5_000],
                         ids=["array", "object", "unclosed", "unclosed-object"])
def test_deep_json_is_too_deep_never_a_recursion_error(raw):
    with pytest.raises(ContractError) as err:
        loads(raw)
    assert err.value.reason is Reason.TOO_DEEP


def test_the_depth_limit_is_exact_and_ignores_brackets_in_strings():
    assert loads(b"[" * 64 + b"]" * 64) is not None
    with pytest.raises(ContractError, match="too_deep"):
        loads(b"[" * 65 + b"]" * 65)
    assert loads(b"[" * 65 + b"]" * 65, max_depth=65) is not None
    tricky = b'{"a": "[[[[\\"[[[", "b": [' + b'"{{{{",' * 100 + b"1]}"
    assert depth(tricky) == 2 and loads(tricky)["b"][-1] == 1


@pytest.mark.parametrize("literal", [b"1e309", b"-1e309", b"1E+400", b"9" * 400,
                                     b"123456789e999", b"NaN", b"Infinity", b"-Infinity"])
@pytest.mark.parametrize("where", ["top", "extra", "nested"])
def test_no_infinity_anywhere(literal, where):
    raw = {"top": b"%s",
           "extra": b'{"txn_id": "t", "note": %s}',
           "nested": b'{"txn_id": "t", "x": {"y": [1, {"z": %s}]}}'}[where] % literal
    with pytest.raises(ContractError) as err:
        loads(raw)
    assert err.value.reason is Reason.NON_FINITE_NUMBER


@pytest.mark.parametrize(("raw", "reason"), [
    (None, Reason.NULL_VALUE), (b"", Reason.NULL_VALUE), (b"null", Reason.NULL_VALUE),
    (b"[1]", Reason.NOT_AN_OBJECT), (b'"x"', Reason.NOT_AN_OBJECT),
    (b'{"a": 1,', Reason.MALFORMED_JSON), (b'{"a": "\xff"}', Reason.NOT_UTF8),
    (b'{"a": "NaN is text", }', Reason.MALFORMED_JSON),
])
def test_loads_object_reasons(raw, reason):
    with pytest.raises(ContractError) as err:
        loads_object(raw)
    assert err.value.reason is reason


def test_size_limit_comes_before_parsing():
    with pytest.raises(ContractError) as err:
        loads(b'{"a": "' + b"x" * 100 + b'"}', max_bytes=50)
    assert err.value.reason is Reason.PAYLOAD_TOO_LARGE


def test_every_input_and_internal_decoder_refuses_a_10000_deep_json():
    deep_txn = json.dumps({"txn_id": "t"}).encode()[:-1] + b', "x": ' + DEEP + b"}"
    assert validate(deep_txn, BIG_RULES, now_ms=2e12).reason == "too_deep"
    assert validate_label(deep_txn, BIG_RULES).reason == "too_deep"
    decoders = [R.decode_transaction, R.decode_label, R.decode_validated, R.decode_prediction,
                R.decode_drift_signal, R.decode_retrain, R.decode_model_update]
    for decode in decoders:
        with pytest.raises(ContractError) as err:
            decode(deep_txn)
        assert err.value.reason is Reason.TOO_DEEP, decode.__name__
    with pytest.raises(ContractError) as err:
        R.decode_enriched(deep_txn)
    assert err.value.reason is Reason.TOO_DEEP


def test_label_ids_refuse_control_characters_and_extra_infinity():
    for field in ("txn_id", "card_id", "terminal_id"):
        for bad in ("a\x00", "a\x1b", "a\n", "a\x7f", "a\x9f", ""):
            result = validate_label(json.dumps({**LABEL, field: bad}).encode(), BIG_RULES)
            assert isinstance(result, Rejection) and result.reason == "invalid_field"
            assert result.error.startswith(field)
            assert not bad or bad not in result.error.replace(field, "")
    raw = json.dumps({**LABEL, "note": 0.5}).encode().replace(b"0.5", b"1e309")
    assert validate_label(raw, BIG_RULES).reason == "non_finite_number"


@pytest.mark.parametrize("code", [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)])
def test_every_control_character_is_refused_in_every_id(code):
    from tests.bad_inputs import valid

    for field in ("txn_id", "card_id", "terminal_id"):
        raw = json.dumps(valid(**{field: f"id{chr(code)}x"})).encode()
        result = validate(raw, BIG_RULES, now_ms=2e12)
        assert isinstance(result, Rejection) and result.reason == "invalid_field", (field, code)
        assert field in result.error and "id" not in result.error.replace(field, "")


# -- the records -------------------------------------------------------------------------------

TXN = {"txn_id": "t1", "card_id": "c1", "terminal_id": "x1", "amount": 12.5, "currency": "EUR",
       "ts": 1522540831000, "lat": None, "lon": None, "country": "FR", "mcc": None,
       "channel": "online"}
FEATURES = {"amount": 12.5, "card_tx_count_1d": 3.0, "terminal_risk_7d": 0.0}
PRED = R.Prediction(txn_id="t1", card_id="c1", terminal_id="x1", event_ts=5, score=0.8125,
                    decision="alert", threshold=0.5, model_name="fraud-lgbm", model_version=3,
                    variant="champion", shadow=False, scored_at=1000, latency_ms=10.0)


def test_round_trips():
    enriched = R.decode_enriched(R.encode_enriched(TXN, FEATURES, "v1", 17))
    assert (enriched.txn, enriched.features, enriched.feature_spec_version,
            enriched.source_ts_ms) == (TXN, FEATURES, "v1", 17)
    assert R.decode_enriched(R.encode_enriched(TXN, FEATURES, "v1")).source_ts_ms is None
    assert R.decode_prediction(R.encode_prediction(PRED)) == PRED
    fail_open = R.Prediction(txn_id="t2", card_id="c1", terminal_id="x1", event_ts=6,
                             score=None, decision="pass", threshold=None, model_name=None,
                             model_version=None, variant="none", shadow=False, scored_at=1,
                             latency_ms=0.0, fail_open=True)
    raw = R.encode_prediction(fail_open)
    assert json.loads(raw)["fail_open"] is True and R.decode_prediction(raw) == fail_open
    with_run = R.Prediction(**{**PRED.to_dict(), "run_id": "abc"})
    assert R.decode_prediction(R.encode_prediction(with_run)).run_id == "abc"
    validated = R.decode_validated(R.encode_validated(TXN, {"card_n": 1.0}, 9))
    assert (validated.txn, validated.card, validated.source_ts_ms) == (TXN, {"card_n": 1.0}, 9)
    for signal in (R.DriftSignal("p", "t1", 5, model_version="3", score=0.5),
                   R.DriftSignal("e", "t1", 5, model_version="3", score=0.5, model_name="m",
                                 label=1, error=0.25),
                   R.DriftSignal("f", "t1", 5, features={"amount": 1.0, "x": None})):
        assert R.decode_drift_signal(R.encode_drift_signal(signal)) == signal
    event = R.RetrainEvent("m", "k", "3", "adwin", "error", 5, "t1", {"n_seen": 10})
    key, value = R.encode_retrain(event)
    assert key == b"m" and R.decode_retrain(value) == event
    update = R.ModelUpdate("m", "promoted", 3, "champion", "file:///x", "ab", "e1", "now")
    key, value = R.encode_model_update(update)
    assert key == b"m" and R.decode_model_update(value) == update


def test_wire_formats_equal_the_old_encodings_as_json():
    """Readers of the old bytes parse the new ones to the same objects (only whitespace, and
    for the model update nothing at all, differs)."""
    old_enriched = json.dumps({**TXN, "features": FEATURES, "feature_spec_version": "v1",
                               "source_ts_ms": 17}).encode()
    assert json.loads(R.encode_enriched(TXN, FEATURES, "v1", 17)) == json.loads(old_enriched)
    assert list(json.loads(R.encode_enriched(TXN, FEATURES, "v1", 17))) == list(
        json.loads(old_enriched))
    old_prediction = json.dumps(PRED.to_dict(), allow_nan=False).encode()
    assert R.encode_prediction(PRED) == json.dumps(
        json.loads(old_prediction), separators=(",", ":")).encode()
    assert list(json.loads(R.encode_prediction(PRED))) == list(R.PREDICTION_FIELDS)
    event = {"model_name": "m", "action": "promoted", "version": 2, "alias": "champion",
             "artifact_uri": "file:///a", "sha256": "ff", "event_id": "e", "at": "t"}
    old_update = json.dumps(event, sort_keys=True, separators=(",", ":"),
                            allow_nan=False).encode()
    assert R.encode_model_update(event)[1] == old_update
    assert R.encode_model_update(R.ModelUpdate(**event))[1] == old_update
    validated = {"txn": TXN, "card": {"c": 1.0}, "source_ts_ms": None}
    assert json.loads(R.encode_validated(TXN, {"c": 1.0}, None)) == validated


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_encoders_refuse_non_finite_numbers(bad):
    with pytest.raises(ValueError):
        R.encode_enriched(TXN, {**FEATURES, "amount": bad}, "v1")
    with pytest.raises(ValueError):
        R.encode_prediction(R.Prediction(**{**PRED.to_dict(), "score": bad}))
    with pytest.raises(ValueError):
        R.encode_drift_signal(R.DriftSignal("f", "t", 1, features={"a": bad}))
    with pytest.raises(ValueError):
        R.encode_validated(TXN, {"c": bad}, None)
    with pytest.raises(ValueError):
        R.encode_retrain(R.RetrainEvent("m", "k", evidence={"mean": bad}))


def test_overflowing_sums_of_finite_features_are_accepted():
    R.encode_enriched(TXN, {"a": 1e308, "b": 1e308}, "v1")


@pytest.mark.parametrize(("decode", "raw", "reason"), [
    (R.decode_enriched, b'{"txn_id": "t"}', Reason.MALFORMED_ENRICHED),
    (R.decode_enriched, b"not json", Reason.MALFORMED_ENRICHED),
    (R.decode_enriched, b'{"txn_id": "t", "card_id": "c", "terminal_id": "x", "ts": 1,'
                        b' "features": [], "feature_spec_version": "v"}',
     Reason.MALFORMED_ENRICHED),
    (R.decode_prediction, b'{"txn_id": 1}', Reason.WRONG_TYPE),
    (R.decode_drift_signal, b'{"k": "z", "txn_id": "t", "event_ts": 1}', Reason.INVALID_FIELD),
    (R.decode_drift_signal, b'{"k": "p", "txn_id": "t", "event_ts": 1}', Reason.MISSING_FIELD),
    (R.decode_retrain, b'{"model_name": "m"}', Reason.MISSING_FIELD),
    (R.decode_model_update, b'{"model_name": "m", "action": 3}', Reason.WRONG_TYPE),
    (R.decode_transaction, b'{"txn_id": "t\\u001b"}', Reason.MISSING_FIELD),
    (R.decode_label, b'{"txn_id": "t"}', Reason.MISSING_FIELD),
])
def test_decoders_raise_one_contract_error(decode, raw, reason):
    with pytest.raises(ContractError) as err:
        decode(raw)
    assert err.value.reason is reason


def test_enriched_vector_checks_the_spec_and_the_names():
    enriched = R.decode_enriched(R.encode_enriched(TXN, FEATURES, "v1"))
    assert enriched.vector(list(FEATURES), "v1") == list(FEATURES.values())
    with pytest.raises(ContractError) as err:
        enriched.vector(list(FEATURES), "v2")
    assert err.value.reason is Reason.FEATURE_SPEC_MISMATCH
    with pytest.raises(ContractError) as err:
        enriched.vector(["amount"], "v1")
    assert err.value.reason is Reason.FEATURE_MISMATCH
