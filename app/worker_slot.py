"""Several workers on one host: each takes a slot of the data folder, its own state folder and
web port.

A worker's slot ``n`` is an exclusive lock on ``<data_dir>/workers/<n>.lock`` (``fcntl.flock``,
held for the life of the process and released by the kernel when it ends, however it ends).
The slot gives the worker:

* its Faust data folder (RocksDB tables), ``<data_dir>/workers/<n>/<app id>[-<broker
  incarnation>]`` (:func:`config.endpoints.state_dir`): two workers never open the same
  RocksDB files (a second one used to crash on ``card-state-0.db/LOCK``);
* its web port, ``6066 + n`` unless ``FRAUDSTREAM_WEB_PORT`` is set.

``FRAUDSTREAM_WORKER_SLOT`` unset: the first slot that no running worker holds.
Set: that slot, or a :class:`~config.settings.ConfigError` when another worker holds it.
A web port that something else listens on stops the worker at start with a message that
names the variable to set.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from config.endpoints import state_dir
from config.settings import ConfigError, Settings, env_name

__all__ = ["WEB_PORT_BASE", "MAX_SLOTS", "WorkerSlot", "claim", "port_free"]

#: The web port of slot 0 (Faust's default); slot n listens on WEB_PORT_BASE + n.
WEB_PORT_BASE = 6066
#: How many slots :func:`claim` tries when none is configured.
MAX_SLOTS = 64


@dataclass
class WorkerSlot:
    """A claimed slot; the lock is held until :meth:`release` or the end of the process."""

    number: int
    lock_path: Path
    state_dir: Path
    web_port: int
    _fd: int | None = field(default=None, repr=False)

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def _lock(path: Path) -> int | None:
    """An open descriptor holding an exclusive flock on ``path``, or None when another holds it.
    The descriptor is not inherited by child processes (O_CLOEXEC, Python's default)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _holder(path: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        return f"pid {int(path.read_text().split()[0])}"
    return "another process"


def port_free(host: str, port: int) -> bool:
    """Whether nothing listens on ``host:port`` (a bind succeeds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def claim(settings: Settings, *, max_slots: int = MAX_SLOTS, check_port: bool = True
          ) -> WorkerSlot:
    """Claim this process's slot of ``settings.data_dir`` (see the module docstring)."""
    root = settings.data_dir / "workers"
    root.mkdir(parents=True, exist_ok=True)
    explicit = settings.worker.worker_slot
    slot_var = env_name("worker_slot")
    candidates = [explicit] if explicit is not None else list(range(max_slots))
    number = fd = None
    for n in candidates:
        fd = _lock(root / f"{n}.lock")
        if fd is not None:
            number = n
            break
        if explicit is not None:
            raise ConfigError(
                f"{slot_var}={n}: slot {n} of {settings.data_dir} is held by "
                f"{_holder(root / f'{n}.lock')}: choose another slot, or unset {slot_var} to "
                "take the first free one")
    if number is None or fd is None:
        raise ConfigError(
            f"all {max_slots} worker slots of {settings.data_dir} are held by running workers: "
            f"stop one, or give this worker its own data folder ({env_name('data_dir')})")
    slot = WorkerSlot(number, root / f"{number}.lock", state_dir(settings, number),
                      settings.worker.web_port or WEB_PORT_BASE + number, fd)
    if check_port and not port_free(settings.worker.web_bind, slot.web_port):
        slot.release()
        port_var = env_name("web_port")
        if settings.worker.web_port is not None:
            raise ConfigError(f"{port_var}={slot.web_port}: the port is in use by another "
                              f"program: set {port_var} to a free port")
        raise ConfigError(
            f"web port {slot.web_port} (6066 + worker slot {number}) is in use by another "
            f"program: set {port_var} to a free port (or {slot_var} to another slot)")
    return slot
