"""The public surface: ``celeriac.__all__`` pinned, and Celery's import paths working."""

from __future__ import annotations

import importlib

import pytest

import celeriac


def test_top_level_all_is_pinned() -> None:
    assert sorted(celeriac.__all__) == [
        "AsyncResult",
        "Celeriac",
        "Celery",
        "EagerResult",
        "Exchange",
        "Queue",
        "Signature",
        "Task",
        "__version__",
        "chain",
        "chord",
        "chunks",
        "current_app",
        "current_task",
        "group",
        "maybe_signature",
        "shared_task",
        "signature",
        "states",
        "subtask",
        "uuid",
        "xmap",
        "xstarmap",
    ]


def test_every_name_in_all_exists() -> None:
    for name in celeriac.__all__:
        assert getattr(celeriac, name) is not None, name


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("celeriac", "Celery"),
        ("celeriac", "shared_task"),
        ("celeriac", "Exchange"),
        ("celeriac", "Queue"),
        ("celeriac.result", "AsyncResult"),
        ("celeriac.result", "EagerResult"),
        ("celeriac.result", "GroupResult"),
        ("celeriac.result", "ResultSet"),
        ("celeriac.result", "result_from_tuple"),
        ("celeriac", "signature"),
        ("celeriac", "chain"),
        ("celeriac", "group"),
        ("celeriac", "chord"),
        ("celeriac", "chunks"),
        ("celeriac.canvas", "Signature"),
        ("celeriac.canvas", "maybe_signature"),
        ("celeriac.canvas", "xmap"),
        ("celeriac.canvas", "xstarmap"),
        ("celeriac.states", "SUCCESS"),
        ("celeriac.states", "READY_STATES"),
        ("celeriac.exceptions", "Retry"),
        ("celeriac.exceptions", "MaxRetriesExceededError"),
        ("celeriac.exceptions", "TimeoutError"),
        ("celeriac.signals", "task_success"),
        ("celeriac.signals", "before_task_publish"),
        ("celeriac.utils.log", "get_task_logger"),
        ("celeriac.app.task", "Task"),
        ("celeriac.app.task", "Context"),
        ("celeriac.canvas", "_chain"),
        ("celeriac.backends.base", "BaseKeyValueStoreBackend"),
        ("celeriac.backends.base", "states"),
        ("celeriac.utils.serialization", "UnpickleableExceptionWrapper"),
        ("celeriac.contrib.testing", "start_worker"),
        ("celeriac.contrib.testing.worker", "start_worker"),
    ],
)
def test_celery_import_paths(module: str, name: str) -> None:
    assert hasattr(importlib.import_module(module), name)


def test_compat_paths_are_the_same_objects() -> None:
    from celeriac.app.task import Task as CompatTask
    from celeriac.result import AsyncResult
    from celeriac.routing import Exchange, Queue
    from celeriac.task import Task

    assert CompatTask is Task is celeriac.Task
    assert AsyncResult is celeriac.AsyncResult
    assert (Exchange, Queue) == (celeriac.Exchange, celeriac.Queue)


def test_task_logger_records_carry_the_task_name(caplog: pytest.LogCaptureFixture) -> None:
    from celeriac.utils.log import get_task_logger

    logger = get_task_logger("tests.public_api")
    with caplog.at_level("INFO"):
        logger.info("hello")
    [record] = caplog.records
    assert record.getMessage() == "hello"
    assert record.task_name == "???"  # type: ignore[attr-defined]
    assert record.task_id == "???"  # type: ignore[attr-defined]


def test_public_modules_declare_all() -> None:
    for module in (
        "celeriac.app.base",
        "celeriac.app.producer",
        "celeriac.app.routes",
        "celeriac.app.results",
        "celeriac.app.registry",
        "celeriac.task",
        "celeriac.result",
        "celeriac.execution",
        "celeriac.followups",
        "celeriac.request",
        "celeriac.signals",
        "celeriac.log",
        "celeriac.canvas",
        "celeriac.canvas.signature",
        "celeriac.canvas.chain",
        "celeriac.canvas.group",
        "celeriac.canvas.chord",
        "celeriac.canvas.maps",
        "celeriac.canvas.join",
        "celeriac.canvas.dispatch",
        "celeriac.canvas.replace",
    ):
        exported = importlib.import_module(module).__all__
        assert exported, module
        for name in exported:
            assert hasattr(importlib.import_module(module), name), f"{module}.{name}"


def test_version() -> None:
    assert celeriac.__version__ == "0.1.0"
    assert celeriac.VERSION_BANNER == "celeriac 0.1.0"


def test_unpickleable_exception_wrapper_keeps_and_restores_the_exception() -> None:
    from celeriac.utils.serialization import UnpickleableExceptionWrapper

    wrapper = UnpickleableExceptionWrapper.from_exception(KeyError("k"))
    assert (wrapper.exc_module, wrapper.exc_cls_name, wrapper.exc_args) == (
        "builtins",
        "KeyError",
        ("'k'",),
    )
    restored = UnpickleableExceptionWrapper("builtins", "ValueError", ["boom"]).restore()
    assert type(restored) is ValueError and restored.args == ("boom",)
    missing = UnpickleableExceptionWrapper("no.such.module", "Gone", ["x"], "Gone('x')")
    assert str(missing) == "Gone('x')" and str(missing.restore()) == "Gone('x')"
