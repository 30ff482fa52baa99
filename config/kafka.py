"""Settings of the broker connection, the Faust worker and the topics of the contract."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, SecretStr, model_validator

from config.section import Section

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class BrokerSettings(Section):
    """Where the Kafka cluster is and how to reach it (the ``KAFKA_*`` names every tool knows)."""

    env_prefix = "KAFKA_"

    bootstrap_servers: str | None = Field(
        default=None,
        description="host:port[,host:port] of a Kafka cluster. Unset: the embedded broker "
        "started by `fraudstream stack up`.",
    )
    security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
    )
    sasl_mechanism: SaslMechanism = Field(
        default="PLAIN",
        description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with a SASL_* protocol).",
    )
    sasl_username: str | None = Field(default=None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(default=None, description="SASL password (secret).")
    ssl_cafile: Path | None = Field(
        default=None, description="CA bundle (PEM) that signed the brokers' certificates.",
    )
    ssl_certfile: Path | None = Field(
        default=None, description="Client certificate (PEM), for mutual TLS.",
    )
    ssl_keyfile: Path | None = Field(default=None, description="Client private key (PEM).")
    ssl_key_password: SecretStr | None = Field(
        default=None, description="Password of the client private key (secret).",
    )
    fetch_max_wait_ms: int = Field(
        default=10, ge=1, le=5000, validation_alias="FRAUDSTREAM_CONSUMER_FETCH_MAX_WAIT_MS",
        description="How long a caught-up consumer waits for data in one fetch. Faust "
        "hard-codes 1,500 ms; small values give low end-to-end latency.",
    )
    session_timeout_s: float = Field(
        default=0.0, ge=0, le=300, validation_alias="FRAUDSTREAM_BROKER_SESSION_TIMEOUT_S",
        description="Consumer-group session timeout in seconds. 0 = automatic: 3 s on the "
        "embedded Tansu broker (it holds a first JoinGroup for half the session, so Faust's "
        "60 s default costs 30 s at every start), Faust's default on Apache Kafka.",
    )

    @model_validator(mode="after")
    def _check_security(self) -> BrokerSettings:
        if self.security_protocol.startswith("SASL_"):
            if not self.sasl_username or self.sasl_password is None:
                raise ValueError(
                    f"KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs "
                    "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
                )
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{self.env_name(name)}={path}: no such file")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together")
        return self


def _check_store(value: str) -> str:
    if value not in ("rocksdb://", "memory://"):
        raise ValueError("must be rocksdb:// or memory://")
    return value


class WorkerSettings(Section):
    """The Faust app of a worker: its id, table store, web server, log level, micro-batches."""

    app_id: str = Field(
        default="fraudstream", min_length=1,
        description="Faust app id: consumer group and prefix of changelog topics.",
    )
    store: Annotated[str, AfterValidator(_check_store)] = Field(
        default="rocksdb://",
        description="Faust table store: rocksdb:// (RocksDB via rocksdict) or memory://.",
    )
    web_bind: str = Field(
        default="127.0.0.1",
        description="Address of the worker's web server (/metrics, /score). Loopback by "
        "default; Faust's table/stats views are never enabled.",
    )
    web_port: int | None = Field(
        default=None, ge=1, le=65535,
        description="Port of the worker's web server. Unset: 6066 + the worker's slot "
        "(FRAUDSTREAM_WORKER_SLOT).",
    )
    worker_slot: int | None = Field(
        default=None, ge=0, le=1023,
        description="Which worker of this data folder this is: its state folder is "
        "<data_dir>/workers/<slot>/ (locked while it runs) and its default web port 6066 + "
        "slot. Unset: the first slot no running worker holds.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Worker log level."
    )
    batch_max_events: int = Field(
        default=500, ge=1, le=100_000,
        description="Agents take events in micro-batches of at most this many ...",
    )
    batch_max_wait_ms: float = Field(
        default=5.0, ge=0, le=10_000,
        description="... or whatever came within this many ms of the first (adds at most this "
        "to each stage's latency).",
    )


#: The roles of the contract's topics, in the order they are declared and created.
TOPIC_ROLES = (
    "transactions", "labels", "dlq", "enriched", "late", "predictions", "retrain",
    "model_updates",
)

#: Partitions of the topics the app creates on the embedded Tansu broker when
#: ``FRAUDSTREAM_TOPIC_PARTITIONS`` is unset (measured: README, "Benchmarks"; the broker's
#: fetch cost grows with the partitions a fetch names), and on Apache Kafka.
TANSU_DEFAULT_PARTITIONS = 2
KAFKA_DEFAULT_PARTITIONS = 8


class TopicSettings(Section):
    """The topics of the contract (docs/architecture.md): names, partitions, replication."""

    env_prefix = "FRAUDSTREAM_TOPIC_"

    partitions: int | None = Field(
        default=None, ge=1, le=1024, description="Partitions of every topic the app creates. "
        "Unset: 2 on the embedded broker (chosen from measurement: fewer partitions keep its "
        "fetch cost down), 8 on Apache Kafka.",
    )
    replication: int = Field(
        default=1, ge=1, le=16, description="Replication factor of the topics the app creates."
    )
    transactions: str = Field(default="transactions", description="Raw transactions in.")
    labels: str = Field(default="transaction-labels", description="Late fraud labels in.")
    dlq: str = Field(default="transactions-dlq", description="Invalid records, with reasons.")
    enriched: str = Field(
        default="transactions-enriched", description="Transactions with their feature vector."
    )
    late: str = Field(
        default="transactions-late", description="Events later than the allowed lateness."
    )
    predictions: str = Field(default="ml-predictions", description="Scores and decisions out.")
    retrain: str = Field(default="model-retrain", description="Drift-triggered retrain events.")
    model_updates: str = Field(
        default="model-updates", description="Model registered / promoted / rolled back."
    )
    state_log: str | None = Field(
        default=None,
        description="Internal: the pipeline's state log (rows applied per source partition, "
        "its progress). Unset: <FRAUDSTREAM_APP_ID>-state-log.",
    )

    def count(self, tansu: bool) -> int:
        """The partitions in force: the configured ones, else the broker's default.

        >>> TopicSettings().count(tansu=True), TopicSettings(partitions=3).count(tansu=False)
        (2, 3)
        """
        if self.partitions is not None:
            return self.partitions
        return TANSU_DEFAULT_PARTITIONS if tansu else KAFKA_DEFAULT_PARTITIONS

    def state_log_name(self, app_id: str) -> str:
        """The state log's topic name for the app ``app_id``.

        >>> TopicSettings().state_log_name("fraudstream")
        'fraudstream-state-log'
        """
        return self.state_log or f"{app_id}-state-log"

    def names(self) -> dict[str, str]:
        """Role -> topic name, for every topic of the contract.

        >>> TopicSettings(dlq="my-dlq").names()["dlq"]
        'my-dlq'
        """
        return {role: getattr(self, role) for role in TOPIC_ROLES}
