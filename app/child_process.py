"""Child processes that end with the worker that started them.

A worker killed with SIGKILL runs no cleanup: its children (the Feast push process of
:class:`app.feast_sink.ProcessFeastSink`, the retrain process of :mod:`app.agents.retrain`)
were reparented to init and kept running, ~240 MB each, and so did multiprocessing's resource
tracker, which lives as long as any process holds its pipe. Each child the project starts calls
:func:`die_with_parent` first thing (a pool's ``initializer``, a process's target):

* on Linux, ``prctl(PR_SET_PDEATHSIG, SIGTERM)`` (through ctypes): the kernel signals the child
  when the thread that forked it ends. The parent's death before the call is caught by
  checking the parent pid right after it;
* everywhere, a daemon thread that polls the parent pid (``os.getppid()`` changes when the
  child is reparented) and ends the process with ``os._exit`` — the portable fallback, and the
  backstop should SIGTERM be handled and ignored.

With the children gone, nothing holds the resource tracker's pipe any more and it exits too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time

__all__ = ["die_with_parent", "set_pdeathsig"]

log = logging.getLogger(__name__)

#: ``PR_SET_PDEATHSIG`` from <linux/prctl.h>.
PR_SET_PDEATHSIG = 1
#: How often the watchdog thread looks at the parent pid (seconds).
WATCHDOG_POLL_S = 0.5
#: Exit status of a child ended by its watchdog.
ORPHAN_EXIT = 70


def set_pdeathsig(sig: int = signal.SIGTERM) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent dies; False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %s", ctypes.get_errno())
            return False
    except (OSError, AttributeError):
        return False
    return True


def _watch(parent_pid: int, poll_s: float) -> None:
    while True:
        time.sleep(poll_s)
        if os.getppid() != parent_pid:
            with contextlib.suppress(Exception):
                sys.stderr.write(f"[pid {os.getpid()}] parent {parent_pid} is gone: exiting\n")
                sys.stderr.flush()
            os._exit(ORPHAN_EXIT)


def die_with_parent(parent_pid: int | None = None, *, sig: int = signal.SIGTERM,
                    poll_s: float = WATCHDOG_POLL_S) -> None:
    """Make this (child) process end when ``parent_pid`` (default: the current parent) ends.

    Pass the parent's pid from the parent (``os.getpid()`` there) when you can: a child whose
    parent died before this call then exits at once instead of watching its new parent.
    """
    expected = os.getppid() if parent_pid is None else int(parent_pid)
    set_pdeathsig(sig)
    if os.getppid() != expected:  # the parent died before prctl could take effect
        os._exit(ORPHAN_EXIT)
    threading.Thread(target=_watch, args=(expected, poll_s), name="parent-watchdog",
                     daemon=True).start()
