"""The Faust and aiokafka extensions fraudstream relies on, in one package.

Import-safe: importing changes nothing (except defining classes). Call :func:`apply` on the
``faust.App`` right after creating it (before any ``app.topic``/``app.Table``/``@app.agent``).

Checked against **faust-streaming 0.15.3, aiokafka 0.14.0, mode-streaming 0.7.1**, the
versions ``pyproject.toml`` pins (:data:`CHECKED_VERSIONS`); ``tests/unit/test_faust_ext.py``
asserts that each extension below is active under them. Upgrading any of the three means
re-reading the code each module copies or patches.

=====================  ==========================================================================
module                 what
=====================  ==========================================================================
``transport``          consumer fetch wait as a setting (Faust hard-codes 1.5 s), a drain loop
                       without four tasks per message, exact end offsets on Tansu
``sensors``            a Monitor without per-event statistics
``tables``             a table manager without the 1 s start-up sleep, exact end offsets
                       (Tansu under-reports them), per-event context for table writes in batches
``aiokafka_patch``     LeaveGroup from generation 0 (Tansu numbers generations from 0)
``rebalance``          callbacks at rebalance start (earliest, a sensor) and completion;
                       ``release_held`` so that a revocation does not wait for held events
``acks``               per-partition in-order acknowledgement (Faust commits past holes)
``pausing``            pause / resume partitions without losing fetched records
``progress``           per assigned partition: high watermark, delivered, committed, lagging
=====================  ==========================================================================

The first group join on Tansu (fix 1, :func:`tansu_settings`)
------------------------------------------------------------
Tansu's coordinator holds the leader's JoinGroup of a forming group for half the session
timeout (measured with Tansu 0.6.0; details in docs/operations.md): with Faust's 60 s session
every start took ~30 s. With :func:`tansu_settings` (a short session, 2-3 s) the join takes
~1 s. Do NOT use it against Apache Kafka, which rejects sessions below
``group.min.session.timeout.ms`` (6 s by default) and delays the first join by
``group.initial.rebalance.delay.ms`` instead. A stopped worker's ghost that kept the
leadership is the second cause of slow restarts, fixed by
:func:`~app.faust_ext.aiokafka_patch.patch_aiokafka_leave_group`.

uvloop (fix 6, :func:`use_event_loop`)
--------------------------------------
10-20 % of a consuming agent's CPU (measurements in :mod:`app.faust_ext.transport`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from app.faust_ext import acks, pausing, progress, rebalance, tables, transport
from app.faust_ext.acks import InOrderAcks
from app.faust_ext.aiokafka_patch import leave_group_patched, patch_aiokafka_leave_group
from app.faust_ext.progress import PartitionProgress, partition_progress
from app.faust_ext.rebalance import RebalanceHooks, release_held
from app.faust_ext.sensors import LeanMonitor, install_lean_monitor
from app.faust_ext.tables import FastStartTableManager, event_context, exact_end_offsets
from app.faust_ext.transport import (
    DEFAULT_FETCH_MAX_WAIT_MS,
    FAUST_FETCH_MAX_WAIT_MS,
    FetchWaitConsumer,
    FetchWaitConsumerThread,
    fast_drain_supported,
)

__all__ = [
    "CHECKED_VERSIONS",
    "DEFAULT_EVENT_LOOP",
    "DEFAULT_FETCH_MAX_WAIT_MS",
    "FAUST_FETCH_MAX_WAIT_MS",
    "TANSU_HEARTBEAT_INTERVAL",
    "TANSU_SESSION_TIMEOUT",
    "FastStartTableManager",
    "FetchWaitConsumer",
    "FetchWaitConsumerThread",
    "InOrderAcks",
    "LeanMonitor",
    "PartitionProgress",
    "RebalanceHooks",
    "apply",
    "event_context",
    "exact_end_offsets",
    "fast_drain_supported",
    "leave_group_patched",
    "partition_progress",
    "patch_aiokafka_leave_group",
    "release_held",
    "tansu_settings",
    "use_event_loop",
    "acks",
    "pausing",
    "progress",
    "rebalance",
    "tables",
    "transport",
]

log = logging.getLogger(__name__)

#: The distributions (and versions) this package was checked against; pinned in pyproject.
CHECKED_VERSIONS = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0", "mode-streaming": "0.7.1"}
#: Session timeout for Tansu only; its first join is held for session/2 (min 1 s).
TANSU_SESSION_TIMEOUT = 2.0
#: Keep heartbeats well under the session (aiokafka needs interval < session).
TANSU_HEARTBEAT_INTERVAL = 0.5
#: Event loop :func:`apply` selects (fix 6).
DEFAULT_EVENT_LOOP: str | None = "uvloop"


def tansu_settings(
    session_timeout: float = TANSU_SESSION_TIMEOUT,
    heartbeat_interval: float = TANSU_HEARTBEAT_INTERVAL,
) -> dict[str, float]:
    """Return ``faust.App`` kwargs that make the first join fast on Tansu.

    Join time on Tansu 0.6 is about ``max(1 s, ceil(session_timeout / 2))``:
    2 s gives 1 s, 4 s gives 2 s, 10 s gives 5 s and Faust's default 60 s
    gives 30 s. The member is evicted after ``session_timeout`` without a
    heartbeat. aiokafka heartbeats from Faust's consumer thread, not from the
    agents' event loop, so long agent coroutines do not starve it, but a
    machine pinned at 100 % CPU for more than ``session_timeout`` will cause
    a rebalance. Apache Kafka refuses sessions below 6 s: never pass these
    settings to a real Kafka.
    """
    if heartbeat_interval >= session_timeout:
        raise ValueError("heartbeat_interval must be smaller than session_timeout")
    return {
        "broker_session_timeout": float(session_timeout),
        "broker_heartbeat_interval": float(heartbeat_interval),
    }


def apply(
    app: Any,
    *,
    fetch_max_wait_ms: int | None = DEFAULT_FETCH_MAX_WAIT_MS,
    tansu: bool = True,
    session_timeout: float = TANSU_SESSION_TIMEOUT,
    heartbeat_interval: float = TANSU_HEARTBEAT_INTERVAL,
    leave_group_fix: bool = True,
    table_startup_grace: float | None = None,
    fast_drain: bool = True,
    lean_monitor: bool = True,
    event_loop: str | None = DEFAULT_EVENT_LOOP,
    exact_end_offsets: bool | None = None,
    rebalance_hooks: bool = True,
) -> Any:
    """Apply the tuning to a ``faust.App``. Call it right after ``faust.App(...)``.

    Example (app/main.py)::

        import faust
        from app import faust_ext

        app = faust.App("fraudstream", broker="kafka://127.0.0.1:9092", ...)
        faust_ext.apply(app, tansu=True, fetch_max_wait_ms=10, table_startup_grace=0.0)
        # ... then app.topic(...), app.Table(...), @app.agent(...)

    Arguments:
        fetch_max_wait_ms: consumer fetch wait in ms. ``None`` keeps Faust's
            1500.
        tansu: apply :func:`tansu_settings` (short session for a fast join).
            Pass ``False`` for Apache Kafka, which rejects sessions below 6 s.
        session_timeout / heartbeat_interval: used when ``tansu`` is true.
        leave_group_fix: apply :func:`patch_aiokafka_leave_group`. Safe on
            Kafka, and needed on Tansu for fast restarts with the same app id.
        table_startup_grace: if given (e.g. ``0.0``), use
            :class:`FastStartTableManager` with this grace instead of Faust's
            fixed 1 s. Must be set before the first ``app.Table``.
        fast_drain: deliver fetched messages to the streams without Faust's
            per-message ``wait_first`` when that cannot block (fix 4; about
            half of the per-event CPU of a consuming agent). Ignored, with a
            warning, when the installed Faust is not the code it was checked
            against (:func:`fast_drain_supported`).
        lean_monitor: use :class:`LeanMonitor` as the app's Monitor (fix 5),
            unless the app already has a Monitor of its own.
        event_loop: ``"uvloop"`` (default) makes the process use uvloop for
            the loops created from now on, the worker's main loop and its
            consumer thread's loop (fix 6); ``None`` leaves asyncio's.
            Skipped, with a log line, when uvloop is not installed or a loop
            is already running. This sets the process-wide asyncio event loop
            policy, as ``faust worker --loop uvloop`` would.
        exact_end_offsets: recover tables up to :func:`exact_end_offsets`
            (fix 7). Default: on when ``tansu`` is, whose end offsets are wrong.
        rebalance_hooks: install the app's :class:`~app.faust_ext.rebalance.RebalanceHooks`
            (a sensor for the earliest rebalance-start callback, and the
            ``on_rebalance_complete`` receiver); nothing runs until code registers a callback.

    Returns the app, so the call can be chained. Raises ``RuntimeError`` if
    the app's consumer (or, for ``table_startup_grace``, its table manager)
    already exists, because then the settings would no longer take effect.
    """
    if getattr(app, "_consumer", None) is not None:
        raise RuntimeError("faust_ext.apply() must run before the app's consumer is created")

    if tansu:
        for key, value in tansu_settings(session_timeout, heartbeat_interval).items():
            setattr(app.conf, key, value)

    if leave_group_fix:
        patch_aiokafka_leave_group()

    use_fast_drain = bool(fast_drain) and fast_drain_supported()
    exact_ends = tansu if exact_end_offsets is None else bool(exact_end_offsets)
    if fetch_max_wait_ms is not None or use_fast_drain or exact_ends:
        wait_ms = FAUST_FETCH_MAX_WAIT_MS if fetch_max_wait_ms is None else int(fetch_max_wait_ms)
        if wait_ms < 0:
            raise ValueError("fetch_max_wait_ms must be >= 0")
        consumer_cls = type(
            "FetchWaitConsumer",
            (FetchWaitConsumer,),
            {"fetch_max_wait_ms": wait_ms, "fast_drain": use_fast_drain,
             "exact_end_offsets": exact_ends, "__module__": transport.__name__},
        )
        # Instance attribute shadows Transport.Consumer for this app only;
        # Transport.create_consumer() instantiates ``self.Consumer``.
        app.transport.Consumer = consumer_cls

    if lean_monitor:
        install_lean_monitor(app)

    if rebalance_hooks:
        rebalance.install(app)

    if event_loop:
        use_event_loop(event_loop)

    if table_startup_grace is not None:
        if "tables" in vars(app):  # cached_property already evaluated
            raise RuntimeError(
                "table_startup_grace needs apply() before the first app.Table(...) "
                "(or pass TableManager=FastStartTableManager to faust.App)"
            )
        manager_cls = type(
            "FastStartTableManager",
            (FastStartTableManager,),
            {"startup_grace": float(table_startup_grace), "__module__": tables.__name__},
        )
        app.conf.TableManager = manager_cls

    log.debug(
        "faust_ext: fetch_max_wait_ms=%s tansu=%s session=%s hb=%s leave_fix=%s grace=%s "
        "fast_drain=%s lean_monitor=%s event_loop=%s rebalance_hooks=%s",
        fetch_max_wait_ms, tansu, session_timeout, heartbeat_interval, leave_group_fix,
        table_startup_grace, use_fast_drain, lean_monitor, event_loop, rebalance_hooks,
    )
    return app


def use_event_loop(name: str) -> bool:
    """Make new event loops of this process ``name`` loops (``"uvloop"`` or ``"aio"``).

    Returns whether the policy was set. Does nothing when a loop is already
    running in this thread, and for ``"uvloop"`` when uvloop is not installed.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        log.info("faust_ext: event loop already running; event_loop=%r not applied", name)
        return False
    if name == "uvloop":
        import importlib.util

        if importlib.util.find_spec("uvloop") is None:
            log.info("faust_ext: uvloop not installed; keeping asyncio's event loop")
            return False
    import mode.loop

    mode.loop.use(name)
    return True
