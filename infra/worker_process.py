"""Run real ``faust -A <app> worker`` processes (demo, benchmarks, integration tests)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from config.kafka import TOPIC_ROLES
from infra.processes import free_port

READY_LINE = "[^Worker]: Ready"

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Worker:
    """One worker process and its log file."""

    proc: subprocess.Popen
    log: Path
    web_port: int
    started: float = field(default_factory=time.monotonic)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Seconds from process start until the worker logs that it is ready."""
        while time.monotonic() - self.started < timeout:
            if READY_LINE in self.log_text():
                return time.monotonic() - self.started
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"worker exited ({self.proc.returncode}):\n{self.log_text()[-4000:]}"
                )
            time.sleep(0.05)
        raise TimeoutError(f"worker not ready in {timeout} s:\n{self.log_text()[-4000:]}")

    def stop(self, kill: bool = False) -> None:
        """Terminate (or kill) the worker and reap it."""
        if self.proc.poll() is None:
            (self.proc.kill if kill else self.proc.terminate)()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def metrics(self) -> str:
        """The worker's /metrics page."""
        url = f"http://127.0.0.1:{self.web_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback only
            return response.read().decode()


def start_worker(env: dict[str, str], log: Path, app: str = "app") -> Worker:
    """Start ``faust -A app worker`` with ``env`` (a free web port unless given)."""
    env = dict(env)
    port = int(env.setdefault("FRAUDSTREAM_WEB_PORT", str(free_port())))
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "faust", "-A", app, "worker", "-l", "info"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=ROOT,
        )
    return Worker(proc, log, port)


def isolated_env(bootstrap: str, data_dir: Path, suffix: str, **extra: str) -> dict[str, str]:
    """Environment for a worker on its own topics, group and data folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDSTREAM_")}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        FRAUDSTREAM_APP_ID=f"fraudstream-{suffix}",
        FRAUDSTREAM_DATA_DIR=str(data_dir),
    )
    for role in TOPIC_ROLES:
        env[f"FRAUDSTREAM_TOPIC_{role.upper()}"] = topic_name(role, suffix)
    env.update(extra)
    return env


def create_topics(bootstrap: str, env: dict[str, str]) -> None:
    """Create the topics a worker with ``env`` will use (before pre-loading its input)."""
    from config.settings import settings_for_env
    from config.topics_admin import ensure_topics

    ensure_topics(bootstrap, settings_for_env(env))


def topic_name(role: str, suffix: str) -> str:
    """The topic of ``role`` in an isolated run."""
    return f"{role.replace('_', '-')}-{suffix}"
