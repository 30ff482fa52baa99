"""A worker killed with SIGKILL leaves none of its child processes running."""

from __future__ import annotations

import time

import psutil
import pytest
import redis as redis_client

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_killed_worker_leaves_no_child_process(workers, redis_url):
    url = redis_url.rsplit("/", 1)[0] + "/8"
    redis_client.Redis.from_url(url).flushdb()
    worker = workers.start(REDIS_URL=url, FRAUDSTREAM_FEAST_ENABLED="true",
                           FRAUDSTREAM_FEAST_OFFLINE="false")
    parent = psutil.Process(worker.proc.pid)
    deadline = time.monotonic() + 60
    while True:  # the Feast push child (spawn) and multiprocessing's resource tracker
        children = parent.children(recursive=True)
        lines = [" ".join(c.cmdline()) for c in children if _alive(c.pid)]
        tracker = [line for line in lines if "resource_tracker" in line]
        spawned = [line for line in lines if "multiprocessing" in line and line not in tracker]
        if tracker and spawned:
            break
        assert time.monotonic() < deadline, f"children: {lines}"
        time.sleep(0.2)
    pids = [c.pid for c in children]
    worker.proc.kill()
    worker.proc.wait(10)
    deadline = time.monotonic() + 10
    while (left := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, [" ".join(psutil.Process(p).cmdline()) for p in left if _alive(p)]
