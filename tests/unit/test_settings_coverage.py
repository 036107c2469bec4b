"""Every one of Celery's 207 settings is read by some code, or listed with its reason as not
applicable or as refused (``celeriac.app._settings_support``); refused ones raise when set;
and the settings that were accepted and ignored now do what Celery's do."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest

import celeriac
from celeriac import Celery
from celeriac.app._annotations import annotate_tasks
from celeriac.app._setting_names import DEFAULTS
from celeriac.app._settings_support import NOT_APPLICABLE, UNSUPPORTED
from celeriac.app.settings import validate
from celeriac.exceptions import ImproperlyConfigured

SOURCE = Path(celeriac.__file__).parent
#: The modules that name every setting without reading it.
TABLES = {"_setting_names.py", "_settings_support.py"}
#: Settings another part of the work answers for, and why.
HANDLED_ELSEWHERE = {
    "beat_scheduler": "beat's scheduler selection (the Django/SQL scheduler work) refuses "
    "unknown values",
}


def _code() -> str:
    return "\n".join(
        path.read_text() for path in sorted(SOURCE.rglob("*.py")) if path.name not in TABLES
    )


def test_the_table_has_celerys_207_settings() -> None:
    celeriac_own = {"dead_letter_max_entries", "dead_letter_max_age"}  # docs/dead-letters.md
    assert celeriac_own <= set(DEFAULTS)
    assert len(set(DEFAULTS) - celeriac_own) == 207


def test_every_setting_is_read_or_listed_with_a_reason() -> None:
    code = _code()
    unread = [
        name
        for name in DEFAULTS
        if not re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", code)
        and name not in NOT_APPLICABLE
        and name not in UNSUPPORTED
        and name not in HANDLED_ELSEWHERE
    ]
    assert unread == [], f"settings read by nothing and not listed: {unread}"
    listed = {**NOT_APPLICABLE, **UNSUPPORTED}
    assert all(reason.strip() for reason in listed.values())
    assert set(listed) <= set(DEFAULTS)  # no typo in the tables
    assert not set(NOT_APPLICABLE) & set(UNSUPPORTED)


def _other_value(default: Any) -> Any:
    if isinstance(default, bool):
        return not default
    if isinstance(default, (int, float)):
        return 3 if default == float("inf") else default + 7
    return "something-else"


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_an_unsupported_setting_is_refused_unless_left_at_its_default(name: str) -> None:
    app = Celery("s", broker="memory://", set_as_current=False)
    try:
        validate(app.conf)  # Celery's default: fine
        app.conf[name] = _other_value(DEFAULTS[name])
        with pytest.raises(ImproperlyConfigured, match=f"{name} = .* not supported"):
            validate(app.conf)
    finally:
        app.close()


def _app() -> Celery:
    url = f"memory://settings-{uuid.uuid4().hex}"
    return Celery("s", broker=url, backend=url, set_as_current=False)


def test_task_annotations_rewrite_task_attributes() -> None:
    app = _app()
    try:

        @app.task(name="a.add", rate_limit="1/s")
        def add(x: int, y: int) -> int:
            return x + y

        @app.task(name="a.other")
        def other() -> None:
            return None

        class Slow:
            def annotate(self, task: Any) -> dict[str, Any] | None:
                return {"time_limit": 30} if task.name == "a.other" else None

        app.conf.task_annotations = [
            {"a.add": {"rate_limit": "10/m"}, "*": {"acks_late": True}},
            Slow(),
        ]
        annotate_tasks(app)
        assert (add.rate_limit, add.acks_late, add.time_limit) == ("10/m", True, None)
        assert (other.rate_limit, other.acks_late, other.time_limit) == (None, True, 30)
        app.conf.task_annotations = {"*": {"@__call__": object()}}
        with pytest.raises(ImproperlyConfigured, match="'@' keys"):
            annotate_tasks(app)
    finally:
        app.close()


def test_result_failure_expires_applies_to_failures_only() -> None:
    app = _app()
    app.conf.update(result_expires=3600, result_failure_expires=60)
    stored: list[tuple[str, float | None]] = []
    try:
        backend = app.results.backend
        original = backend.store

        def spy(task_id: str, payload: bytes, **kwargs: Any) -> None:
            stored.append((kwargs["state"], kwargs["ttl"]))
            original(task_id, payload, **kwargs)

        backend.store = spy  # type: ignore[method-assign]
        app.results.store("ok", "SUCCESS", 1)
        app.results.store("bad", "FAILURE", KeyError("x"))
        assert stored == [("SUCCESS", 3600.0), ("FAILURE", 60.0)]
    finally:
        app.close()


def test_redis_backend_settings_reach_its_connection() -> None:
    app = Celery("s", broker="memory://", backend="redis://127.0.0.1:6399/0", set_as_current=False)
    app.conf.update(
        redis_socket_timeout=7.0, redis_socket_connect_timeout=3.0, redis_socket_keepalive=False
    )
    try:
        settings = app.results.backend.connector.settings  # type: ignore[attr-defined]
        assert (settings.socket_timeout, settings.connect_timeout) == (7.0, 3.0)
        assert settings.keepalive is False
    finally:
        app.close()


def test_acks_on_failure_and_inherit_parent_priority_in_a_worker() -> None:
    from tests.support.control_support import Project
    from tests.support.polling import eventually

    project = Project()
    app = project.app
    app.conf.update(task_acks_late=True, task_acks_on_failure=False)
    app.conf.task_inherit_parent_priority = True
    seen: list[Any] = []

    @app.task(name="t.parent", bind=True)
    def parent(self: Any) -> str:
        return str(child.delay().id)

    @app.task(name="t.child", bind=True)
    def child(self: Any) -> None:
        seen.append(self.request.delivery_info.get("priority"))

    try:
        with project.worker():
            failed = project.tasks["fail"].delay()
            assert failed.get(timeout=10, propagate=False) is not None
            # not acknowledged on failure: set aside, not acked (task_acks_on_failure=False)
            eventually(lambda: app.transport.dead_letters("celery"))
            parent.apply_async(priority=7).get(timeout=10)
            eventually(lambda: seen)
        assert seen == [7]
    finally:
        project.close()
