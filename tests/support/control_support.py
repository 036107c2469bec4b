"""An app with tasks to steer, and a worker running in this process, for the control tests
(unit, compat and integration tiers)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celeriac import Celery
from celeriac.backends.memory import reset_store
from celeriac.exceptions import SoftTimeLimitExceeded
from celeriac.transports.memory import MemoryTransport
from celeriac.worker.lifecycle import Worker

NODE = "w1@test"


class Project:
    """A fresh app on its own memory broker, with gated tasks that wait until released."""

    def __init__(self) -> None:
        self.name = f"control-{uuid.uuid4().hex}"
        url = f"memory://{self.name}"
        self.app = Celery("control", broker=url, backend=url, set_as_current=False)
        self.gates: dict[str, threading.Event] = {}
        self.ran: list[str] = []
        self._define_tasks()

    def gate(self, key: str) -> threading.Event:
        return self.gates.setdefault(key, threading.Event())

    def _define_tasks(self) -> None:
        app, project = self.app, self

        @app.task(name="t.add")
        def add(x: int, y: int) -> int:
            return x + y

        @app.task(name="t.hold")
        def hold(key: str) -> str:
            project.ran.append(key)
            gate = project.gate(key)
            while not gate.wait(0.01):  # short waits: an exception raised into us arrives
                pass
            return key

        @app.task(name="t.limited", rate_limit="1/h")
        def limited(key: str) -> str:
            project.ran.append(key)
            return key

        @app.task(name="t.slow")
        def slow(seconds: float) -> str:
            try:
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline:
                    time.sleep(0.01)
            except SoftTimeLimitExceeded:
                return "soft limit"
            return "finished"

        @app.task(name="t.fail")
        def fail() -> None:
            raise KeyError("missing")

        @app.task(name="t.sleep_async")
        async def sleep_async(seconds: float) -> str:
            await asyncio.sleep(seconds)
            return "awake"

        self.tasks: dict[str, Any] = {
            "add": add,
            "hold": hold,
            "limited": limited,
            "slow": slow,
            "fail": fail,
            "sleep_async": sleep_async,
        }

    def close(self) -> None:
        for gate in self.gates.values():
            gate.set()
        self.app.close()
        MemoryTransport.reset(self.name)
        reset_store(self.name)

    @contextmanager
    def worker(self, **options: Any) -> Iterator[Worker]:
        settings: dict[str, Any] = {"pool": "threads", "concurrency": 1, **options}
        worker = Worker(self.app, hostname=NODE, **settings)
        worker.start()
        try:
            yield worker
        finally:
            for gate in self.gates.values():
                gate.set()
            worker.stop(warm=True)

    def ask(self, command: str, timeout: float = 5.0, **arguments: Any) -> Any:
        """One node's reply to ``command`` (returns as soon as it answers)."""
        replies = self.app.control.broadcast(
            command, arguments=arguments, destination=[NODE], reply=True, timeout=timeout
        )
        assert replies, f"{NODE} did not answer {command}"
        return replies[0][NODE]
