"""Served models: loaded from MLflow by alias, verified, warmed up, swapped between batches.

A :class:`ModelHolder` has one :class:`ModelSlot` per alias (``champion``, ``challenger``).
:meth:`ModelHolder.plan` (blocking: run it in a thread) asks the source which version each
alias names; for a version the slot does not serve yet it loads the model: SHA-256 of the bytes
against the registered one, feature list and order, feature-spec version, graph signature
(:func:`models.serving.load_onnx_model`), a decision threshold, and a warm-up run whose
scores must be finite and within [0, 1]. :meth:`ModelHolder.apply` then installs what loaded.
It runs on the event loop between two micro-batches, and each batch scores with the models it
took at its start (:meth:`ModelHolder.snapshot`), so a batch never mixes versions and every
prediction names the version that made it.

A version that fails any check is refused: an error is logged, ``model_load_failures_total``
counts it, and the slot keeps serving what it served (a refused version is not retried until
its alias moves). A champion alias that disappears keeps the current champion serving (with a
warning); a challenger alias that disappears stops the challenger.

>>> holder = ModelHolder(FakeSource({"champion": (1, "ok")}))
>>> holder.refresh(), holder.champion.version
(['champion: v1 loaded'], 1)
>>> holder.source.versions["champion"] = (2, "corrupt")
>>> holder.refresh(), holder.champion.version
(['champion: v2 refused (ModelMismatchError: sha256 mismatch)'], 1)
>>> holder.refresh()   # the refused version is not retried until the alias moves
[]
>>> holder.source.versions["champion"] = (3, "ok")
>>> holder.refresh(), holder.champion.version
(['champion: v3 loaded'], 3)
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from app.metrics import MODEL_INFO, MODEL_LOAD_FAILURES
from app.scoring.split import CHALLENGER, CHAMPION

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """A verified, warmed-up model version and what its predictions must say about it."""

    model_name: str
    version: int
    alias: str
    sha256: str
    threshold: float
    spec_version: str
    feature_names: tuple[str, ...]
    scorer: Any = field(repr=False)  # models.serving.OnnxScorer (one ORT session)
    loaded_at: float = field(default_factory=time.time)

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Scores of a float32 ``[n, n_features]`` matrix (one ORT run)."""
        return self.scorer.predict(matrix)


class ModelSource(Protocol):
    """Where models come from (the MLflow registry in production)."""

    def resolve(self, alias: str) -> tuple[int, str] | None:
        """``(version, sha256)`` that ``alias`` names now, or None if it names none."""

    def load(self, alias: str, version: int) -> LoadedModel:
        """Load, verify and warm up ``version``; raise on any problem."""


def warm_up(model: LoadedModel, batch_sizes: Iterable[int] = (1, 64)) -> None:
    """Run the model once per batch size; refuse scores outside [0, 1] or not finite.

    The first ORT runs allocate; doing them here keeps that cost off the first live batch.
    """
    width = len(model.feature_names)
    for size in batch_sizes:
        scores = model.predict(np.zeros((size, width), dtype=np.float32))
        if scores.shape != (size,) or not all(math.isfinite(s) and 0 <= s <= 1
                                                for s in scores.tolist()):
            raise ValueError(f"warm-up on {size} rows gave invalid scores")


class ModelSlot:
    """What one alias serves: the current model, and the last version refused."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.model: LoadedModel | None = None
        self.refused: tuple[int, str] | None = None
        self.error: str | None = None

    def serves(self, version: int, sha256: str) -> bool:
        return self.model is not None and (self.model.version, self.model.sha256) == (
            version, sha256)

    def install(self, model: LoadedModel) -> None:
        """Serve ``model`` from the next batch on."""
        old = self.model
        if old is not None:
            _info_gauge(old, remove=True)
        self.model, self.refused, self.error = model, None, None
        _info_gauge(model)

    def refuse(self, version: int, sha256: str, error: str, reason: str) -> None:
        """Record a refused version; the current model (if any) keeps serving."""
        self.refused, self.error = (version, sha256), error
        MODEL_LOAD_FAILURES.labels(self.alias, reason).inc()
        serving = f"v{self.model.version} keeps serving" if self.model else "no model is served"
        log.error("refused %s v%s: %s (%s)", self.alias, version, error, serving)

    def clear(self) -> None:
        if self.model is not None:
            _info_gauge(self.model, remove=True)
        self.model = None


def _info_gauge(model: LoadedModel, remove: bool = False) -> None:
    labels = (model.alias, model.model_name, str(model.version), model.sha256[:12])
    if remove:
        try:
            MODEL_INFO.remove(*labels)
        except KeyError:
            pass
    else:
        MODEL_INFO.labels(*labels).set(1)


@dataclass
class Planned:
    """Outcome of :meth:`ModelHolder.plan` for one alias."""

    alias: str
    action: str  # "load", "refuse", "gone"
    model: LoadedModel | None = None
    version: int = 0
    sha256: str = ""
    error: str = ""
    reason: str = ""


class ModelHolder:
    """The champion and challenger slots, refreshed from a :class:`ModelSource`."""

    def __init__(self, source: ModelSource, aliases: tuple[str, ...] = (CHAMPION, CHALLENGER)):
        self.source = source
        self.slots = {alias: ModelSlot(alias) for alias in aliases}

    @property
    def champion(self) -> LoadedModel | None:
        return self.slots[CHAMPION].model

    @property
    def challenger(self) -> LoadedModel | None:
        slot = self.slots.get(CHALLENGER)
        return slot.model if slot else None

    def snapshot(self) -> tuple[LoadedModel | None, LoadedModel | None]:
        """The models a batch scores with, taken once at its start."""
        return self.champion, self.challenger

    def plan(self) -> list[Planned]:
        """Resolve every alias and load what changed (blocking; safe in a worker thread: it
        does not touch the slots' models)."""
        out: list[Planned] = []
        for alias, slot in self.slots.items():
            try:
                target = self.source.resolve(alias)
            except Exception as exc:  # registry unreachable: keep serving, say so
                error = f"registry: {type(exc).__name__}: {exc}"
                if error != slot.error:
                    log.warning("cannot resolve %s: %s", alias, error)
                slot.error = error
                continue
            if target is None:
                if slot.model is not None:
                    out.append(Planned(alias, "gone"))
                continue
            version, sha = target
            if slot.serves(version, sha) or slot.refused == (version, sha):
                continue
            try:
                model = self.source.load(alias, version)
            except Exception as exc:
                out.append(Planned(alias, "refuse", version=version, sha256=sha,
                                   error=f"{type(exc).__name__}: {exc}",
                                   reason=type(exc).__name__))
                continue
            out.append(Planned(alias, "load", model, version, sha))
        return out

    def apply(self, plan: list[Planned]) -> list[str]:
        """Install a plan (on the event loop, between batches); one line per change."""
        changes = []
        for step in plan:
            slot = self.slots[step.alias]
            if step.action == "load" and step.model is not None:
                slot.install(step.model)
                changes.append(f"{step.alias}: v{step.version} loaded")
                log.info("%s: now serving %s v%s (sha256 %s, threshold %.6g)", step.alias,
                         step.model.model_name, step.version, step.model.sha256[:12],
                         step.model.threshold)
            elif step.action == "refuse":
                slot.refuse(step.version, step.sha256, step.error, step.reason)
                changes.append(f"{step.alias}: v{step.version} refused ({step.error})")
            elif step.action == "gone":
                if step.alias == CHAMPION:
                    log.warning("the champion alias names no version any more; v%s keeps "
                                "serving", slot.model.version if slot.model else "?")
                    continue
                log.info("%s alias removed: v%s no longer serves", step.alias,
                         slot.model.version if slot.model else "?")
                slot.clear()
                changes.append(f"{step.alias}: removed")
        return changes

    def refresh(self) -> list[str]:
        """:meth:`plan` then :meth:`apply`, in the calling thread."""
        return self.apply(self.plan())


class RegistrySource:
    """Models from the MLflow registry (:class:`models.registry.ModelRegistry`).

    ``registry`` may be a function that returns one (MLflow's import takes seconds: the worker
    makes it in a thread at the first refresh). ``threshold``: a fixed decision threshold;
    None takes the version's registered ``threshold`` metric, and refuses a version that has
    none.
    """

    def __init__(self, registry: Any, feature_names: list[str], spec_version: str, *,
                 threads: int = 1, threshold: float | None = None,
                 warmup_batch: int = 64) -> None:
        self._registry = registry  # a ModelRegistry, or a function that makes one (lazily)
        self.feature_names = list(feature_names)
        self.spec_version = spec_version
        self.threads = threads
        self.threshold = threshold
        self.warmup_batch = warmup_batch

    @property
    def registry(self) -> Any:
        if callable(self._registry):
            self._registry = self._registry()
        return self._registry

    def resolve(self, alias: str) -> tuple[int, str] | None:
        return self.registry.resolve_alias(alias)

    def load(self, alias: str, version: int) -> LoadedModel:
        from models.serving import ModelMismatchError, load_onnx_model

        info = self.registry.get_version(version, verify=False)
        if list(info.feature_names) != self.feature_names:
            raise ModelMismatchError(f"v{version} is registered with other features than the "
                                     "stream computes")
        assert info.local_path is not None
        scorer = load_onnx_model(info.local_path, self.feature_names, self.spec_version,
                                 sha256=info.sha256, intra_op_num_threads=self.threads)
        threshold = self.threshold if self.threshold is not None else info.metrics.get(
            "threshold")
        if threshold is None or not 0.0 <= threshold <= 1.0:
            raise ModelMismatchError(
                f"v{version} has no decision threshold in [0, 1] (registered metric "
                "'threshold'; or set FRAUDSTREAM_SCORE_THRESHOLD)")
        model = LoadedModel(self.registry.model_name, version, alias, info.sha256,
                            float(threshold), self.spec_version, tuple(self.feature_names),
                            scorer)
        warm_up(model, (1, self.warmup_batch))
        return model


class FakeSource:
    """An in-memory :class:`ModelSource` for doctests: version tags ``ok`` load, others fail."""

    def __init__(self, versions: dict[str, tuple[int, str]]) -> None:
        self.versions = versions

    def resolve(self, alias: str) -> tuple[int, str] | None:
        return self.versions.get(alias)

    def load(self, alias: str, version: int) -> LoadedModel:
        from models.serving import ModelMismatchError

        _, tag = self.versions[alias]
        if tag != "ok":
            raise ModelMismatchError("sha256 mismatch")
        return LoadedModel("fake", version, alias, tag, 0.5, "v", ("x",), scorer=None)
