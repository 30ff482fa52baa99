"""``fraudstream stack up|down|status`` with real embedded servers, and clear endpoint errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from infra.processes import free_port, pid_alive

pytestmark = [pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]


def servers_running(data_dir: Path) -> list[str]:
    """The embedded servers started for ``data_dir`` (their logs are ``<data_dir>/logs/
    tansu-<port>.log`` / ``valkey-<port>.log``) that still run: one line per process."""
    ports = {int(log.stem.rsplit("-", 1)[1]): log.stem.split("-")[0]
             for log in (data_dir / "logs").glob("*-*.log")}
    running = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        for port, kind in ports.items():
            if kind in argv and f"127.0.0.1:{port}" in argv:
                running.append(f"{proc.name}: {argv.strip()}")
    return running


@pytest.fixture(autouse=True)
def no_server_left(tmp_path: Path):
    """Every test leaves no embedded server of its data folder running."""
    yield
    left = servers_running(tmp_path)
    for line in left:  # do not leak into the rest of the session either
        os.kill(int(line.split(":", 1)[0]), 9)
    assert not left, f"servers left running: {left}"


def fraudstream(*args: str, data_dir: Path, **env: str) -> subprocess.CompletedProcess:
    endpoints = ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("FRAUDSTREAM_") and k not in endpoints}
    return subprocess.run(
        [sys.executable, "-m", "app.cli.main", *args], cwd=ROOT, capture_output=True, text=True,
        env={**base, "FRAUDSTREAM_DATA_DIR": str(data_dir), **env}, timeout=120,
    )


def test_up_status_down_manage_only_what_up_started(tmp_path: Path) -> None:
    up = fraudstream("stack", "up", data_dir=tmp_path)
    assert up.returncode == 0, up.stderr
    state = json.loads((tmp_path / "stack.json").read_text())
    kafka_pid, redis_pid = state["kafka"]["pid"], state["redis"]["pid"]
    try:
        assert pid_alive(kafka_pid) and pid_alive(redis_pid)
        client = redis.Redis.from_url(state["redis"]["url"])
        assert client.ping()
        again = fraudstream("stack", "up", data_dir=tmp_path)  # reuses, starts nothing new
        assert json.loads((tmp_path / "stack.json").read_text())["kafka"]["pid"] == kafka_pid
        assert again.returncode == 0
        status = fraudstream("stack", "status", data_dir=tmp_path)
        assert status.returncode == 0
        assert f"kafka  up    {state['kafka']['bootstrap']}" in status.stdout
    finally:
        down = fraudstream("stack", "down", data_dir=tmp_path)
    assert "stopped: kafka, redis" in down.stdout
    assert not pid_alive(kafka_pid) and not pid_alive(redis_pid)
    status = fraudstream("stack", "status", data_dir=tmp_path)
    assert status.returncode == 1 and "not started" in status.stdout


def test_configured_endpoints_are_used_not_started(tmp_path: Path, kafka_bootstrap: str,
                                                   redis_url: str) -> None:
    up = fraudstream("stack", "up", data_dir=tmp_path,
                     KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, REDIS_URL=redis_url)
    assert up.returncode == 0, up.stderr
    state = json.loads((tmp_path / "stack.json").read_text())
    assert state == {"kafka": {"managed": False, "source": "KAFKA_BOOTSTRAP_SERVERS"},
                     "redis": {"managed": False, "source": "REDIS_URL"}}
    down = fraudstream("stack", "down", data_dir=tmp_path)
    assert "nothing to stop" in down.stdout


def test_unreachable_kafka_is_a_clear_error(tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    result = fraudstream("stack", "up", data_dir=tmp_path, KAFKA_BOOTSTRAP_SERVERS=dead)
    assert result.returncode != 0
    assert f"Kafka at {dead} (KAFKA_BOOTSTRAP_SERVERS) does not answer" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_redis_is_a_clear_error_without_the_password(tmp_path: Path) -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    result = fraudstream("stack", "up", data_dir=tmp_path, REDIS_URL=url)
    assert result.returncode != 0
    assert "Redis at redis://:***@127.0.0.1" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    # the configured endpoint is checked before anything starts: no broker left behind
    assert not list((tmp_path / "logs").glob("tansu-*.log"))
    assert servers_running(tmp_path) == []
    assert not (tmp_path / "stack.json").exists()


def test_worker_refuses_to_start_without_a_broker(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    result = subprocess.run(
        [sys.executable, "-m", "faust", "-A", "app", "worker"], cwd=ROOT, capture_output=True,
        text=True, timeout=60, env={**env, "FRAUDSTREAM_DATA_DIR": str(tmp_path)},
    )
    assert result.returncode != 0
    assert "no Kafka broker configured" in result.stderr
    assert "fraudstream stack up" in result.stderr


def test_worker_restarts_cleanly_after_the_embedded_broker_restarts(tmp_path: Path) -> None:
    """RocksDB state written against a memory-only broker must not outlive it."""
    from infra.kafka_io import consume, produce
    from infra.worker_process import isolated_env, start_worker, topic_name
    from tests.bad_inputs import dumps, valid

    # scoring off (no model here: the fused pipeline would hold everything)
    env = isolated_env("unused", tmp_path, "restart", FRAUDSTREAM_STORE="rocksdb://",
                       FRAUDSTREAM_TOPIC_PARTITIONS="2", FRAUDSTREAM_SCORING_ENABLED="false",
                       FRAUDSTREAM_RETRAIN_MODE="off")
    del env["KAFKA_BOOTSTRAP_SERVERS"]  # the worker reads the stack file
    for round_ in range(2):
        assert fraudstream("stack", "up", data_dir=tmp_path).returncode == 0
        bootstrap = json.loads((tmp_path / "stack.json").read_text())["kafka"]["bootstrap"]
        worker = start_worker(env, tmp_path / f"worker-{round_}.log")
        try:
            worker.wait_ready()
            produce(bootstrap, topic_name("transactions", "restart"),
                    [(b"card-1", dumps(valid(txn_id=f"r{round_}-{i}"))) for i in range(3)])
            out = consume(bootstrap, topic_name("enriched", "restart"), expected=3, settle=1.0)
            got = [json.loads(r.value)["txn_id"] for r in out]
            assert got == [f"r{round_}-{i}" for i in range(3)]
            # fresh state on a fresh broker: the card's count starts again from 1
            counts = [json.loads(r.value)["features"]["card_tx_count_1d"] for r in out]
            assert counts == [1.0, 2.0, 3.0]
        finally:
            worker.stop()
            fraudstream("stack", "down", data_dir=tmp_path)
    assert not list((tmp_path / "workers").glob("*/*-*-*"))  # state of the stopped brokers removed
