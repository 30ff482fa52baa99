"""Build the Faust app from the settings: broker, store, web server, topics, agents."""

from __future__ import annotations

import logging
from typing import Any

import faust

from app import faust_ext
from app.topics import Topics, declare_topics
from app.worker_slot import WEB_PORT_BASE, WorkerSlot
from config.endpoints import state_dir
from config.monitoring import MODEL_SIGNALS
from config.security import faust_credentials
from config.settings import ConfigError, Settings, env_name
from features.spec import DEFAULT_SPEC

log = logging.getLogger(__name__)


#: Session timeout used on the embedded Tansu broker when none is configured.
TANSU_SESSION_TIMEOUT_S = 3.0


def check_drift_signals(settings: Settings) -> None:
    """:class:`ConfigError` unless every drift signal is score, error or a feature of the spec.

    >>> from config.settings import load_settings
    >>> check_drift_signals(load_settings(drift_signals=["score", "amount"]))
    >>> check_drift_signals(load_settings(drift_signals="score,colour"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    config.settings.ConfigError: invalid configuration:
      FRAUDSTREAM_DRIFT_SIGNALS: unknown signals ['colour']: use score, error or feature names...
    """
    signals = settings.drift.signals
    bad = [s for s in signals if s not in MODEL_SIGNALS and s not in DEFAULT_SPEC.names]
    if bad:
        raise ConfigError(f"invalid configuration:\n  {env_name('drift_signals')}: unknown "
                          f"signals {bad}: use score, error or feature names (got {signals!r})")


def create_app(
    settings: Settings, bootstrap: str, *, tansu: bool = False, agents: bool = True,
    redis: str | None = None, slot: WorkerSlot | None = None,
) -> faust.App:
    """A configured ``faust.App``; ``bootstrap`` is ``host:port[,host:port]``.

    ``tansu`` says that the broker is the embedded Tansu: its consumer-group coordinator
    holds a first JoinGroup for half the session timeout, so the session is kept short there
    (see :mod:`app.faust_ext`). ``redis`` is the Feast online store's Redis; without it
    nothing is materialised. ``slot`` (:func:`app.worker_slot.claim`) gives the worker its
    own state folder and web port; without one, slot ``FRAUDSTREAM_WORKER_SLOT`` (or 0) is
    assumed and nothing is locked.
    """
    check_drift_signals(settings)
    # A worker's own state folder and web port: its slot of the data folder (app.worker_slot).
    datadir = slot.state_dir if slot is not None else state_dir(settings)
    web_port = slot.web_port if slot is not None else settings.worker.web_port or WEB_PORT_BASE
    datadir.mkdir(parents=True, exist_ok=True)
    partitions = settings.topics.count(tansu=tansu)
    app = faust.App(
        settings.worker.app_id,
        broker=[f"kafka://{hp.strip()}" for hp in bootstrap.split(",")],
        broker_credentials=faust_credentials(settings),
        store=settings.worker.store,
        datadir=str(datadir),
        topic_partitions=partitions,
        topic_replication_factor=settings.topics.replication,
        consumer_auto_offset_reset="earliest",
        producer_linger=settings.pipeline.producer_linger_ms / 1000,
        producer_acks=-1,
        broker_commit_interval=settings.pipeline.commit_interval_s,
        web_bind=settings.worker.web_bind,
        web_port=web_port,
        web_host=settings.worker.web_bind,
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
    )
    session = settings.broker.session_timeout_s or (TANSU_SESSION_TIMEOUT_S if tansu else 0.0)
    faust_ext.apply(
        app,
        fetch_max_wait_ms=settings.broker.fetch_max_wait_ms,
        tansu=bool(session),
        session_timeout=session or faust_ext.TANSU_SESSION_TIMEOUT,
        heartbeat_interval=min(session / 4, 3.0) if session else 0.5,
        table_startup_grace=0.0,
        exact_end_offsets=tansu,
    )
    topics = declare_topics(app, settings, partitions)
    app.fraudstream_topics = topics  # type: ignore[attr-defined]
    app.fraudstream_settings = settings  # type: ignore[attr-defined]

    from app import web

    web.register(app)
    if agents:
        materialiser = None
        if redis is not None and settings.feast.enabled:
            from app import feast_service

            materialiser = feast_service.build_materialiser(settings, redis)
            feast_service.attach(app, materialiser, settings.feast.stop_timeout_s)
        register_agents(app, topics, settings, materialiser, bootstrap=bootstrap, tansu=tansu)
    return app


def register_agents(
    app: faust.App, topics: Topics, settings: Settings, materialiser: Any = None, *,
    bootstrap: str = "127.0.0.1:9092", tansu: bool = False,
) -> None:
    """Attach the agents (``materialiser``: where feature rows go for Feast).

    The pipeline agent (app/pipeline/) unless ``FRAUDSTREAM_PIPELINE_FEATURES=false``; it
    scores in its own micro-batches (``FRAUDSTREAM_PIPELINE_SCORING=fused``, the default) when
    ``FRAUDSTREAM_SCORING_ENABLED``, else the separate scoring agent on
    ``transactions-enriched`` does (``separate``) in the workers that enable scoring.
    """
    from app.agents import scoring
    from app.pipeline import runtime

    pipeline_settings = settings.pipeline
    holder = reloader = None
    if settings.scoring.enabled:
        holder, reloader = scoring.register_models(app, topics, settings)
        if pipeline_settings.scoring == "separate":
            scoring.register_scoring_agent(app, topics, settings, holder, reloader)
    if pipeline_settings.features:
        fused = pipeline_settings.scoring == "fused"
        runtime.register(app, topics, settings, bootstrap=bootstrap, tansu=tansu,
                         holder=holder if fused else None,
                         reloader=reloader if fused else None, materialiser=materialiser)
    if settings.drift.enabled:
        from app.agents import drift

        drift.register(app, topics, settings)
    if settings.retrain.mode == "agent":
        from app.agents import retrain

        retrain.register(app, topics, settings)


def app_from_environment(*, agents: bool = True) -> faust.App:
    """The app as a worker builds it: settings and endpoints from the environment (or the
    embedded stack), topics created and checked, Feast wired when enabled.

    Configuration errors stop the process here, before Faust starts, with a message that
    names the variable to fix.
    """
    from config.endpoints import kafka_bootstrap, redis_url
    from config.settings import get_settings
    from config.topics_admin import ensure_topics

    settings = get_settings()
    bootstrap = kafka_bootstrap(settings)
    broker = ensure_topics(bootstrap, settings)
    redis = redis_url(settings) if agents and settings.feast.enabled else None
    from app.worker_slot import claim

    slot = claim(settings)  # the lock is held for the life of the process
    app = create_app(settings, bootstrap, tansu=broker.tansu, agents=agents, redis=redis,
                     slot=slot)
    app.fraudstream_slot = slot  # type: ignore[attr-defined]
    return app
