"""The worker's Feast materialiser, owned by a Faust service (started and stopped with it).

Built only when ``FRAUDSTREAM_FEAST_ENABLED`` is on: the Feast registry is applied first if
it is missing (``fraudstream features apply`` does the same by hand), then a
:class:`app.materialiser.Materialiser` pushes the latest feature row per card and terminal in
micro-batches, from a child process by default. The streaming agents only call its
``update``; a push never blocks them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from config.settings import Settings

log = logging.getLogger(__name__)


def build_materialiser(settings: Settings, redis: str) -> Any:
    """A materialiser for the applied Feast store on ``redis`` (applies it if needed)."""
    from app import feast_env
    from app.feast_sink import feast_materialiser
    from app.materialiser import RedisSentinel

    registry = Path(feast_env.feast_env(redis, settings.data_dir)[feast_env.REGISTRY_PATH_VAR])
    if not registry.exists():
        log.info("applying the Feast repo (first start): %s", registry)
        feast_env.apply(redis, settings.data_dir)
    return feast_materialiser(
        redis, settings.data_dir, process=settings.feast.push_process,
        offline=settings.feast.offline,
        offline_max_rows=settings.feast.offline_max_rows,
        offline_max_interval_s=settings.feast.offline_max_interval_s,
        max_rows=settings.feast.max_rows, max_interval_s=settings.feast.max_interval_s,
        retry_initial_s=settings.feast.retry_initial_s, retry_max_s=settings.feast.retry_max_s,
        sentinel=RedisSentinel(redis),  # an emptied Redis is re-seeded
    )


def attach(app: Any, materialiser: Any, stop_timeout_s: float) -> None:
    """Start ``materialiser`` with the worker and flush it when the worker stops."""
    import mode

    class FeastMaterialiserService(mode.Service):
        async def on_start(self) -> None:
            materialiser.start()

        async def on_stop(self) -> None:
            if not await materialiser.stop(stop_timeout_s):
                log.warning("Feast materialiser stopped with %s rows not pushed (recomputed "
                            "from the tables on their next update)", materialiser.backlog_rows)

    app.service(FeastMaterialiserService)
