"""``POST /score`` on the worker's web server: one transaction in, score and decision out.

Request body: a transaction as on the ``transactions`` topic (validated by the same rules).
Response (200)::

    {"txn_id": ..., "score": 0.0123, "decision": "pass", "threshold": 0.31,
     "model_name": "fraud-lgbm", "model_version": 4, "variant": "champion",
     "features": {"card": {"age_s": 812.0, "stale": true}, "terminal": {...}},
     "stale": true, "latency_ms": 1.4}

It scores with the champion the scoring agent serves (same :class:`~app.scoring.models.ModelHolder`,
same version), on the card and terminal rows of the Feast online store (:mod:`app.scoring.online`).
Errors: 400 invalid transaction (``reason`` as in the dead-letter topic), 422 no usable
features (``no_features``, ``feature_spec_mismatch``), 503 no model loaded or feature store
unavailable. The response never contains card data beyond the ids sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from app.metrics import SCORE_REQUESTS
from app.scoring.online import FeaturesUnavailable, assemble, read_rows
from app.scoring.records import decide
from contracts.rejections import Rejection
from contracts.transactions import Rules, validate
from features.spec import DEFAULT_SPEC

log = logging.getLogger(__name__)


class FeastReader:
    """The Feast store of the worker, opened once (in a thread: Feast imports take seconds)."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.store: Any = None
        self.lock = asyncio.Lock()

    async def get(self) -> Any:
        if self.store is None:
            async with self.lock:
                if self.store is None:
                    self.store = await asyncio.to_thread(self._open)
        return self.store

    def _open(self) -> Any:
        from app import feast_env
        from config.endpoints import redis_url

        return feast_env.load_store(redis_url(self.settings), self.settings.data_dir)


def register(app: Any, settings: Any) -> None:
    """Attach ``POST /score`` to ``app`` (it finds the models the scoring agent registered)."""
    from faust.web import View

    rules = Rules.from_settings(settings.validation)
    reader = FeastReader(settings)
    max_age_ms = settings.scoring.max_feature_age_s * 1000
    app.fraudstream_feast_reader = reader

    def reply(view: Any, outcome: str, started: float, body: dict, status: int) -> Any:
        SCORE_REQUESTS.labels(outcome).observe(time.perf_counter() - started)
        return view.json(body, status=status)

    if settings.feast.enabled:
        @app.task
        async def open_feature_store() -> None:  # so that the first request is not slow
            try:
                await reader.get()
            except Exception as exc:
                log.warning("POST /score: cannot open the feature store yet: %s",
                            type(exc).__name__)

    @app.page("/score")
    class Score(View):
        async def post(self, request: Any) -> Any:
            started = time.perf_counter()
            txn = validate(await request.read(), rules, now_ms=time.time() * 1000)
            if isinstance(txn, Rejection):
                return reply(self, "invalid", started,
                             {"error": txn.error, "reason": txn.reason}, 400)
            holder = getattr(app, "fraudstream_models", None)
            model = holder.champion if holder is not None else None
            if model is None:
                return reply(self, "no_model", started,
                             {"error": "no model loaded", "reason": "no_model"}, 503)
            record = txn.model_dump()
            try:
                store = await reader.get()
                rows = await asyncio.to_thread(read_rows, store, txn.card_id, txn.terminal_id,
                                               DEFAULT_SPEC)
            except Exception as exc:
                log.warning("POST /score: feature store unavailable: %s", type(exc).__name__)
                return reply(self, "feature_store_error", started,
                             {"error": "feature store unavailable", "reason": "feature_store"},
                             503)
            try:
                vector, freshness = assemble(record, rows, DEFAULT_SPEC, max_age_ms)
            except FeaturesUnavailable as exc:
                return reply(self, exc.reason, started,
                             {"error": str(exc), "reason": exc.reason}, 422)
            import numpy as np

            score = float(model.predict(np.asarray([vector], dtype=np.float32))[0])
            stale = any(f["stale"] for f in freshness.values())
            body = {"txn_id": txn.txn_id, "score": score,
                    "decision": decide(score, model.threshold), "threshold": model.threshold,
                    "model_name": model.model_name, "model_version": model.version,
                    "variant": "champion", "features": freshness, "stale": stale,
                    "latency_ms": round((time.perf_counter() - started) * 1000, 3)}
            return reply(self, "stale" if stale else "ok", started, body, 200)
