"""The Faust extensions take effect on the app they are applied to (and only there), under the
pinned versions of faust-streaming, aiokafka and mode-streaming."""

from __future__ import annotations

import asyncio
import tomllib
from importlib.metadata import version
from pathlib import Path

import faust

from app import faust_ext
from app.faust_app import TANSU_SESSION_TIMEOUT_S, create_app
from app.faust_ext import rebalance, transport
from config.settings import load_settings


def _app(tansu: bool, **overrides):
    settings = load_settings(store="memory://", **overrides)
    return create_app(settings, "127.0.0.1:9", tansu=tansu, agents=False)


def test_embedded_broker_gets_a_short_session_and_small_fetch_wait() -> None:
    app = _app(tansu=True, consumer_fetch_max_wait_ms=7)
    assert app.conf.broker_session_timeout == TANSU_SESSION_TIMEOUT_S
    assert app.conf.broker_heartbeat_interval < app.conf.broker_session_timeout
    assert issubclass(app.transport.Consumer, faust_ext.FetchWaitConsumer)
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

    faust_ext.patch_aiokafka_leave_group()
    assert getattr(GroupCoordinator._maybe_leave_group, "_fraudstream_leave_gen0", False)
    assert faust_ext.patch_aiokafka_leave_group() is False  # idempotent


ROOT = Path(__file__).resolve().parents[2]


def test_pyproject_pins_the_checked_versions_and_they_are_installed() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dist, checked in faust_ext.CHECKED_VERSIONS.items():
        assert f"{dist}=={checked}" in deps, f"pyproject must pin {dist}=={checked}"
        assert version(dist) == checked, f"{dist} {version(dist)} installed, checked {checked}"


def test_every_extension_is_active_on_a_worker_app() -> None:
    from aiokafka.consumer.group_coordinator import GroupCoordinator
    from faust.transport.consumer import Consumer as FaustConsumer

    app = _app(tansu=True)
    # the transport: fetch wait consumer and its thread, the fast drain (sources unchanged)
    assert transport.fast_drain_supported(), "Faust's drain or conductor changed"
    cls = app.transport.Consumer
    assert issubclass(cls, faust_ext.FetchWaitConsumer) and cls.fast_drain
    assert cls.exact_end_offsets
    assert cls._drain_messages is faust_ext.FetchWaitConsumer._drain_messages
    assert cls._drain_messages is not FaustConsumer._drain_messages

    async def build():
        consumer = app.transport.create_consumer(
            callback=lambda *a: None, on_partitions_revoked=lambda *a: None,
            on_partitions_assigned=lambda *a: None)
        return consumer, consumer._new_consumer_thread()

    consumer, thread = asyncio.run(build())
    assert isinstance(consumer, faust_ext.FetchWaitConsumer)
    assert isinstance(thread, faust_ext.FetchWaitConsumerThread)
    # aiokafka: LeaveGroup from generation 0
    assert faust_ext.leave_group_patched()
    assert getattr(GroupCoordinator._maybe_leave_group, "__wrapped__", None) is not None
    # sensors: the lean monitor is the app's monitor
    assert isinstance(app.monitor, faust_ext.LeanMonitor)
    # tables: the fast-start manager with no grace
    assert isinstance(app.tables, faust_ext.FastStartTableManager)
    assert app.tables.startup_grace == 0.0
    # rebalance: the hooks' sensor is one of the app's sensors
    assert rebalance.installed(app)
    assert rebalance.hooks(app).sensor in set(app.sensors)


def test_apply_leaves_faust_defaults_when_asked() -> None:
    app = faust.App("plain-x", broker="kafka://127.0.0.1:9")
    faust_ext.apply(app, tansu=False, fetch_max_wait_ms=None, fast_drain=False,
                    lean_monitor=False, event_loop=None, exact_end_offsets=False,
                    rebalance_hooks=False)
    assert not rebalance.installed(app)
    assert not isinstance(app.monitor, faust_ext.LeanMonitor)
