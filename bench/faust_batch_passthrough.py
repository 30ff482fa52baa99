"""Like :mod:`bench.faust_passthrough`, but the agent takes micro-batches (``take_events``).

Shows what Faust costs per event when its per-event stream machinery is amortised over a
batch: the design the pipeline's agents use.
"""

from __future__ import annotations

from typing import Any

from app.faust_app import app_from_environment

app = app_from_environment(agents=False)
_topics = app.fraudstream_topics  # type: ignore[attr-defined]


@app.agent(_topics.transactions, name="batch-passthrough")
async def batch_passthrough(stream: Any) -> None:
    async for events in stream.take_events(1000, within=0.005):
        for event in events:
            # the source record's timestamp, for the latency bench (bench/latency.py)
            src_ts = str(int(event.message.timestamp * 1000)).encode()
            await _topics.enriched.send(key=event.message.key, value=event.value,
                                        headers=[("src_ts", src_ts)])
