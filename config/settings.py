"""The one settings class of every fraudstream process.

Every field is read from an environment variable (or a ``.env`` file in the working directory).
Project settings use the ``FRAUDSTREAM_`` prefix; the endpoints that every tool of the field
knows keep their usual names: ``KAFKA_BOOTSTRAP_SERVERS``, ``KAFKA_*`` security settings,
``REDIS_URL`` and ``MLFLOW_TRACKING_URI``. Secrets are :class:`pydantic.SecretStr`, masked in
``repr`` and in logs. The README's configuration table is generated from this class
(``python -m config.settings_doc``) and a test fails when it is stale.

Bad configuration stops the process at start: :func:`get_settings` raises
:class:`ConfigError` whose message names each environment variable and what to fix.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

ENV_PREFIX = "FRAUDSTREAM_"

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class ConfigError(SystemExit):
    """Configuration that cannot work; the message says which variable and how to fix it.

    A ``SystemExit`` whose code is the message: an uncaught one prints it on standard error
    and exits with status 1, so a CLI or a worker stops with the message, not a traceback.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class Settings(BaseSettings):
    """fraudstream settings (environment variables, defaults for a laptop)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
    )

    # -- where things live -------------------------------------------------------------------
    data_dir: Path = Field(
        Path(".fraudstream"),
        description="Folder for local state: embedded stack endpoints, Faust tables, MLflow "
        "sqlite registry and artifacts, feature store files, benchmark results.",
    )

    # -- Kafka -------------------------------------------------------------------------------
    kafka_bootstrap_servers: str | None = Field(
        None,
        validation_alias="KAFKA_BOOTSTRAP_SERVERS",
        description="host:port[,host:port] of a Kafka cluster. Unset: the embedded broker "
        "started by `fraudstream stack up`.",
    )
    kafka_security_protocol: SecurityProtocol = Field(
        "PLAINTEXT", validation_alias="KAFKA_SECURITY_PROTOCOL",
        description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
    )
    kafka_sasl_mechanism: SaslMechanism = Field(
        "PLAIN", validation_alias="KAFKA_SASL_MECHANISM",
        description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with a SASL_* protocol).",
    )
    kafka_sasl_username: str | None = Field(
        None, validation_alias="KAFKA_SASL_USERNAME", description="SASL user name."
    )
    kafka_sasl_password: SecretStr | None = Field(
        None, validation_alias="KAFKA_SASL_PASSWORD", description="SASL password (secret)."
    )
    kafka_ssl_cafile: Path | None = Field(
        None, validation_alias="KAFKA_SSL_CAFILE",
        description="CA bundle (PEM) that signed the brokers' certificates.",
    )
    kafka_ssl_certfile: Path | None = Field(
        None, validation_alias="KAFKA_SSL_CERTFILE",
        description="Client certificate (PEM), for mutual TLS.",
    )
    kafka_ssl_keyfile: Path | None = Field(
        None, validation_alias="KAFKA_SSL_KEYFILE", description="Client private key (PEM)."
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        None, validation_alias="KAFKA_SSL_KEY_PASSWORD",
        description="Password of the client private key (secret).",
    )
    consumer_fetch_max_wait_ms: int = Field(
        10, ge=1, le=5000,
        description="How long a caught-up consumer waits for data in one fetch. Faust "
        "hard-codes 1,500 ms; small values give low end-to-end latency.",
    )

    broker_session_timeout_s: float = Field(
        0.0, ge=0, le=300,
        description="Consumer-group session timeout in seconds. 0 = automatic: 3 s on the "
        "embedded Tansu broker (it holds a first JoinGroup for half the session, so Faust's "
        "60 s default costs 30 s at every start), Faust's default on Apache Kafka.",
    )

    # -- Redis / MLflow ----------------------------------------------------------------------
    redis_url: SecretStr | None = Field(
        None, validation_alias="REDIS_URL",
        description="redis://[:password@]host:port/db of the Feast online store. Unset: the "
        "embedded Redis-compatible server started by `fraudstream stack up`.",
    )
    mlflow_tracking_uri: str | None = Field(
        None, validation_alias="MLFLOW_TRACKING_URI",
        description="MLflow tracking/registry URI. Unset: sqlite in the data folder.",
    )

    # -- Faust app ---------------------------------------------------------------------------
    app_id: str = Field(
        "fraudstream", min_length=1,
        description="Faust app id: consumer group and prefix of changelog topics.",
    )
    topic_partitions: int = Field(
        8, ge=1, le=1024, description="Partitions of every topic the app creates."
    )
    topic_replication: int = Field(
        1, ge=1, le=16, description="Replication factor of the topics the app creates."
    )
    store: str = Field(
        "rocksdb://",
        description="Faust table store: rocksdb:// (RocksDB via rocksdict) or memory://.",
    )
    web_bind: str = Field(
        "127.0.0.1",
        description="Address of the worker's web server (/metrics, /score). Loopback by "
        "default; Faust's table/stats views are never enabled.",
    )
    web_port: int = Field(6066, ge=1, le=65535, description="Port of the worker's web server.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Worker log level."
    )

    # -- Feast materialisation ---------------------------------------------------------------
    feast_enabled: bool = Field(
        True, description="Materialise the feature tables into Feast (Redis online store, "
        "parquet offline store). Off: the stream carries the features, nothing is pushed.",
    )
    feast_max_rows: int = Field(
        1000, ge=1, description="Most feature rows per Feast push; reaching it pushes at once."
    )
    feast_max_interval_s: float = Field(
        1.0, gt=0,
        description="Longest a feature row waits for its push to start (freshness bound while "
        "Redis answers).",
    )
    feast_retry_initial_s: float = Field(
        0.5, gt=0, description="Wait after a failed push, doubled per consecutive failure."
    )
    feast_retry_max_s: float = Field(30.0, gt=0, description="Cap on that wait.")
    feast_push_process: bool = Field(
        True, description="Push from a child process (keeps Feast's CPU work off the worker's "
        "event loop; ~220 MB, ~10 s to start) instead of a worker thread.",
    )
    feast_offline: bool = Field(
        True, description="Also write pushed rows to the offline store "
        "(<data_dir>/feast/offline, parquet).",
    )
    feast_offline_max_interval_s: float = Field(
        60.0, gt=0, description="Write buffered offline rows at least this often."
    )
    feast_offline_max_rows: int = Field(
        100_000, ge=1, description="...or as soon as this many rows are buffered."
    )
    feast_stop_timeout_s: float = Field(
        10.0, ge=0, description="At shutdown, how long to keep retrying the last push."
    )

    # -- topic names -------------------------------------------------------------------------
    topic_transactions: str = Field("transactions", description="Raw transactions in.")
    topic_labels: str = Field("transaction-labels", description="Late fraud labels in.")
    topic_dlq: str = Field("transactions-dlq", description="Invalid records, with reasons.")
    topic_validated: str = Field(
        "transactions-validated",
        description="Internal: valid transactions, re-keyed by terminal id.",
    )
    topic_labels_by_terminal: str = Field(
        "transaction-labels-by-terminal",
        description="Internal: valid labels, re-keyed by terminal id.",
    )
    topic_enriched: str = Field(
        "transactions-enriched", description="Transactions with their feature vector."
    )
    topic_late: str = Field(
        "transactions-late", description="Events later than the allowed lateness."
    )
    topic_predictions: str = Field("ml-predictions", description="Scores and decisions out.")
    topic_retrain: str = Field("model-retrain", description="Drift-triggered retrain events.")
    topic_model_updates: str = Field(
        "model-updates", description="Model registered / promoted / rolled back."
    )

    # -- validation --------------------------------------------------------------------------
    max_amount: float = Field(
        50_000.0, gt=0, description="Largest accepted transaction amount."
    )
    currencies: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["EUR", "USD", "GBP", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK"],
        description="Accepted ISO 4217 currency codes (JSON list or comma-separated).",
    )
    max_future_skew_s: int = Field(
        300, ge=0,
        description="How far (seconds) an event time may be ahead of the wall clock.",
    )
    max_payload_bytes: int = Field(
        4096, ge=64, le=1_048_576, description="Largest accepted record value in bytes."
    )

    batch_max_events: int = Field(
        500, ge=1, le=100_000,
        description="Agents take events in micro-batches of at most this many ...",
    )
    batch_max_wait_ms: float = Field(
        5.0, ge=0, le=10_000,
        description="... or whatever came within this many ms of the first (adds at most this "
        "to each stage's latency).",
    )

    # -- feature state -----------------------------------------------------------------------
    card_allowed_lateness_s: int = Field(
        60, ge=0, le=86_400,
        description="A card's transaction older than the newest one seen for the card by more "
        "than this is late: sent to the late topic, not applied. Within it, an out-of-order "
        "transaction is applied at its event-time position.",
    )
    terminal_allowed_lateness_s: int = Field(
        604_800, ge=0, le=2_592_000,
        description="Allowed lateness at the terminal stage, where re-keying by terminal mixes "
        "the cards' partitions. The terminal features only look at transactions at least 7 "
        "days old, so any disorder below 7 days leaves them exact: the default.",
    )
    max_events_per_key: int = Field(
        10_000, ge=100,
        description="Hard cap on transactions kept per card or terminal state (beyond it the "
        "oldest are evicted and counted).",
    )
    state_cache_keys: int = Field(
        200_000, ge=100,
        description="Live feature states kept in memory per stage (LRU); the rest are read "
        "back from the table on demand.",
    )

    # -- training and model registry (`fraudstream train`, retrain worker) -------------------
    model_name: str = Field(
        "fraud-lgbm", min_length=1,
        description="Registered model name in MLflow (aliases champion and challenger).",
    )
    mlflow_artifact_root: Path | None = Field(
        None, description="Where MLflow stores run artifacts and ONNX models. Unset: "
        "<data_dir>/mlartifacts.",
    )
    train_window_days: int = Field(
        7, ge=1, le=365, description="Days of transactions a model is trained on (handbook: 7).",
    )
    train_delay_days: int = Field(
        7, ge=0, le=90, description="Days between the training window and the test window: "
        "labels of the last training days are not known yet (handbook: 7).",
    )
    train_test_days: int = Field(7, ge=1, le=90, description="Days of the test window.")
    lgbm_num_boost_round: int = Field(
        2000, ge=1, description="LightGBM: most trees; early stopping on the validation period "
        "picks the number actually used.",
    )
    lgbm_early_stopping_rounds: int = Field(
        100, ge=1, description="LightGBM: stop after this many trees without a better "
        "validation average precision.",
    )
    lgbm_learning_rate: float = Field(0.02, gt=0, le=1, description="LightGBM: learning rate.")
    lgbm_num_leaves: int = Field(7, ge=2, le=4096, description="LightGBM: leaves per tree.")
    lgbm_min_child_samples: int = Field(
        100, ge=1, description="LightGBM: fewest training rows in a leaf."
    )
    lgbm_feature_fraction: float = Field(
        0.8, gt=0, le=1, description="LightGBM: share of features drawn per tree."
    )
    lgbm_bagging_fraction: float = Field(
        0.8, gt=0, le=1, description="LightGBM: share of rows drawn per tree."
    )
    lgbm_lambda_l2: float = Field(0.0, ge=0, description="LightGBM: L2 regularisation.")
    lgbm_imbalance: Literal["scale_pos_weight", "is_unbalance", "none"] = Field(
        "none", description="Class imbalance: none (the default: best validation AP, AUC and "
        "CP@100 on the handbook data; ranking metrics need no reweighting), scale_pos_weight "
        "(weight frauds by genuine/fraud ratio, or FRAUDSTREAM_LGBM_SCALE_POS_WEIGHT) or "
        "is_unbalance.",
    )
    lgbm_scale_pos_weight: float | None = Field(
        None, gt=0, description="Fixed fraud weight. Unset: genuine/fraud count of the training "
        "rows.",
    )
    lgbm_seed: int = Field(42, description="Seed of every random source of training.")
    lgbm_num_threads: int = Field(1, ge=1, le=256, description="LightGBM threads (results are "
                                  "reproducible for a fixed value).")
    alert_budget_per_day: float = Field(
        100.0, gt=0, description="Alerts a day the fraud team can investigate: the decision "
        "threshold is the score that would have raised that many on the days after training.",
    )
    alert_budget_unit: Literal["card", "transaction"] = Field(
        "card", description="What the alert budget counts: cards (a card alerts once a day) or "
        "transactions.",
    )
    gate_min_auc_roc: float = Field(
        0.85, ge=0, le=1, description="Promotion gate: least test AUC ROC of a champion."
    )
    gate_min_average_precision: float = Field(
        0.60, ge=0, le=1, description="Promotion gate: least test average precision."
    )
    gate_min_card_precision_at_100: float = Field(
        0.25, ge=0, le=1, description="Promotion gate: least test card precision@100."
    )
    gate_compare_metric: Literal["auc_roc", "average_precision", "card_precision_at_100"] = Field(
        "average_precision", description="Metric on which a candidate must beat the champion "
        "(both measured on the candidate's test data).",
    )
    gate_min_improvement: float = Field(
        0.01, ge=0, description="Relative margin by which it must beat it (0.01 = 1 %).",
    )

    # -- scoring (scoring agent, POST /score) ------------------------------------------------
    scoring_enabled: bool = Field(
        True, description="Run the scoring agent in this worker (false: a features-only "
        "worker, e.g. to scale the stages apart or to benchmark them alone).",
    )
    score_batch_max_events: int = Field(
        256, ge=1, le=100_000,
        description="The scoring agent predicts micro-batches of at most this many events ...",
    )
    score_batch_max_wait_ms: float = Field(
        2.0, ge=0, le=10_000,
        description="... or whatever came within this many ms of the first (latency first).",
    )
    score_intra_op_threads: int = Field(
        1, ge=1, le=64, description="ONNX Runtime intra-op threads per loaded model (more "
        "only pay at batches >= 256).",
    )
    score_mode: Literal["shadow", "split"] = Field(
        "shadow", description="With a challenger loaded: shadow (the challenger scores every "
        "card too, records flagged shadow=true, never decisions) or split (cards whose stable "
        "hash falls below FRAUDSTREAM_CHALLENGER_SHARE are scored by the challenger only).",
    )
    challenger_share: float = Field(
        0.1, ge=0, le=1, description="Share of cards the challenger decides for in split mode.",
    )
    score_threshold: float | None = Field(
        None, ge=0, le=1, description="Fixed decision threshold (alert when score >= it). "
        "Unset: the 'threshold' metric registered with the model version; a version without "
        "one is refused.",
    )
    score_no_model: Literal["hold", "dlq", "fail_open"] = Field(
        "hold", description="With no loadable champion: hold (stop consuming, retry the load; "
        "nothing is lost or invented), dlq (dead-letter with reason no_model) or fail_open "
        "(publish decision pass with score null and fail_open=true).",
    )
    model_poll_interval_s: float = Field(
        15.0, ge=0, description="Check the MLflow aliases this often (besides model-updates "
        "events); 0 = only on events and at start.",
    )
    score_max_feature_age_s: float = Field(
        300.0, gt=0, description="POST /score flags card or terminal features whose Feast row "
        "is older than this (the entity's newest transaction vs the scored one, event time).",
    )

    # -- drift detection (drift agents, `fraudstream drift report`) ---------------------------
    drift_enabled: bool = Field(
        False, description="Run the drift agents: River ADWIN on the champion's scores, the "
        "selected features and the error stream; model-retrain events on detection.",
    )
    drift_signals: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["score", "error", "amount", "card_amount_to_mean_30d",
                                 "terminal_risk_7d_delay7d"],
        description="Signals watched by ADWIN: score, error (|label - score| once labels "
        "arrive) and feature names of the spec (read from the enriched topic). JSON list or "
        "comma-separated.",
    )
    drift_adwin_delta: float = Field(
        0.002, gt=0, lt=1, description="ADWIN confidence delta: smaller, fewer false alarms "
        "and later detection.",
    )
    drift_adwin_clock: int = Field(
        32, ge=1, le=10_000, description="ADWIN checks for a change every this many values.",
    )
    drift_cooldown_s: float = Field(
        86_400.0, ge=0, description="After a retrain event, further detections of the model "
        "within this many seconds of event time are counted but emit nothing.",
    )
    drift_join_horizon_s: int = Field(
        2_592_000, ge=60, description="A prediction waits this long (event time) for its "
        "label; must exceed the label delay. Also the reach of the per-card txn_id dedup.",
    )
    drift_join_max_per_card: int = Field(
        1000, ge=10, description="Cap on pending predictions, pending labels and remembered "
        "txn ids per card in the drift join (oldest dropped first).",
    )
    drift_error: Literal["absolute", "log_loss"] = Field(
        "absolute", description="Error signal: absolute (|label - score|) or log_loss.",
    )

    # -- retraining (retrain agent, `fraudstream retrain`) ------------------------------------
    retrain_mode: Literal["agent", "cli", "off"] = Field(
        "agent", description="Who handles model-retrain events: agent (the worker, training in "
        "a child process), cli (`fraudstream retrain --once`, e.g. from cron) or off.",
    )
    retrain_auto_promote: bool = Field(
        True, description="Promote a retrained model to champion when the gates pass (beat "
        "the champion on the same recent test window). Off: it stays challenger.",
    )
    retrain_wait_days: float = Field(
        7.0, ge=0, description="Before training, wait until features and labels have arrived "
        "up to this many days of event time after the detection, so that the new regime is in "
        "the training and test windows (0 = train at once on what has labels).",
    )
    retrain_max_wait_s: float = Field(
        2_592_000.0, ge=0, description="Longest wall-clock wait for those labels; then it "
        "trains on what has arrived.",
    )
    retrain_poll_s: float = Field(
        60.0, gt=0, description="How often the waiting retrain checks the newest labelled "
        "event time.",
    )
    retrain_history_days: int | None = Field(
        None, ge=1, le=3650, description="Days of event time read back from the newest "
        "labelled transaction. Unset: train + 2 x (delay + test) days (the training, test and "
        "validation windows).",
    )
    retrain_executor: Literal["process", "thread"] = Field(
        "process", description="Where the agent trains: a child process (keeps the worker's "
        "event loop and CPU time for scoring free of the GIL) or a thread.",
    )

    @field_validator("drift_signals")
    @classmethod
    def _check_drift_signals(cls, value: list[str]) -> list[str]:
        from features.spec import DEFAULT_SPEC

        bad = [s for s in value if s not in ("score", "error") and s not in DEFAULT_SPEC.names]
        if bad:
            raise ValueError(f"unknown signals {bad}: use score, error or feature names")
        return value

    @field_validator("currencies", "drift_signals", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        """A list from the environment: JSON (``["a", "b"]``) or comma-separated (``a,b``)."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json

                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("currencies")
    @classmethod
    def _check_currencies(cls, value: list[str]) -> list[str]:
        bad = [c for c in value if len(c) != 3 or not c.isalpha() or not c.isupper()]
        if bad or not value:
            raise ValueError(f"expected upper-case 3-letter ISO 4217 codes, got {bad or value}")
        return value

    @field_validator("store")
    @classmethod
    def _check_store(cls, value: str) -> str:
        if value not in ("rocksdb://", "memory://"):
            raise ValueError("must be rocksdb:// or memory://")
        return value

    @model_validator(mode="after")
    def _check_security(self) -> Settings:
        if self.kafka_security_protocol.startswith("SASL_"):
            if not self.kafka_sasl_username or self.kafka_sasl_password is None:
                raise ValueError(
                    f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                    "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
                )
        for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{env_name(name)}={path}: no such file")
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            raise ValueError("KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together")
        return self

    # -- derived paths -----------------------------------------------------------------------
    @property
    def stack_file(self) -> Path:
        """Where `fraudstream stack up` writes the endpoints it started."""
        return self.data_dir / "stack.json"

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI in force (sqlite in the data folder by default)."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.data_dir / 'mlflow.db').resolve()}"

    @property
    def artifact_root(self) -> Path:
        """Where MLflow artifacts (runs, ONNX models) go when this project creates them."""
        return self.mlflow_artifact_root or self.data_dir / "mlartifacts"

    @property
    def training_cache_dir(self) -> Path:
        """Cached feature frames of training sets (parquet)."""
        return self.data_dir / "training" / "cache"


def env_name(field: str) -> str:
    """The environment variable that sets ``field``.

    >>> env_name("kafka_bootstrap_servers"), env_name("topic_partitions")
    ('KAFKA_BOOTSTRAP_SERVERS', 'FRAUDSTREAM_TOPIC_PARTITIONS')
    """
    info = Settings.model_fields[field]
    alias = info.validation_alias
    return alias if isinstance(alias, str) else f"{ENV_PREFIX}{field.upper()}"


def settings_for_env(env: dict[str, str]) -> Settings:
    """Settings as a process with environment ``env`` would read them."""
    overrides = {f: env[env_name(f)] for f in Settings.model_fields if env_name(f) in env}
    return load_settings(**overrides)


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; :class:`ConfigError` with a readable message.

    >>> load_settings(topic_partitions=0)
    Traceback (most recent call last):
    ...
    config.settings.ConfigError: invalid configuration:
      FRAUDSTREAM_TOPIC_PARTITIONS: Input should be greater than or equal to 1 (got 0)
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = ["invalid configuration:"]
        for err in exc.errors():
            loc = [str(part) for part in err["loc"]]
            field = loc[0] if loc else ""
            known = field.lower() in Settings.model_fields
            where = env_name(field.lower()) if known else "configuration"
            got = "" if err["type"] == "missing" or not known else f" (got {err['input']!r})"
            if "password" in field.lower() or "redis_url" in field.lower():
                got = ""
            lines.append(f"  {where}: {err['msg'].removeprefix('Value error, ')}{got}")
        raise ConfigError("\n".join(lines)) from None
    except SettingsError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
