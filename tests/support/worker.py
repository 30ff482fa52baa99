"""Worker processes on unique topics for integration and end-to-end tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from infra.worker_process import Worker, isolated_env, start_worker, topic_name

__all__ = ["Worker", "WorkerFactory"]


@dataclass
class WorkerFactory:
    """Starts workers that share one test's topics, group and data folder."""

    bootstrap: str
    tmp: Path
    unique: str
    workers: list[Worker] = field(default_factory=list)

    def topic(self, role: str) -> str:
        return topic_name(role, self.unique)

    def env(self, **extra: str) -> dict[str, str]:
        # Scoring and retraining are off unless a test asks for them (they need a model).
        defaults = {"FRAUDSTREAM_STORE": "memory://", "FRAUDSTREAM_TOPIC_PARTITIONS": "3",
                    "FRAUDSTREAM_FEAST_ENABLED": "false", "FRAUDSTREAM_SCORING_ENABLED": "false",
                    "FRAUDSTREAM_RETRAIN_MODE": "off"}
        return isolated_env(self.bootstrap, self.tmp / "data", self.unique, **(defaults | extra))

    def start(self, wait: bool = True, **extra: str) -> Worker:
        log = self.tmp / f"worker-{len(self.workers)}.log"
        worker = start_worker(self.env(**extra), log)
        self.workers.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    def stop_all(self) -> None:
        for worker in self.workers:
            worker.stop()
