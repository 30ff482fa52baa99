"""The internal records, typed, each with one encoder and one decoder: its wire format, once.

=====================  ===========================  =========================================
record                 topic                        encode / decode
=====================  ===========================  =========================================
validated transaction  (state, internal topics)     :func:`encode_transaction` /
                                                    :func:`decode_transaction`
label                  ``transaction-labels-by-…``  :func:`encode_label` / :func:`decode_label`
card-stage output      ``transactions-validated``   :func:`encode_validated` /
                                                    :func:`decode_validated`
:class:`Enriched`      ``transactions-enriched``    :func:`encode_enriched` /
                                                    :func:`decode_enriched`
:class:`Prediction`    ``ml-predictions``           :func:`encode_prediction` /
                                                    :func:`decode_prediction`
:class:`DriftSignal`   ``<app_id>-drift-signals``   :func:`encode_drift_signal` /
                                                    :func:`decode_drift_signal`
:class:`RetrainEvent`  ``model-retrain``            :func:`encode_retrain` /
                                                    :func:`decode_retrain`
:class:`ModelUpdate`   ``model-updates``            :func:`encode_model_update` /
                                                    :func:`decode_model_update`
=====================  ===========================  =========================================

Every decoder parses with :func:`contracts.wire.loads_object` (depth limit, no NaN or
Infinity, size limit when given) and returns the typed record or raises one
:class:`~contracts.rejections.ContractError` (a :class:`~contracts.reasons.Reason` and a detail
naming fields, never values). Every encoder writes compact JSON with orjson and refuses a
non-finite number (:class:`ValueError`): orjson would silently write it as ``null``.

The wire formats are those of the code before this module (same objects, same field names);
only the whitespace differs (compact). The enriched record is the transaction's own fields plus
``features``, ``feature_spec_version`` and, when known, ``source_ts_ms``; a prediction has the
fields of ``FIELDS`` plus ``run_id`` (only when set) and ``fail_open`` (only when true); a
model update is sorted, compact JSON, byte for byte as before.

>>> p = Prediction(txn_id="t1", card_id="c1", terminal_id="x1", event_ts=5, score=0.75,
...     decision="alert", threshold=0.5, model_name="m", model_version=3, variant="champion",
...     shadow=False, scored_at=1000, latency_ms=10.0)
>>> raw = encode_prediction(p)
>>> raw[:42]
b'{"txn_id":"t1","card_id":"c1","terminal_id'
>>> decode_prediction(raw) == p, b"fail_open" in raw, b"run_id" in raw
(True, False, False)
>>> decode_prediction(b'{"txn_id": "t1"}')
Traceback (most recent call last):
...
contracts.rejections.ContractError: missing_field: prediction.card_id: required field is \
missing or null
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from pydantic import ValidationError

from contracts.reasons import Reason
from contracts.rejections import ContractError
from contracts.transactions import Label, Transaction, from_validation_error
from contracts.wire import MAX_DEPTH, loads_object

_MISSING: Any = object()


def _fields(value: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    return {name: value.get(name) for name in names}


# -- field checks ------------------------------------------------------------------------------

def _is_str(v: Any) -> bool:
    return v.__class__ is str


def _is_int(v: Any) -> bool:
    return v.__class__ is int


def _is_number(v: Any) -> bool:
    return v.__class__ is float or v.__class__ is int


def _is_bool(v: Any) -> bool:
    return v is True or v is False


def _is_dict(v: Any) -> bool:
    return v.__class__ is dict


_KIND_NAMES: dict[Callable[[Any], bool], str] = {
    _is_str: "a string", _is_int: "an integer", _is_number: "a number", _is_bool: "a boolean",
    _is_dict: "an object"}

#: ``(field, check, required)`` per field of a record.
Spec = Sequence[tuple[str, Callable[[Any], bool], bool]]


def _check(obj: Mapping[str, Any], spec: Spec, what: str,
           missing: Reason = Reason.MISSING_FIELD, wrong: Reason = Reason.WRONG_TYPE) -> None:
    for name, check, required in spec:
        value = obj.get(name, _MISSING)
        if value is _MISSING or value is None:
            if required:
                raise ContractError(missing, f"{what}.{name}: required field is missing or null")
            continue
        if not check(value):
            raise ContractError(wrong, f"{what}.{name}: must be {_KIND_NAMES[check]}")


def _decode(data: Any, max_bytes: int | None, max_depth: int) -> dict[str, Any]:
    return loads_object(data, max_bytes=max_bytes, max_depth=max_depth)


def finite(values: Iterable[Any], what: str) -> None:
    """Refuse NaN and infinities among ``values`` (``None`` and non-numbers pass).

    One ``sum`` decides for all-finite numbers (a sum is finite only when every term is; an
    overflowing sum of finite terms is then checked value by value).

    >>> finite([1.0, 2, None], "features")
    >>> finite([1.0, float("nan")], "features")
    Traceback (most recent call last):
    ...
    ValueError: features: NaN or infinity (JSON has neither)
    """
    values = list(values)
    try:
        if math.isfinite(sum(values)):
            return
    except TypeError:  # a None or a non-number: check one by one
        pass
    for value in values:
        if value.__class__ is float and not math.isfinite(value):
            raise ValueError(f"{what}: NaN or infinity (JSON has neither)")


# -- the validated transaction and the label ---------------------------------------------------

def encode_transaction(txn: Transaction | Mapping[str, Any]) -> bytes:
    """A validated transaction (``ts`` in epoch ms) as compact JSON.

    >>> t = Transaction(txn_id="t1", card_id="c1", terminal_id="x1", amount=2.5, currency="EUR",
    ...                 ts=1522540831000)
    >>> decode_transaction(encode_transaction(t)) == t
    True
    """
    fields = txn.__dict__ if isinstance(txn, Transaction) else txn
    finite((fields.get("amount"), fields.get("lat"), fields.get("lon")), "transaction")
    return orjson.dumps(fields if fields.__class__ is dict else dict(fields))


def decode_transaction(data: Any, *, max_bytes: int | None = None,
                       max_depth: int = MAX_DEPTH) -> Transaction:
    """An internal (already validated) transaction; the contract's checks run again."""
    value = _decode(data, max_bytes, max_depth)
    try:
        txn = Transaction.model_validate(value)
    except ValidationError as exc:
        raise from_validation_error(exc) from None
    if not isinstance(txn.ts, int):
        raise ContractError(Reason.INVALID_TIMESTAMP, "ts: epoch milliseconds expected")
    return txn


def encode_label(label: Label | Mapping[str, Any]) -> bytes:
    """A validated label as compact JSON.

    >>> lab = Label(txn_id="t1", card_id="c1", terminal_id="x1", is_fraud=True, ts=5,
    ...             reported_at=9)
    >>> encode_label(lab)
    b'{"txn_id":"t1","card_id":"c1","terminal_id":"x1","is_fraud":true,"ts":5,"reported_at":9}'
    >>> decode_label(encode_label(lab)) == lab
    True
    """
    fields = label.__dict__ if isinstance(label, Label) else label
    return orjson.dumps(fields if fields.__class__ is dict else dict(fields))


def decode_label(data: Any, *, max_bytes: int | None = None,
                 max_depth: int = MAX_DEPTH) -> Label:
    """An internal (already validated) label."""
    value = _decode(data, max_bytes, max_depth)
    try:
        return Label.model_validate(value)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


# -- the card stage's output (transactions-validated) ------------------------------------------

@dataclass(frozen=True, slots=True)
class Validated:
    """A validated transaction with its card features, on its way to the terminal stage."""

    txn: dict[str, Any]
    card: dict[str, Any]
    source_ts_ms: int | None = None


_TXN_SPEC: Spec = (("txn_id", _is_str, True), ("card_id", _is_str, True),
                   ("terminal_id", _is_str, True), ("ts", _is_int, True))


def encode_validated(txn: Mapping[str, Any], card: Mapping[str, Any],
                     source_ts_ms: int | None) -> bytes:
    """``{"txn": …, "card": …, "source_ts_ms": …}``.

    >>> raw = encode_validated({"txn_id": "t", "card_id": "c", "terminal_id": "x", "ts": 1},
    ...                        {"card_n_1d": 1.0}, 7)
    >>> raw
    b'{"txn":{"txn_id":"t","card_id":"c","terminal_id":"x","ts":1},"card":{"card_n_1d":1.0},\
"source_ts_ms":7}'
    >>> decode_validated(raw).card
    {'card_n_1d': 1.0}
    """
    finite(card.values(), "card features")
    return orjson.dumps({"txn": txn, "card": card, "source_ts_ms": source_ts_ms})


def decode_validated(data: Any, *, max_bytes: int | None = None,
                     max_depth: int = MAX_DEPTH) -> Validated:
    value = _decode(data, max_bytes, max_depth)
    _check(value, (("txn", _is_dict, True), ("card", _is_dict, True),
                   ("source_ts_ms", _is_int, False)), "validated")
    _check(value["txn"], _TXN_SPEC, "validated.txn")
    return Validated(value["txn"], value["card"], value.get("source_ts_ms"))


# -- the enriched record (transactions-enriched) -----------------------------------------------

@dataclass(frozen=True, slots=True)
class Enriched:
    """A transaction with its feature vector (name -> value, spec order), the spec version and
    the Kafka timestamp of the original transaction record (``source_ts_ms``, when known)."""

    txn: dict[str, Any]
    features: dict[str, Any]
    feature_spec_version: str
    source_ts_ms: int | None = None

    def vector(self, names: Sequence[str], spec_version: str) -> list[float]:
        """The feature values in ``names`` order, for a model built by ``spec_version``;
        ``feature_spec_mismatch`` / ``feature_mismatch`` otherwise.

        >>> e = Enriched({"txn_id": "t"}, {"b": 2, "a": 1.5}, "v1")
        >>> e.vector(["a", "b"], "v1")
        [1.5, 2.0]
        >>> e.vector(["a", "c"], "v1")
        Traceback (most recent call last):
        ...
        contracts.rejections.ContractError: feature_mismatch: feature 'c' missing
        """
        if self.feature_spec_version != spec_version:
            raise ContractError(Reason.FEATURE_SPEC_MISMATCH,
                                f"record built by feature spec {self.feature_spec_version!r}, "
                                f"model needs {spec_version!r}")
        features = self.features
        if len(features) != len(names):
            raise ContractError(Reason.FEATURE_MISMATCH, f"expected {len(names)} features")
        try:
            return [float(features[name]) for name in names]
        except KeyError as exc:
            raise ContractError(Reason.FEATURE_MISMATCH,
                                f"feature {exc.args[0]!r} missing") from None
        except (TypeError, ValueError):
            raise ContractError(Reason.FEATURE_MISMATCH,
                                "a feature value is not a number") from None


_ENRICHED_SPEC: Spec = (*_TXN_SPEC, ("features", _is_dict, True),
                        ("feature_spec_version", _is_str, True),
                        ("source_ts_ms", _is_int, False))


def encode_enriched(txn: Mapping[str, Any], features: Mapping[str, Any], version: str,
                    source_ts_ms: int | None = None) -> bytes:
    """The ``transactions-enriched`` value: the transaction's fields, ``features``,
    ``feature_spec_version`` and (when known) ``source_ts_ms``.

    >>> encode_enriched({"txn_id": "t1"}, {"amount": 3.0}, "abc")
    b'{"txn_id":"t1","features":{"amount":3.0},"feature_spec_version":"abc"}'
    >>> encode_enriched({"txn_id": "t1"}, {}, "abc", 17)[-18:]
    b'"source_ts_ms":17}'
    """
    finite(features.values(), "features")
    value = {**txn, "features": features, "feature_spec_version": version}
    if source_ts_ms is not None:
        value["source_ts_ms"] = source_ts_ms
    return orjson.dumps(value)


def decode_enriched(data: Any, *, max_bytes: int | None = None,
                    max_depth: int = MAX_DEPTH) -> Enriched:
    """An enriched record; ``malformed_enriched`` when it lacks the ids, ``ts``, ``features``
    or ``feature_spec_version`` (or has them of the wrong type)."""
    try:
        value = _decode(data, max_bytes, max_depth)
    except ContractError as exc:
        if exc.reason in (Reason.PAYLOAD_TOO_LARGE, Reason.TOO_DEEP, Reason.NON_FINITE_NUMBER):
            raise
        raise ContractError(Reason.MALFORMED_ENRICHED, f"not a JSON object ({exc.reason})") \
            from None
    _check(value, _ENRICHED_SPEC, "enriched", Reason.MALFORMED_ENRICHED,
           Reason.MALFORMED_ENRICHED)
    features = value.pop("features")
    version = value.pop("feature_spec_version")
    source = value.pop("source_ts_ms", None)
    return Enriched(value, features, version, source)


# -- the prediction (ml-predictions) -----------------------------------------------------------

#: The fields every prediction has (README's ``ml-predictions`` table), in wire order.
PREDICTION_FIELDS = ("txn_id", "card_id", "terminal_id", "event_ts", "score", "decision",
                     "threshold", "model_name", "model_version", "variant", "shadow",
                     "scored_at", "latency_ms")


@dataclass(frozen=True, slots=True)
class Prediction:
    """One ``ml-predictions`` record (fields as the README's table). ``score``,
    ``threshold``, ``model_name`` and ``model_version`` are ``None`` only in a fail-open
    record; ``run_id`` (the MLflow run of the model, optional) and ``fail_open`` are written
    only when set."""

    txn_id: str
    card_id: str
    terminal_id: str
    event_ts: int
    score: float | None
    decision: Literal["alert", "pass"]
    threshold: float | None
    model_name: str | None
    model_version: int | None
    variant: str
    shadow: bool
    scored_at: int
    latency_ms: float
    run_id: str | None = None
    fail_open: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The wire object (``run_id``/``fail_open`` only when set)."""
        out = {name: getattr(self, name) for name in PREDICTION_FIELDS}
        if self.run_id is not None:
            out["run_id"] = self.run_id
        if self.fail_open:
            out["fail_open"] = True
        return out


_PREDICTION_SPEC: Spec = (
    ("txn_id", _is_str, True), ("card_id", _is_str, True), ("terminal_id", _is_str, True),
    ("event_ts", _is_int, True), ("score", _is_number, False), ("decision", _is_str, True),
    ("threshold", _is_number, False), ("model_name", _is_str, False),
    ("model_version", _is_int, False), ("variant", _is_str, True), ("shadow", _is_bool, True),
    ("scored_at", _is_int, True), ("latency_ms", _is_number, True), ("run_id", _is_str, False),
    ("fail_open", _is_bool, False))


def encode_prediction(prediction: Prediction) -> bytes:
    """The ``ml-predictions`` value of ``prediction``."""
    finite((prediction.score, prediction.threshold, prediction.latency_ms), "prediction")
    return orjson.dumps(prediction.to_dict())


def decode_prediction(data: Any, *, max_bytes: int | None = None,
                      max_depth: int = MAX_DEPTH) -> Prediction:
    value = _decode(data, max_bytes, max_depth)
    _check(value, _PREDICTION_SPEC, "prediction")
    if value["decision"] not in ("alert", "pass"):
        raise ContractError(Reason.INVALID_FIELD, "prediction.decision: alert or pass")
    return Prediction(**_fields(value, PREDICTION_FIELDS),
                      run_id=value.get("run_id"), fail_open=value.get("fail_open") or False)


# -- the drift signal (<app_id>-drift-signals) -------------------------------------------------

#: ``p``: a champion's score; ``e``: its error once the label met the prediction; ``f``: the
#: watched feature values of a transaction.
SignalKind = Literal["p", "e", "f"]

_SIGNAL_SPECS: dict[str, Spec] = {
    "p": (("txn_id", _is_str, True), ("model_version", _is_str, True),
          ("event_ts", _is_int, True), ("score", _is_number, True)),
    "e": (("txn_id", _is_str, True), ("model_name", _is_str, True),
          ("model_version", _is_str, True), ("event_ts", _is_int, True),
          ("label", _is_int, True), ("score", _is_number, True), ("error", _is_number, True)),
    "f": (("txn_id", _is_str, True), ("event_ts", _is_int, True),
          ("features", _is_dict, True)),
}


@dataclass(frozen=True, slots=True)
class DriftSignal:
    """One input of a model's detectors (keyed by model name); which fields are set depends on
    ``kind`` (see ``_SIGNAL_SPECS``)."""

    kind: SignalKind
    txn_id: str
    event_ts: int
    model_version: str | None = None
    score: float | None = None
    model_name: str | None = None
    label: int | None = None
    error: float | None = None
    features: dict[str, float | None] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The wire object: ``k`` and the fields of its kind.

        >>> DriftSignal("p", "t1", 5, model_version="3", score=0.5).to_dict()
        {'k': 'p', 'txn_id': 't1', 'model_version': '3', 'event_ts': 5, 'score': 0.5}
        """
        out: dict[str, Any] = {"k": self.kind}
        for name, _, _ in _SIGNAL_SPECS[self.kind]:
            out[name] = getattr(self, name)
        return out


def encode_drift_signal(signal: DriftSignal) -> bytes:
    """The drift-signals value of ``signal``.

    >>> encode_drift_signal(DriftSignal("f", "t1", 5, features={"amount": 3.0}))
    b'{"k":"f","txn_id":"t1","event_ts":5,"features":{"amount":3.0}}'
    """
    if signal.kind not in _SIGNAL_SPECS:
        raise ValueError(f"drift signal kind {signal.kind!r}: p, e or f")
    finite((signal.score, signal.error), "drift signal")
    if signal.features is not None:
        finite(signal.features.values(), "drift signal features")
    return orjson.dumps(signal.to_dict())


def decode_drift_signal(data: Any, *, max_bytes: int | None = None,
                        max_depth: int = MAX_DEPTH) -> DriftSignal:
    """A drift signal of a known kind with its kind's fields.

    >>> decode_drift_signal(b'{"k":"p","txn_id":"t1","model_version":"3","event_ts":5,'
    ...                     b'"score":0.5}').score
    0.5
    """
    value = _decode(data, max_bytes, max_depth)
    kind = value.get("k")
    spec = _SIGNAL_SPECS.get(kind) if isinstance(kind, str) else None
    if spec is None:
        raise ContractError(Reason.INVALID_FIELD, "drift signal.k: p, e or f")
    _check(value, spec, f"drift signal {kind}")
    return DriftSignal(kind, **{name: value[name] for name, _, _ in spec})  # type: ignore[arg-type]


# -- the retrain event (model-retrain) ---------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RetrainEvent:
    """A drift detection that asks for a retrain (or one made by hand): ``idempotency_key``
    makes a redelivered event retrain nothing twice."""

    model_name: str
    idempotency_key: str
    model_version: str | None = None
    detector: str | None = None
    signal: str | None = None
    event_ts: int | None = None
    txn_id: str | None = None
    evidence: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The wire object (field order of the drift monitor's record)."""
        return {"model_name": self.model_name, "model_version": self.model_version,
                "detector": self.detector, "signal": self.signal, "event_ts": self.event_ts,
                "txn_id": self.txn_id, "evidence": self.evidence,
                "idempotency_key": self.idempotency_key}

    @classmethod
    def from_mapping(cls, rec: Mapping[str, Any]) -> RetrainEvent:
        """Check a record's fields (``missing_field`` / ``wrong_type``).

        >>> RetrainEvent.from_mapping({"model_name": "m", "idempotency_key": "k",
        ...                            "event_ts": 5.0}).event_ts
        5
        """
        value = dict(rec)
        if value.get("event_ts").__class__ is float and value["event_ts"].is_integer():
            value["event_ts"] = int(value["event_ts"])
        if value.get("model_version").__class__ is int:
            value["model_version"] = str(value["model_version"])
        _check(value, _RETRAIN_SPEC, "retrain")
        return cls(**_fields(value, (name for name, _, _ in _RETRAIN_SPEC)))


_RETRAIN_SPEC: Spec = (
    ("model_name", _is_str, True), ("idempotency_key", _is_str, True),
    ("model_version", _is_str, False), ("detector", _is_str, False), ("signal", _is_str, False),
    ("event_ts", _is_int, False), ("txn_id", _is_str, False), ("evidence", _is_dict, False))


def encode_retrain(event: RetrainEvent | Mapping[str, Any]) -> tuple[bytes, bytes]:
    """``(key, value)`` of a ``model-retrain`` record: the model name and the JSON.

    >>> encode_retrain(RetrainEvent("m", "k1", "3", "adwin", "error", 5, "t1", {"n_seen": 9}))
    (b'm', b'{"model_name":"m","model_version":"3","detector":"adwin","signal":"error",\
"event_ts":5,"txn_id":"t1","evidence":{"n_seen":9},"idempotency_key":"k1"}')
    """
    if not isinstance(event, RetrainEvent):
        event = RetrainEvent.from_mapping(event)
    if event.evidence:
        finite((v for v in event.evidence.values() if v.__class__ is float), "evidence")
    return event.model_name.encode(), orjson.dumps(event.to_dict())


def decode_retrain(data: Any, *, max_bytes: int | None = None,
                   max_depth: int = MAX_DEPTH) -> RetrainEvent:
    return RetrainEvent.from_mapping(_decode(data, max_bytes, max_depth))


# -- the model update (model-updates) ----------------------------------------------------------

ModelAction = Literal["registered", "promoted", "rolled_back"]


@dataclass(frozen=True, slots=True)
class ModelUpdate:
    """A registry change (the MLflow aliases are the truth; ``event_id`` is unique per
    event so that consumers can drop redeliveries)."""

    model_name: str
    action: str
    version: int | None = None
    alias: str | None = None
    artifact_uri: str | None = None
    sha256: str | None = None
    event_id: str | None = None
    at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "action": self.action, "version": self.version,
                "alias": self.alias, "artifact_uri": self.artifact_uri, "sha256": self.sha256,
                "event_id": self.event_id, "at": self.at}


_MODEL_UPDATE_SPEC: Spec = (
    ("model_name", _is_str, True), ("action", _is_str, True), ("version", _is_int, False),
    ("alias", _is_str, False), ("artifact_uri", _is_str, False), ("sha256", _is_str, False),
    ("event_id", _is_str, False), ("at", _is_str, False))


def encode_model_update(event: ModelUpdate | Mapping[str, Any]) -> tuple[bytes, bytes]:
    """``(key, value)``: the model name, and compact JSON with sorted keys.

    >>> encode_model_update({"model_name": "m", "version": 2, "action": "promoted"})
    (b'm', b'{"action":"promoted","model_name":"m","version":2}')
    """
    fields = event.to_dict() if isinstance(event, ModelUpdate) else dict(event)
    name = fields.get("model_name")
    if not isinstance(name, str) or not name:
        raise ValueError("a model update needs its model_name")
    return name.encode(), orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


def decode_model_update(data: Any, *, max_bytes: int | None = None,
                        max_depth: int = MAX_DEPTH) -> ModelUpdate:
    """A model update; ``model_name`` and ``action`` are required.

    >>> decode_model_update(b'{"action":"promoted","model_name":"m","version":2}').version
    2
    """
    value = _decode(data, max_bytes, max_depth)
    _check(value, _MODEL_UPDATE_SPEC, "model update")
    return ModelUpdate(**_fields(value, (name for name, _, _ in _MODEL_UPDATE_SPEC)))
