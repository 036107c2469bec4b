"""Test helpers that wait on a live cluster, at Celery's ``celery.contrib.testing.manager``.

``Manager(app)`` is what Celery's integration suite gets as its ``manager`` fixture:

* ``wait_for(fun, catch)`` calls ``fun`` until it stops raising one of ``catch`` (waits
  growing from ``interval_start`` by ``interval_step`` up to ``interval_max``, at most
  ``max_retries`` tries); ``ensure_not_for_a_while`` asserts that it keeps raising.
* ``join(result)`` waits for a result (or ``ResultSet``) and says what it still waits for.
* ``inspect()``, ``query_tasks(ids)``, ``query_task_states(ids)`` ask the workers;
  ``assert_received``/``assert_accepted`` wait until the workers report the tasks
  received (reserved or running) or accepted (running), ``wait_until_idle`` until no worker
  runs anything, ``assert_result_tasks_in_progress_or_completed`` until each result is
  STARTED or SUCCESS.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import Any, TextIO

from celeriac import states
from celeriac._result_set import ResultSet
from celeriac.app.base import Celery
from celeriac.exceptions import TimeoutError

__all__ = ["Manager", "ManagerMixin", "Sentinel"]


class Sentinel(Exception):
    """Raised by ``true_or_raise`` when the condition does not hold yet."""


def _humanize(seconds: float) -> str:
    return f"{seconds:.2f} seconds" if seconds else "now"


class ManagerMixin:
    """The helpers of ``Manager`` (module docstring), for classes that have an ``app``."""

    app: Celery

    def _init_manager(
        self,
        block_timeout: float = 30 * 60.0,
        no_join: bool = False,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.block_timeout = block_timeout
        self.no_join = no_join
        self.connerrors = self.app.connection().recoverable_connection_errors

    def remark(self, s: str, sep: str = "-") -> None:
        print(f"{sep}{s}", file=self.stdout)

    def warn(self, s: str) -> None:
        print(s, file=self.stderr)

    def missing_results(self, r: Iterable[Any]) -> list[str]:
        """The ids of the results in ``r`` that are not ready yet."""
        return [res.id for res in r if not res.ready()]

    def wait_for(
        self,
        fun: Callable[..., Any],
        catch: Sequence[type[BaseException]] | type[BaseException],
        desc: str = "thing",
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        errback: Callable[[BaseException, float, int], Any] | None = None,
        max_retries: int | None = 10,
        interval_start: float = 0.1,
        interval_step: float = 0.5,
        interval_max: float = 5.0,
        emit_warning: bool = False,
        **options: Any,
    ) -> Any:
        """``fun(*args, **kwargs)`` once it stops raising ``catch``; the last error when it
        still raises after ``max_retries`` retries (None: no limit)."""
        errors = tuple(catch) if isinstance(catch, Sequence) else (catch,)
        interval, tries = interval_start, 0
        while True:
            try:
                return fun(*args, **(kwargs or {}))
            except errors as exc:
                if max_retries is not None and tries >= max_retries:
                    raise
                if emit_warning:
                    self.warn(f"Waiting for {desc}: {exc!r}; retrying in {_humanize(interval)}")
                if errback is not None:
                    errback(exc, interval, tries)
                time.sleep(interval)
                tries += 1
                interval = min(interval + interval_step, interval_max)

    def ensure_not_for_a_while(
        self,
        fun: Callable[..., Any],
        catch: Sequence[type[BaseException]] | type[BaseException],
        desc: str = "thing",
        max_retries: int = 20,
        interval_start: float = 0.1,
        interval_step: float = 0.02,
        interval_max: float = 1.0,
        emit_warning: bool = False,
        **options: Any,
    ) -> None:
        """Assert that ``fun`` keeps raising ``catch`` for all of ``max_retries`` tries."""
        errors = tuple(catch) if isinstance(catch, Sequence) else (catch,)
        try:
            self.wait_for(
                fun,
                catch,
                desc=desc,
                max_retries=max_retries,
                interval_start=interval_start,
                interval_step=interval_step,
                interval_max=interval_max,
                emit_warning=emit_warning,
            )
        except errors:
            return
        raise AssertionError(f"Should not have happened: {desc}")

    def retry_over_time(self, *args: Any, **kwargs: Any) -> Any:
        return self.wait_for(*args, **kwargs)

    def join(self, r: Any, propagate: bool = False, max_retries: int = 10, **kwargs: Any) -> Any:
        """Wait for ``r`` (a result or ResultSet); its values. Reports what it still waits
        for at each timeout (``timeout`` per try, default 10 s), then raises TimeoutError."""
        if self.no_join:
            return None
        if not isinstance(r, ResultSet):
            r = ResultSet([r], app=self.app)
        kwargs.setdefault("timeout", 10.0)
        for attempt in range(max_retries):
            try:
                return r.get(propagate=propagate, **kwargs)
            except TimeoutError:
                waiting = self.missing_results(r)
                self.remark(f"Still waiting for {len(waiting)}/{len(r)}: {waiting} ({attempt})")
        raise TimeoutError(f"join: still waiting for {self.missing_results(r)}")

    def inspect(self, timeout: float = 3.0) -> Any:
        return self.app.control.inspect(timeout=timeout)

    def query_tasks(self, ids: Sequence[str], timeout: float = 0.5) -> Iterator[Any]:
        """``(node, {task id: [state, request]})`` of each worker that knows one of ``ids``."""
        replies = self.inspect(timeout).query_task(*ids) or {}
        yield from replies.items()

    def query_task_states(self, ids: Sequence[str], timeout: float = 0.5) -> dict[str, set[str]]:
        """``{state: {task ids}}`` as the workers report them (active, reserved, scheduled)."""
        found: dict[str, set[str]] = defaultdict(set)
        for _, reply in self.query_tasks(ids, timeout=timeout):
            for task_id, (state, _) in reply.items():
                found[state].add(task_id)
        return found

    def assert_accepted(
        self,
        ids: Sequence[str],
        interval: float = 0.5,
        desc: str = "waiting for tasks to be accepted",
        **policy: Any,
    ) -> Any:
        return self.assert_task_worker_state(
            self.is_accepted, ids, interval=interval, desc=desc, **policy
        )

    def assert_received(
        self,
        ids: Sequence[str],
        interval: float = 0.5,
        desc: str = "waiting for tasks to be received",
        **policy: Any,
    ) -> Any:
        return self.assert_task_worker_state(
            self.is_received, ids, interval=interval, desc=desc, **policy
        )

    def assert_result_tasks_in_progress_or_completed(
        self,
        async_results: Sequence[Any],
        interval: float = 0.5,
        desc: str = "waiting for tasks to be started or completed",
        **policy: Any,
    ) -> Any:
        return self.assert_task_state_from_result(
            self.is_result_task_in_progress,
            async_results,
            interval=interval,
            desc=desc,
            **policy,
        )

    def assert_task_state_from_result(
        self,
        fun: Callable[..., bool],
        results: Sequence[Any],
        interval: float = 0.5,
        **policy: Any,
    ) -> Any:
        check = partial(self.true_or_raise, fun, results, timeout=interval)
        return self.wait_for(check, (Sentinel,), **policy)

    @staticmethod
    def is_result_task_in_progress(results: Sequence[Any], **kwargs: Any) -> bool:
        return all(result.state in (states.STARTED, states.SUCCESS) for result in results)

    def assert_task_worker_state(
        self,
        fun: Callable[..., bool],
        ids: Sequence[str],
        interval: float = 0.5,
        **policy: Any,
    ) -> Any:
        check = partial(self.true_or_raise, fun, ids, timeout=interval)
        return self.wait_for(check, (Sentinel,), **policy)

    def is_received(self, ids: Sequence[str], **kwargs: Any) -> bool:
        return self._ids_matches_state(("reserved", "active", "scheduled", "ready"), ids, **kwargs)

    def is_accepted(self, ids: Sequence[str], **kwargs: Any) -> bool:
        return self._ids_matches_state(("active", "ready"), ids, **kwargs)

    def _ids_matches_state(
        self, expected: Sequence[str], ids: Sequence[str], timeout: float = 0.5
    ) -> bool:
        found = self.query_task_states(ids, timeout=timeout)
        return all(any(task_id in found[state] for state in expected) for task_id in ids)

    def true_or_raise(self, fun: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fun``'s result when truthy; else ``Sentinel`` is raised (for ``wait_for``)."""
        result = fun(*args, **kwargs)
        if not result:
            raise Sentinel()
        return result

    def wait_until_idle(self) -> None:
        """Wait until no worker reports a running task."""

        def idle() -> bool:
            active = self.inspect(timeout=1.0).active() or {}
            return all(not tasks for tasks in active.values())

        self.wait_for(partial(self.true_or_raise, idle), (Sentinel,), max_retries=None)


class Manager(ManagerMixin):
    """Celery's test manager for ``app`` (module docstring)."""

    def __init__(self, app: Celery, **kwargs: Any) -> None:
        self.app = app
        self._init_manager(**kwargs)
