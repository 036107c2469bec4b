"""``celeriac dlq list|show|requeue|purge`` on real brokers (SQLite, Redis, RabbitMQ)."""

from __future__ import annotations

import importlib
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from celeriac.cli.main import cli
from celeriac.protocol.message import TaskMessage
from celeriac.protocol.v2 import encode_task
from celeriac.transports.base import Outgoing, Transport
from tests.support import amqp_support, redis_support

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "redis", "amqp"])
def app_module(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The name of an importable module whose ``app`` uses a broker of its own."""
    options: dict[str, Any] = {}
    cleanup = lambda: None  # noqa: E731
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/broker.sqlite"
    elif request.param == "redis":
        redis_support.require_redis()
        prefix = redis_support.unique_prefix(tmp_path)
        db = redis_support.TRANSPORT_DB
        url = f"redis://{redis_support.HOST}:{redis_support.PORT}/{db}"
        options = {"global_keyprefix": prefix}
        cleanup = lambda: redis_support.delete_prefix(db, prefix)  # noqa: E731
    else:
        vhost = amqp_support.take_vhost()
        url = amqp_support.url(vhost)
        cleanup = lambda: amqp_support.drop_vhost(vhost)  # noqa: E731
    name = f"dlq_app_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(
        "from celeriac import Celery\n"
        f"app = Celery('dlq', broker={url!r})\n"
        f"app.conf.broker_transport_options = {options!r}\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        yield name
    finally:
        module = sys.modules.pop(name, None)
        sys.path.remove(str(tmp_path))
        if module is not None:
            module.app.close()
        cleanup()


def dlq(name: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["-A", name, "dlq", *args], catch_exceptions=False)


def bury(transport: Transport, *ids: str) -> None:
    transport.consumer(["celery"], owner="declare").close()
    messages = [encode_task(TaskMessage("tasks.add", i, (2, 2))) for i in ids]
    transport.publish([Outgoing(m, "", "celery") for m in messages])
    consumer = transport.consumer(["celery"], owner="burier")
    left = set(ids)
    while left:
        for delivery in consumer.fetch(len(left), timeout=5):
            task_id = delivery.message.headers["id"]
            consumer.dead_letter(delivery, f"TypeError: add() broke on {task_id}")
            left.discard(task_id)
    consumer.close()


def test_list_show_requeue_and_purge(app_module: str) -> None:
    transport: Transport = importlib.import_module(app_module).app.transport
    bury(transport, "t-1", "t-2")
    letters = transport.dead_letters()

    shown = dlq(app_module, "list")
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[0].split()[:4] == ["ID", "QUEUE", "WHEN", "(UTC)"]
    assert [line.split()[0] for line in lines[1:]] == [d.id for d in letters]
    assert "tasks.add" in lines[1] and "TypeError: add() broke on t-1" in lines[1]

    as_json = [json.loads(line) for line in dlq(app_module, "list", "--json").output.splitlines()]
    assert [(r["task_id"], r["queue"], r["is_message"]) for r in as_json] == [
        ("t-1", "celery", True),
        ("t-2", "celery", True),
    ]
    assert json.loads(as_json[0]["message"]["body"])[0] == [2, 2]

    detail = json.loads(dlq(app_module, "show", letters[1].id).output)
    assert detail["reason"] == "TypeError: add() broke on t-2"
    assert detail["message"]["headers"]["task"] == "tasks.add"

    requeued = dlq(app_module, "requeue", letters[0].id)
    assert requeued.exit_code == 0
    assert requeued.output == f"Requeued {letters[0].id} (tasks.add) to queue 'celery'.\n"
    consumer = transport.consumer(["celery"], owner="after-the-fix")
    [back] = consumer.fetch(1, timeout=5)
    assert back.message.headers["id"] == "t-1" and back.message.body == letters[0].message.body
    consumer.ack(back)
    consumer.close()
    again = dlq(app_module, "requeue", letters[0].id)
    assert again.exit_code == 1 and "already requeued or purged" in again.output

    missing = dlq(app_module, "show", "nope")
    assert missing.exit_code == 1 and "No dead letter 'nope'" in missing.output
    assert dlq(app_module, "purge", "-f").output == "Purged 1 dead letter(s).\n"
    assert dlq(app_module, "list").output == "No dead letters.\n"


def test_requeue_needs_ids_or_all(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["-b", f"sqlite:///{tmp_path}/b.sqlite", "dlq", "requeue"])
    assert result.exit_code == 2 and "give the ids of the letters to requeue" in result.output
