"""Real Flower 2.2 watching and controlling a Celeriac worker on Redis.

Flower runs as a subprocess on the project's Celery app (``celtasks``): it learns about
workers from their events and from ``inspect`` broadcasts, and controls them with broadcasts,
so everything it shows of the Celeriac worker below came over Celery's wire formats. The
worker runs with ``-E``; tasks are sent by a Celeriac client. Database ``FLOWER_DB`` of the
machine's Redis, under a key prefix of the test's own (``RedisProject``), deleted at the end.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import redis_support
from tests.support.polling import eventually
from tests.support.redis_project import RedisProject, open_project

pytestmark = pytest.mark.integration

FLOWER_DB = 15
NODE = f"w1@{socket.gethostname()}"


@pytest.fixture(name="project")
def project_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisProject]:
    redis_support.require_redis()
    url = f"redis://{redis_support.HOST}:{redis_support.PORT}/{FLOWER_DB}"
    with open_project(tmp_path, monkeypatch, url, FLOWER_DB) as project:
        yield project


@pytest.fixture(name="rtasks")
def rtasks_fixture(project: RedisProject) -> Any:
    import rtasks as module  # type: ignore[import-not-found]

    return module


def require_flower() -> None:
    """Skip (locally) or fail (in CI) unless Flower is installed (it is in the dev extra)."""
    try:
        import flower  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("flower is required in CI (it is in the dev extra)")
        pytest.skip("flower is not installed (pip install -e '.[dev]')")


class Flower:
    """Flower's HTTP API, answering without authentication (FLOWER_UNAUTHENTICATED_API)."""

    def __init__(self, project: RedisProject) -> None:
        self.project = project
        self.port = redis_support.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = project.root / "flower.log"
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "celtasks",
            "flower",
            f"--port={self.port}",
            "--address=127.0.0.1",
        ]
        # stopped (SIGTERM, then its group killed) at the end
        env = {"FLOWER_UNAUTHENTICATED_API": "true"}
        self.proc = project.start(argv, "flower", ready=None, env=env)
        eventually(lambda: self.proc.poll() is not None or redis_support.port_open(self.port))
        assert self.proc.poll() is None, self.log()[-3000:]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, **query: Any) -> Any:
        url = f"{self.base}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())

    def post(self, path: str, body: dict[str, str] | None = None, **query: Any) -> Any:
        url = f"{self.base}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = urllib.parse.urlencode(body or {}).encode()
        request = urllib.request.Request(url, data=data, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def page(self, path: str) -> str:
        with urllib.request.urlopen(f"{self.base}{path}", timeout=10) as response:
            return str(response.read().decode())

    def task(self, task_id: str) -> Any:
        """The task as Flower's event state has it; None while Flower has not heard of it."""
        try:
            return self.get(f"/api/task/info/{task_id}")
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise

    def inspected(self, ready: Callable[[Any], Any], **query: str) -> Any:
        """NODE as Flower has it once ``ready(it)``, refreshed by inspect broadcasts. (Flower
        waits its inspect timeout, 1 s, for replies: a busy machine may need a second try.)"""

        def check() -> Any:
            info = self.get("/api/workers", refresh=1, **query).get(NODE, {})
            return info if ready(info) else None

        return eventually(check)

    def state(self, task_id: str) -> str | None:
        return (self.task(task_id) or {}).get("state")


def ask(project: RedisProject, *args: str) -> Any:
    """Run ``celeriac -A rtasks <args> -d NODE --json`` and return the node's reply."""
    done = project.celeriac(*args, "-d", NODE, "--json", "-t", "5")
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)[NODE]


def test_flower_watches_and_controls_a_celeriac_worker(project: RedisProject, rtasks: Any) -> None:
    require_flower()
    worker = project.celeriac_worker("-P", "prefork", "-c", "1", "-E")
    flower = Flower(project)
    # Flower hears the worker's events: its heartbeats make it "online".
    eventually(lambda: flower.get("/api/workers", status=1).get(NODE) is True)

    # Workers: Flower's inspect broadcasts (stats, registered, active_queues, conf) answered.
    info = flower.inspected(
        lambda info: {"stats", "registered", "active_queues", "conf"} <= set(info)
    )
    assert set(flower.get("/api/workers")) == {NODE}
    assert {"interop.add", "interop.fail", "interop.retry_once"} <= set(info["registered"])
    stats = info["stats"]
    assert stats["pid"] == worker.pid
    assert stats["pool"]["max-concurrency"] == 1 and len(stats["pool"]["processes"]) == 1
    assert stats["broker"]["transport"] == "redis"
    assert [queue["name"] for queue in info["active_queues"]] == ["celery"]
    assert info["conf"]["broker_url"] == project.url

    # Tasks: a success, a failure and a task retried once, as Flower's event state has them.
    ok = rtasks.add.delay(2, 3)
    bad = rtasks.fail.delay("boom")
    flaky = rtasks.retry_once.delay(7)
    assert ok.get(timeout=20) == 5 and flaky.get(timeout=20) == 7
    with pytest.raises(KeyError):
        bad.get(timeout=20)
    for result, state in ((ok, "SUCCESS"), (bad, "FAILURE"), (flaky, "SUCCESS")):
        eventually(lambda r=result, s=state: flower.state(r.id) == s)
    listed = flower.get("/api/tasks")
    assert set(listed) == {ok.id, bad.id, flaky.id}
    assert {task["worker"] for task in listed.values()} == {NODE}
    assert set(flower.get("/api/tasks", state="FAILURE")) == {bad.id}
    assert set(flower.get("/api/tasks", taskname="interop.add", workername=NODE)) == {ok.id}

    done = flower.task(ok.id)
    assert (done["name"], done["args"], done["kwargs"], done["result"]) == (
        "interop.add",
        "(2, 3)",
        "{}",
        "5",
    )
    assert (done["worker"], done["retries"], done["root_id"]) == (NODE, 0, ok.id)
    assert done["received"] <= done["started"] <= done["succeeded"] and done["runtime"] >= 0
    failed = flower.task(bad.id)
    assert (failed["name"], failed["args"], failed["worker"]) == ("interop.fail", "('boom',)", NODE)
    assert failed["exception"] == "KeyError('boom')" and failed["failed"] is not None
    assert failed["traceback"].rstrip().endswith("KeyError: 'boom'")
    retried = flower.task(flaky.id)
    assert (retried["name"], retried["args"], retried["result"]) == (
        "interop.retry_once",
        "(7,)",
        "7",
    )
    assert retried["retries"] == 1 and retried["retried"] is not None
    assert retried["exception"] == "ValueError('first attempt')"  # from task-retried
    # Flower reads results from the backend the Celeriac worker wrote, with Celery's client.
    assert flower.get(f"/api/task/result/{ok.id}") == {
        "task-id": ok.id,
        "state": "SUCCESS",
        "result": 5,
    }
    stored = flower.get(f"/api/task/result/{bad.id}")
    assert (stored["state"], stored["result"]) == ("FAILURE", "KeyError('boom')")

    # The dashboard's worker row: event counters and the fields of the worker's heartbeats.
    [row] = flower.get("/workers", json=1)["data"]
    counts = {kind: row[kind] for kind in row if kind.startswith("task-")}
    assert counts == {
        "task-received": 4,
        "task-started": 4,
        "task-succeeded": 2,
        "task-failed": 1,
        "task-retried": 1,
    }
    assert (row["hostname"], row["pid"], row["status"]) == (NODE, worker.pid, True)
    assert (row["sw_ident"], row["freq"]) == ("py-celeriac", 2.0) and len(row["loadavg"]) == 3
    metrics = flower.page("/metrics")
    assert f'flower_worker_online{{worker="{NODE}"}} 1.0' in metrics
    assert (
        f'flower_events_total{{task="interop.retry_once",type="task-retried",worker="{NODE}"}} 1.0'
        in metrics
    )

    # One worker's task lists, inspected by Flower while a task runs; its page renders them.
    running = rtasks.record.delay(60)
    eventually(lambda: flower.state(running.id) == "STARTED")
    [active] = flower.inspected(lambda info: info.get("active"), workername=NODE)["active"]
    assert (active["id"], active["name"], active["args"]) == (running.id, "interop.record", "(60,)")
    page = flower.page(f"/worker/{NODE}")
    assert running.id in page and "interop.retry_once" in page

    # Control: revoke (terminating the running task), pool grow, rate limit, shutdown.
    assert flower.post(f"/api/task/revoke/{running.id}", terminate="true", signal="SIGKILL") == {
        "message": f"Revoked '{running.id}'"
    }
    eventually(lambda: flower.state(running.id) == "REVOKED")
    assert running.id in ask(project, "inspect", "revoked")
    flower.inspected(lambda info: running.id in info.get("revoked", ()), workername=NODE)
    eventually(lambda: str(rtasks.app.AsyncResult(running.id).result) == "terminated")

    assert flower.post(f"/api/worker/pool/grow/{NODE}", n=1) == {
        "message": f"Growing '{NODE}' worker's pool by 1"
    }
    eventually(lambda: len(ask(project, "inspect", "stats")["pool"]["processes"]) == 2)
    assert flower.post(
        "/api/task/rate-limit/interop.add", body={"ratelimit": "100/m", "workername": NODE}
    ) == {"message": "new rate limit set successfully"}
    assert "interop.add [rate_limit=100/m]" in ask(project, "inspect", "registered", "rate_limit")
    assert rtasks.add.delay(1, 2).get(timeout=20) == 3  # the grown pool still runs tasks

    assert flower.post(f"/api/worker/shutdown/{NODE}") == {"message": "Shutting down!"}
    assert worker.wait(timeout=20) == 0
    assert "Got shutdown from remote" in project.log("w1")
    eventually(lambda: flower.get("/api/workers", status=1).get(NODE) is False)  # worker-offline
    # Flower logged no failed inspection nor error about anything the worker sent.
    complaints = [
        line
        for line in flower.log().splitlines()
        if line.startswith("[E ") or "Inspect method" in line or "Traceback" in line
    ]
    assert not complaints, flower.log()
