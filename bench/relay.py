"""The broker's own one-hop floor: a bare aiokafka consumer -> producer relay, in its own process.

Every record of ``SRC`` is sent to ``DST`` unchanged, with the source record's timestamp in a
``src_ts`` header, so that ``DST``'s record timestamp minus ``src_ts`` is one hop through the
broker (produce, fetch, produce) with nothing else on the way: the floor under the pipeline's
latency. Same client settings as the worker (fetch wait, linger, ``acks=all``).

Run by :mod:`bench.latency` as ``python -m bench.relay BOOTSTRAP SRC DST GROUP``; stops on
SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys


async def relay(bootstrap: str, src: str, dst: str, group: str, fetch_wait_ms: int = 10,
                linger_ms: float = 5.0) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    consumer = AIOKafkaConsumer(src, bootstrap_servers=bootstrap, group_id=group,
                                auto_offset_reset="earliest", fetch_max_wait_ms=fetch_wait_ms,
                                enable_auto_commit=True)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=linger_ms, acks="all")
    await consumer.start()
    await producer.start()
    print("relay ready", flush=True)
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=1000)
            for messages in batches.values():
                for m in messages:
                    await producer.send(dst, key=m.key, value=m.value,
                                        headers=[("src_ts", str(m.timestamp).encode())])
    finally:
        await producer.stop()
        await consumer.stop()


if __name__ == "__main__":  # pragma: no cover
    bootstrap, src, dst, group = sys.argv[1:5]
    asyncio.run(relay(bootstrap, src, dst, group))
