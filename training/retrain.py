"""The retrain worker: a ``model-retrain`` event in, a challenger (maybe a champion) out.

Pure orchestration, no Faust: the retrain agent (:mod:`app.agents.retrain`) and ``fraudstream
retrain`` both call :func:`run_retrain`. For one event:

1. **Idempotency**: the event's ``idempotency_key`` is looked up in the registry
   (:meth:`models.registry.ModelRegistry.handled_retrain`: the registered model's tag
   ``retrain.<key>``, with the outcome as JSON). A key already there is skipped, so a
   redelivered event (at-least-once upstream) retrains nothing twice, on any worker. A
   version registered under the key's training run (param ``source.trigger``) by an attempt
   that was ended before it recorded the key (:func:`registered_by_earlier_attempt`) counts
   as handled too: no second candidate.
2. **Staleness**: an event about another version than the current champion (the drift of a
   model that has been replaced since) is skipped and recorded.
3. **Wait for labels**: until the newest labelled and the newest enriched event times reach
   the detection + ``retrain_wait_days`` (checked every ``retrain_poll_s``, at most
   ``retrain_max_wait_s``), so that the new regime is in the training and test windows.
4. **Training set**: the pipeline's own feature log (``transactions-enriched``, the features
   exactly as served) joined with ``transaction-labels`` by ``txn_id``, over the
   ``retrain_history_days`` of event time before the newest labelled transaction
   (:mod:`training.feature_log`).
5. **Train, evaluate, register, gate**: :func:`training.pipeline.train_and_register` on the
   latest window that fits: the champion is scored on the same recent test rows; the new
   version is registered as challenger and promoted only when the gates pass and
   ``retrain_auto_promote`` is on; ``model-updates`` events go out (the scorers swap).
6. **Record** the outcome under the key (and the key on the new model version).

A failed retrain (no usable data, a parity failure) is recorded too, so a poison event does not
retrain forever; ``fraudstream retrain --now`` forces a new one.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from config.settings import Settings

if TYPE_CHECKING:  # pragma: no cover - MLflow's import takes seconds: imported when used
    from models.registry import ModelRegistry

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
Echo = Callable[[str], None]


class RetrainAbandoned(Exception):  # noqa: N818 - an outcome, not an error
    """The retrain was told to stop (its worker lost the event's partition, or stops) before
    it trained: nothing was recorded under its key, so whoever gets the event next retrains."""


class Cancel(Protocol):
    """What :func:`run_retrain` needs of a stop flag: a ``threading.Event`` or a
    ``multiprocessing`` one."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


def _stop_if(cancel: Cancel | None, why: str) -> None:
    if cancel is not None and cancel.is_set():
        raise RetrainAbandoned(why)


def _cancellable_sleep(cancel: Cancel) -> Callable[[float], None]:
    """A sleep that ends at once, with :class:`RetrainAbandoned`, when ``cancel`` is set."""

    def sleep(seconds: float) -> None:
        if cancel.wait(seconds):
            raise RetrainAbandoned("stopped while waiting for labels")

    return sleep


class BadRetrainEvent(ValueError):
    """A ``model-retrain`` record that cannot be acted on (the message says why)."""


@dataclass(frozen=True)
class RetrainRequest:
    """What to retrain and why: from a ``model-retrain`` record or made by hand (``--now``)."""

    model_name: str
    idempotency_key: str
    model_version: str | None = None
    event_ts: int | None = None
    signal: str | None = None
    detector: str | None = None
    forced: bool = False

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> RetrainRequest:
        """Validate a ``model-retrain`` record.

        >>> r = RetrainRequest.from_record({"model_name": "m", "model_version": "3",
        ...     "event_ts": 5, "signal": "error", "idempotency_key": "k1"})
        >>> r.model_version, r.event_ts, r.forced
        ('3', 5, False)
        >>> RetrainRequest.from_record({"model_name": "m"})
        Traceback (most recent call last):
        ...
        training.retrain.BadRetrainEvent: model-retrain record without idempotency_key
        """
        key, name = rec.get("idempotency_key"), rec.get("model_name")
        if not isinstance(name, str) or not name:
            raise BadRetrainEvent("model-retrain record without model_name")
        if not isinstance(key, str) or not key:
            raise BadRetrainEvent("model-retrain record without idempotency_key")
        ts = rec.get("event_ts")
        if ts is not None and (not isinstance(ts, int | float) or isinstance(ts, bool)):
            raise BadRetrainEvent(f"model-retrain record with event_ts {ts!r}")
        version = rec.get("model_version")
        return cls(model_name=name, idempotency_key=key,
                   model_version=None if version in (None, "") else str(version),
                   event_ts=None if ts is None else int(ts), signal=rec.get("signal"),
                   detector=rec.get("detector"))

    @classmethod
    def manual(cls, model_name: str) -> RetrainRequest:
        """A forced retrain (no staleness check, no wait), with a fresh key."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        return cls(model_name=model_name, idempotency_key=f"manual-{stamp}-{uuid.uuid4().hex[:6]}",
                   forced=True)


@dataclass
class RetrainOutcome:
    """What one retrain event led to (``status``: trained, duplicate, stale, failed)."""

    key: str
    status: str
    detail: str = ""
    version: int | None = None
    promoted: bool = False
    refused: list[str] = field(default_factory=list)
    champion_before: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    champion_metrics: dict[str, float] = field(default_factory=dict)
    window: dict[str, object] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for logs and the CLI.

        >>> RetrainOutcome("k", "trained", version=4, promoted=True, champion_before=3).summary()
        'retrain k: trained v4, promoted to champion (was v3)'
        >>> RetrainOutcome("k", "stale", "event about v2, champion is v3").summary()
        'retrain k: stale (event about v2, champion is v3)'
        """
        if self.status != "trained":
            return f"retrain {self.key}: {self.status} ({self.detail})"
        what = (f"promoted to champion (was v{self.champion_before})" if self.promoted
                else "not promoted: " + "; ".join(self.refused or ["auto-promotion off"]))
        return f"retrain {self.key}: trained v{self.version}, {what}"

    def record(self) -> dict[str, object]:
        """The compact JSON stored under the key in the registry."""
        keep = ("status", "detail", "version", "promoted", "champion_before")
        return {**{k: v for k, v in asdict(self).items() if k in keep},
                "at": datetime.now(UTC).isoformat(timespec="seconds")}


def champion_version(registry: ModelRegistry) -> int | None:
    from models.registry import CHAMPION, RegistryError

    try:
        return int(registry.get_version(CHAMPION, verify=False).version)
    except RegistryError:
        return None


# -- the data ----------------------------------------------------------------------------------


def history_days(settings: Settings) -> int:
    """Days of event time a retrain reads back (the windows of the handbook split, twice for
    the validation split before the training window).

    >>> from config.settings import load_settings
    >>> history_days(load_settings())
    35
    >>> history_days(load_settings(retrain_history_days=10))
    10
    """
    if settings.retrain.history_days:
        return settings.retrain.history_days
    return (settings.training.window_days
            + 2 * (settings.training.delay_days + settings.training.test_days))


@dataclass
class Watermarks:
    labels: int | None
    enriched: int | None

    def reached(self, need: int) -> bool:
        return (self.labels is not None and self.enriched is not None
                and self.labels >= need and self.enriched >= need)


def watermarks(settings: Settings, bootstrap: str, client_kwargs: Mapping[str, Any]
               ) -> Watermarks:
    from training.feature_log import watermark

    return Watermarks(watermark(bootstrap, settings.topics.labels, client_kwargs),
                      watermark(bootstrap, settings.topics.enriched, client_kwargs))


def wait_for_labels(need_ts: int, settings: Settings, bootstrap: str,
                    client_kwargs: Mapping[str, Any], say: Echo,
                    sleep: Callable[[float], None] = time.sleep) -> Watermarks:
    """Poll the watermarks until both reach ``need_ts`` or ``retrain_max_wait_s`` passes."""
    deadline = time.monotonic() + settings.retrain.max_wait_s
    marks = watermarks(settings, bootstrap, client_kwargs)
    announced = False
    while not marks.reached(need_ts) and time.monotonic() < deadline:
        if not announced:
            say(f"waiting for labels and features up to {_iso(need_ts)} (labels at "
                f"{_iso(marks.labels)}, features at {_iso(marks.enriched)})")
            announced = True
        sleep(min(settings.retrain.poll_s, max(0.0, deadline - time.monotonic())))
        marks = watermarks(settings, bootstrap, client_kwargs)
    if not marks.reached(need_ts):
        say(f"gave up waiting after {settings.retrain.max_wait_s:.0f} s: training on what has "
            f"arrived (labels at {_iso(marks.labels)})")
    return marks


def _iso(ts: int | None) -> str:
    if ts is None:
        return "none"
    return datetime.fromtimestamp(ts / 1000, UTC).isoformat(timespec="minutes")


def recent_training_set(settings: Settings, bootstrap: str, client_kwargs: Mapping[str, Any],
                        until_ts: int | None, say: Echo) -> Any:
    """The feature log ⋈ labels over the last :func:`history_days` before ``until_ts``."""
    from training.feature_log import read_topic, training_frame

    since = None if until_ts is None else until_ts - history_days(settings) * DAY_MS
    labels = read_topic(bootstrap, settings.topics.labels, client_kwargs, since_ts=since)
    enriched = read_topic(bootstrap, settings.topics.enriched, client_kwargs, since_ts=since)
    say(f"read {enriched.read:,} enriched and {labels.read:,} label records in "
        f"{enriched.seconds + labels.seconds:.1f} s ({len(enriched.records):,} and "
        f"{len(labels.records):,} since {_iso(since)})")
    return training_frame(enriched.records, labels.records, source={
        "source": "kafka feature log", "enriched_topic": settings.topics.enriched,
        "labels_topic": settings.topics.labels, "since": _iso(since),
        "malformed": enriched.malformed + labels.malformed})


# -- the whole thing -----------------------------------------------------------------------------


def run_retrain(request: RetrainRequest, settings: Settings, *, wait: bool = True,
                echo: Echo | None = None, bootstrap: str | None = None,
                cancel: Cancel | None = None) -> RetrainOutcome:
    """Handle one retrain request end to end (see the module docstring). Never raises for a
    retrain that cannot be done: the outcome says why, and it is recorded under the key.

    ``cancel`` (a :class:`Cancel`, e.g. ``threading.Event``): once it is set, the wait for
    labels ends at once and :class:`RetrainAbandoned` is raised, also when it is set before
    the training starts; nothing is recorded under the key then. Training itself is not
    interrupted (its caller may end the process instead).
    """
    from config.endpoints import kafka_bootstrap
    from config.security import aiokafka_kwargs
    from models.registry import open_registry
    from training.onnx_export import ParityError
    from training.pipeline import train_and_register

    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        (echo or log.info)(line)

    began = time.perf_counter()
    key = request.idempotency_key
    registry = open_registry(settings)
    seen = registry.handled_retrain(key)
    if seen is not None:
        return RetrainOutcome(key, "duplicate", f"already handled at {seen.get('at')}: "
                              f"{seen.get('status')}", lines=lines)
    earlier = registered_by_earlier_attempt(registry, key)
    if earlier is not None:  # ended (rebalance, stop, crash) between registering and recording
        champion = champion_version(registry)
        promoted = champion == earlier
        outcome = RetrainOutcome(
            key, "trained", f"v{earlier} was registered by an earlier attempt that was ended "
            "before it recorded its outcome: not trained again", version=earlier,
            promoted=promoted, champion_before=None if promoted else champion,
            refused=[] if promoted else ["an earlier attempt was ended before the gates: "
                                         "it stays challenger"])
        return _finish(registry, outcome, lines)
    if request.model_name != settings.registry.model_name:
        outcome = RetrainOutcome(key, "failed", f"event about model {request.model_name!r}, "
                                 f"this worker trains {settings.registry.model_name!r}")
        return _finish(registry, outcome, lines)
    _stop_if(cancel, "stopped before it started")  # opening the registry can take seconds
    champion = champion_version(registry)
    if _stale(request, champion):
        outcome = RetrainOutcome(key, "stale", f"event about v{request.model_version}, the "
                                 f"champion is v{champion} now", champion_before=champion)
        return _finish(registry, outcome, lines)

    bootstrap = bootstrap or kafka_bootstrap(settings)
    client_kwargs = aiokafka_kwargs(settings)
    seconds: dict[str, float] = {}
    if wait and request.event_ts is not None and settings.retrain.wait_days > 0:
        need = request.event_ts + int(settings.retrain.wait_days * DAY_MS)
        if cancel is None:
            marks = wait_for_labels(need, settings, bootstrap, client_kwargs, say)
        else:
            marks = wait_for_labels(need, settings, bootstrap, client_kwargs, say,
                                    sleep=_cancellable_sleep(cancel))
    else:
        marks = watermarks(settings, bootstrap, client_kwargs)
    _stop_if(cancel, "stopped before training")
    seconds["wait"] = round(time.perf_counter() - began, 2)
    champion = champion_version(registry)  # it may have changed while waiting
    if _stale(request, champion):
        outcome = RetrainOutcome(key, "stale", f"event about v{request.model_version}, the "
                                 f"champion became v{champion} while waiting",
                                 champion_before=champion, seconds=seconds)
        return _finish(registry, outcome, lines)

    data = recent_training_set(settings, bootstrap, client_kwargs, marks.labels, say)
    data.source.update({"trigger": key, "signal": request.signal or "manual",
                        "detected_at": _iso(request.event_ts)})
    say(f"training set: {len(data):,} labelled transactions, "
        f"{int(data.frame['is_fraud'].sum()) if len(data) else 0:,} frauds "
        f"({data.source['unlabelled']:,} without a label yet)")
    seconds["read"] = round(time.perf_counter() - began - seconds["wait"], 2)
    report_dir = settings.data_dir / "training" / "reports" / f"retrain-{key[:16]}"
    try:
        result = train_and_register(data, settings, promote=settings.retrain.auto_promote,
                                    publish=True, echo=say, report_dir=report_dir)
    except (ValueError, ParityError) as exc:
        outcome = RetrainOutcome(key, "failed", f"{type(exc).__name__}: {exc}",
                                 champion_before=champion, seconds=seconds)
        return _finish(registry, outcome, lines)
    for line in result.lines():
        say(line)
    refused = list(result.refused)
    if not settings.retrain.auto_promote and result.version is not None:
        refused = ["auto-promotion off (FRAUDSTREAM_RETRAIN_AUTO_PROMOTE=false)"]
    seconds.update(result.timings)
    seconds["total"] = round(time.perf_counter() - began, 2)
    outcome = RetrainOutcome(
        key, "trained", version=result.version, promoted=result.promoted, refused=refused,
        champion_before=result.champion_before, metrics=dict(result.metrics),
        champion_metrics=dict(result.champion_metrics or {}),
        window={**result.split, "rows": len(data)}, seconds=seconds)
    return _finish(registry, outcome, lines)


def registered_by_earlier_attempt(registry: ModelRegistry, key: str) -> int | None:
    """The newest version registered by a training run of retrain ``key`` (the run's param
    ``source.trigger``, set by :func:`run_retrain` before it trains), if any.

    A retrain ended after :meth:`~models.registry.ModelRegistry.register_candidate` but before
    :func:`_finish` recorded its key (its process ended at a rebalance or a stop, or the worker
    crashed) left a version without the key: the next attempt must not register a second one.
    """
    if "'" in key or "\\" in key:  # not expressible in an MLflow filter; keys are plain
        log.warning("retrain key %r: cannot look for an earlier attempt's version", key)
        return None
    client = registry.client
    runs = client.search_runs([registry.experiment_id()],
                              filter_string=f"params.`source.trigger` = '{key}'")
    versions = [int(v.version) for run in runs for v in client.search_model_versions(
        f"name = '{registry.model_name}' and run_id = '{run.info.run_id}'")]
    return max(versions, default=None)


def _stale(request: RetrainRequest, champion: int | None) -> bool:
    return (not request.forced and request.model_version is not None and champion is not None
            and request.model_version != str(champion))


def _finish(registry: ModelRegistry, outcome: RetrainOutcome, lines: list[str]) -> RetrainOutcome:
    registry.mark_retrain_handled(outcome.key, outcome.record(), outcome.version)
    outcome.lines = lines + [outcome.summary()]
    log.info("%s", outcome.summary())
    return outcome


def handle_record(record: Mapping[str, Any], settings: Settings, wait: bool = True,
                  cancel: Cancel | None = None) -> RetrainOutcome:
    """:func:`run_retrain` for a raw ``model-retrain`` record (what the agent's child runs)."""
    return run_retrain(RetrainRequest.from_record(record), settings, wait=wait, cancel=cancel)
