"""Real worker subprocesses for the tests: the one harness every tier uses.

A ``WorkerProject`` is a folder with task modules (``tasks.py`` unless told otherwise) and
the processes started on it: ``celeriac -A <module> worker`` (``start_worker``), Celery's
worker (``start_celery_worker``), or any other command that writes a log (``start``: beat,
dashboard, Flower). Each process writes ``<name>.log`` in the folder and runs in a session
of its own, so stopping it also reaches its pool children. ``start_worker`` returns once
the log says ``ready.``; ``stop`` sends SIGTERM (warm) or SIGQUIT (cold) and waits;
``kill9`` SIGKILLs the whole process group; ``stop_all`` (which the fixtures call, and
``__exit__``) stops everything and kills what is left, so no process outlives its test.

The broker is whatever the project's modules name (a SQLite file, a Redis key prefix, a
RabbitMQ vhost); ``tests/support/sqlite_project.py`` and ``redis_project.py`` are the
ready-made projects of the integration tier.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.support.polling import eventually, poll

READY = "ready."
CELERY_WORKER_FLAGS = ("--without-gossip", "--without-mingle", "--without-heartbeat")
LOG_TAIL = 5000  # characters of a log quoted in a failure


class WorkerProject:
    """A folder with task modules and the processes started on it.

    ``modules`` is the source of ``tasks.py`` (a string) or ``{module name: source}``;
    ``env`` is added to this process's environment for every child (with the folder on
    ``PYTHONPATH`` and ``CELERIAC_TEST_WORKER=1``). ``app`` is the module ``-A`` names by
    default; ``cli_app``, when given, is put before the arguments of ``celeriac()``.
    ``append_logs`` keeps a restarted process's earlier log (else it is overwritten);
    ``runlog`` is the file the tasks append a line to per run (first field: an id or label).
    """

    def __init__(
        self,
        root: Path,
        modules: str | Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        *,
        app: str = "tasks",
        cli_app: str | None = None,
        append_logs: bool = False,
        runlog: Path | None = None,
        ready_timeout: float = 30.0,
        stop_timeout: float = 20.0,
    ) -> None:
        self.root = root
        sources = {"tasks": modules} if isinstance(modules, str) else dict(modules or {})
        for module, source in sources.items():
            (root / f"{module}.py").write_text(textwrap.dedent(source))
        self.env = {
            **os.environ,
            "PYTHONPATH": str(root),
            "CELERIAC_TEST_WORKER": "1",
            **(env or {}),
        }
        self.app = app
        self.cli_app = cli_app
        self.append_logs = append_logs
        self.runlog = runlog
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.workers: list[subprocess.Popen[bytes]] = []
        self._loaded: list[Any] = []
        self._quick_stop: set[int] = set()  # pids not worth waiting long for (Celery's)

    # -- starting ---------------------------------------------------------------------------

    def start(
        self,
        argv: Sequence[str],
        name: str,
        ready: str | None = READY,
        *,
        env: Mapping[str, str] | None = None,
        new_session: bool = True,
        timeout: float | None = None,
    ) -> subprocess.Popen[bytes]:
        """Run ``argv`` in the folder, its output in ``<name>.log``; stopped by ``stop_all``.
        Returns once ``ready`` is in the log (at once when ``ready`` is None)."""
        mode = "ab" if self.append_logs else "wb"
        with open(self.root / f"{name}.log", mode) as log:  # the child keeps its own copy
            proc = subprocess.Popen(
                list(argv),
                cwd=self.root,
                env={**self.env, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=new_session,
            )
        self.workers.append(proc)
        if ready is not None:
            self.wait_for_log(name, ready, proc, timeout=timeout)
        return proc

    def start_worker(
        self,
        *args: str,
        name: str = "w1",
        app: str | None = None,
        ready: str | None = READY,
        mingle: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """``celeriac -A <app> worker -l info -n <name>@%h``; without startup mingle (a 1 s
        wait for neighbours) unless asked. ``ready=None`` returns at once (a worker that is
        to die on its first task may do so before it logs ``ready.``)."""
        quiet = () if mingle else ("--without-mingle",)
        argv = [
            sys.executable,
            "-m",
            "celeriac",
            "-A",
            app or self.app,
            "worker",
            "-l",
            "info",
            "-n",
            f"{name}@%h",
            *quiet,
            *args,
        ]
        return self.start(argv, name, ready, env=env)

    def start_celery_worker(
        self,
        *args: str,
        name: str = "celery",
        app: str | None = None,
        pool: str = "solo",
        concurrency: int | None = None,
        mingle: bool = False,
        quick_stop: bool = True,
    ) -> subprocess.Popen[bytes]:
        """Celery's worker, without gossip and heartbeats, and without mingle unless asked.
        It takes about 10 s to shut down; with ``quick_stop`` ``stop_all`` waits only 2 s
        before it kills it."""
        flags = [f for f in CELERY_WORKER_FLAGS if not (mingle and f == "--without-mingle")]
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            app or self.app,
            "worker",
            "-l",
            "info",
            "-P",
            pool,
        ]
        argv += [*(["-c", str(concurrency)] if concurrency else []), *flags]
        proc = self.start([*argv, "-n", f"{name}@%h", *args], name)
        if quick_stop:
            self._quick_stop.add(proc.pid)
        return proc

    # -- looking ----------------------------------------------------------------------------

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for_log(
        self,
        name: str,
        text: str,
        proc: subprocess.Popen[bytes] | None = None,
        timeout: float | None = None,
    ) -> None:
        """Until ``text`` is in ``name``'s log; fail at once if ``proc`` exits first."""
        timeout = timeout or self.ready_timeout

        def seen() -> bool:
            if text in self.log(name):
                return True
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"{name} exited early:\n{self.log(name)[-LOG_TAIL:]}")
            return False

        if not poll(seen, timeout, interval=0.05)[0]:
            raise AssertionError(
                f"{text!r} not in the log of {name} after {timeout}s:\n{self.log(name)[-LOG_TAIL:]}"
            )

    def run_lines(self) -> list[list[str]]:
        """The fields of each line of the run log the tasks append to (none yet: [])."""
        if self.runlog is None or not self.runlog.exists():
            return []
        return [line.split() for line in self.runlog.read_text().splitlines() if line.strip()]

    def wait_for_runs(self, count: int, *, prefix: str = "", timeout: float = 30) -> None:
        """Until the run log has ``count`` lines whose first field starts with ``prefix``."""

        def counted() -> bool:
            return sum(fields[0].startswith(prefix) for fields in self.run_lines()) >= count

        eventually(counted, f"{count} runs{f' of {prefix!r}' if prefix else ''}", timeout=timeout)

    def celeriac(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """``celeriac [-A <cli_app>] <args>`` run to its end in the folder."""
        target = ["-A", self.cli_app] if self.cli_app else []
        return subprocess.run(
            [sys.executable, "-m", "celeriac", *target, *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def run_script(self, code: str, timeout: float = 60) -> Any:
        """Run ``code`` in a fresh interpreter in the folder; its last stdout line as JSON."""
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    def load_tasks(self, module: str = "tasks") -> Any:
        """The project's module imported in this process under its own name (as in the
        workers, so task names match), not put in ``sys.modules``; ``stop_all`` closes its
        app. Worker processes have ``CELERIAC_TEST_WORKER=1`` in their environment; this one
        not."""
        spec = importlib.util.spec_from_file_location(module, self.root / f"{module}.py")
        assert spec is not None and spec.loader is not None
        loaded = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loaded)
        self._loaded.append(loaded)
        if hasattr(loaded.app, "results"):  # Celeriac's: make the result store (its tables)
            loaded.app.backend  # noqa: B018 - before workers start, so they never race for it
        return loaded

    # -- stopping ---------------------------------------------------------------------------

    def stop(
        self, proc: subprocess.Popen[bytes], *, warm: bool = True, timeout: float | None = None
    ) -> int:
        """SIGTERM (warm: running tasks finish) or SIGQUIT (cold) and wait for the exit (up
        to ``timeout``); then its process group is killed (no pool child outlives it, nor the
        process itself when it did not exit in time). Its exit code."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM if warm else signal.SIGQUIT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout or self.stop_timeout)
        self._kill_group(proc)
        return proc.wait(timeout=10)

    def kill9(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the process and its pool children (its whole process group)."""
        self._kill_group(proc)
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        """Close the apps ``load_tasks`` made; stop every process (SIGTERM, then SIGKILL of
        its group when it does not exit in time); kill every group that is left."""
        for module in self._loaded:
            app = getattr(module, "app", None)
            if app is not None:
                app.close()
        self._loaded = []
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            try:  # Celery's worker takes about 10 s to shut down: no need to wait for that
                proc.wait(timeout=2 if proc.pid in self._quick_stop else self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.kill9(proc)
        for proc in self.workers:  # no pool child may outlive its test
            self._kill_group(proc)

    def _kill_group(self, proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def __enter__(self) -> WorkerProject:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_all()
