"""A Faust worker whose agent holds every event it gets unacknowledged (for rebalance tests).

``python -m tests.support.hold_worker BOOTSTRAP TOPIC APP_ID DATADIR [release]``: with
``release``, the events held are handed to :func:`app.faust_ext.release_held` when a rebalance
starts (:mod:`app.faust_ext.rebalance`); without it they are held for ever. It prints one line
per event (``EVENT <partition> <offset> <generation>``), per release and per completed
rebalance (``ASSIGNED <partitions>``).
"""

from __future__ import annotations

import sys
import time

import faust

from app.faust_ext import apply, rebalance, release_held

T0 = time.monotonic()


def say(*parts: object) -> None:
    print(f"[{time.monotonic() - T0:7.2f}] HOLD " + " ".join(map(str, parts)), flush=True)


def build(argv: list[str]) -> faust.App:
    """The worker's app from ``BOOTSTRAP TOPIC APP_ID DATADIR [release]`` (nothing runs on
    import)."""
    bootstrap, topic_name, app_id, datadir = argv[:4]
    release = argv[4:5] == ["release"]
    app = faust.App(app_id, broker=f"kafka://{bootstrap}", web_enabled=False, store="memory://",
                    consumer_auto_offset_reset="earliest", broker_commit_interval=0.5,
                    topic_allow_declare=False, datadir=datadir)
    apply(app, tansu=True, table_startup_grace=0.0)
    topic = app.topic(topic_name, value_serializer="raw", key_serializer="raw")
    hooks = rebalance.hooks(app)
    held: list = []

    @hooks.on_start
    def _release(app_: faust.App) -> None:
        say("REBALANCE-START")
        if release:
            say("RELEASED", release_held(app_, held))
            held.clear()

    @hooks.on_complete
    async def _complete(app_: faust.App) -> None:
        mine = sorted(tp.partition for tp in app_.consumer.assignment() if tp.topic == topic_name)
        say("ASSIGNED", ",".join(map(str, mine)) or "-")

    @app.agent(topic)
    async def hold(stream: faust.StreamT) -> None:
        async for event in stream.noack().events():
            m = event.message
            say("EVENT", m.partition, m.offset, m.generation_id)
            held.append(event)  # never acknowledged

    return app


if __name__ == "__main__":
    worker_app = build(sys.argv[1:])
    sys.argv = [sys.argv[0], "worker", "-l", "info", "--without-web"]
    worker_app.main()
