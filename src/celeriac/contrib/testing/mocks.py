"""Task messages built by hand for tests, as Celery's ``celery.contrib.testing.mocks``.

``TaskMessage('tasks.add', args=(2, 2))`` is what a worker would receive for
``add.delay(2, 2)``: protocol v2 headers (``id``, ``task``, ``shadow`` and any other keyword
given), a JSON body ``[args, kwargs, embed]``, its ``payload`` decoded, and
``ack``/``reject``/``requeue`` that record what was done with it. ``.message`` is the same as
the ``celeriac.protocol.message.Message`` a transport carries, to publish or decode.
``task_message_from_sig(app, sig)`` builds one from a signature, freezing it first.
"""

from __future__ import annotations

import datetime as dt
import numbers
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from unittest.mock import Mock

from celeriac.protocol.message import Message
from celeriac.protocol.serializers import dumps

if TYPE_CHECKING:
    from celeriac.app.base import Celery
    from celeriac.canvas.signature import Signature

__all__ = ["ContextMock", "MockMessage", "TaskMessage", "TaskMessage1", "task_message_from_sig"]


class MockMessage:
    """A received task message: headers, encoded body, decoded payload, and what was done."""

    def __init__(self, headers: dict[str, Any], payload: Any, properties: dict[str, Any]):
        self.headers = headers
        self.payload = payload
        self.properties = properties
        self.delivery_info: dict[str, Any] = {"exchange": "", "routing_key": "celery"}
        self.body, self.content_type, self.content_encoding = dumps(payload, "json")
        self.acknowledged = self.rejected = self.requeued = False

    @property
    def message(self) -> Message:
        """This message as a transport carries it."""
        return Message(
            body=self.body,
            content_type=self.content_type,
            content_encoding=self.content_encoding,
            headers=dict(self.headers),
            properties=dict(self.properties),
        )

    def ack(self) -> None:
        self.acknowledged = True

    def reject(self, requeue: bool = False) -> None:
        self.rejected = True
        self.requeued = requeue

    def requeue(self) -> None:
        self.requeued = True

    def decode(self) -> Any:
        return self.payload

    def __repr__(self) -> str:
        return f"<TaskMessage {self.headers.get('task')}[{self.headers.get('id')}]>"


def TaskMessage(
    name: str,
    id: str | None = None,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    callbacks: list[dict[str, Any]] | None = None,
    errbacks: list[dict[str, Any]] | None = None,
    chain: list[dict[str, Any]] | None = None,
    shadow: str | None = None,
    utc: bool | None = None,
    **options: Any,
) -> MockMessage:
    """A protocol v2 message for task ``name``; extra keywords become headers (``eta``, ...).

    ``payload`` is ``(args, kwargs, embed)`` as given (``kwargs`` None unless given), as
    Celery's.
    """
    task_id = id or str(uuid.uuid4())
    headers: dict[str, Any] = {"id": task_id, "task": name, "shadow": shadow, **options}
    embed = {"callbacks": callbacks, "errbacks": errbacks, "chain": chain}
    return MockMessage(headers, (args, kwargs, embed), {"correlation_id": task_id})


def TaskMessage1(
    name: str,
    id: str | None = None,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    callbacks: list[dict[str, Any]] | None = None,
    errbacks: list[dict[str, Any]] | None = None,
    chain: list[dict[str, Any]] | None = None,
    **options: Any,
) -> MockMessage:
    """The same task as a protocol v1 message (the task's fields in the body)."""
    task_id = id or str(uuid.uuid4())
    body: dict[str, Any] = {
        "id": task_id,
        "task": name,
        "args": list(args),
        "kwargs": dict(kwargs or {}),
        "callbacks": callbacks,
        "errbacks": errbacks,
        "chain": chain,
        **options,
    }
    return MockMessage({}, body, {"correlation_id": task_id})


def task_message_from_sig(
    app: Celery, sig: Signature[Any], utc: bool = True, TaskMessage: Any = TaskMessage
) -> MockMessage:
    """The message ``sig.apply_async()`` would send (``countdown`` becomes ``eta``)."""
    sig.freeze()
    options = dict(sig.options)
    callbacks = options.pop("link", None)
    errbacks = options.pop("link_error", None)
    countdown = options.pop("countdown", None)
    eta = app.now() + dt.timedelta(seconds=countdown) if countdown else options.pop("eta", None)
    if isinstance(eta, dt.datetime):
        eta = eta.isoformat()
    expires = options.pop("expires", None)
    if isinstance(expires, numbers.Real):
        expires = app.now() + dt.timedelta(seconds=float(expires))
    if isinstance(expires, dt.datetime):
        expires = expires.isoformat()
    task_id = options.pop("task_id", None)
    options.pop("reply_to", None)
    message: MockMessage = TaskMessage(
        sig.task,
        id=task_id,
        args=sig.args,
        kwargs=sig.kwargs,
        callbacks=[dict(s) for s in _as_list(callbacks)] or None,
        errbacks=[dict(s) for s in _as_list(errbacks)] or None,
        eta=eta,
        expires=expires,
        utc=utc,
        **options,
    )
    return message


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


class _ContextMock(Mock):
    """A ``Mock`` that is also a context manager (``with ContextMock() as m``)."""

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


def ContextMock(*args: Any, **kwargs: Any) -> Mock:
    """Celery's ``ContextMock``: a Mock usable in a ``with`` statement."""
    return _ContextMock(*args, **kwargs)
