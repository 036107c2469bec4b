"""``start_worker`` honours Celery's keyword arguments and refuses the ones it does not know."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from celeriac import Celery
from celeriac.contrib.testing import start_worker
from celeriac.contrib.testing.app import TestApp
from celeriac.exceptions import TimeoutError as ResultTimeout

pytest_plugins = ["pytester"]


@pytest.fixture
def app() -> Iterator[Celery]:
    with TestApp() as test_app:
        yield test_app


def test_unknown_keywords_are_refused_by_name(app: Celery) -> None:
    with pytest.raises(TypeError, match=r"unexpected keyword argument.*bogus") as caught:  # noqa: SIM117
        with start_worker(app, bogus=1):
            pass
    assert "perform_ping_check" in str(caught.value)  # says what it accepts


def test_celerys_worker_keywords_reach_the_worker(app: Celery) -> None:
    with start_worker(
        app,
        hostname="w9@example",
        queues=["alpha"],
        prefetch_multiplier=3,
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        perform_ping_check=False,
    ) as worker:
        assert worker.hostname == "w9@example"
        assert [q.name for q in worker.queues] == ["alpha"]
        assert worker.prefetch_limit == 3
        assert worker.heartbeat is False


def test_the_ping_check_proves_the_worker_runs(app: Celery) -> None:
    sent: list[str] = []
    from celeriac import signals

    def record(sender: object, **_: object) -> None:
        sent.append(str(sender))

    signals.before_task_publish.connect(record)
    try:
        with start_worker(app, perform_ping_check=True, ping_task_timeout=5.0):
            pass
        with start_worker(app, perform_ping_check=False):
            pass
    finally:
        signals.before_task_publish.disconnect(record)
    assert sent.count("celery.ping") == 1


def test_a_worker_that_never_answers_the_ping_fails_within_ping_task_timeout(
    app: Celery,
) -> None:
    with (
        pytest.raises(ResultTimeout),
        start_worker(app, queues=["elsewhere"], ping_task_timeout=0.5),
    ):
        pass


def test_shutdown_timeout_bounds_the_wait_for_running_tasks(app: Celery) -> None:
    release = threading.Event()

    @app.task
    def stuck() -> None:
        release.wait(30)

    try:
        with pytest.raises(RuntimeError, match="shutdown_timeout"):  # noqa: SIM117
            with start_worker(app, pool="threads", shutdown_timeout=0.5):
                stuck.delay()
                for _ in range(50):  # until it runs, so that stopping must wait for it
                    if any(app.control.inspect(timeout=0.2).active().values()):
                        break
    finally:
        release.set()


def test_logfile_and_loglevel(app: Celery, tmp_path: Path) -> None:
    logfile = tmp_path / "worker.log"

    @app.task
    def chatty() -> None:
        logging.getLogger("celeriac.test").info("hello from the task")
        logging.getLogger("celeriac.test").debug("too fine to see")

    with start_worker(app, loglevel="INFO", logfile=str(logfile)):
        chatty.delay().get(timeout=10)
    text = logfile.read_text()
    assert "hello from the task" in text
    assert "too fine to see" not in text
    with pytest.raises(ValueError, match="not a logging level"):  # noqa: SIM117
        with start_worker(app, loglevel="LOUD"):
            pass


def test_the_plugin_is_opt_in_and_its_clock_fixture_moves_time(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_clocked="""
        def test_countdown(celery_app, celery_worker, celery_clock):
            @celery_app.task
            def later():
                return "ran"

            result = later.apply_async(countdown=7 * 86400)
            celery_clock.advance(7 * 86400)
            assert result.get(timeout=10) == "ran"
        """
    )
    off = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    off.assert_outcomes(errors=1)  # no celery_app fixture unless the plugin is enabled
    pytester.makeini("[pytest]\nceleriac_plugin = true\n")
    on = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    on.assert_outcomes(passed=1)
