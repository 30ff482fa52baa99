"""Pure feature logic: one definition, executed by the streaming agents and by the batch.

No Kafka, Faust or Redis import anywhere in this package.

Modules
-------
spec       the declarative, versioned feature spec (``DEFAULT_SPEC``) and ``MISSING``
txn        stateless transaction features (amount, weekend, night)
eventlog   the per-key history: compact int64 columns, exact windows by prefix sums,
           ordering, lateness, duplicates, retention, serialisation
card       ``CardState``: customer windows, velocity, geo
terminal   ``TerminalState``: delayed windows and label-based fraud risk
lateness   the late / out-of-order policy (``LatenessPolicy``, ``Arrival``)
geo        haversine distance, implied speed, fixed-point coordinates
rows       ``TxnRow``/``LabelRow`` and the binary state-log codec (``encode``/``decode``)
snapshot   the compact binary snapshot of one key's state (``dumps``/``loads``)
batch      ``compute_features`` over a DataFrame and ``feature_vector`` (imports pandas)

Examples
--------
>>> from features import CardState, TerminalState, DEFAULT_SPEC
>>> txn = {"txn_id": "t1", "card_id": "c", "terminal_id": "T", "amount": 9.99, "ts": 0}
>>> row = {**TerminalState().update(txn), **CardState().update(txn)}
>>> len(row) == len(DEFAULT_SPEC.names_for("card")) + len(DEFAULT_SPEC.names_for("terminal"))
True
"""

from features.card import CardState
from features.lateness import Arrival, LateEventError, LatenessPolicy
from features.spec import DEFAULT_SPEC, MISSING, FeatureDef, FeatureSpec
from features.terminal import TerminalState
from features.txn import transaction_features

__all__ = [
    "DEFAULT_SPEC",
    "MISSING",
    "Arrival",
    "CardState",
    "FeatureDef",
    "FeatureSpec",
    "LateEventError",
    "LatenessPolicy",
    "TerminalState",
    "transaction_features",
]
