"""The Faust tuning takes effect on the app it is applied to (and only there)."""

from __future__ import annotations

import asyncio

import faust

from app import faust_tuning
from app.faust_app import TANSU_SESSION_TIMEOUT_S, create_app
from config.settings import load_settings


def _app(tansu: bool, **overrides):
    settings = load_settings(store="memory://", **overrides)
    return create_app(settings, "127.0.0.1:9", tansu=tansu, agents=False)


def test_embedded_broker_gets_a_short_session_and_small_fetch_wait() -> None:
    app = _app(tansu=True, consumer_fetch_max_wait_ms=7)
    assert app.conf.broker_session_timeout == TANSU_SESSION_TIMEOUT_S
    assert app.conf.broker_heartbeat_interval < app.conf.broker_session_timeout
    assert issubclass(app.transport.Consumer, faust_tuning.FetchWaitConsumer)
    assert app.transport.Consumer.fetch_max_wait_ms == 7


def test_apache_kafka_keeps_faust_session_defaults() -> None:
    app = _app(tansu=False)
    assert app.conf.broker_session_timeout == faust.App("x").conf.broker_session_timeout
    assert app.transport.Consumer.fetch_max_wait_ms == 10  # the fetch wait applies everywhere


def test_configured_session_timeout_wins() -> None:
    app = _app(tansu=False, broker_session_timeout_s=12)
    assert app.conf.broker_session_timeout == 12


def test_fetch_wait_reaches_the_aiokafka_consumer() -> None:
    app = _app(tansu=True, consumer_fetch_max_wait_ms=5)

    async def build():
        consumer = app.transport.create_consumer(
            callback=lambda *a: None,
            on_partitions_revoked=lambda *a: None,
            on_partitions_assigned=lambda *a: None,
        )
        thread = consumer._new_consumer_thread()
        return thread._create_worker_consumer(app.transport)

    aiokafka_consumer = asyncio.run(build())
    assert aiokafka_consumer._fetch_max_wait_ms == 5


def test_leave_group_patch_sends_leave_from_generation_zero() -> None:
    from aiokafka.consumer.group_coordinator import GroupCoordinator

    faust_tuning.patch_aiokafka_leave_group()
    assert getattr(GroupCoordinator._maybe_leave_group, "_fraudstream_leave_gen0", False)
    assert faust_tuning.patch_aiokafka_leave_group() is False  # idempotent
