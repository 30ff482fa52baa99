"""Each worker of a data folder takes its own slot: state folder, web port, a lock for its life."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.worker_slot import WEB_PORT_BASE, claim
from config.settings import ConfigError, load_settings


def _settings(tmp_path: Path, **overrides):
    return load_settings(data_dir=tmp_path, kafka_bootstrap_servers="127.0.0.1:9",
                         store="memory://", **overrides)


def test_workers_of_one_data_folder_take_consecutive_slots_and_own_folders(tmp_path) -> None:
    settings = _settings(tmp_path)
    first = claim(settings, check_port=False)
    second = claim(settings, check_port=False)
    try:
        assert (first.number, second.number) == (0, 1)
        assert first.state_dir == tmp_path / "workers" / "0" / "fraudstream"
        assert second.state_dir == tmp_path / "workers" / "1" / "fraudstream"
        assert (first.web_port, second.web_port) == (WEB_PORT_BASE, WEB_PORT_BASE + 1)
        assert (tmp_path / "workers" / "0.lock").exists()
        first.release()
        third = claim(settings, check_port=False)  # a freed slot is taken again
        assert third.number == 0
        third.release()
    finally:
        first.release()
        second.release()


def test_explicit_settings_win(tmp_path) -> None:
    slot = claim(_settings(tmp_path, worker_slot=5, web_port=7123), check_port=False)
    try:
        assert slot.number == 5 and slot.web_port == 7123
        assert slot.state_dir == tmp_path / "workers" / "5" / "fraudstream"
        with pytest.raises(ConfigError, match="FRAUDSTREAM_WORKER_SLOT=5: slot 5 .* held by pid"):
            claim(_settings(tmp_path, worker_slot=5), check_port=False)
        assert claim(_settings(tmp_path, worker_slot=6), check_port=False).web_port == 6072
    finally:
        slot.release()


def test_a_slot_is_free_again_when_its_process_dies(tmp_path) -> None:
    (tmp_path / "workers").mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(tmp_path / 'workers' / '0.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        slot = claim(_settings(tmp_path), check_port=False)
        assert slot.number == 1
        slot.release()
        holder.kill()  # SIGKILL: the kernel drops the lock
        holder.wait(10)
        deadline = time.monotonic() + 5
        while (slot := claim(_settings(tmp_path), check_port=False)).number != 0:
            slot.release()
            assert time.monotonic() < deadline
        slot.release()
    finally:
        holder.kill()
        holder.wait(10)


def test_a_taken_port_stops_the_worker_with_the_variable_to_set(tmp_path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=f"FRAUDSTREAM_WEB_PORT={port}: the port is in use"):
            claim(_settings(tmp_path, web_port=port))
    for k in range(100, 300):  # a derived port (6066 + slot k) that we can occupy
        with socket.socket() as busy:
            try:
                busy.bind(("127.0.0.1", WEB_PORT_BASE + k))
            except OSError:
                continue
            busy.listen()
            with pytest.raises(ConfigError, match=rf"web port {WEB_PORT_BASE + k} \(6066 \+ "
                               rf"worker slot {k}\) is in use .* set FRAUDSTREAM_WEB_PORT"):
                claim(_settings(tmp_path, worker_slot=k))
            break
    else:
        pytest.skip("no port to occupy")
    # the failed claims left their slots free
    slot = claim(_settings(tmp_path), check_port=False)
    assert slot.number == 0
    slot.release()


def test_create_app_runs_in_its_slot(tmp_path) -> None:
    from app.faust_app import create_app

    settings = _settings(tmp_path)
    slot = claim(settings, check_port=False)
    try:
        app = create_app(settings, "127.0.0.1:9", agents=False, slot=slot)
        assert Path(app.conf.datadir) == slot.state_dir and slot.state_dir.is_dir()
        assert app.conf.web_port == slot.web_port
    finally:
        slot.release()
