"""Side by side, in process: task API behaviour that must be Celery 5.7's.

Direct calls (``add(7)``) and their ``self.request``; ``task_cls`` (a class or a
``'module:Class'`` path) and ``app.Task``, whose ``__call__`` wraps ``apply()``; Flask's
documented ``celery_init_app`` pattern; ``get()`` of a task sent with ``ignore_result``
(in-memory brokers, no worker: nothing will ever be stored). The worker side of these is in
tests/integration/test_side_by_side_redis.py.
"""

from __future__ import annotations

import gc
import sys
import types
import uuid
from collections.abc import Iterator
from typing import Any

import celery
import pydantic
import pytest

import celeriac
from celeriac.exceptions import ImproperlyConfigured
from celeriac.protocol.v2 import decode_task

pytestmark = pytest.mark.compat


@pytest.fixture
def theirs() -> Iterator[Any]:
    app = celery.Celery("api", broker="memory://", backend="cache+memory://", set_as_current=False)
    app.conf.task_default_queue = f"api-{uuid.uuid4().hex}"  # kombu's memory queues are global
    yield app
    app.close()


@pytest.fixture
def ours() -> Iterator[celeriac.Celery]:
    url = f"memory://api-{uuid.uuid4().hex}"
    with celeriac.Celery("api", broker=url, backend=url, set_as_current=False) as app:
        yield app


def _request_seen(app: Any) -> Any:
    @app.task(bind=True, name="api.seen", shared=False)
    def seen(self: Any, x: int, y: int = 1) -> dict[str, Any]:
        r = self.request
        return {
            "args": tuple(r.args),
            "kwargs": dict(r.kwargs),
            "id": r.id,
            "called_directly": r.called_directly,
            "is_eager": r.is_eager,
            "retries": r.retries,
        }

    return seen


@pytest.mark.parametrize("call", [((7,), {}), ((7,), {"y": 3}), ((), {"x": 1, "y": 2})])
def test_a_direct_call_sees_its_arguments_in_request(
    call: tuple[tuple[Any, ...], dict[str, Any]], theirs: Any, ours: Any
) -> None:
    args, kwargs = call
    seen = [_request_seen(app)(*args, **kwargs) for app in (theirs, ours)]
    assert seen[1] == seen[0]
    assert seen[0]["called_directly"] is True and seen[0]["id"] is None


def test_apply_sees_a_worker_like_request(theirs: Any, ours: Any) -> None:
    seen = [_request_seen(app).apply((7,), task_id="tid").get() for app in (theirs, ours)]
    assert seen[1] == seen[0]
    assert seen[0]["called_directly"] is False and seen[0]["id"] == "tid"


def _base_classes(lib: Any) -> type:
    class Wrapping(lib.Task):  # type: ignore[misc, name-defined]
        calls: list[tuple[Any, ...]] = []

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            Wrapping.calls.append((self.name, self.request.id, args))
            return ("wrapped", super().__call__(*args, **kwargs))

    return Wrapping


def _apps_with_task_cls(spec: Any, lib: Any, url: str) -> Any:
    if lib is celery:
        return celery.Celery(
            "api",
            broker="memory://",
            backend="cache+memory://",
            task_cls=spec,
            set_as_current=False,
        )
    return celeriac.Celery("api", broker=url, backend=url, task_cls=spec, set_as_current=False)


@pytest.mark.parametrize("by_path", [False, True])
def test_task_cls_wraps_apply_and_direct_calls(by_path: bool) -> None:
    seen = []
    for lib in (celery, celeriac):
        base = _base_classes(lib)
        spec: Any = base
        if by_path:
            module = types.ModuleType(f"api_bases_{uuid.uuid4().hex}")
            module.Wrapping = base  # type: ignore[attr-defined]
            sys.modules[module.__name__] = module
            spec = f"{module.__name__}:Wrapping"
        app = _apps_with_task_cls(spec, lib, f"memory://api-{uuid.uuid4().hex}")
        try:

            @app.task(name="api.double", shared=False)
            def double(x: int) -> int:
                return 2 * x

            assert isinstance(double, base) and issubclass(app.Task, base)
            direct = double(3)
            applied = double.apply((4,), task_id="t4").get()
            seen.append((direct, applied, list(base.calls)))  # type: ignore[attr-defined]
        finally:
            app.close()
    assert seen[1] == seen[0]
    direct, applied, calls = seen[0]
    assert list(direct) == ["wrapped", 6] and list(applied) == ["wrapped", 8]
    assert calls == [("api.double", None, (3,)), ("api.double", "t4", (4,))]


def test_task_cls_that_is_not_a_task_class_is_refused() -> None:
    with pytest.raises(ImproperlyConfigured, match="task_cls=<class 'dict'>"):
        celeriac.Celery("api", task_cls=dict, set_as_current=False)  # type: ignore[arg-type]
    bad = celeriac.Celery("api", broker="memory://", task_cls="builtins:dict", set_as_current=False)
    with bad as app, pytest.raises(ImproperlyConfigured, match="task_cls='builtins:dict'"):
        app.task(lambda: None)
    del app, bad
    gc.collect()  # the broken app would refuse to adopt shared tasks made by later tests


FLASK_FACTORY = """
from flask import Flask, current_app

def celery_init_app(lib, app):
    class FlaskTask(lib.Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = lib.Celery(app.name, task_cls=FlaskTask, set_as_current=False)
    celery_app.config_from_object(app.config["CELERY"])
    app.extensions["celery"] = celery_app
    return celery_app

def create_app(lib, broker):
    app = Flask("flaskproj")
    app.config.from_mapping(CELERY=dict(broker_url=broker, result_backend=broker))
    celery_app = celery_init_app(lib, app)

    @celery_app.task(name="flaskproj.app_name")
    def app_name():
        return current_app.name  # only inside an app context

    return app, celery_app
"""


def test_flasks_celery_init_app_pattern() -> None:
    """Flask's documented pattern: a base task whose ``__call__`` enters the app context."""
    namespace: dict[str, Any] = {}
    exec(FLASK_FACTORY, namespace)  # the docs' code as users paste it
    got = []
    for lib, broker in ((celery, "memory://"), (celeriac, f"memory://f-{uuid.uuid4().hex}")):
        flask_app, celery_app = namespace["create_app"](lib, broker)
        if lib is celery:
            celery_app.conf.result_backend = "cache+memory://"
        try:
            task = celery_app.tasks["flaskproj.app_name"]
            assert flask_app.extensions["celery"] is celery_app
            got.append((task(), task.apply().get()))
        finally:
            celery_app.close()
    assert got[1] == got[0] == ("flaskproj", "flaskproj")


def test_shared_tasks_are_made_of_each_apps_task_cls() -> None:
    made = []
    for lib in (celery, celeriac):
        base = _base_classes(lib)

        @lib.shared_task(name=f"api.shared_{lib.__name__}")
        def shared(x: int) -> int:
            return x + 1

        app = _apps_with_task_cls(base, lib, f"memory://api-{uuid.uuid4().hex}")
        try:
            task = app.tasks[f"api.shared_{lib.__name__}"]
            made.append((isinstance(task, base), list(task.apply((1,)).get())))
        finally:
            app.close()
    assert made[1] == made[0] == (True, ["wrapped", 2])


def one() -> int:
    return 1


def test_get_of_an_ignored_result_returns_none_at_once(theirs: Any, ours: Any) -> None:
    """No worker runs here, so nothing is ever stored: ``get()`` must not wait for it."""
    got = []
    for app in (theirs, ours):
        task = app.task(name="api.noop", shared=False)(one)
        result = task.apply_async(ignore_result=True)
        ignored_task = app.task(name="api.noop2", ignore_result=True, shared=False)(one)
        got.append((result.get(timeout=30), ignored_task.delay().get(timeout=30)))
    assert got[1] == got[0] == (None, None)


class User(pydantic.BaseModel):
    name: str
    age: int = 0


class Greeting(pydantic.BaseModel):
    text: str
    seen_as: str


def greet(user: User, other: User | None = None, times: int = 1) -> Greeting:
    others = "" if other is None else f" and {other.name}"
    return Greeting(text=f"hi {user.name}{others}" * times, seen_as=type(user).__name__)


@pytest.mark.parametrize(
    "call",
    [
        (({"name": "ann", "age": 3},), {}),
        ((User(name="bob"),), {"other": {"name": "cy"}}),
        ((), {"user": User(name="dee"), "other": None, "times": 2}),
    ],
)
def test_pydantic_tasks_get_models_and_return_data(
    call: tuple[tuple[Any, ...], dict[str, Any]], theirs: Any, ours: Any
) -> None:
    args, kwargs = call
    got = []
    for app in (theirs, ours):
        task = app.task(name="api.greet", pydantic=True, shared=False)(greet)
        got.append((task.apply(args, kwargs).get(), task(*args, **kwargs)))
    assert got[1] == got[0]
    assert got[0][0]["seen_as"] == "User"  # the task got the model, and sent back a dict


def test_pydantic_bad_input_fails_the_task_alike(theirs: Any, ours: Any) -> None:
    errors = []
    for app in (theirs, ours):
        task = app.task(name="api.greet", pydantic=True, shared=False)(greet)
        result = task.apply(({"name": "ann", "age": "old"},))
        errors.append((result.state, type(result.result).__name__))
    assert errors[1] == errors[0] == ("FAILURE", "ValidationError")


def test_pydantic_models_given_to_delay_are_sent_as_data(theirs: Any, ours: Any) -> None:
    for app in (theirs, ours):  # Celery's would raise EncodeError if it sent the models
        task = app.task(name="api.greet", pydantic=True, shared=False)(greet)
        task.delay(User(name="eve", age=5), other=User(name="fay"))
    consumer = ours.transport.consumer(["celery"], owner="api")
    try:
        (delivery,) = consumer.fetch(10, timeout=0)
        consumer.ack(delivery)
    finally:
        consumer.close()
    message = decode_task(delivery.message, accept=["json"])
    assert message.args == ({"name": "eve", "age": 5},)
    assert message.kwargs == {"other": {"name": "fay", "age": 0}}


def test_a_task_cls_path_may_name_a_module_that_imports_the_app() -> None:
    """The path is resolved when it can be: shared tasks wait for it, as Celery's do."""

    @celeriac.shared_task(name="api.shared_late")
    def shared_late() -> int:
        return 1

    name = f"api_late_{uuid.uuid4().hex}"
    with celeriac.Celery(
        "api", broker="memory://", task_cls=f"{name}:Base", set_as_current=False
    ) as app:
        assert "api.shared_late" not in app.tasks  # the module is not importable yet
        module = types.ModuleType(name)
        module.Base = type("Base", (celeriac.Task,), {})  # type: ignore[attr-defined]
        sys.modules[name] = module
        app.import_default_modules()  # what a worker does first
        assert isinstance(app.tasks["api.shared_late"], module.Base)  # type: ignore[attr-defined]


def test_a_task_called_inside_a_wrapped_run_sees_its_own_call() -> None:
    """A base class whose ``__call__`` calls ``run`` (Flask's): a plain task called directly
    from inside the run still sees that call's arguments."""
    seen = []
    for lib in (celery, celeriac):

        class Wrapping(lib.Task):  # type: ignore[misc, name-defined]
            def __call__(self, *args: Any, **kwargs: Any) -> Any:
                return self.run(*args, **kwargs)

        app = _apps_with_task_cls(Wrapping, lib, f"memory://api-{uuid.uuid4().hex}")
        try:

            @app.task(bind=True, name="api.inner", shared=False, base=lib.Task)
            def inner(self: Any, x: int, y: int = 0) -> Any:
                return [list(self.request.args), self.request.kwargs, self.request.called_directly]

            @app.task(name="api.outer", shared=False, bind=True)
            def outer(self: Any) -> Any:
                return self.app.tasks["api.inner"](5, y=6)

            assert not isinstance(inner, Wrapping) and isinstance(outer, Wrapping)
            seen.append(outer.apply().get())
        finally:
            app.close()
    assert seen[1] == seen[0] == [[5], {"y": 6}, True]
