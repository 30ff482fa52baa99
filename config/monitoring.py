"""Settings of drift detection and of the retraining it triggers."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field
from pydantic_settings import NoDecode

from config.section import Section, split_list

#: Drift signals that are not features: the champion's score, and its error once labels arrive.
MODEL_SIGNALS = ("score", "error")


class DriftSettings(Section):
    """The drift agents: River ADWIN per signal, and when a detection emits a retrain event.

    Signals other than :data:`MODEL_SIGNALS` must be feature names of the spec; the worker
    checks that when it starts (:func:`app.faust_app.check_drift_signals`), since the spec
    lives above this layer.
    """

    env_prefix = "FRAUDSTREAM_DRIFT_"

    enabled: bool = Field(
        default=False,
        description="Run the drift agents: River ADWIN on the champion's scores, the "
        "selected features and the error stream; model-retrain events on detection.",
    )
    signals: Annotated[list[str], NoDecode, BeforeValidator(split_list)] = Field(
        default_factory=lambda: ["score", "error", "amount", "card_amount_to_mean_30d",
                                 "terminal_risk_7d_delay7d"],
        description="Signals watched by ADWIN: score, error (|label - score| once labels "
        "arrive) and feature names of the spec (read from the enriched topic). JSON list or "
        "comma-separated.",
    )
    adwin_delta: float = Field(
        default=0.002, gt=0, lt=1,
        description="ADWIN confidence delta: smaller, fewer false alarms "
        "and later detection.",
    )
    adwin_clock: int = Field(
        default=32, ge=1, le=10_000,
        description="ADWIN checks for a change every this many values.",
    )
    cooldown_s: float = Field(
        default=86_400.0, ge=0,
        description="After a retrain event, further detections of the model "
        "within this many seconds of event time are counted but emit nothing.",
    )
    join_horizon_s: int = Field(
        default=2_592_000, ge=60, description="A prediction waits this long (event time) for its "
        "label; must exceed the label delay. Also the reach of the per-card txn_id dedup.",
    )
    join_max_per_card: int = Field(
        default=1000, ge=10,
        description="Cap on pending predictions, pending labels and remembered "
        "txn ids per card in the drift join (oldest dropped first).",
    )
    error: Literal["absolute", "log_loss"] = Field(
        default="absolute", description="Error signal: absolute (|label - score|) or log_loss.",
    )


class RetrainSettings(Section):
    """Who handles ``model-retrain`` events, how long they wait for labels, what they read."""

    env_prefix = "FRAUDSTREAM_RETRAIN_"

    mode: Literal["agent", "cli", "off"] = Field(
        default="agent",
        description="Who handles model-retrain events: agent (the worker, training in "
        "a child process), cli (`fraudstream retrain --once`, e.g. from cron) or off.",
    )
    auto_promote: bool = Field(
        default=True, description="Promote a retrained model to champion when the gates pass (beat "
        "the champion on the same recent test window). Off: it stays challenger.",
    )
    wait_days: float = Field(
        default=7.0, ge=0,
        description="Before training, wait until features and labels have arrived "
        "up to this many days of event time after the detection, so that the new regime is in "
        "the training and test windows (0 = train at once on what has labels).",
    )
    max_wait_s: float = Field(
        default=2_592_000.0, ge=0, description="Longest wall-clock wait for those labels; then it "
        "trains on what has arrived.",
    )
    poll_s: float = Field(
        default=60.0, gt=0, description="How often the waiting retrain checks the newest labelled "
        "event time.",
    )
    history_days: int | None = Field(
        default=None, ge=1, le=3650, description="Days of event time read back from the newest "
        "labelled transaction. Unset: train + 2 x (delay + test) days (the training, test and "
        "validation windows).",
    )
    executor: Literal["process", "thread"] = Field(
        default="process",
        description="Where the agent trains: a child process (keeps the worker's "
        "event loop and CPU time for scoring free of the GIL) or a thread.",
    )
