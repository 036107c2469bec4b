"""The names plugins and Celery's own suite reach for, Celery 5.7 and Celeriac side by side:
``Signature``, ``app.amqp``, ``app.loader``, ``app.connection()``, ``app.ResultSet``,
``app.add_defaults``, ``backend.ensure_chords_allowed``, ``utils.nodenames``,
``worker.state``, ``contrib.testing.app``/``manager`` and custom remote-control commands."""

from __future__ import annotations

import importlib
import sys
import uuid
from pathlib import Path
from typing import Any

import celery
import pytest
from celery.contrib.testing import app as celery_testing_app
from celery.utils import nodenames as celery_nodenames

import celeriac
from celeriac.contrib.testing import app as testing_app
from celeriac.contrib.testing.manager import Manager
from celeriac.utils import nodenames
from celeriac.worker import state as worker_state
from celeriac.worker.control import control_command, inspect_command
from tests.support.control_support import NODE, Project
from tests.support.polling import eventually

pytestmark = [pytest.mark.compat]

QUEUES = {"celery": "default", "videos": "media"}


def _apps() -> tuple[Any, Any]:
    theirs = celery.Celery("names", broker="memory://", backend="cache+memory://")
    ours = celeriac.Celery(
        "names",
        broker=f"memory://{uuid.uuid4().hex}",
        backend="cache+memory://",
        set_as_current=False,
    )
    for app, module in ((theirs, "kombu"), (ours, "celeriac")):
        entities = importlib.import_module(module if module == "kombu" else "celeriac.routing")
        app.conf.task_queues = [
            entities.Queue(name, entities.Exchange(exchange), routing_key=name)
            for name, exchange in QUEUES.items()
        ]
    return theirs, ours


def test_signature_is_exported() -> None:
    assert celery.Signature.__name__ == celeriac.Signature.__name__ == "Signature"
    assert isinstance(celeriac.signature("t.add", (1, 1)), celeriac.Signature)


def test_amqp_loader_connection_resultset_and_defaults(tmp_path: Path) -> None:
    theirs, ours = _apps()
    try:
        for app in (theirs, ours):
            assert sorted(app.amqp.queues) == ["celery", "videos"]
            assert app.amqp.queues["videos"].routing_key == "videos"
            assert app.amqp.default_queue.name == "celery"
            assert app.amqp.router is not None
        url = "redis://user:secret@localhost:6379/0"
        with theirs.connection_for_write(url) as a, ours.connection_for_write(url) as b:
            assert b.as_uri() == a.as_uri() == "redis://user:**@localhost:6379/0"
        assert ours.connection().recoverable_connection_errors
        for app in (theirs, ours):
            results = app.ResultSet([app.AsyncResult("a"), app.AsyncResult("b")])
            assert [r.id for r in results.results] == ["a", "b"]
            app.conf.task_default_priority = 3
            app.add_defaults({"plugin_option": 1, "task_default_priority": 7})
            app.add_defaults(lambda: {"plugin_other": "x"})
            assert (app.conf.plugin_option, app.conf.plugin_other) == (1, "x")
            assert app.conf.task_default_priority == 3  # an explicit setting wins
        module = f"included_{uuid.uuid4().hex}"
        (tmp_path / f"{module}.py").write_text("LOADED = True\n")
        sys.path.insert(0, str(tmp_path))
        try:
            for app in (theirs, ours):
                app.conf.include = [module]
                app.loader.import_default_modules()
                assert sys.modules[module].LOADED
        finally:
            sys.path.remove(str(tmp_path))
    finally:
        theirs.close()
        ours.close()


def test_ensure_chords_allowed_refuses_rpc_as_celery() -> None:
    for system in (celery, celeriac):
        stored = system.Celery("c", broker="memory://", backend="cache+memory://")
        rpc = system.Celery("c", broker="amqp://guest:guest@127.0.0.1:5672//", backend="rpc://")
        try:
            assert stored.backend.ensure_chords_allowed() is None
            with pytest.raises(NotImplementedError):
                rpc.backend.ensure_chords_allowed()
        finally:
            stored.close()
            rpc.close()


def test_nodenames_match_celerys() -> None:
    assert nodenames.anon_nodename() == celery_nodenames.anon_nodename()
    assert nodenames.anon_nodename("h", "x") == celery_nodenames.anon_nodename("h", "x")
    for name in ("w1@host", "host"):
        assert tuple(nodenames.nodesplit(name)) == tuple(celery_nodenames.nodesplit(name))
    for template in ("%h.log", "%n-%d.pid", "%n%%i"):
        ours = nodenames.host_format(template, "w1@a.example.com")
        assert ours == celery_nodenames.host_format(template, "w1@a.example.com")
    assert nodenames.nodename("a", "b") == celery_nodenames.nodename("a", "b") == "a@b"


def test_testing_app_as_celerys() -> None:
    apps = (celery_testing_app.TestApp(), testing_app.TestApp(config={"task_acks_late": True}))
    for app in apps:  # Celeriac's test apps each get an in-memory broker of their own name
        assert app.conf.broker_url.startswith("memory://") and app.conf.timezone == "UTC"
    assert apps[1].conf.task_acks_late is True
    assert apps[1].result_backend_url.startswith("memory://")
    outer = celeriac.Celery("outer", broker="memory://")
    inner = testing_app.TestApp()
    trapped = testing_app.setup_default_app(inner, use_trap=True)
    with trapped, pytest.raises(RuntimeError, match="current_app"):
        celeriac.current_app.conf  # noqa: B018 - the trap raises on any use
    assert celeriac.current_app.main == "outer"
    for app in (*apps, outer):
        app.close()


def test_worker_state_manager_and_a_custom_control_command() -> None:
    project = Project()

    @control_command(args=[("n", int)], signature="[N=1]")
    def bump_for_test(worker: Any, n: int = 1) -> dict[str, Any]:
        return {"ok": f"{worker.hostname} bumped by {n}"}

    @inspect_command(name="queues_for_test")
    def queues(worker: Any) -> list[str]:
        return [q.name for q in worker.queues]

    try:
        manager = Manager(project.app)
        with project.worker():
            held = project.tasks["hold"].delay("gate")
            manager.assert_accepted([held.id], interval=0.2)
            assert held.id in {job.id for job in worker_state.active_requests}
            project.app.control.revoke("not-yet-sent")
            eventually(lambda: "not-yet-sent" in worker_state.revoked)
            assert "not-yet-sent" in worker_state.revoked.as_dict()
            worker_state.revoked.discard("not-yet-sent")
            assert "not-yet-sent" not in worker_state.revoked
            project.app.control.revoke_by_stamped_headers({"mon": "x"})
            eventually(lambda: worker_state.revoked_stamps.as_dict() == {"mon": ["x"]})
            worker_state.revoked_stamps.clear()
            assert not worker_state.revoked_stamps
            assert project.ask("bump_for_test", n=2) == {"ok": f"{NODE} bumped by 2"}
            assert project.ask("queues_for_test") == ["celery"]
            project.gate("gate").set()
            assert manager.join(held) == ["gate"]
            eventually(lambda: held.id in worker_state.successful_requests)
            manager.wait_until_idle()
            manager.ensure_not_for_a_while(
                lambda: (_ for _ in ()).throw(KeyError("never")), KeyError, max_retries=2
            )
            assert worker_state.total_count["t.hold"] == 1
        assert list(worker_state.active_requests) == []
    finally:
        project.close()


#: The built-in control commands ``celery.worker.control`` lets code import by name (the
#: suite's own tasks module imports ``add_consumer`` and ``cancel_consumer``).
CONTROL_COMMANDS = (
    "revoke",
    "revoke_by_stamped_headers",
    "terminate",
    "rate_limit",
    "time_limit",
    "add_consumer",
    "cancel_consumer",
    "pool_grow",
    "pool_shrink",
    "autoscale",
    "enable_events",
    "disable_events",
    "heartbeat",
    "shutdown",
)


@pytest.mark.parametrize("name", CONTROL_COMMANDS)
def test_built_in_control_commands_import_from_worker_control(name: str) -> None:
    theirs = importlib.import_module("celery.worker.control")
    ours = importlib.import_module("celeriac.worker.control")
    assert callable(getattr(theirs, name))
    assert callable(getattr(ours, name))
