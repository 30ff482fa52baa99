"""The fault suite's shared pieces: traffic with its batch recomputation, SIGKILL with a record
of the children, a scan for orphan processes, and the one checker every fault test ends with.

The criterion (issue 11, item 4), checked by :func:`check`:

* every valid transaction has exactly one prediction per variant after dedupe by
  ``(txn_id, variant)`` (redeliveries agree with each other), and each score is the variant's
  model's score on the transaction's streamed features; with scoring off, exactly one
  ``transactions-enriched`` record per ``txn_id`` after dedupe;
* the streamed features equal :func:`features.batch.compute_features` over the same
  transactions and labels (counts exactly, floats within 1e-9 relative);
* nothing valid in the dead-letter topic (only the poison a test sent, counted), nothing in the
  late topic;
* no orphan process: every child of a killed worker is gone, and once the workers are stopped
  no process of the test's app (found by its ``FRAUDSTREAM_APP_ID`` in ``/proc/*/environ``)
  is left.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil

from features.batch import compute_features
from features.spec import DEFAULT_SPEC
from infra.kafka_io import Record, consume, produce
from infra.worker_process import Worker, create_topics

T_START = 1_522_540_800_000  # 2018-04-01, the simulator's first day
DAY_MS = 86_400_000

#: Environment of a worker that scores with a champion and a shadow challenger.
SCORING = {"FRAUDSTREAM_SCORING_ENABLED": "true", "FRAUDSTREAM_SCORE_MODE": "shadow",
           "FRAUDSTREAM_MODEL_POLL_INTERVAL_S": "0"}
VARIANTS = ("champion", "challenger")


@lru_cache(maxsize=1)
def scoring_models() -> dict[str, Any]:
    """Variant -> a small exported model (``tests.support.models``), trained once."""
    from tests.support import models

    return {"champion": models.train(seed=1, rounds=30),
            "challenger": models.train(seed=2, rounds=45)}


def register_models(registry: Any, exported: dict[str, Any]) -> list[dict[str, Any]]:
    """Register the challenger, then promote the champion; the two model-updates events."""
    from tests.support import models

    return [models.register(registry, exported["challenger"], threshold=0.4,
                            alias="challenger"),
            models.register(registry, exported["champion"], threshold=0.3, champion=True)]


_BUILT: dict[str, Any] = {}


def install_registry(tmp_path_factory: Any, data_dir: Path,
                     name: str = "mlflow.db") -> list[dict[str, Any]]:
    """Put an MLflow registry with :func:`scoring_models` registered (challenger v1, champion
    v2) at ``data_dir/name``: built once per session (registering costs seconds), its database
    copied for each test (the artifacts stay where they were written, named by absolute URIs).
    Returns the two model-updates events."""
    import shutil

    from tests.support import models

    if "db" not in _BUILT:
        root = tmp_path_factory.mktemp("registry")
        _BUILT["updates"] = register_models(models.registry(root), scoring_models())
        _BUILT["db"] = root / "mlflow.db"
    data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_BUILT["db"], data_dir / f".{name}.part")
    os.replace(data_dir / f".{name}.part", data_dir / name)  # a worker never sees half of it
    return list(_BUILT["updates"])


# -- traffic ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Traffic:
    """Simulated transactions and labels as records, with their batch features."""

    tx: list[tuple[bytes, bytes]]
    labels: list[tuple[bytes, bytes]]
    batch: pd.DataFrame          # index txn_id, columns DEFAULT_SPEC.names

    @property
    def ids(self) -> set[str]:
        return set(self.batch.index)

    def __len__(self) -> int:
        return len(self.tx)


@lru_cache(maxsize=4)
def traffic(profile: str = "realistic", seed: int = 11, customers: int = 600,
            days: int = 12) -> Traffic:
    """``days`` of simulated traffic (labels reported 7 days after their transaction, so the
    terminal features' delayed windows fill after day 7) and its batch recomputation."""
    from simulator import simulate

    sim = simulate(profile, seed=seed, n_customers=customers, n_terminals=2 * customers,
                   n_days=days)
    return from_tables(sim.transactions(), sim.labels())


def from_tables(txns: Any, labels: Any) -> Traffic:
    """:class:`Traffic` of contract tables (pyarrow) of transactions and labels."""
    from simulator.serialize import keys, label_values, transaction_values

    batch = compute_features(txns.to_pandas(), labels.to_pandas()).set_index("txn_id")
    return Traffic(list(zip(keys(txns), transaction_values(txns), strict=True)),
                   list(zip(keys(labels), label_values(labels), strict=True)), batch)


def preload(workers: Any, bootstrap: str, data: Traffic, **env: str) -> None:
    """Create the test's topics (as a worker with ``env`` would) and load all of ``data``:
    a backlog before any worker starts."""
    create_topics(bootstrap, workers.env(**env))
    produce(bootstrap, workers.topic("labels"), data.labels)
    produce(bootstrap, workers.topic("transactions"), data.tx)


# -- watching the outputs --------------------------------------------------------------------

def txn_id(record: Record) -> str:
    return str(json.loads(record.value)["txn_id"])


def prediction_key(record: Record) -> tuple[str, str]:
    value = json.loads(record.value)
    return str(value["txn_id"]), str(value["variant"])


def wait_outputs(bootstrap: str, topic: str, count: int, timeout: float = 300.0,
                 key: Any = txn_id) -> int:
    """Block until ``topic`` holds ``count`` distinct keys; the number seen."""
    out = consume(bootstrap, topic, expected=count, timeout=timeout, settle=0, distinct=key)
    seen = len({key(r) for r in out})
    if seen < count:
        raise TimeoutError(f"{topic}: {seen} of {count} distinct outputs after {timeout} s")
    return seen


# -- processes -------------------------------------------------------------------------------

def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def describe(pid: int) -> str:
    try:
        proc = psutil.Process(pid)
        return f"{pid} (ppid {proc.ppid()}): {' '.join(proc.cmdline())[:160]}"
    except psutil.NoSuchProcess:
        return f"{pid} (gone)"


def kill(worker: Worker, timeout: float = 15.0) -> list[int]:
    """SIGKILL ``worker``; wait until every process it had as a descendant is gone too.
    Returns those descendants' pids; ``AssertionError`` naming the survivors otherwise."""
    try:
        children = [c.pid for c in psutil.Process(worker.proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        children = []
    worker.proc.kill()
    worker.proc.wait(timeout=10)
    deadline = time.monotonic() + timeout
    while (left := [p for p in children if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, "children of a killed worker still run: " + "; ".join(map(describe, left))
    return children


def app_processes(app_id: str) -> list[int]:
    """Pids of every live process whose environment has ``FRAUDSTREAM_APP_ID=app_id``."""
    needle = f"FRAUDSTREAM_APP_ID={app_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def assert_no_orphans(workers: Any, timeout: float = 20.0) -> None:
    """Stop every worker of ``workers`` (SIGTERM), then no process of the test's app may be
    left (the ``/proc`` scan: children reparented to init are found too)."""
    workers.stop_all()
    app_id = workers.env()["FRAUDSTREAM_APP_ID"]
    deadline = time.monotonic() + timeout
    while (left := app_processes(app_id)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, "processes left behind: " + "; ".join(map(describe, left))


def pipeline_state(worker: Worker) -> str:
    """The pipeline and scoring gauges of a live worker's ``/metrics`` (or why not)."""
    if worker.proc.poll() is not None:
        return f"pid {worker.proc.pid} exited {worker.proc.returncode}"
    try:
        lines = worker.metrics().splitlines()
    except OSError as exc:
        return f"pid {worker.proc.pid}: no metrics ({exc})"
    keep = ("fraudstream_pipeline_", "fraudstream_scoring_held", "fraudstream_view_")
    shown = [line for line in lines if line.startswith(keep)]
    return f"pid {worker.proc.pid}: " + ", ".join(shown)


# -- the checker -----------------------------------------------------------------------------

@dataclass
class Outcome:
    """What came out, for the assertions a test adds after :func:`check`."""

    enriched: list[Record]
    predictions: list[Record]
    dead: list[Record]
    late: list[Record]
    features: dict[str, dict[str, float]] = field(default_factory=dict)
    duplicates: int = 0

    def summary(self) -> str:
        return (f"{len(self.features)} transactions, {len(self.enriched)} enriched records "
                f"({self.duplicates} redelivered), {len(self.predictions)} predictions, "
                f"{len(self.dead)} dead letters, {len(self.late)} late")


def check(bootstrap: str, workers: Any, data: Traffic, *,
          models: dict[str, Any] | None = None, expected_dead: int = 0,
          poison: Iterable[bytes] = (), timeout: float = 300.0,
          orphans: bool = True, extra: Callable[[Outcome], None] | None = None) -> Outcome:
    """The fault criterion (module docstring) over the test's topics; ``models``: variant ->
    ``ExportedModel`` when the workers score (None: scoring off). ``expected_dead``: how many
    dead letters the test sent (their values among ``poison``, or prefixes of them when
    truncated); every other record in the DLQ fails the check. ``extra(outcome)``: a test's
    own assertions, reported with the criterion's (every failing part is listed, not only the
    first)."""
    ids = data.ids
    deadline = time.monotonic() + timeout
    enriched = consume(bootstrap, workers.topic("enriched"), expected=len(ids),
                       timeout=timeout, settle=2.0, distinct=txn_id)
    predictions: list[Record] = []
    if models:
        predictions = consume(bootstrap, workers.topic("predictions"),
                              expected=len(ids) * len(models),
                              timeout=max(10.0, deadline - time.monotonic()), settle=2.0,
                              distinct=prediction_key)
    # (expected 0: read for the settle time, from the beginning)
    dead = consume(bootstrap, workers.topic("dlq"), expected=expected_dead, timeout=60,
                   settle=2.0)
    late = consume(bootstrap, workers.topic("late"), expected=0, settle=2.0)
    outcome = Outcome(enriched, predictions, dead, late)
    problems: list[str] = []
    short = (len({txn_id(r) for r in enriched}) < len(ids)
             or len({prediction_key(r) for r in predictions}) < len(ids) * len(models or ()))
    if short:  # what the live workers say about their pipeline, for the report
        problems.append("outputs incomplete after the timeout; workers: "
                        + " | ".join(pipeline_state(w) for w in workers.workers))

    def section(step: Any, *args: Any) -> None:
        try:
            step(*args)
        except AssertionError as exc:
            problems.append(str(exc))

    section(_check_dead, data, dead, late, expected_dead, list(poison))
    section(_check_enriched, outcome, data)
    if models and outcome.features:
        section(_check_predictions, predictions, outcome.features, ids, models)
    if extra is not None:  # while the workers still run
        section(extra, outcome)
    if orphans:
        section(assert_no_orphans, workers)
    assert not problems, "the fault criterion fails:\n- " + "\n- ".join(problems)
    return outcome


def _check_dead(data: Traffic, dead: list[Record], late: list[Record], expected_dead: int,
                poison: list[bytes]) -> None:
    """Nothing valid dead-lettered, only the poison, as many as sent; nothing late."""
    ids = data.ids
    valid_values = {v for _, v in data.tx} | {v for _, v in data.labels}
    dead_valid = [r for r in dead if r.value in valid_values or _txn_of(r) in ids]
    assert not dead_valid, f"{len(dead_valid)} valid records dead-lettered, e.g. " \
        f"{_show(dead_valid[0])}"
    stray = [r for r in dead if poison and not any(p.startswith(r.value or b"\0")
                                                   for p in poison)]
    assert not stray, f"unexpected dead letters: {[_show(r) for r in stray[:3]]}"
    assert len(dead) == expected_dead, \
        f"{len(dead)} dead letters, expected {expected_dead}: {[_show(r) for r in dead[:5]]}"
    assert not late, f"{len(late)} records in the late topic, e.g. {_show(late[0])}"


def _check_enriched(outcome: Outcome, data: Traffic) -> None:
    """One enriched record per transaction (redeliveries identical), features == batch."""
    ids = data.ids
    by_id: dict[str, dict[str, Any]] = {}
    for rec in outcome.enriched:
        value = json.loads(rec.value)
        assert value["feature_spec_version"] == DEFAULT_SPEC.version
        assert rec.key == value["card_id"].encode()
        first = by_id.setdefault(value["txn_id"], value)
        if first["features"] != value["features"]:
            diff = {n: (first["features"][n], v) for n, v in value["features"].items()
                    if first["features"].get(n) != v}
            raise AssertionError(f"a redelivery of {value['txn_id']} changed its features "
                                 f"(first, then redelivered): {diff}")
    outcome.duplicates = len(outcome.enriched) - len(by_id)
    outcome.features = {t: v["features"] for t, v in by_id.items() if t in ids}
    missing, extra = ids - set(by_id), set(by_id) - ids
    assert not missing and not extra, (
        f"enriched: {len(missing)} valid transactions missing (e.g. {sorted(missing)[:5]}), "
        f"{len(extra)} unknown (e.g. {sorted(extra)[:5]})")
    assert_features_equal(outcome.features, data.batch)


def assert_features_equal(features: dict[str, dict[str, float]], batch: pd.DataFrame) -> None:
    """Streamed features == the batch recomputation, feature by feature."""
    names = DEFAULT_SPEC.names
    index = batch.index
    stream = pd.DataFrame([[features[t][n] for n in names] for t in index], index=index,
                          columns=names)
    problems = []
    for name in names:
        got, want = stream[name].to_numpy(float), batch[name].to_numpy(float)
        if "count" in name:
            bad = np.flatnonzero(got != want)
        else:
            bad = np.flatnonzero(~np.isclose(got, want, rtol=1e-9, atol=0.0))
        if bad.size:
            problems.append(f"{name}: {bad.size} of {len(got)} differ, e.g. {index[bad[0]]}: "
                            f"stream {got[bad[0]]!r} batch {want[bad[0]]!r}")
    assert not problems, "stream != batch: " + "; ".join(problems)


def _check_predictions(predictions: Sequence[Record], features: dict[str, dict[str, float]],
                       ids: set[str], models: dict[str, Any]) -> None:
    from tests.support.models import scores

    by_key: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for rec in predictions:
        value = json.loads(rec.value)
        by_key[(value["txn_id"], value["variant"])].append(value)
        assert rec.key == value["card_id"].encode()
        assert not value.get("fail_open"), f"a fail-open prediction: {value}"
    want = {(t, v) for t in ids for v in models}
    missing, extra = want - set(by_key), set(by_key) - want
    assert not missing and not extra, (
        f"predictions: {len(missing)} (txn_id, variant) missing (e.g. {sorted(missing)[:5]}), "
        f"{len(extra)} unexpected (e.g. {sorted(extra)[:5]})")
    disagree = [k for k, vs in by_key.items()
                if len({(v["score"], v["model_version"], v["decision"]) for v in vs}) > 1]
    assert not disagree, f"redelivered predictions disagree: {by_key[disagree[0]]}"
    names = DEFAULT_SPEC.names
    order = sorted(ids & set(features) & {t for t, _ in by_key})
    matrix = np.array([[features[t][n] for n in names] for t in order], dtype=np.float64)
    for variant, model in models.items():
        expected = dict(zip(order, scores(model, matrix).tolist(), strict=True))
        wrong = [t for t in order if by_key[(t, variant)][0]["score"] != expected[t]]
        assert not wrong, (f"{variant}: {len(wrong)} scores differ from the model's on the "
                           f"streamed features, e.g. {wrong[0]}: "
                           f"{by_key[(wrong[0], variant)][0]['score']} != {expected[wrong[0]]}")
        versions = Counter(by_key[(t, variant)][0]["model_version"] for t in order)
        assert len(versions) == 1, f"{variant}: several model versions {versions}"


def _txn_of(record: Record) -> str | None:
    try:
        value = json.loads(record.value)
        return value.get("txn_id") if isinstance(value, dict) else None
    except (TypeError, ValueError, RecursionError):
        return None


def _show(record: Record) -> str:
    value = (record.value or b"")[:120]
    return f"headers={ {k: v[:60] for k, v in record.headers.items()} } value={value!r}"


# -- poison ----------------------------------------------------------------------------------

TEN_MB = 10 * 1024 * 1024
#: 10,000 levels of nesting (20,000 bytes: under a 1 MiB payload limit, so depth refuses it).
DEEP = b"[" * 10_000 + b"]" * 10_000


def padded(value: dict[str, Any], size: int = TEN_MB) -> bytes:
    """``value`` as JSON with a ``pad`` field that makes it exactly ``size`` bytes: a record
    of the topic's shape, too large for the worker's producer."""
    head = json.dumps(value).encode()[:-1] + b', "pad": "'
    return head + b"x" * (size - len(head) - 2) + b'"}'


def deep_object(value: dict[str, Any]) -> bytes:
    """``value`` as JSON with one more field holding :data:`DEEP`."""
    return json.dumps(value).encode()[:-1] + b', "x": ' + DEEP + b"}"
