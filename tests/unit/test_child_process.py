"""A child that called die_with_parent ends when its parent is killed (prctl, and the fallback)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]

CHILD = ("import sys, time\n"
         "from app.child_process import die_with_parent\n"
         "die_with_parent(int(sys.argv[1]), sig=int(sys.argv[2]))\n"
         "print('ready', flush=True)\n"
         "time.sleep(120)\n")
PARENT = ("import os, subprocess, sys, time\n"
          "child = subprocess.Popen([sys.executable, '-c', sys.argv[1], str(os.getpid()),\n"
          "                          sys.argv[2]], stdout=subprocess.PIPE, text=True)\n"
          "assert child.stdout.readline().strip() == 'ready'\n"
          "print(child.pid, flush=True)\n"
          "time.sleep(120)\n")


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("sig", [int(signal.SIGTERM), 0], ids=["pdeathsig", "watchdog-only"])
def test_the_child_ends_when_its_parent_is_killed(sig: int) -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD, str(sig)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        assert not _gone(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 5
        while not _gone(child):
            assert time.monotonic() < deadline, "the orphan is still running"
            time.sleep(0.05)
    finally:
        parent.kill()
        parent.wait(10)


def test_pdeathsig_is_set_on_linux() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("Linux only")
    code = ("import ctypes, signal\n"
            "from app.child_process import set_pdeathsig\n"
            "assert set_pdeathsig(signal.SIGTERM)\n"
            "libc = ctypes.CDLL(None); out = ctypes.c_int()\n"
            "libc.prctl(2, ctypes.byref(out), 0, 0, 0)\n"  # PR_GET_PDEATHSIG
            "print(out.value)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert int(out) == int(signal.SIGTERM)
