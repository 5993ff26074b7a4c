"""`fate.popen([CMD, ARG...])`: start CMD under a guard (`python -m unitgrad.grid.fate CMD ARG...`) so that it, and
every process it starts, dies with the process that started it.

The grid runs a stage's command in a Ray worker or a SLURM task. A Ray worker that dies with its node (or is killed
by Ray's memory monitor) must not leave the command running beside its retry, both writing the same outputs. Neither
of the two ways it can die reaches the command: a worker that exits kills its own children only, and the kernel's
parent-death signal reaches one process (a fork's child does not inherit it), while /bin/sh (dash) forks the
command of `-c LINE` where bash would exec it. So this guard, the worker's child, dies with the worker either way,
and a watcher it forks (a grandchild, spared by both) sees the guard's end of a pipe close and kills the process
group that holds the guard, the command and all the command started.
"""

import ctypes
import os
import signal
import subprocess
import sys

DONE = b"."  # the guard's last word when the command has ended by itself: nothing is left to kill


def popen(argv: list[str], **kwargs) -> subprocess.Popen:
    """Start `argv` under the guard (Popen's keyword arguments otherwise as given)."""
    return subprocess.Popen([sys.executable, "-m", "unitgrad.grid.fate", *argv], preexec_fn=_arm(os.getpid()), **kwargs)


def _arm(parent: int):
    """The guard's preexec_fn: SIGKILL it when `parent` dies (Linux; elsewhere nothing)."""

    def preexec() -> None:
        if sys.platform == "linux":
            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
            if os.getppid() != parent:  # it died before the request, so no signal will come
                os._exit(1)

    return preexec


def main(argv: list[str]) -> int:
    os.setpgid(0, 0)  # a process group of its own, for the watcher to kill
    read, write = os.pipe()
    if os.fork() == 0:  # the watcher: the read returns when the guard writes DONE or dies (its end then closes)
        os.close(write)
        if os.read(read, 1) != DONE:
            os.killpg(0, signal.SIGKILL)
        os._exit(0)
    os.close(read)
    returncode = subprocess.call(argv)  # the command does not inherit `write` (close_fds): only this process holds it
    os.write(write, DONE)
    if returncode < 0:  # die of the command's signal, so that the caller reads the command's own exit status
        signal.signal(-returncode, signal.SIG_DFL)
        os.kill(os.getpid(), -returncode)
    return returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
