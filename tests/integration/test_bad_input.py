"""Bad input gets a clear error and loses nothing else; the worker goes on."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest

from celeriac.protocol.message import Message, TaskMessage
from celeriac.protocol.v2 import encode_task
from celeriac.transports.base import Outgoing
from celeriac.transports.sqlite import SQLiteTransport
from tests.support.polling import eventually

from .conftest import Project

pytestmark = pytest.mark.integration


def test_malformed_disallowed_and_unknown_messages_are_set_aside(
    project: Project, tasks: Any
) -> None:
    project.start_worker("-P", "threads")
    transport = SQLiteTransport(f"sqlite:///{project.db}")
    try:
        garbage = Message(
            b"{not json", "application/json", "utf-8", {"task": "tasks.add", "id": "g1"}
        )
        pickled = encode_task(TaskMessage("tasks.add", "p1", (1, 2)), serializer="pickle")
        wrong_body = Message(
            json.dumps("just a string").encode(),
            "application/json",
            "utf-8",
            {"task": "tasks.add", "id": "w1", "lang": "py"},
        )
        dict_body = Message(
            json.dumps({"x": 1}).encode(),
            "application/json",
            "utf-8",
            {"task": "tasks.add", "id": "d1", "lang": "py"},
        )
        unknown = encode_task(TaskMessage("tasks.nope", "u1", ()))
        bad = (garbage, pickled, wrong_body, dict_body, unknown)
        transport.publish([Outgoing(m, "", "celery") for m in bad])
        letters = eventually(
            lambda: transport.dead_letters("celery"),
            "5 dead letters",
            timeout=20,
            until=lambda found: len(found) >= 5,
        )
    finally:
        transport.close()
    reasons = " | ".join(letter.reason for letter in letters)
    assert "DecodeError" in reasons
    assert "ContentDisallowed" in reasons and "application/x-python-serialize" in reasons
    assert "InvalidTaskError" in reasons
    # A dict body under v2 headers is not taken for protocol v1 (and run with no arguments).
    [dict_letter] = [d for d in letters if d.message.headers.get("id") == "d1"]
    assert "without 'args'" in dict_letter.reason
    assert tasks.app.AsyncResult("d1").state == "PENDING"
    assert "unregistered task" in reasons and "tasks.nope" in reasons
    unknown_result = tasks.app.AsyncResult("u1")
    assert unknown_result.state == "FAILURE"
    assert "tasks.nope" in repr(unknown_result.result)
    # The worker goes on.
    assert tasks.add.delay(20, 22).get(timeout=20) == 42
    assert pickle  # the pickled message above was refused, never unpickled by the worker


def test_wrong_app_is_a_clear_error(project: Project) -> None:
    shown = project.celeriac("-A", "no_such_module", "worker")
    assert shown.returncode == 2
    assert "no_such_module" in shown.stderr and "not found" in shown.stderr
    shown = project.celeriac("-A", "tasks:nothing", "call", "tasks.add")
    assert shown.returncode == 2
    assert "no Celery app named 'nothing'" in shown.stderr


def test_unreachable_database_path_is_a_clear_error(project: Project) -> None:
    bad = "sqlite:////nonexistent-dir/sub/celeriac.sqlite"
    shown = project.celeriac("-A", "tasks", "-b", bad, "call", "tasks.add", "--args", "[1, 2]")
    assert shown.returncode != 0
    assert "/nonexistent-dir/sub" in shown.stderr
    assert "Traceback" not in shown.stderr


def test_bad_json_arguments_on_the_command_line(project: Project) -> None:
    shown = project.celeriac("-A", "tasks", "call", "tasks.add", "--args", "[1,")
    assert shown.returncode == 2
    assert "--args" in shown.stderr and "JSON" in shown.stderr
