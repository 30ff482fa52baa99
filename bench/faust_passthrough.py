"""A Faust app whose one agent forwards raw records unchanged: Faust's own per-event cost.

Built by the same :func:`app.faust_app.create_app` as the real worker (same broker, producer
and consumer settings), with the pipeline's agents replaced by a passthrough from the
transactions topic to the enriched topic. Run by the benchmark as
``faust -A bench.faust_passthrough worker``.
"""

from __future__ import annotations

from typing import Any

from app.faust_app import app_from_environment

app = app_from_environment(agents=False)
_topics = app.fraudstream_topics  # type: ignore[attr-defined]


@app.agent(_topics.transactions, name="passthrough")
async def passthrough(stream: Any) -> None:
    async for event in stream.events():
        await _topics.enriched.send(key=event.message.key, value=event.value)
