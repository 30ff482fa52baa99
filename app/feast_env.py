"""The Feast feature store of fraudstream: names, environment, loading and applying.

``feature_repo/feature_store.yaml`` holds only ``${VARIABLES}``; this module computes them
from a Redis URL and the data folder:

===============================  ==========================================================
``FEAST_REDIS_CONNECTION_STRING``  Feast's Redis format (not a URL):
                                   ``host:port,db=N[,username="u"][,password="p"][,ssl=true]``
``FEAST_REGISTRY_PATH``           ``<data_dir>/feast/registry.db``
``FEAST_OFFLINE_PATH``            ``<data_dir>/feast/offline`` (a parquet folder per view)
===============================  ==========================================================

:func:`load_store` returns a ``feast.FeatureStore`` for the repo with those variables in
force; :func:`apply` is ``feast apply`` for them. Neither logs the connection string (it holds
the password); :func:`mask_connection_string` is the printable form.

The names that the repo definitions and the materialiser share live here, once: view
``<entity>_features``, push source ``<entity>_features_push``, join key ``<entity>_id``,
timestamp column ``event_timestamp``, field ``<entity>_spec_version``.

Feast itself is imported only inside the functions that need it (it takes seconds).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow
    from feast import FeatureStore

    from features.spec import FeatureSpec

log = logging.getLogger(__name__)

REPO_DIR = Path(__file__).resolve().parent.parent / "feature_repo"
"""The Feast feature repo (definitions only; nothing is written there)."""

REDIS_VAR = "FEAST_REDIS_CONNECTION_STRING"
REGISTRY_PATH_VAR = "FEAST_REGISTRY_PATH"
OFFLINE_PATH_VAR = "FEAST_OFFLINE_PATH"
FEAST_VARS = (REDIS_VAR, REGISTRY_PATH_VAR, OFFLINE_PATH_VAR)

ENTITIES = ("card", "terminal")
"""Entities that have a feature view (the transaction's own features travel with it)."""
TIMESTAMP_FIELD = "event_timestamp"
FEATURE_SERVICE = "fraud_model"


def join_key(entity: str) -> str:
    """Join key column of ``entity``.

    >>> join_key("card")
    'card_id'
    """
    return f"{entity}_id"


def view_name(entity: str) -> str:
    """Feature view of ``entity``.

    >>> view_name("terminal")
    'terminal_features'
    """
    return f"{entity}_features"


def push_source_name(entity: str) -> str:
    """Push source feeding ``entity``'s view.

    >>> push_source_name("card")
    'card_features_push'
    """
    return f"{view_name(entity)}_push"


def version_field(entity: str) -> str:
    """String field holding the feature-spec version that computed a stored row.

    >>> version_field("card")
    'card_spec_version'
    """
    return f"{entity}_spec_version"


def offline_dir(offline_root: str | Path, entity: str) -> Path:
    """Folder of ``entity``'s offline rows: a parquet dataset, one file per write.

    >>> offline_dir("/data/feast/offline", "card").as_posix()
    '/data/feast/offline/card_features'
    """
    return Path(offline_root) / view_name(entity)


# -- Redis URL -> Feast connection string ---------------------------------------------------

TIMEOUTS = {"socket_connect_timeout": 2, "socket_timeout": 10}
"""redis-py timeouts (seconds) in every connection string: a dead Redis fails a push fast."""
_FORBIDDEN = (",", "'")  # Feast splits the string on ','; the YAML quotes it with '.


def connection_string(redis_url: str) -> str:
    """Feast's Redis connection string for a ``redis://`` or ``rediss://`` URL.

    User name and password are JSON-quoted: Feast JSON-decodes each ``key=value`` item, so a
    bare password such as ``123`` or ``null`` would otherwise reach Redis as a number or None.

    >>> connection_string("redis://127.0.0.1:6379/0")
    '127.0.0.1:6379,db=0,socket_connect_timeout=2,socket_timeout=10'
    >>> mask_connection_string(connection_string("rediss://app:s%40cret@cache:6380/2"))
    'cache:6380,db=2,socket_connect_timeout=2,socket_timeout=10,username="app",password=***,ssl=true'
    >>> connection_string("redis://:123@localhost").split(",")[-1]
    'password="123"'
    >>> connection_string("redis://:a,b@localhost")
    Traceback (most recent call last):
    ...
    ValueError: REDIS_URL: Feast cannot take ',' or "'" in a user name or password
    """
    parts = urlsplit(redis_url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError("REDIS_URL: expected redis://[user:password@]host:port/db or rediss://")
    host = parts.hostname or "localhost"
    if ":" in host:
        raise ValueError("REDIS_URL: Feast's connection string cannot carry an IPv6 literal")
    db = parts.path.strip("/") or parse_qs(parts.query).get("db", ["0"])[0]
    if not db.isdigit():
        raise ValueError("REDIS_URL: the database (path) must be a number")
    items = [f"{host}:{parts.port or 6379}", f"db={int(db)}"]
    items += [f"{name}={value}" for name, value in TIMEOUTS.items()]
    for key, raw in (("username", parts.username), ("password", parts.password)):
        if raw:
            value = unquote(raw)
            if any(ch in value for ch in _FORBIDDEN):
                raise ValueError(
                    "REDIS_URL: Feast cannot take ',' or \"'\" in a user name or password"
                )
            items.append(f"{key}={json.dumps(value)}")
    if parts.scheme == "rediss":
        items.append("ssl=true")
    return ",".join(items)


def mask_connection_string(value: str) -> str:
    """A connection string with the password replaced by ``***``.

    >>> mask_connection_string('cache:6379,db=0,password="s3cret",ssl=true')
    'cache:6379,db=0,password=***,ssl=true'
    """
    return ",".join(
        "password=***" if item.startswith("password=") else item for item in value.split(",")
    )


def feast_env(redis_url: str, data_dir: str | Path) -> dict[str, str]:
    """The variables that ``feature_store.yaml`` and the repo definitions read.

    >>> env = feast_env("redis://127.0.0.1:6379/1", "/srv/fraudstream")
    >>> env["FEAST_REDIS_CONNECTION_STRING"].split(",")[:2], env["FEAST_REGISTRY_PATH"]
    (['127.0.0.1:6379', 'db=1'], '/srv/fraudstream/feast/registry.db')
    >>> env["FEAST_OFFLINE_PATH"]
    '/srv/fraudstream/feast/offline'
    """
    root = Path(data_dir).absolute() / "feast"
    return {
        REDIS_VAR: connection_string(redis_url),
        REGISTRY_PATH_VAR: str(root / "registry.db"),
        OFFLINE_PATH_VAR: str(root / "offline"),
    }


@contextlib.contextmanager
def feast_environ(env: Mapping[str, str]) -> Iterator[None]:
    """Set ``env`` in ``os.environ`` for the block, then restore what was there.

    >>> with feast_environ({"FEAST_REGISTRY_PATH": "/tmp/r.db"}):
    ...     os.environ["FEAST_REGISTRY_PATH"]
    '/tmp/r.db'
    """
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# -- the store ------------------------------------------------------------------------------


def load_store(redis_url: str, data_dir: str | Path, redis_retries: int = 1) -> FeatureStore:
    """A ``feast.FeatureStore`` for the repo, on ``redis_url``, with files under ``data_dir``.

    The store must have been applied (:func:`apply`) for pushes and reads to find its views.
    redis-py retries a failed command 3 times with up to 14 s of jittered backoff by default;
    the store's client gets ``redis_retries`` immediate retries instead (one covers a pooled
    connection that Redis closed), so that a call fails fast while Redis is down and the
    caller's own backoff (the materialiser's) decides what happens next.
    """
    from feast import FeatureStore

    env = feast_env(redis_url, data_dir)
    with feast_environ(env):
        store = FeatureStore(repo_path=str(REPO_DIR))
    _limit_redis_retries(store, redis_retries)
    return store


def _limit_redis_retries(store: FeatureStore, retries: int) -> bool:
    """Best effort (Feast has no public hook for it): False when the client was not reached."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    try:
        online = store._get_provider().online_store  # type: ignore[attr-defined]
        client = online._get_client(store.config.online_store)  # type: ignore[attr-defined]
        client.set_retry(Retry(NoBackoff(), retries))
    except (AttributeError, TypeError):  # pragma: no cover - another Feast version
        log.warning("could not limit redis-py retries of the Feast client")
        return False
    return True


@contextlib.contextmanager
def _repo_importable() -> Iterator[None]:
    """cwd = the repo and a fresh import of its modules (Feast imports them by file stem)."""
    stems = [path.stem for path in REPO_DIR.glob("*.py")]
    cwd = Path.cwd()

    def purge() -> None:
        for stem in stems:
            sys.modules.pop(stem, None)

    purge()
    sys.path.insert(0, str(REPO_DIR))
    os.chdir(REPO_DIR)
    try:
        yield
    finally:
        os.chdir(cwd)
        with contextlib.suppress(ValueError):
            sys.path.remove(str(REPO_DIR))
        purge()


def apply(redis_url: str, data_dir: str | Path) -> FeatureStore:
    """``feast apply`` of the repo for these endpoints; the applied store.

    Registers entities, sources, views and the feature service (Feast prints what changed);
    importing the repo creates ``<data_dir>/feast/`` and the offline folders. Runs in this
    process: for the call, it sets the variables in ``os.environ`` and changes the working
    directory to the repo (Feast imports the definitions by file name), so it is not
    thread-safe.
    """
    from feast.repo_config import load_repo_config
    from feast.repo_operations import apply_total

    env = feast_env(redis_url, data_dir)
    with feast_environ(env), _repo_importable():
        config = load_repo_config(REPO_DIR, REPO_DIR / "feature_store.yaml")
        apply_total(config, REPO_DIR, skip_source_validation=False)
    return load_store(redis_url, data_dir)


def offline_schema(entity: str, spec: FeatureSpec | None = None) -> pyarrow.Schema:
    """Arrow schema of ``entity``'s offline rows: join key, timestamp, features, version."""
    import pyarrow as pa

    from features.spec import DEFAULT_SPEC

    spec = spec or DEFAULT_SPEC
    fields: list[Any] = [
        pa.field(join_key(entity), pa.string()),
        pa.field(TIMESTAMP_FIELD, pa.timestamp("us", tz="UTC")),
    ]
    fields += [pa.field(name, pa.float64()) for name in spec.names_for(entity)]
    fields.append(pa.field(version_field(entity), pa.string()))
    return pa.schema(fields)


def ensure_offline_dirs(offline_root: str | Path, spec: FeatureSpec | None = None) -> None:
    """Create each view's offline folder with an empty parquet file carrying the schema.

    Feast reads a folder as one dataset; the empty file lets it infer the schema (and
    historical reads succeed) before the first rows arrive.
    """
    import pyarrow.parquet as pq

    for entity in ENTITIES:
        folder = offline_dir(offline_root, entity)
        folder.mkdir(parents=True, exist_ok=True)
        empty = folder / "part-00000000000000-schema.parquet"
        if not empty.exists():
            pq.write_table(offline_schema(entity, spec).empty_table(), empty)
