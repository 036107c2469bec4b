"""The dashboard's dead-letter view: /api/dead-letters, one letter, requeue (memory:// app)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from celeriac import Celery
from celeriac._time import ManualClock
from celeriac.dashboard.auth import AuthPolicy
from celeriac.dashboard.server import STATIC, create_app
from celeriac.dashboard.store import DashboardStore
from celeriac.protocol.message import Message, TaskMessage
from celeriac.protocol.v2 import encode_task
from celeriac.transports.base import Outgoing
from tests.support.apps import AppFactory

T0 = 1_700_000_000.0
LOCAL = "http://127.0.0.1:5555"
TOKEN = {"Authorization": "Bearer tok", "Origin": LOCAL}


@pytest.fixture
def app(make_app: AppFactory) -> Celery:
    return make_app("memory", "proj", results=False)


@pytest.fixture
def client(app: Celery, tmp_path: Path) -> Iterator[TestClient]:
    store = DashboardStore(str(tmp_path / "dash.sqlite"), clock=ManualClock(T0))
    board = create_app(
        app, store, auth=AuthPolicy.from_options(tokens=["tok"]), collect=False, clock=store.clock
    )
    with TestClient(board, base_url=LOCAL, headers=TOKEN) as test_client:
        yield test_client
    store.close()


def bury(app: Celery) -> None:
    """Two letters in queue celery: a task message, and one whose body is not text."""
    transport = app.transport
    good = encode_task(TaskMessage("proj.add", "t-1", (2, 2)))
    junk = Message(b"\xff\xfe", "application/octet-stream", "binary")
    transport.publish([Outgoing(good, "", "celery"), Outgoing(junk, "", "celery")])
    consumer = transport.consumer(["celery"], owner="w")
    first, second = consumer.fetch(2, timeout=1)
    consumer.dead_letter(first, "InvalidTaskError: args must be a list")
    consumer.dead_letter(second, "DecodeError: not JSON")
    consumer.close()


def test_the_list_shows_the_newest_first_without_bodies(app: Celery, client: TestClient) -> None:
    bury(app)
    page = client.get("/api/dead-letters").json()
    assert page["total"] == 2
    newest, oldest = page["dead_letters"]
    assert (newest["reason"], oldest["reason"]) == (
        "DecodeError: not JSON",
        "InvalidTaskError: args must be a list",
    )
    assert (oldest["task"], oldest["task_id"], oldest["queue"]) == ("proj.add", "t-1", "celery")
    assert "message" not in oldest and oldest["body_size"] > 0
    assert client.get("/api/dead-letters", params={"queue": "other"}).json() == {
        "dead_letters": [],
        "total": 0,
    }
    assert len(client.get("/api/dead-letters", params={"limit": 1}).json()["dead_letters"]) == 1
    assert client.get("/api/dead-letters", params={"limit": "0"}).status_code == 400


def test_one_letter_is_its_whole_record(app: Celery, client: TestClient) -> None:
    bury(app)
    junk_id = client.get("/api/dead-letters").json()["dead_letters"][0]["id"]
    letter = client.get(f"/api/dead-letters/{junk_id}").json()
    assert letter["message"]["body_encoding"] == "base64" and letter["message"]["body"] == "//4="
    assert client.get("/api/dead-letters/nope").status_code == 404


def test_requeue_is_an_action_that_sends_the_message_back(app: Celery, client: TestClient) -> None:
    bury(app)
    task_id = client.get("/api/dead-letters").json()["dead_letters"][1]["id"]
    wrong = {"Authorization": "Bearer wrong"}
    refused = client.post(f"/api/dead-letters/{task_id}/requeue", json={}, headers=wrong)
    assert refused.status_code == 401  # the guard: an action needs credentials
    assert app.transport.queue_length("celery") == 0
    answer = client.post(f"/api/dead-letters/{task_id}/requeue", json={})
    assert answer.status_code == 200 and "celery" in answer.json()["ok"]
    assert app.transport.queue_length("celery") == 1
    again = client.post(f"/api/dead-letters/{task_id}/requeue", json={})
    assert again.status_code == 404
    assert client.get("/api/dead-letters").json()["total"] == 1


def test_the_page_has_the_dead_letter_view() -> None:
    page = (STATIC / "index.html").read_text()
    script = (STATIC / "app.js").read_text()
    assert 'id="dead-letters"' in page and "/api/dead-letters" in script
