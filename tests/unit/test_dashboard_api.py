"""The dashboard's HTTP side on a memory:// app: JSON API, auth rules, metrics, live stream."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import uvicorn
from click.testing import CliRunner
from starlette.applications import Starlette
from starlette.testclient import TestClient

from celeriac import Celery
from celeriac._time import ManualClock
from celeriac.cli.main import cli
from celeriac.dashboard.adapter import ControlAdapter
from celeriac.dashboard.auth import AuthPolicy
from celeriac.dashboard.live import LiveFeed
from celeriac.dashboard.server import STATIC, create_app
from celeriac.dashboard.store import DashboardStore
from celeriac.exceptions import CeleryWarning
from celeriac.protocol.message import Message
from tests.support.apps import AppFactory
from tests.support.polling import eventually
from tests.unit.test_dashboard_store import T0, event, received

LOCAL = "http://127.0.0.1:5555"


@pytest.fixture
def app(make_app: AppFactory) -> Celery:
    return make_app("memory", "proj", results=False, set_as_current=False)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DashboardStore]:
    opened = DashboardStore(str(tmp_path / "dash.sqlite"), clock=ManualClock(T0 + 5))
    yield opened
    opened.close()


def make(app: Celery, store: DashboardStore, *, collect: bool = False, **auth: Any) -> Starlette:
    # TestClient's requests say Host: testserver; a loopback-bound dashboard must be told.
    policy = AuthPolicy.from_options(allowed_hosts=["testserver"], **auth) if auth else None
    return create_app(
        app,
        store,
        auth=policy,
        collect=collect,
        clock=store.clock,
        control=ControlAdapter(app, timeout=0.1),
    )


def test_reads_mirror_the_store(app: Celery, store: DashboardStore) -> None:
    store.apply(
        [received(f"t{i}", T0 + i, name="proj.add" if i % 2 else "proj.mul") for i in range(5)]
    )
    store.apply([event("task-failed", "t3", T0 + 4, exception="KeyError('k')", traceback="TB")])
    store.apply([event("worker-heartbeat", hostname="w1@host", at=T0 + 4, active=1)])
    with TestClient(make(app, store)) as client:
        assert [w["hostname"] for w in client.get("/api/workers").json()["workers"]] == ["w1@host"]
        page = client.get("/api/tasks", params={"limit": 2}).json()
        assert [t["uuid"] for t in page["tasks"]] == ["t4", "t3"]
        rest = client.get("/api/tasks", params={"limit": 10, "after": page["next"]}).json()
        assert [t["uuid"] for t in rest["tasks"]] == ["t2", "t1", "t0"] and rest["next"] is None
        failed = client.get("/api/tasks", params={"state": "FAILURE"}).json()["tasks"]
        assert [t["uuid"] for t in failed] == ["t3"]
        by_time = client.get("/api/tasks", params={"since": T0 + 1, "until": "2023-11-14T22:13:23"})
        assert {t["uuid"] for t in by_time.json()["tasks"]} == {"t1", "t2"}
        detail = client.get("/api/tasks/t3").json()
        assert (detail["exception"], detail["traceback"], detail["name"]) == (
            "KeyError('k')",
            "TB",
            "proj.add",
        )
        assert client.get("/api/tasks/nope").status_code == 404
        assert client.get("/api/tasks", params={"since": "yesterday"}).status_code == 400
        assert client.get("/api/tasks", params={"after": "garbage"}).status_code == 400
        points = client.get("/api/stats/timeseries", params={"minutes": 5}).json()["points"]
        assert sum(p.get("FAILURE", 0) for p in points) == 1


def test_queues_show_lengths_from_the_broker(app: Celery, store: DashboardStore) -> None:
    for _ in range(3):
        app.send_task("proj.add", (1, 2), queue="images")
    app.send_task("proj.add", (1, 2))
    board = make(app, store)
    board.state.dashboard.queues.watch(["images"])  # as when a worker says it consumes it
    for _ in range(10):
        board.state.dashboard.queues.note_sent("images", T0)  # from task-sent events
    with TestClient(board) as client:
        queues = {q["name"]: q for q in client.get("/api/queues").json()["queues"]}
    assert (queues["celery"]["length"], queues["images"]["length"]) == (1, 3)
    assert queues["celery"]["consumers"] is None  # nobody asked the workers yet
    assert (queues["images"]["sent_per_min"], queues["celery"]["sent_per_min"]) == (2.0, 0.0)


def test_reads_are_open_and_actions_refused_without_auth(
    app: Celery, store: DashboardStore
) -> None:
    with TestClient(make(app, store), base_url=LOCAL) as client:
        assert client.get("/api/tasks").status_code == 200
        refused = client.post("/api/tasks/t1/revoke", json={})
        assert refused.status_code == 403 and "--auth" in refused.json()["error"]
        assert client.get("/api/config").json()["can_act"] is False


def test_unauthenticated_control_only_on_loopback(app: Celery, store: DashboardStore) -> None:
    task_id = app.send_task("proj.add", (1, 1)).id
    board = make(app, store, allow_unauthenticated_control=True, address="127.0.0.1")
    with TestClient(board, base_url=LOCAL) as client:
        assert client.get("/api/config").json()["can_act"] is True
        answer = client.post(f"/api/tasks/{task_id}/revoke", json={})
        assert answer.status_code == 200, answer.text
    assert app.results.get_meta(task_id)["status"] == "REVOKED"
    with TestClient(board, base_url="http://dashboard.example:5555") as client:  # rebinding
        assert client.post(f"/api/tasks/{task_id}/revoke", json={}).status_code == 403
    with pytest.warns(CeleryWarning, match="ignored"):
        exposed = make(app, store, allow_unauthenticated_control=True, address="0.0.0.0")
    with TestClient(exposed, base_url=LOCAL) as client:
        assert client.post(f"/api/tasks/{task_id}/revoke", json={}).status_code == 403


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_auth_and_tokens_guard_everything_but_static_files(
    app: Celery, store: DashboardStore
) -> None:
    board = make(app, store, auth=["admin:s3cret"], tokens=["tok-1"])
    with TestClient(board) as client:
        for path in ("/", "/api/tasks", "/api/stream", "/metrics"):
            denied = client.get(path)
            assert denied.status_code == 401, path
            assert denied.headers["www-authenticate"].startswith("Basic")
        assert client.get("/static/app.js").status_code == 200
        assert client.get("/api/tasks", headers=_basic("admin", "wrong")).status_code == 401
        assert client.get("/api/tasks", headers=_basic("admin", "s3cret")).status_code == 200
        assert client.get("/api/tasks", headers={"Authorization": "Bearer tok-1"}).is_success
        assert client.get("/api/tasks", params={"token": "tok-1"}).status_code == 200
        assert client.get("/api/tasks", params={"token": "tok-2"}).status_code == 401
        assert client.post("/api/tasks/t1/revoke", json={}).status_code == 401
        ok = client.post("/api/tasks/t1/revoke", json={}, headers=_basic("admin", "s3cret"))
        assert ok.status_code == 200 and ok.json()["ok"] == "revoked t1"


def test_actions_refuse_forms_and_other_origins(app: Celery, store: DashboardStore) -> None:
    headers = {"Authorization": "Bearer tok"}
    with TestClient(make(app, store, tokens=["tok"])) as client:
        form = client.post("/api/tasks/t1/revoke", data={"x": "1"}, headers=headers)
        assert form.status_code == 403
        other = client.post(
            "/api/tasks/t1/revoke", json={}, headers={**headers, "Origin": "https://evil.example"}
        )
        assert other.status_code == 403
        same = client.post(
            "/api/tasks/t1/revoke", json={}, headers={**headers, "Origin": "http://testserver"}
        )
        assert same.status_code == 200


def test_action_bodies_are_checked(app: Celery, store: DashboardStore) -> None:
    headers = {"Authorization": "Bearer tok"}
    with TestClient(make(app, store, tokens=["tok"]), headers=headers) as client:
        bad_rate = client.post("/api/tasks/proj.add/rate_limit", json={"rate_limit": "fast"})
        assert bad_rate.status_code == 400
        assert client.post("/api/tasks/t1/terminate", json={"signal": "SIGNOPE"}).status_code == 400
        assert client.post("/api/workers/w1@h/pool/grow", json={"n": 0}).status_code == 400
        assert client.post("/api/workers/w1@h/pool/sideways", json={}).status_code == 404
        limited = client.post("/api/tasks/proj.add/rate_limit", json={"rate_limit": "10/m"})
        assert limited.status_code == 200 and limited.json()["replies"] == []  # no worker
        grown = client.post("/api/workers/w1@h/pool/grow", json={"n": 2})
        assert grown.status_code == 200 and "by 2" in grown.json()["ok"]
        assert client.post("/api/workers/w1@h/shutdown", json={}).status_code == 200
        assert client.post("/api/tasks/t1/terminate", json={"signal": "SIGKILL"}).is_success


_SAMPLE = re.compile(r'^[a-z_]+(\{([a-z_]+="([^"\\]|\\.)*",?)*\})? -?[0-9.e+-]+$')


def test_metrics_are_prometheus_text(app: Celery, store: DashboardStore) -> None:
    store.apply([received("t1", name='odd"name'), received("t2")])
    store.apply(
        [
            event("task-succeeded", "t1", T0 + 1, runtime=0.3),
            event("task-succeeded", "t2", T0 + 1, runtime=7.0),
        ]
    )
    store.apply([event("worker-heartbeat", hostname="w1@host", at=T0 + 4, active=2, processed=9)])
    app.send_task("proj.add", (1, 2))
    with TestClient(make(app, store)) as client:
        response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = response.text.splitlines()
    for line in lines:
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or _SAMPLE.match(line), line
    assert 'celeriac_tasks_total{name="odd\\"name",state="SUCCESS"} 1' in lines
    assert 'celeriac_task_runtime_seconds_bucket{name="proj.add",le="5.0"} 0' in lines
    assert 'celeriac_task_runtime_seconds_bucket{name="proj.add",le="10.0"} 1' in lines
    assert 'celeriac_task_runtime_seconds_bucket{name="proj.add",le="+Inf"} 1' in lines
    assert 'celeriac_task_runtime_seconds_count{name="proj.add"} 1' in lines
    assert 'celeriac_queue_length{queue="celery"} 1' in lines
    assert "celeriac_workers_online 1" in lines
    assert 'celeriac_worker_processed_total{worker="w1@host"} 9' in lines
    assert "# TYPE celeriac_task_runtime_seconds histogram" in lines


def _broadcast(app: Celery, routing_key: str, body: Any) -> None:
    message = Message(json.dumps(body).encode(), "application/json", "utf-8", {})
    app.transport.broadcast("celeryev", routing_key, message)


def _fetch(client: TestClient, path: str) -> Any:
    """The JSON at ``path``, or {"state": None, "progress": None} while it is not there."""
    response = client.get(path)
    return response.json() if response.status_code == 200 else {"state": None, "progress": None}


def test_the_collector_folds_broadcast_events(app: Celery, store: DashboardStore) -> None:
    task_id = app.send_task("proj.add", (2, 2)).id
    with TestClient(make(app, store, collect=True)) as client:
        _broadcast(app, "task.multi", [received(task_id), event("task-started", task_id)])
        _broadcast(app, "worker.heartbeat", event("worker-heartbeat", hostname="w1@host"))
        path = f"/api/tasks/{task_id}"
        eventually(lambda: _fetch(client, path), path, until=lambda t: t["state"] == "STARTED")
        progress = {"current": 2, "total": 8}
        app.results.store(task_id, "PROGRESS", progress)
        eventually(lambda: _fetch(client, path), path, until=lambda t: t["progress"] == progress)
        app.results.store(task_id, "SUCCESS", 4)  # its event is missed: the store tells
        done = eventually(
            lambda: _fetch(client, path), path, until=lambda t: t["state"] == "SUCCESS"
        )
        assert done["result"] == "4"
        assert client.get("/api/workers").json()["workers"][0]["hostname"] == "w1@host"


@pytest.fixture
def served(app: Celery, store: DashboardStore) -> Iterator[tuple[str, Starlette]]:
    web = make(app, store, collect=True)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(web, log_level="warning", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", web
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_the_stream_sends_changes_as_they_happen(
    app: Celery, served: tuple[str, Starlette]
) -> None:
    url, _ = served
    client = httpx.Client(base_url=url, timeout=10)
    with client, client.stream("GET", "/api/stream") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines) == "retry: 2000"
        _broadcast(app, "task.received", received("live-1"))
        seen: list[str] = []
        for line in lines:
            seen.append(line)
            if line.startswith("data: ") and "live-1" in line:
                break
    assert "event: task" in seen
    data = json.loads(next(x for x in seen if "live-1" in x)[len("data: ") :])
    assert (data["uuid"], data["state"], data["name"]) == ("live-1", "RECEIVED", "proj.add")


def test_the_page_is_self_contained(app: Celery, store: DashboardStore) -> None:
    with TestClient(make(app, store)) as client:
        page = client.get("/")
        assert page.status_code == 200 and '<script src="/static/app.js">' in page.text
        assert client.get("/static/app.css").status_code == 200
    for path in STATIC.iterdir():
        text = path.read_text()
        assert not re.search(r"""(src|href)=["']?(https?:)?//|url\(|@import|cdn""", text), path
        assert "http" not in text.replace("http://www.w3.org/2000/svg", ""), path


def test_the_command_and_its_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    for name in ("dashboard", "flower"):
        shown = runner.invoke(cli, [name, "--help"])
        assert shown.exit_code == 0 and "--allow-unauthenticated-control" in shown.output
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if the extra were not installed
    missing = runner.invoke(cli, ["dashboard"])
    assert missing.exit_code != 0 and "pip install 'celeriac[dashboard]'" in missing.output


def test_celeriac_imports_without_the_extra() -> None:
    code = (
        "import sys; sys.modules['starlette'] = None; sys.modules['uvicorn'] = None\n"
        "import celeriac.cli.main, celeriac.dashboard.collector, celeriac.dashboard\n"
        "from celeriac.exceptions import ImproperlyConfigured\n"
        "try:\n"
        "    celeriac.dashboard.create_app\n"
        "except ImproperlyConfigured as exc:\n"
        "    print(exc)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == (
        "the dashboard needs the 'dashboard' extra: pip install 'celeriac[dashboard]' "
        "(starlette is not installed)"
    ), done.stderr


def test_the_live_feed_wakes_waiters_and_reports_gaps() -> None:
    feed = LiveFeed(capacity=3)
    for n in range(5):
        feed.publish("task", {"n": n})
    items, gap = feed.since(0)
    assert [i.data["n"] for i in items] == [2, 3, 4] and gap  # 1 and 2 were dropped
    assert feed.since(2) == (items, False)

    async def receive_one() -> list[int]:
        publisher = threading.Timer(0.05, feed.publish, args=("worker", {"n": 5}))
        publisher.start()
        found, _ = await feed.wait(feed.last_seq, timeout=10)
        publisher.join()
        return [item.seq for item in found]

    assert asyncio.run(receive_one()) == [6]
    feed.close()
    assert asyncio.run(feed.wait(feed.last_seq, timeout=10)) == ([], False)  # at once
