"""The app: construction, settings (new and old names, config objects), task registration,
autodiscovery, sending by name, current_app/current_task, and warnings for unknown names."""

from __future__ import annotations

import datetime as dt
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import celeriac
from celeriac import Celeriac, Celery, current_app, current_task, shared_task
from celeriac.backends.memory import reset_store
from celeriac.contrib.testing import start_worker
from celeriac.exceptions import ImproperlyConfigured, NotRegistered, UnknownSettingWarning
from celeriac.protocol.v2 import decode_task
from celeriac.result import AsyncResult
from celeriac.task import Task
from celeriac.transports.memory import MemoryTransport


@pytest.fixture
def url() -> Iterator[str]:
    name = f"test-app-{uuid.uuid4().hex}"
    yield f"memory://{name}"
    MemoryTransport.reset(name)
    reset_store(name)


@pytest.fixture
def app(url: str) -> Iterator[Celery]:
    with Celery("proj", broker=url, backend=url) as app:
        yield app


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path for throwaway modules; they are unimported afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def write_module(folder: Path, dotted: str, source: str) -> None:
    parts = dotted.split(".")
    for depth in range(1, len(parts)):
        package = folder.joinpath(*parts[:depth])
        package.mkdir(exist_ok=True)
        init = package / "__init__.py"
        if not init.exists():
            init.write_text("")
    folder.joinpath(*parts[:-1], parts[-1] + ".py").write_text(textwrap.dedent(source))


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def waiting_message(app: Celery, queue: str) -> Any:
    """Decode the one message waiting in ``queue`` of the memory broker (and take it)."""
    consumer = app.transport.consumer([queue], owner="test")
    try:
        deliveries = consumer.fetch(10, timeout=0)
        assert len(deliveries) == 1
        consumer.ack(deliveries[0])
        return deliveries[0]
    finally:
        consumer.close()


# -- construction and settings ---------------------------------------------------------------


def test_constructor_arguments_and_settings_land_in_conf(url: str) -> None:
    with Celery(
        "tasks", broker=url, backend=url, include=["a.tasks", "b.tasks"], task_acks_late=True
    ) as app:
        assert app.main == "tasks"
        assert app.conf.broker_url == url
        assert app.conf.result_backend == url
        assert tuple(app.conf.include) == ("a.tasks", "b.tasks")
        assert app.conf.task_acks_late is True


def test_celeriac_is_the_celery_class() -> None:
    assert Celeriac is Celery


def test_conf_has_celerys_defaults(app: Celery) -> None:
    conf = app.conf
    assert conf.task_serializer == "json"
    assert conf.result_serializer == "json"
    assert list(conf.accept_content) == ["json"]
    assert conf.task_default_queue == "celery"
    assert conf.result_expires == dt.timedelta(days=1)
    assert conf.worker_prefetch_multiplier == 4
    assert conf.task_always_eager is False
    assert conf.task_acks_late is False
    assert conf.task_publish_retry is True


OLD_NAMES: dict[str, Any] = {
    "CELERY_TASK_SERIALIZER": "msgpack",
    "CELERY_ACCEPT_CONTENT": ["json", "msgpack"],
    "CELERY_TASK_RESULT_EXPIRES": 60,
    "CELERYD_CONCURRENCY": 3,
    "CELERYD_PREFETCH_MULTIPLIER": 1,
    "CELERY_DEFAULT_QUEUE": "work",
    "CELERYBEAT_SCHEDULE": {"tick": {"task": "proj.tick", "schedule": 5.0}},
}


def check_old_names_applied(app: Celery, url: str) -> None:
    conf = app.conf
    assert conf.broker_url == url
    assert conf.result_backend == url
    assert conf.task_serializer == "msgpack"
    assert list(conf.accept_content) == ["json", "msgpack"]
    assert conf.result_expires == 60
    assert conf.worker_concurrency == 3
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_default_queue == "work"
    assert conf.beat_schedule == {"tick": {"task": "proj.tick", "schedule": 5.0}}
    # The old names are live settings, not just stored: a sent task uses them.
    app.send_task("proj.tick")
    delivery = waiting_message(app, "work")
    assert delivery.message.content_type == "application/x-msgpack"


def test_old_uppercase_names_as_constructor_keywords(url: str) -> None:
    with Celery("proj", BROKER_URL=url, CELERY_RESULT_BACKEND=url, **OLD_NAMES) as app:
        check_old_names_applied(app, url)


def test_old_names_mixed_with_the_broker_and_backend_arguments(url: str) -> None:
    with Celery("proj", broker=url, backend=url, **OLD_NAMES) as app:
        check_old_names_applied(app, url)


def test_old_uppercase_names_through_config_from_object(url: str, modules: Path) -> None:
    name = unique("oldconfig")
    lines = [f"BROKER_URL = {url!r}", f"CELERY_RESULT_BACKEND = {url!r}"]
    lines += [f"{key} = {value!r}" for key, value in OLD_NAMES.items()]
    write_module(modules, name, "\n".join(lines) + "\n")
    with Celery("proj") as app:
        app.config_from_object(name)
        check_old_names_applied(app, url)


def test_config_from_object_with_a_module_object_and_a_plain_object(
    url: str, modules: Path
) -> None:
    name = unique("config")
    write_module(modules, name, f"broker_url = {url!r}\ntask_default_queue = 'from-module'\n")
    module = __import__(name)

    class Config:
        result_backend = url
        task_default_queue = "from-class"

    with Celery("proj") as app:
        app.config_from_object(module)
        assert app.conf.broker_url == url
        assert app.conf.task_default_queue == "from-module"
        app.config_from_object(Config)
        assert app.conf.result_backend == url
        assert app.conf.task_default_queue == "from-class"
        assert app.conf.broker_url == url  # earlier values stay


def test_config_source_given_to_the_constructor(url: str) -> None:
    class Config:
        BROKER_URL = url
        CELERY_DEFAULT_QUEUE = "from-source"

    with Celery("proj", config_source=Config, task_acks_late=True) as app:
        assert app.conf.broker_url == url
        assert app.conf.task_default_queue == "from-source"
        assert app.conf.task_acks_late is True  # keywords apply over the source
        app.send_task("proj.x")
        assert app.transport.queue_length("from-source") == 1


def test_config_from_object_django_style_namespace(url: str, modules: Path) -> None:
    name = unique("djsettings")
    write_module(
        modules,
        f"{name}.conf",
        f"""
        class LazySettings:
            DEBUG = True
            INSTALLED_APPS = ["polls"]
            CELERY_BROKER_URL = {url!r}
            CELERY_RESULT_BACKEND = {url!r}
            CELERY_TASK_ACKS_LATE = True
            CELERY_TASK_DEFAULT_QUEUE = "django"

        settings = LazySettings()
        """,
    )
    with Celery("proj") as app:
        app.config_from_object(f"{name}.conf:settings", namespace="CELERY")
        assert app.conf.broker_url == url
        assert app.conf.result_backend == url
        assert app.conf.task_acks_late is True
        assert app.conf.task_default_queue == "django"
        assert "debug" not in app.conf.changes
        assert "installed_apps" not in app.conf.changes


def test_namespace_given_to_the_app_applies_to_config_from_object(url: str, modules: Path) -> None:
    name = unique("nsconfig")
    write_module(modules, name, f"CELERY_BROKER_URL = {url!r}\nBROKER_URL = 'memory://nope'\n")
    with Celery("proj", namespace="CELERY") as app:
        app.config_from_object(name)
        assert app.conf.broker_url == url


def test_config_from_object_with_a_bad_path(app: Celery) -> None:
    with pytest.raises(ImproperlyConfigured, match="no_such_module_for_celeriac"):
        app.config_from_object("no_such_module_for_celeriac")
    app.config_from_object("no_such_module_for_celeriac", silent=True)  # no error


def test_conf_update_and_attribute_access(app: Celery) -> None:
    app.conf.update(task_default_queue="updated", task_acks_late=True)
    app.conf.update(CELERY_TASK_SERIALIZER="msgpack")  # old names work here too
    assert app.conf.task_serializer == "msgpack"
    assert app.conf.task_acks_late is True
    assert app.conf.task_default_queue == "updated"
    assert app.conf["task_default_queue"] == "updated"
    assert app.conf.CELERY_DEFAULT_QUEUE == "updated"
    app.send_task("proj.anything")
    assert app.transport.queue_length("updated") == 1


def test_conf_update_after_sending_changes_routing(app: Celery) -> None:
    app.send_task("proj.first")
    app.conf.update(task_routes={"proj.second": {"queue": "late"}})
    app.send_task("proj.second")
    assert app.transport.queue_length("celery") == 1
    assert app.transport.queue_length("late") == 1


def test_unknown_setting_warns_naming_it(url: str) -> None:
    with (
        pytest.warns(UnknownSettingWarning, match="task_acks_lat"),
        Celery("proj", broker=url, task_acks_lat=True),
    ):
        pass


# -- tasks and the registry ------------------------------------------------------------------


def test_task_decorator_with_and_without_options(app: Celery) -> None:
    @app.task
    def plain(x: int) -> int:
        return x

    @app.task(name="custom.name", max_retries=7, ignore_result=True)
    def configured(x: int) -> int:
        return x

    assert plain.name == f"{__name__}.plain"
    assert app.tasks[plain.name] is plain
    assert configured.name == "custom.name"
    assert app.tasks["custom.name"] is configured
    assert configured.max_retries == 7
    assert configured.ignore_result is True
    assert plain(3) == 3  # still callable as the function
    assert isinstance(plain, Task)


def test_tasks_defined_in_main_use_the_app_name(app: Celery) -> None:
    def fun() -> None: ...

    fun.__module__ = "__main__"
    assert app.task(fun).name == "proj.fun"


def test_unknown_task_option_warns_naming_it(app: Celery) -> None:
    with pytest.warns(UnknownSettingWarning, match="retries_max") as record:

        @app.task(retries_max=3)
        def typo() -> None: ...

    assert record[0].filename == __file__  # the warning points at the user's line


def test_registry_lookup_of_a_missing_task_raises_not_registered(app: Celery) -> None:
    with pytest.raises(NotRegistered):
        app.tasks["proj.missing"]
    with pytest.raises(KeyError):  # NotRegistered is a KeyError too
        app.tasks["proj.missing"]


def test_register_task_with_a_class_based_task(app: Celery) -> None:
    class Multiply(Task[[int, int], int]):
        name = "proj.multiply"

        def run(self, x: int, y: int) -> int:
            return x * y

    task = app.register_task(Multiply())
    assert app.tasks["proj.multiply"] is task
    assert task.app is app
    assert task(3, 4) == 12
    assert task.apply((3, 5)).get() == 15


def test_shared_task_is_visible_in_every_app(url: str) -> None:
    first = Celery("first", broker=url, backend=url)

    @shared_task
    def shared_echo(x: int) -> int:
        return x

    second = Celery("second", broker=url, backend=url)
    name = shared_echo.name
    assert name == f"{__name__}.shared_echo"
    assert name in first.tasks
    assert name in second.tasks
    # Each app runs the task as its own: results go to that app.
    assert first.tasks[name].app is first
    assert second.tasks[name].app is second
    first.close()
    second.close()


def test_send_task_of_a_name_not_registered_here(app: Celery) -> None:
    result = app.send_task("elsewhere.add", args=(2, 3), kwargs={"z": 1}, countdown=0)
    assert isinstance(result, AsyncResult)
    assert result.state == "PENDING"
    delivery = waiting_message(app, "celery")
    message = decode_task(delivery.message, accept=["json"])
    assert message.task == "elsewhere.add"
    assert message.id == result.id
    assert list(message.args) == [2, 3]
    assert message.kwargs == {"z": 1}


def test_send_task_ignores_always_eager(app: Celery) -> None:
    app.conf.task_always_eager = True
    result = app.send_task("elsewhere.add", args=(1, 1))
    assert type(result) is AsyncResult
    assert app.transport.queue_length("celery") == 1


def test_unknown_calling_option_warns_naming_it(app: Celery) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    with pytest.warns(UnknownSettingWarning, match="countdwn") as record:
        add.apply_async((1, 2), countdwn=5)
    assert record[0].filename == __file__
    with pytest.warns(UnknownSettingWarning, match="priorty") as record:
        app.send_task("proj.other", priorty=1)
    assert record[0].filename == __file__


def test_app_async_result(app: Celery) -> None:
    result = app.AsyncResult("some-id")
    assert isinstance(result, AsyncResult)
    assert result.id == "some-id"
    assert result.app is app
    assert result.state == "PENDING"


def test_add_periodic_task_from_on_after_configure(app: Celery) -> None:
    pytest.importorskip("celeriac.beat.entries")

    @app.task
    def tick(word: str) -> str:
        return word

    @app.on_after_configure.connect
    def setup_periodic_tasks(sender: Celery, **kwargs: Any) -> None:
        sender.add_periodic_task(10.0, tick, args=("hi",), name="say hi every 10")

    assert app.configured is False
    app.config_from_object({"timezone": "UTC"})
    assert app.configured is True
    entry = app.conf.beat_schedule["say hi every 10"]
    assert entry["task"] == tick.name
    assert tuple(entry["args"]) == ("hi",)


# -- autodiscovery ------------------------------------------------------------------------------


def make_package_tree(modules: Path) -> str:
    root = unique("proj")
    write_module(
        modules,
        f"{root}.orders.tasks",
        """
        from celeriac import shared_task

        @shared_task
        def place(order_id):
            return order_id
        """,
    )
    write_module(modules, f"{root}.billing.models", "X = 1\n")  # an app with no tasks module
    write_module(
        modules,
        f"{root}.shipping.tasks",
        """
        from celeriac import current_app

        @current_app.task(name="shipping.send")
        def send(parcel):
            return parcel
        """,
    )
    return root


def test_autodiscover_tasks_imports_each_packages_tasks_module(url: str, modules: Path) -> None:
    root = make_package_tree(modules)
    with Celery("proj", broker=url, backend=url) as app:
        packages = [f"{root}.orders", f"{root}.billing", f"{root}.shipping"]
        app.autodiscover_tasks(packages, force=True)
        assert f"{root}.orders.tasks.place" in app.tasks
        assert "shipping.send" in app.tasks
        assert app.tasks["shipping.send"].app is app
        assert f"{root}.billing.tasks" not in sys.modules


def test_autodiscover_tasks_is_lazy_until_the_worker_imports_modules(
    url: str, modules: Path
) -> None:
    root = make_package_tree(modules)
    with Celery("proj", broker=url, backend=url) as app:
        app.autodiscover_tasks(lambda: [f"{root}.orders"])
        assert f"{root}.orders.tasks" not in sys.modules
        app.import_default_modules()  # what a worker does when it starts
        assert f"{root}.orders.tasks.place" in app.tasks


def test_autodiscover_tasks_reports_errors_inside_a_tasks_module(url: str, modules: Path) -> None:
    root = unique("broken")
    write_module(modules, f"{root}.app.tasks", "import no_such_dependency_for_celeriac\n")
    with Celery("proj", broker=url, backend=url) as app, pytest.raises(ImproperlyConfigured):
        app.autodiscover_tasks([f"{root}.app"], force=True)


def test_include_modules_are_imported_by_the_worker(url: str, modules: Path) -> None:
    name = unique("included")
    write_module(
        modules,
        name,
        """
        from celeriac import current_app

        @current_app.task(name="included.ping")
        def ping():
            return "pong"
        """,
    )
    with Celery("proj", broker=url, backend=url, include=[name]) as app:
        assert "included.ping" not in app.tasks
        with start_worker(app, pool="solo"):
            assert app.send_task("included.ping").get(timeout=10) == "pong"


# -- current app and task ---------------------------------------------------------------------


def test_current_app_is_the_app_created_last(url: str) -> None:
    first = Celery("first", broker=url)
    assert current_app._get_current_object() is first
    second = Celery("second", broker=url)
    assert current_app._get_current_object() is second
    assert current_app.main == "second"
    Celery("third", broker=url, set_as_current=False)
    assert current_app.main == "second"
    first.set_current()
    assert current_app.main == "first"


def test_current_task_is_empty_outside_a_task() -> None:
    assert not current_task
    assert celeriac.current_task._get_current_object() is None


def test_current_app_and_task_inside_a_running_task(url: str) -> None:
    app = Celery("worker-app", broker=url, backend=url, set_as_current=False)
    Celery("another-app", broker="memory://unused")  # the current app of this thread

    @app.task
    def introspect() -> dict[str, Any]:
        return {
            "app": current_app.main,
            "task": current_task.name,
            "id": current_task.request.id,
        }

    with start_worker(app, pool="threads", concurrency=1):
        result = introspect.delay()
        seen = result.get(timeout=10)
    assert seen == {"app": "worker-app", "task": introspect.name, "id": result.id}
    app.close()
