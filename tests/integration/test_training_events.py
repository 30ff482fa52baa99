"""model-updates events reach a real Kafka-compatible broker, keyed by model name, in order."""

from __future__ import annotations

import json

import pytest

from config.settings import load_settings
from infra.kafka_io import consume
from models.events import publish_model_updates

pytestmark = pytest.mark.integration


def test_events_are_published_in_order(kafka_bootstrap, unique, monkeypatch, tmp_path):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    settings = load_settings(data_dir=tmp_path, topic_model_updates=f"model-updates-{unique}")
    events = [{"model_name": "fraud-lgbm", "action": a, "version": v, "alias": al,
               "event_id": f"e{i}"}
              for i, (a, v, al) in enumerate([("registered", 3, "challenger"),
                                              ("promoted", 3, "champion"),
                                              ("rolled_back", 2, "champion")])]
    result = publish_model_updates(events, settings)
    assert (result.sent, result.skipped) == (3, None)
    records = consume(kafka_bootstrap, settings.topic_model_updates, expected=3, timeout=30)
    assert [r.key for r in records] == [b"fraud-lgbm"] * 3
    assert [json.loads(r.value)["action"] for r in records] == [
        "registered", "promoted", "rolled_back"]


def test_unreachable_broker_is_skipped_with_the_reason(monkeypatch, tmp_path):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    settings = load_settings(data_dir=tmp_path)
    result = publish_model_updates([{"model_name": "m", "action": "promoted"}], settings)
    assert result.sent == 0 and "does not answer" in result.skipped
