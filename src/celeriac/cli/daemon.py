"""Running in the background: ``--detach`` and ``--pidfile``.

``detach`` double-forks into a new session with stdin/stdout/stderr on /dev/null (logs go to
``--logfile``); the pidfile holds the worker's pid, refuses a second start while that pid is
alive, and is removed at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from pathlib import Path

import click

__all__ = ["Pidfile", "detach", "expand_node_pattern"]


def expand_node_pattern(pattern: str, nodename: str) -> str:
    """Celery's file-name patterns: ``%n`` short node name, ``%h`` full node name, ``%p`` pid."""
    short = nodename.split("@", 1)[0]
    return pattern.replace("%n", short).replace("%h", nodename).replace("%p", str(os.getpid()))


class Pidfile:
    """A pidfile that knows whether the process it names is still alive."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def read(self) -> int | None:
        try:
            return int(self.path.read_text().strip())
        except (OSError, ValueError):
            return None

    def is_alive(self) -> bool:
        pid = self.read()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def acquire(self) -> None:
        if self.is_alive():
            raise click.ClickException(
                f"Pidfile {self.path} names a running process (pid {self.read()}): is it already "
                "running? Stop it first, or remove the file if it is stale."
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(f"{os.getpid()}\n")
        atexit.register(self.release)

    def release(self) -> None:
        if self.read() == os.getpid():
            with contextlib.suppress(OSError):
                self.path.unlink()


def detach(workdir: str | None = None) -> None:
    """Become a daemon: the calling process exits, a grandchild goes on."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    if workdir:
        os.chdir(workdir)
    os.umask(0o022)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115
