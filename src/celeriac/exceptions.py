"""Every error Celeriac raises, in one tree.

Celery's public names and bases are kept, so ``except celery.exceptions.X`` code ports by
changing the import. Driver errors (sqlite3, redis, AMQP) never reach users: each transport
and result backend translates them here, with ``raise ... from exc``.

::

    Exception
    ├── CeleryError
    │   ├── ImproperlyConfigured ............ a setting or option is wrong (names it)
    │   ├── SecurityError ................... refused to decode something unsafe
    │   ├── BackendCapabilityError .......... the result backend cannot do that (names the
    │   │                                     capability; also NotImplementedError)
    │   ├── SerializationError
    │   │   ├── EncodeError ................. a value the serializer cannot encode
    │   │   ├── DecodeError ................. a body that does not decode
    │   │   └── ContentDisallowed ........... content type not in accept_content
    │   ├── OperationalError ................ the broker or store cannot be used
    │   │   ├── TransportError .............. broker unreachable or failed
    │   │   └── BackendError ................ result store unreachable or failed
    │   │       ├── BackendGetMetaError
    │   │       └── BackendStoreError
    │   ├── TaskPredicate ................... raised by tasks to steer the worker
    │   │   ├── Retry
    │   │   ├── Ignore
    │   │   └── Reject
    │   └── TaskError
    │       ├── NotRegistered (also KeyError)
    │       ├── AlreadyRegistered
    │       ├── QueueNotFound (also KeyError)
    │       ├── TimeoutError ................ a result did not become ready in time
    │       ├── MaxRetriesExceededError
    │       ├── TaskRevokedError
    │       ├── InvalidTaskError ............ a message that is not a valid task
    │       ├── ChordError
    │       └── RemoteError ................. stand-in for a task exception whose type
    │                                         cannot be imported here
    ├── WorkerLostError ..................... the process running a task died
    ├── TimeLimitExceeded
    └── SoftTimeLimitExceeded
    SystemExit
    ├── WorkerShutdown
    └── WorkerTerminate
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

__all__ = [
    "AlreadyRegistered",
    "BackendCapabilityError",
    "BackendError",
    "BackendGetMetaError",
    "BackendStoreError",
    "CeleryError",
    "CeleryWarning",
    "ChordError",
    "ContentDisallowed",
    "DecodeError",
    "EncodeError",
    "Ignore",
    "ImproperlyConfigured",
    "InvalidTaskError",
    "MaxRetriesExceededError",
    "NotRegistered",
    "OperationalError",
    "QueueNotFound",
    "Reject",
    "RemoteError",
    "Retry",
    "SecurityError",
    "SerializationError",
    "SoftTimeLimitExceeded",
    "TaskError",
    "TaskPredicate",
    "TaskRevokedError",
    "TimeLimitExceeded",
    "TimeoutError",
    "TransportError",
    "UnknownSettingWarning",
    "WorkerLostError",
    "WorkerShutdown",
    "WorkerTerminate",
]


class CeleryWarning(UserWarning):
    """Base of Celeriac's warnings."""


class UnknownSettingWarning(CeleryWarning):
    """A setting or task option name that Celeriac does not know (probably a typo)."""


class CeleryError(Exception):
    """Base of Celeriac's errors."""


class ImproperlyConfigured(CeleryError):
    """A setting, URL or option is wrong; the message names it and says what to do."""


class SecurityError(CeleryError):
    """Refused to load something unsafe (e.g. a non-exception class as a task error)."""


class BackendCapabilityError(NotImplementedError, CeleryError):
    """The result backend lacks a capability the call needs (``BackendCapabilities``).

    ``capability`` names the flag that is False; the message says what to use instead. A
    ``NotImplementedError`` too, as Celery raises for the same calls.
    """

    def __init__(self, message: str, capability: str = "") -> None:
        super().__init__(message)
        self.capability = capability

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.capability))


class SerializationError(CeleryError):
    """A body could not be encoded or decoded."""


class EncodeError(SerializationError):
    """A value could not be encoded by the chosen serializer."""


class DecodeError(SerializationError):
    """A body could not be decoded."""


class ContentDisallowed(SerializationError):
    """The message's content type is not in ``accept_content``."""


class OperationalError(CeleryError):
    """The broker or result store cannot be used right now."""


class TransportError(OperationalError):
    """The broker is unreachable or failed an operation."""


class BackendError(OperationalError):
    """The result store is unreachable or failed an operation."""


class BackendGetMetaError(BackendError):
    """Reading a task's result meta failed."""


class BackendStoreError(BackendError):
    """Storing a task's result meta failed."""


class TaskPredicate(CeleryError):
    """Raised by a task to tell the worker what to do with its message."""


class Retry(TaskPredicate):
    """The task is to be retried (raised by ``Task.retry``)."""

    def __init__(
        self,
        message: str | None = None,
        exc: BaseException | str | None = None,
        when: float | _dt.datetime | None = None,
        is_eager: bool = False,
        sig: Any = None,
        **kwargs: Any,
    ) -> None:
        self.message = message
        self.exc = exc
        self.when = when
        self.is_eager = is_eager
        self.sig = sig
        super().__init__(message, exc, when, **kwargs)

    def humanize(self) -> str:
        if isinstance(self.when, (int, float)):
            return f"in {self.when}s"
        return f"at {self.when}"

    def __str__(self) -> str:
        if self.message:
            return self.message
        if self.exc:
            return f"Retry {self.humanize()}: {self.exc!r}"
        return f"Retry {self.humanize()}"


class Ignore(TaskPredicate):
    """The task ends with no state stored and its message acknowledged."""


class Reject(TaskPredicate):
    """The message is rejected (requeued when ``requeue=True``, else dead-lettered)."""

    def __init__(self, reason: Any = None, requeue: bool = False) -> None:
        self.reason = reason
        self.requeue = requeue
        super().__init__(reason, requeue)


class TaskError(CeleryError):
    """A task-related error."""


class NotRegistered(KeyError, TaskError):
    """No task of that name is registered."""

    def __repr__(self) -> str:
        return f"NotRegistered({self.args[0]!r})" if self.args else "NotRegistered()"


class AlreadyRegistered(TaskError):
    """A task of that name is already registered."""


class QueueNotFound(KeyError, TaskError):
    """The queue is not defined and ``task_create_missing_queues`` is off."""


class TimeoutError(TaskError):
    """A result did not become ready within the timeout."""


class MaxRetriesExceededError(TaskError):
    """The task was retried more times than ``max_retries`` allows."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.task_args = kwargs.pop("task_args", [])
        self.task_kwargs = kwargs.pop("task_kwargs", {})
        super().__init__(*args, **kwargs)


class TaskRevokedError(TaskError):
    """The task was revoked (or expired) and did not run."""


class InvalidTaskError(TaskError):
    """A message that is not a valid task message."""


class ChordError(TaskError):
    """A member of a chord header failed, so the body cannot run."""


class RemoteError(TaskError):
    """Stand-in for a task's exception whose type cannot be imported on this side.

    Carries the original type's module and name, its message, and the remote traceback.
    """

    def __init__(
        self,
        exc_type: str,
        exc_module: str | None,
        exc_message: Any,
        traceback: str | None = None,
    ) -> None:
        self.exc_type = exc_type
        self.exc_module = exc_module
        self.exc_message = exc_message
        self.remote_traceback = traceback
        where = f"{exc_module}.{exc_type}" if exc_module else exc_type
        super().__init__(f"{where}: {exc_message!r}")


class WorkerLostError(Exception):
    """The process running the task exited prematurely."""


class TimeLimitExceeded(Exception):
    """The task's hard time limit was exceeded."""


class SoftTimeLimitExceeded(Exception):
    """The task's soft time limit was exceeded (raised inside the task)."""


class WorkerShutdown(SystemExit):
    """Raised to ask the worker to shut down warmly."""


class WorkerTerminate(SystemExit):
    """Raised to ask the worker to terminate at once."""
