"""Settings of the stream: validation at the edge, feature state, the pipeline, Feast, scoring."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr
from pydantic_settings import NoDecode

from config.section import Section, split_list


def _check_currencies(value: list[str]) -> list[str]:
    bad = [c for c in value if len(c) != 3 or not c.isalpha() or not c.isupper()]
    if bad or not value:
        raise ValueError(f"expected upper-case 3-letter ISO 4217 codes, got {bad or value}")
    return value


class ValidationSettings(Section):
    """The configurable part of the transaction contract (:class:`contracts.transactions.Rules`)."""

    max_amount: float = Field(
        default=50_000.0, gt=0, description="Largest accepted transaction amount."
    )
    currencies: Annotated[list[str], NoDecode, BeforeValidator(split_list),
                          AfterValidator(_check_currencies)] = Field(
        default_factory=lambda: ["EUR", "USD", "GBP", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK"],
        description="Accepted ISO 4217 currency codes (JSON list or comma-separated).",
    )
    max_future_skew_s: int = Field(
        default=300, ge=0,
        description="How far (seconds) an event time may be ahead of the wall clock.",
    )
    max_payload_bytes: int = Field(
        default=4096, ge=64, le=1_048_576, description="Largest accepted record value in bytes."
    )


class FeatureSettings(Section):
    """The feature stages' state: allowed lateness, and how much each key keeps."""

    card_allowed_lateness_s: int = Field(
        default=60, ge=0, le=86_400,
        description="A card's transaction older than the newest one seen for the card by more "
        "than this is late: sent to the late topic, not applied. Within it, an out-of-order "
        "transaction is applied at its event-time position.",
    )
    terminal_allowed_lateness_s: int = Field(
        default=172_800, ge=0, le=604_799,
        description="Allowed lateness of the terminal view (every terminal, on every worker): "
        "a row more than this behind its terminal's newest is dropped and counted. Must "
        "exceed the event-time lag between workers, which the gate keeps below half of it, "
        "and stay below the 7-day label delay of the terminal features (exactness).",
    )
    max_events_per_key: int = Field(
        default=10_000, ge=100,
        description="Hard cap on transactions kept per card or terminal state (beyond it the "
        "oldest are evicted and counted).",
    )
    state_cache_keys: int = Field(
        default=200_000, ge=100,
        description="Live drift-join states kept in memory (LRU); the rest are read back from "
        "the drift-join table on demand. (The pipeline keeps every card and terminal state "
        "of its partitions live: they are compact.)",
    )


class PipelineSettings(Section):
    """The pipeline agent (app/pipeline/): one hop from the inputs to the predictions."""

    env_prefix = "FRAUDSTREAM_PIPELINE_"

    features: bool = Field(
        default=True,
        description="Run the pipeline agent (validation, features, state log) in this worker. "
        "False with FRAUDSTREAM_PIPELINE_SCORING=separate: a scoring-only worker.",
    )
    scoring: Literal["fused", "separate"] = Field(
        default="fused",
        description="fused: the pipeline agent scores each micro-batch itself (one hop); "
        "separate: it publishes transactions-enriched only and the scoring agent (in workers "
        "with FRAUDSTREAM_SCORING_ENABLED) scores that topic, to scale the stages apart.",
    )
    flush_ms: float = Field(
        default=200.0, gt=0, le=60_000,
        description="Write the state-log segments (and so acknowledge the events) at least this "
        "often while events are processed.",
    )
    flush_rows: int = Field(
        default=5_000, ge=1, le=1_000_000,
        description="... or as soon as this many rows wait for their segment.",
    )
    queue_max_events: int = Field(
        default=20_000, ge=10, le=10_000_000,
        description="Events queued per input partition for the event-time alignment; above "
        "it the partition is paused (fetched records are fetched again on resume).",
    )
    commit_interval_s: float = Field(
        default=1.0, gt=0, le=60,
        description="How often Faust commits the acknowledged offsets. Redelivery after a "
        "crash is bounded by it; its event-time span must stay below the terminal view's "
        "allowed lateness (at a full-speed replay, about half a day of event time per second).",
    )
    producer_linger_ms: float = Field(
        default=5.0, ge=0, le=1_000,
        description="Producer linger: how long a record waits to share a batch (the embedded "
        "broker's fetch cost grows with the batches a partition stores).",
    )


class FeastSettings(Section):
    """Materialisation of the feature tables into Feast, and the online store's Redis."""

    env_prefix = "FRAUDSTREAM_FEAST_"

    redis_url: SecretStr | None = Field(
        default=None, validation_alias="REDIS_URL",
        description="redis://[:password@]host:port/db of the Feast online store. Unset: the "
        "embedded Redis-compatible server started by `fraudstream stack up`.",
    )
    enabled: bool = Field(
        default=True, description="Materialise the feature tables into Feast (Redis online store, "
        "parquet offline store). Off: the stream carries the features, nothing is pushed.",
    )
    max_rows: int = Field(
        default=1000, ge=1,
        description="Most feature rows per Feast push; reaching it pushes at once."
    )
    max_interval_s: float = Field(
        default=1.0, gt=0,
        description="Longest a feature row waits for its push to start (freshness bound while "
        "Redis answers).",
    )
    retry_initial_s: float = Field(
        default=0.5, gt=0, description="Wait after a failed push, doubled per consecutive failure."
    )
    retry_max_s: float = Field(default=30.0, gt=0, description="Cap on that wait.")
    push_process: bool = Field(
        default=True,
        description="Push from a child process (keeps Feast's CPU work off the worker's "
        "event loop; ~220 MB, ~10 s to start) instead of a worker thread.",
    )
    offline: bool = Field(
        default=True, description="Also write pushed rows to the offline store "
        "(<data_dir>/feast/offline, parquet).",
    )
    offline_max_interval_s: float = Field(
        default=60.0, gt=0, description="Write buffered offline rows at least this often."
    )
    offline_max_rows: int = Field(
        default=100_000, ge=1, description="...or as soon as this many rows are buffered."
    )
    stop_timeout_s: float = Field(
        default=10.0, ge=0, description="At shutdown, how long to keep retrying the last push."
    )


class ScoringSettings(Section):
    """The scoring agent and ``POST /score``: micro-batches, ONNX Runtime, champion/challenger."""

    env_prefix = "FRAUDSTREAM_SCORE_"

    enabled: bool = Field(
        default=True, validation_alias="FRAUDSTREAM_SCORING_ENABLED",
        description="Run the scoring agent in this worker (false: a features-only "
        "worker, e.g. to scale the stages apart or to benchmark them alone).",
    )
    batch_max_events: int = Field(
        default=256, ge=1, le=100_000,
        description="The scoring agent predicts micro-batches of at most this many events ...",
    )
    batch_max_wait_ms: float = Field(
        default=2.0, ge=0, le=10_000,
        description="... or whatever came within this many ms of the first (latency first).",
    )
    intra_op_threads: int = Field(
        default=1, ge=1, le=64, description="ONNX Runtime intra-op threads per loaded model (more "
        "only pay at batches >= 256).",
    )
    mode: Literal["shadow", "split"] = Field(
        default="shadow",
        description="With a challenger loaded: shadow (the challenger scores every "
        "card too, records flagged shadow=true, never decisions) or split (cards whose stable "
        "hash falls below FRAUDSTREAM_CHALLENGER_SHARE are scored by the challenger only).",
    )
    challenger_share: float = Field(
        default=0.1, ge=0, le=1, validation_alias="FRAUDSTREAM_CHALLENGER_SHARE",
        description="Share of cards the challenger decides for in split mode.",
    )
    threshold: float | None = Field(
        default=None, ge=0, le=1, description="Fixed decision threshold (alert when score >= it). "
        "Unset: the 'threshold' metric registered with the model version; a version without "
        "one is refused.",
    )
    no_model: Literal["hold", "dlq", "fail_open"] = Field(
        default="hold",
        description="With no loadable champion: hold (stop consuming, retry the load; "
        "nothing is lost or invented), dlq (dead-letter with reason no_model) or fail_open "
        "(publish decision pass with score null and fail_open=true).",
    )
    model_poll_interval_s: float = Field(
        default=15.0, ge=0, validation_alias="FRAUDSTREAM_MODEL_POLL_INTERVAL_S",
        description="Check the MLflow aliases this often (besides model-updates "
        "events); 0 = only on events and at start.",
    )
    max_feature_age_s: float = Field(
        default=300.0, gt=0,
        description="POST /score flags card or terminal features whose Feast row "
        "is older than this (the entity's newest transaction vs the scored one, event time).",
    )
