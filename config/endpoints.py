"""Which Kafka and Redis endpoints a process uses, and whether they answer.

Order of precedence: the environment (``KAFKA_BOOTSTRAP_SERVERS``, ``REDIS_URL``), then the
embedded stack recorded by ``fraudstream stack up`` in ``<data_dir>/stack.json``. An endpoint
that is configured but does not answer is a :class:`~config.settings.ConfigError` naming it and
saying how to fix it; a password in a Redis URL is never printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from config.settings import ConfigError, Settings

#: Cluster id the embedded broker announces; :func:`is_tansu` recognises it (and Tansu's default).
TANSU_CLUSTER_ID = "fraudstream-embedded-tansu"


def is_tansu(cluster_id: str | None) -> bool:
    """Whether a cluster id is the embedded broker's (or any Tansu's default id).

    >>> is_tansu(TANSU_CLUSTER_ID), is_tansu("tansu_cluster"), is_tansu("MkU3OEVBNTcwNTJENDM2Qk")
    (True, True, False)
    """
    return bool(cluster_id) and "tansu" in str(cluster_id).lower()


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


HOW_TO_START = "start the embedded stack with `fraudstream stack up` (or `make stack-up`)"


def read_stack(path: Path) -> dict[str, Any]:
    """The stack file's content ({} when there is none or it is unreadable)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def mask_url(url: str) -> str:
    """A URL with any password replaced by ``***``.

    >>> mask_url("redis://:s3cret@cache:6379/0")
    'redis://:***@cache:6379/0'
    >>> mask_url("redis://127.0.0.1:6379/0")
    'redis://127.0.0.1:6379/0'
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _hostports(bootstrap: str) -> list[tuple[str, int]]:
    out = []
    for item in bootstrap.split(","):
        item = item.strip().removeprefix("kafka://")
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(
                f"KAFKA_BOOTSTRAP_SERVERS={bootstrap!r}: expected host:port[,host:port]"
            )
        out.append((host.strip("[]"), int(port)))
    return out


def kafka_bootstrap(settings: Settings, check: bool = True) -> str:
    """The bootstrap servers in force (``host:port[,host:port]``)."""
    if settings.broker.bootstrap_servers:
        bootstrap = settings.broker.bootstrap_servers
        origin = "KAFKA_BOOTSTRAP_SERVERS"
    else:
        entry = read_stack(settings.stack_file).get("kafka") or {}
        bootstrap = entry.get("bootstrap", "")
        origin = f"the embedded broker in {settings.stack_file}"
        if not bootstrap or (entry.get("pid") and not pid_alive(int(entry["pid"]))):
            raise ConfigError(
                "no Kafka broker configured: set KAFKA_BOOTSTRAP_SERVERS=host:port, or "
                + HOW_TO_START
            )
    hostports = _hostports(bootstrap)
    if check and not any(port_open(h, p, timeout=2.0) for h, p in hostports):
        raise ConfigError(
            f"Kafka at {bootstrap} ({origin}) does not answer: check that the broker runs and "
            f"the address is right, or unset KAFKA_BOOTSTRAP_SERVERS and {HOW_TO_START}"
        )
    return bootstrap


def state_dir(settings: Settings, slot: int | None = None) -> Path:
    """Folder of a worker's local table state (RocksDB) for this app, broker and worker slot.

    Each worker of a data folder has its own slot ``n`` (``app.worker_slot``; default
    ``FRAUDSTREAM_WORKER_SLOT`` or 0): ``<data_dir>/workers/<n>/``, so that two workers never
    open the same RocksDB files. Inside it, the embedded broker keeps nothing across restarts,
    so local state written against one incarnation of it must not be reused with the next
    (Faust would find offsets beyond the end of the new, empty changelogs and refuse to start):
    the folder is named after both the app id and the incarnation recorded by
    ``fraudstream stack up``.
    """
    if slot is None:
        slot = settings.worker.worker_slot or 0
    base = settings.data_dir / "workers" / str(slot)
    if settings.broker.bootstrap_servers:
        return base / settings.worker.app_id
    incarnation = (read_stack(settings.stack_file).get("kafka") or {}).get("incarnation")
    app_id = settings.worker.app_id
    return base / (f"{app_id}-{incarnation}" if incarnation else app_id)


def state_dirs(settings: Settings) -> list[Path]:
    """The state folders of this app (and broker incarnation) in every slot of the data folder."""
    name = state_dir(settings, 0).name
    return sorted((settings.data_dir / "workers").glob(f"*/{name}"))


def redis_url(settings: Settings, check: bool = True) -> str:
    """The Redis URL in force."""
    if settings.feast.redis_url is not None:
        url = settings.feast.redis_url.get_secret_value()
        origin = "REDIS_URL"
    else:
        entry = read_stack(settings.stack_file).get("redis") or {}
        url = entry.get("url", "")
        origin = f"the embedded Redis in {settings.stack_file}"
        if not url or (entry.get("pid") and not pid_alive(int(entry["pid"]))):
            raise ConfigError(
                "no Redis configured (the Feast online store): set REDIS_URL=redis://host:port/0, "
                "or " + HOW_TO_START + ", or set FRAUDSTREAM_FEAST_ENABLED=false"
            )
    if check:
        check_redis(url, origin)
    return url


def check_redis(url: str, origin: str = "REDIS_URL") -> None:
    """PING ``url``; ConfigError naming it (password masked) when it does not answer."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
        client.close()
    except (redis.RedisError, ValueError, OSError) as exc:
        raise ConfigError(
            f"Redis at {mask_url(url)} ({origin}) does not answer ({type(exc).__name__}: "
            f"{exc}): start it or fix the URL, or unset REDIS_URL and {HOW_TO_START}"
        ) from None
