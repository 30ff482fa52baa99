"""A retrain ended between registering its version and recording its key (its process ended
at a rebalance or a stop) does not lead the next attempt to register a second version."""

from __future__ import annotations

from pathlib import Path

from config.settings import load_settings
from training.retrain import RetrainRequest, registered_by_earlier_attempt, run_retrain


def _attempt(registry, key: str, *, register: bool) -> str:
    """What an ended attempt left: its training run (params logged first), maybe a version."""
    from mlflow.entities import Param

    client = registry.client
    run = client.create_run(registry.experiment_id(), run_name="train-ended")
    client.log_batch(run.info.run_id, params=[Param("source.trigger", key),
                                              Param("source.signal", "error")])
    if register:
        registry._ensure_registered_model()
        client.create_model_version(registry.model_name, source="file:///nowhere",
                                    run_id=run.info.run_id)
    return run.info.run_id


def test_a_version_of_an_ended_attempt_counts_as_the_retrain(tmp_path: Path) -> None:
    from models.registry import open_registry

    settings = load_settings(data_dir=tmp_path)
    registry = open_registry(settings)
    _attempt(registry, "other-key", register=True)  # v1, another event's
    assert registered_by_earlier_attempt(registry, "k-1") is None
    _attempt(registry, "k-1", register=False)  # ended while training: nothing registered
    assert registered_by_earlier_attempt(registry, "k-1") is None
    _attempt(registry, "k-1", register=True)  # ended after registering v2
    assert registered_by_earlier_attempt(registry, "k-1") == 2
    assert registered_by_earlier_attempt(registry, "it's") is None

    request = RetrainRequest(model_name=settings.registry.model_name, idempotency_key="k-1")
    outcome = run_retrain(request, settings, wait=False)
    assert (outcome.status, outcome.version, outcome.promoted) == ("trained", 2, False)
    assert "earlier attempt" in outcome.detail
    recorded = registry.handled_retrain("k-1")
    assert recorded is not None and recorded["version"] == 2
    assert len(registry.client.search_model_versions(f"name = '{registry.model_name}'")) == 2
    again = run_retrain(request, settings, wait=False)
    assert again.status == "duplicate"
