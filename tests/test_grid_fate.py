"""The guard a grid stage's command runs under (`unitgrad.grid.fate`): the command's exit status passes through, and
the command with everything it started dies with the process that started the guard, whether that process is
killed (SIGKILL) or kills its own children on exit (as a Ray worker does)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unitgrad.grid import fate

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")

# A stand-in for a Ray worker: starts a guarded dash line whose command is dash's child, the guard's grandchild.
WORKER = """
import os, sys, time
from unitgrad.grid import fate
line = "sleep 60 & echo $! > sleeper; wait"
guard = fate.popen(["/bin/sh", "-c", line])
open("guard", "w").write(str(guard.pid))
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:  # a zombie has ended; only its parent has not reaped it yet
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait(predicate, what: str, seconds: float = 20) -> None:
    end = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < end, what
        time.sleep(0.05)


@pytest.mark.parametrize("code", [0, 3])
def test_the_command_s_exit_code_passes_through(code):
    assert fate.popen(["/bin/sh", "-c", f"exit {code}"]).wait() == code


def test_the_signal_that_killed_the_command_passes_through():
    assert fate.popen(["/bin/sh", "-c", "kill -TERM $$"]).wait() == -signal.SIGTERM


@pytest.mark.parametrize("how", ["the worker is killed", "the worker kills its children"])
def test_the_command_and_what_it_started_die_with_the_worker(how, tmp_path):
    worker = subprocess.Popen([sys.executable, "-c", WORKER], cwd=tmp_path)
    _wait(lambda: (tmp_path / "sleeper").exists() and (tmp_path / "sleeper").read_text().strip(), "never started")
    sleeper, guard = int((tmp_path / "sleeper").read_text()), int((tmp_path / "guard").read_text())
    assert _alive(sleeper)
    os.kill(worker.pid if how == "the worker is killed" else guard, signal.SIGKILL)
    _wait(lambda: not _alive(sleeper), f"the command's own child (PID {sleeper}) outlived the worker")
    worker.kill()
    worker.wait()


def test_a_command_that_ends_leaves_nothing_killed(tmp_path):
    """The watcher stands down when the command ends by itself: the guard's exit status is the command's, and a
    process the command left running in the background is not killed."""
    line = "sleep 30 & echo $! > left; exit 0"
    assert fate.popen(["/bin/sh", "-c", line], cwd=tmp_path).wait() == 0
    left = int((tmp_path / "left").read_text())
    time.sleep(0.5)
    assert _alive(left)
    os.kill(left, signal.SIGKILL)
