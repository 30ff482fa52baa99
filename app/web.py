"""Web views of the worker: ``/metrics`` (Prometheus text format), ``/healthz`` and
``POST /score`` (:mod:`app.score_api`).

The worker's web server binds to ``FRAUDSTREAM_WEB_BIND`` (loopback by default); Faust's own
table, router, graph and stats views are switched off in :mod:`app.faust_app`.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest


def register(app: Any) -> None:
    """Attach the views to ``app``."""

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        response = web.bytes(generate_latest(REGISTRY), content_type="text/plain")
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok", "app": app.conf.id})

    settings = getattr(app, "fraudstream_settings", None)
    if settings is not None:
        from app import score_api

        score_api.register(app, settings)  # POST /score
