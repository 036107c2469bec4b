"""``DjangoTask``: a task that can wait for the database transaction to commit before it
is sent (Celery 5.4's ``celery.contrib.django.task.DjangoTask``).

A task sent inside a transaction may run before the transaction commits and not see the
rows it was sent about; ``delay_on_commit`` sends it from ``transaction.on_commit``, so it
goes out only once they are visible, and not at all if the transaction rolls back. The
Django fixup makes this the default task class.
"""

from __future__ import annotations

import functools
from typing import Any, ParamSpec, TypeVar

from celeriac.task import Task

__all__ = ["DjangoTask"]

P = ParamSpec("P")
R = TypeVar("R")


class DjangoTask(Task[P, R]):
    """A ``Task`` with ``delay_on_commit`` and ``apply_async_on_commit``."""

    def delay_on_commit(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """``delay(*args, **kwargs)`` once the current transaction commits (at once
        outside a transaction). Returns None: no task id exists until then."""
        from django.db import transaction

        transaction.on_commit(functools.partial(self.delay, *args, **kwargs))

    def apply_async_on_commit(
        self, args: Any = None, kwargs: Any = None, *, using: str | None = None, **options: Any
    ) -> None:
        """``apply_async(args, kwargs, **options)`` once the transaction of the database
        ``using`` (default: the default database) commits."""
        from django.db import transaction

        send = functools.partial(self.apply_async, args, kwargs, **options)
        transaction.on_commit(send, using=using)
