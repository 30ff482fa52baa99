"""Training sets: the feature vector each transaction had when it was scored, and its label.

Two sources, one result (a :class:`TrainingFrame`):

- :func:`from_simulator` generates a period with the simulator and recomputes the features
  with :func:`features.batch.compute_features` — the code the streaming agents run, fed with
  the late labels in ``reported_at`` order, so the terminal-risk features only use labels that
  were known at each transaction's event time. Labels are joined by ``txn_id``.
- :func:`from_parquet` reads a file (or a folder) that is either a *feature log*
  (``transactions-enriched`` records: the feature columns of the spec, flat or as one
  ``features`` struct column, with ``feature_spec_version``) or raw transactions (a
  ``fraudstream simulate --to parquet`` folder, features recomputed). Labels come from an
  ``is_fraud`` column or a labels file (``labels.parquet`` next to the transactions), joined by
  ``txn_id``. Missing columns raise :class:`DatasetError` listing them.

Recomputed feature frames are cached as parquet in ``<data_dir>/training/cache``, keyed by the
source (simulator configuration or file identity) and the feature-spec version, because
recomputing 1.75 M transactions takes minutes.

Every frame has the columns ``txn_id, card_id, terminal_id, ts (epoch ms), is_fraud`` (plus
``scenario`` when known, for analysis only), then the spec's features in spec order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.batch import REQUIRED as TXN_REQUIRED
from features.batch import compute_features, epoch_ms
from features.spec import DEFAULT_SPEC, FeatureSpec

log = logging.getLogger(__name__)

KEY_COLUMNS = ("txn_id", "card_id", "terminal_id", "ts")
LABEL_COLUMNS = ("txn_id", "is_fraud")
HANDBOOK_LABEL_DELAY_DAYS = 7.0


class DatasetError(ValueError):
    """A source cannot give a training set; the message names the file and what is missing."""


@dataclass
class TrainingFrame:
    """Feature rows with labels, and where they came from.

    ``frame`` is sorted by ``(ts, txn_id)``; ``source`` describes the origin (logged with the
    training run); ``feature_names`` is the spec order the model must use.
    """

    frame: pd.DataFrame
    feature_names: list[str]
    spec_version: str
    source: dict[str, object] = field(default_factory=dict)
    cache_path: Path | None = None
    from_cache: bool = False

    def __len__(self) -> int:
        return len(self.frame)


def cache_key(parts: dict[str, object]) -> str:
    """Readable, collision-safe cache file stem from a dict of identifying values.

    >>> cache_key({"profile": "handbook", "seed": 0, "days": 183, "spec": "abc"})[:31]
    'handbook-seed0-days183-spec-abc'
    >>> cache_key({"profile": "a", "seed": 0, "days": 1, "spec": "x", "n": 1}) != \\
    ...     cache_key({"profile": "a", "seed": 0, "days": 1, "spec": "x", "n": 2})
    True
    """
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    readable = (f"{parts.get('profile', 'file')}-seed{parts.get('seed', 'na')}-"
                f"days{parts.get('days', 'na')}-spec-{parts.get('spec', 'na')}")
    return f"{readable}-{digest[:10]}"


def assemble(transactions: pd.DataFrame, labels: pd.DataFrame | None, features: pd.DataFrame,
             spec: FeatureSpec) -> pd.DataFrame:
    """Keys + labels (joined by ``txn_id``) + features in spec order, sorted by time.

    ``labels`` (``txn_id, is_fraud``) wins over an ``is_fraud`` column of ``transactions``;
    a transaction without a label raises :class:`DatasetError`.

    >>> tx = pd.DataFrame({"txn_id": ["b", "a"], "card_id": "c", "terminal_id": "t",
    ...                    "ts": [2, 1]})
    >>> lab = pd.DataFrame({"txn_id": ["a", "b"], "is_fraud": [0, 1]})
    >>> feats = pd.DataFrame({"txn_id": ["b", "a"], "amount": [5.0, 3.0]})
    >>> spec = FeatureSpec(DEFAULT_SPEC.features[:1])
    >>> assemble(tx, lab, feats, spec)[["txn_id", "is_fraud", "amount"]].values.tolist()
    [['a', 0, 3.0], ['b', 1, 5.0]]
    """
    keep = [c for c in (*KEY_COLUMNS, "scenario") if c in transactions]
    base = transactions.loc[:, keep].copy()
    base["ts"] = epoch_ms(base["ts"])
    if labels is not None:
        lab = labels.loc[:, list(LABEL_COLUMNS)].drop_duplicates("txn_id", keep="last")
        base = base.merge(lab, on="txn_id", how="left", validate="one_to_one")
    elif "is_fraud" in transactions:
        base["is_fraud"] = transactions["is_fraud"].to_numpy()
    else:
        raise DatasetError("no labels: need an is_fraud column or a labels file")
    unlabelled = int(base["is_fraud"].isna().sum())
    if unlabelled:
        raise DatasetError(f"{unlabelled} transactions have no label (joined by txn_id)")
    base["is_fraud"] = base["is_fraud"].astype(np.int8)
    feats = features.loc[:, ["txn_id", *spec.names]]
    out = base.merge(feats, on="txn_id", how="inner", validate="one_to_one")
    if len(out) != len(base):
        raise DatasetError(f"{len(base) - len(out)} transactions have no feature row")
    return out.sort_values(["ts", "txn_id"], kind="mergesort").reset_index(drop=True)


def _read_cache(path: Path | None) -> pd.DataFrame | None:
    if path is None or not path.is_file():
        return None
    try:
        return pq.read_table(path).to_pandas()
    except (OSError, pa.ArrowException) as exc:
        log.warning("ignoring unreadable training cache %s (%s)", path, exc)
        return None


def _write_cache(path: Path | None, frame: pd.DataFrame) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)
    tmp.replace(path)  # atomic: a concurrent reader never sees half a file


def from_simulator(profile: str = "handbook", *, seed: int = 0, days: int = 183,
                   spec: FeatureSpec = DEFAULT_SPEC, cache_dir: str | Path | None = None,
                   label_delay_days: float = HANDBOOK_LABEL_DELAY_DAYS, progress: bool = False,
                   **sim_options: object) -> TrainingFrame:
    """Simulate ``days`` days and recompute their features (cached under ``cache_dir``).

    ``sim_options`` go to :func:`simulator.make_config` (e.g. ``n_customers``). Labels are
    reported ``label_delay_days`` after their transaction, as in the handbook.
    """
    from simulator import generate, make_config

    cfg = make_config(profile, seed=seed, n_days=days, **sim_options)  # type: ignore[arg-type]
    parts = {"profile": profile, "seed": seed, "days": days, "spec": spec.version,
             "config": repr(cfg), "label_delay_days": label_delay_days}
    source: dict[str, object] = {"source": "simulator", "profile": profile, "seed": seed,
                                 "days": days, "label_delay_days": label_delay_days,
                                 **{k: str(v) for k, v in sim_options.items()}}
    path = Path(cache_dir) / f"{cache_key(parts)}.parquet" if cache_dir else None
    cached = _read_cache(path)
    if cached is not None:
        return TrainingFrame(cached, spec.names, spec.version, source, path, from_cache=True)
    sim = generate(cfg)
    tx_table = sim.transactions()
    transactions = tx_table.to_pandas()
    labels = sim.labels(delay_days=label_delay_days).to_pandas()
    features = compute_features(transactions, labels, spec, progress=progress)
    frame = assemble(transactions.drop(columns=["is_fraud"]), labels, features, spec)
    _write_cache(path, frame)
    return TrainingFrame(frame, spec.names, spec.version, source, path)


def _flatten_features(table: pd.DataFrame) -> pd.DataFrame:
    """Expand a ``features`` column of dicts (a struct column) into one column per feature."""
    if "features" not in table:
        return table
    expanded = pd.DataFrame(table["features"].tolist(), index=table.index)
    clash = [c for c in expanded.columns if c in table.columns]
    rest = table.drop(columns=["features", *clash])
    return pd.concat([rest, expanded], axis=1)


def _labels_file(path: Path, labels: str | Path | None) -> Path | None:
    if labels is not None:
        return Path(labels)
    sibling = path.parent / "labels.parquet"
    return sibling if sibling.is_file() and sibling != path else None


def _explain(path: Path, columns: list[str], spec: FeatureSpec) -> str:
    need_raw = [c for c in TXN_REQUIRED if c not in columns]
    need_feat = [c for c in spec.names if c not in columns]
    need_keys = [c for c in KEY_COLUMNS if c not in columns]
    return (f"{path}: not a training source. Found columns {sorted(columns)}.\n"
            f"  A feature log needs {list(KEY_COLUMNS)} and the {len(spec.names)} features of "
            f"spec {spec.version} (flat or in a 'features' column); missing keys {need_keys}, "
            f"missing features {need_feat}.\n"
            f"  Raw transactions need {list(TXN_REQUIRED)}; missing {need_raw}.\n"
            f"  Labels: an is_fraud column or a labels file (txn_id, is_fraud; with "
            f"terminal_id, ts, reported_at for recomputed features).")


def from_parquet(path: str | Path, *, labels: str | Path | None = None,
                 spec: FeatureSpec = DEFAULT_SPEC, cache_dir: str | Path | None = None,
                 progress: bool = False) -> TrainingFrame:
    """A training set from a feature log or raw transactions in parquet (file or folder).

    A folder means ``<folder>/transactions.parquet`` (and ``labels.parquet`` when present).
    Feature-log rows must carry the feature-spec version the model is trained for (column
    ``feature_spec_version`` when present). Raw transactions get their features recomputed
    with the late labels (``labels.parquet``, or, when only ``is_fraud`` is there, labels
    reported 7 days after each transaction, the handbook's delay).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "transactions.parquet"
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    table = _flatten_features(pq.read_table(path).to_pandas())
    columns = list(table.columns)
    labels_path = _labels_file(path, labels)
    label_frame = pq.read_table(labels_path).to_pandas() if labels_path else None
    if label_frame is not None:
        missing = [c for c in LABEL_COLUMNS if c not in label_frame]
        if missing:
            raise DatasetError(f"{labels_path}: labels lack columns {missing} "
                               f"(found {sorted(label_frame.columns)})")
    has_labels = label_frame is not None or "is_fraud" in table
    stat = path.stat()
    source: dict[str, object] = {"source": "parquet", "path": str(path),
                                 "labels": str(labels_path) if labels_path else "is_fraud column"}

    if all(c in table for c in (*KEY_COLUMNS, *spec.names)) and has_labels:
        if "feature_spec_version" in table:
            versions = sorted(table["feature_spec_version"].astype(str).unique())
            if versions != [spec.version]:
                raise DatasetError(f"{path}: rows were computed with feature spec versions "
                                   f"{versions}, the model needs {spec.version}")
        source["kind"] = "feature log"
        frame = assemble(table, label_frame, table, spec)
        return TrainingFrame(frame, spec.names, spec.version, source)

    if not all(c in table for c in TXN_REQUIRED) or not has_labels:
        raise DatasetError(_explain(path, columns, spec))
    source["kind"] = "raw transactions"
    parts = {"profile": "file", "spec": spec.version, "path": str(path.resolve()),
             "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
             "labels": str(labels_path.resolve()) if labels_path else None}
    cache = Path(cache_dir) / f"{cache_key(parts)}.parquet" if cache_dir else None
    cached = _read_cache(cache)
    if cached is not None:
        return TrainingFrame(cached, spec.names, spec.version, source, cache, from_cache=True)
    feature_labels = label_frame
    if feature_labels is None or not all(
            c in feature_labels for c in ("terminal_id", "ts", "reported_at")):
        ts = epoch_ms(table["ts"])
        base = table if feature_labels is None else table.loc[:, list(KEY_COLUMNS)].merge(
            feature_labels.loc[:, list(LABEL_COLUMNS)], on="txn_id", how="inner")
        feature_labels = pd.DataFrame({
            "txn_id": base["txn_id"].to_numpy(), "terminal_id": base["terminal_id"].to_numpy(),
            "is_fraud": base["is_fraud"].to_numpy(),
            "ts": ts if feature_labels is None else epoch_ms(base["ts"]),
            "reported_at": (ts if feature_labels is None else epoch_ms(base["ts"]))
            + int(HANDBOOK_LABEL_DELAY_DAYS * 86_400_000)})
    features = compute_features(table, feature_labels, spec, progress=progress)
    frame = assemble(table.drop(columns=["is_fraud"], errors="ignore")
                     if label_frame is not None else table, label_frame, features, spec)
    _write_cache(cache, frame)
    return TrainingFrame(frame, spec.names, spec.version, source, cache)
