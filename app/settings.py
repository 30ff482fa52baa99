"""The one settings class of every fraudstream process.

Every field is read from an environment variable (or a ``.env`` file in the working directory).
Project settings use the ``FRAUDSTREAM_`` prefix; the endpoints that every tool of the field
knows keep their usual names: ``KAFKA_BOOTSTRAP_SERVERS``, ``KAFKA_*`` security settings,
``REDIS_URL`` and ``MLFLOW_TRACKING_URI``. Secrets are :class:`pydantic.SecretStr`, masked in
``repr`` and in logs. The README's configuration table is generated from this class
(``python -m app.settings_doc``) and a test fails when it is stale.

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

    @field_validator("currencies", mode="before")
    @classmethod
    def _split_currencies(cls, value: object) -> object:
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
    app.settings.ConfigError: invalid configuration:
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
