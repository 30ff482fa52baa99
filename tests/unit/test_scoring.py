"""Scoring logic: the variant split, the prediction record, batch scoring and model refusal.

The model tests use real models (trained on simulated traffic, exported to ONNX) in a real
MLflow sqlite registry: a bad version is refused and the current champion keeps serving.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from app.metrics import MODEL_LOAD_FAILURES
from app.scoring.models import ModelHolder, RegistrySource
from app.scoring.records import FIELDS
from app.scoring.scorer import score_batch
from app.scoring.split import SplitPolicy, bucket
from features.spec import DEFAULT_SPEC
from tests.support import models


def test_split_is_deterministic_and_matches_the_share():
    policy = SplitPolicy("split", challenger_share=0.2)
    cards = [f"card-{i}" for i in range(20_000)]
    first = [policy.assign(c, challenger=True) for c in cards]
    assert first == [SplitPolicy("split", 0.2).assign(c, challenger=True) for c in cards]
    share = sum(a[0][0] == "challenger" for a in first) / len(cards)
    assert abs(share - 0.2) < 0.01
    # the same card keeps its variant when the share grows (buckets are nested)
    wider = SplitPolicy("split", challenger_share=0.5)
    assert all(wider.assign(c, challenger=True)[0][0] == "challenger"
               for c, a in zip(cards, first, strict=True) if a[0][0] == "challenger")
    # stable across processes: a fixed value, not Python's salted hash()
    assert bucket("card-1") == pytest.approx(0.971243, abs=1e-6)
    assert all(len(policy.assign(c, challenger=False)) == 1 for c in cards[:100])


def test_shadow_mode_scores_every_card_with_both():
    policy = SplitPolicy("shadow", challenger_share=0.0)
    assert policy.assign("x", challenger=True) == (("champion", False), ("challenger", True))
    with pytest.raises(ValueError):
        SplitPolicy("split", challenger_share=1.5)


@pytest.fixture(scope="module")
def exported():
    return {"v1": models.train(seed=1, rounds=30), "v2": models.train(seed=2, rounds=45)}


@pytest.fixture
def registry(tmp_path):
    return models.registry(tmp_path)


def _holder(registry):
    return ModelHolder(RegistrySource(registry, DEFAULT_SPEC.names, DEFAULT_SPEC.version))


def test_batch_records_follow_the_schema_and_the_model(registry, exported):
    models.register(registry, exported["v1"], threshold=0.3, champion=True)
    models.register(registry, exported["v2"], threshold=0.4, alias="challenger")
    holder = _holder(registry)
    assert holder.refresh() == ["champion: v1 loaded", "challenger: v2 loaded"]
    records = models.traffic().enriched(limit=200)
    bad = json.loads(records[5][1])
    bad["feature_spec_version"] = "other"
    raws = [v for _, v in records] + [json.dumps(bad).encode()]
    batch = score_batch(raws, [1_000.0] * len(raws), holder.champion, holder.challenger,
                        SplitPolicy("shadow"))
    assert [(p, r.reason) for p, r in batch.rejects] == [(200, "feature_spec_mismatch")]
    assert len(batch.records) == 400
    matrix = models.traffic().features[DEFAULT_SPEC.names].to_numpy()[:200]
    expected = {"champion": models.scores(exported["v1"], matrix),
                "challenger": models.scores(exported["v2"], matrix)}
    for i, (key, rec) in enumerate(batch.records):
        assert tuple(rec) == FIELDS
        row, variant = divmod(i, 2)
        assert rec["variant"] == ("champion", "challenger")[variant]
        assert rec["shadow"] is (variant == 1)
        assert rec["model_version"] == 1 + variant
        assert rec["threshold"] == (0.3, 0.4)[variant]
        assert rec["score"] == pytest.approx(expected[rec["variant"]][row], abs=0)
        assert rec["decision"] == ("alert" if rec["score"] >= rec["threshold"] else "pass")
        assert key == rec["card_id"].encode()
        assert rec["txn_id"] == json.loads(records[row][1])["txn_id"]
        assert rec["latency_ms"] == rec["scored_at"] - 1_000.0 or math.isclose(
            rec["latency_ms"], rec["scored_at"] - 1_000.0, abs_tol=1.0)
    assert len({r["decision"] for _, r in batch.records}) == 2  # both decisions occur


def _failures(alias: str, reason: str) -> float:
    return MODEL_LOAD_FAILURES.labels(alias, reason)._value.get()


def test_a_bad_model_is_refused_and_the_champion_keeps_serving(registry, exported):
    models.register(registry, exported["v1"], champion=True)
    holder = _holder(registry)
    holder.refresh()
    assert holder.champion.version == 1

    # v2: another feature list (a model of the first 20 features only)
    narrow = models.train(seed=3, rounds=10, features=DEFAULT_SPEC.names[:20])
    models.register(registry, narrow, champion=True)
    before = _failures("champion", "ModelMismatchError")
    changes = holder.refresh()
    assert changes and "v2 refused" in changes[0] and "features" in changes[0]
    assert holder.champion.version == 1
    assert _failures("champion", "ModelMismatchError") == before + 1
    assert holder.refresh() == []  # not retried while the alias stays on v2

    # v3: corrupt bytes on disk (sha256 differs from the registered one)
    models.register(registry, exported["v2"], champion=True)
    path = registry.get_version(3, verify=False).local_path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    changes = holder.refresh()
    assert "v3 refused" in changes[0] and "sha256" in changes[0]
    assert holder.champion.version == 1
    matrix = np.zeros((2, len(DEFAULT_SPEC)), dtype=np.float32)
    assert holder.champion.predict(matrix).shape == (2,)

    # v4: a good model is taken
    models.register(registry, exported["v2"], champion=True)
    assert holder.refresh() == ["champion: v4 loaded"]
    assert holder.champion.version == 4


def test_a_model_without_threshold_is_refused(registry, exported):
    event = registry.register_candidate(exported["v1"], metrics={"auc_roc": 0.9},
                                        test_data_id="t", alias=None)
    registry.promote(event["version"], force=True)
    holder = _holder(registry)
    assert "no decision threshold" in holder.refresh()[0]
    assert holder.champion is None
    fixed = ModelHolder(RegistrySource(registry, DEFAULT_SPEC.names, DEFAULT_SPEC.version,
                                       threshold=0.25))
    assert fixed.refresh() == ["champion: v1 loaded"] and fixed.champion.threshold == 0.25
