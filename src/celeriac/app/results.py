"""The app's result store: Celery's result meta on top of a ``ResultBackend``.

Builds each task's meta in Celery's layout (wire.md §3.2), encodes it with
``result_serializer`` and keeps it for ``result_expires``; decodes it back, turning encoded
exceptions into exception objects. Backends only ever see bytes.
"""

from __future__ import annotations

import traceback as tb_module
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from celeriac import states
from celeriac.app._result_retry import retrying
from celeriac.app.settings import as_seconds
from celeriac.backends.base import ResultBackend
from celeriac.exceptions import (
    ContentDisallowed,
    DecodeError,
    ImproperlyConfigured,
    TaskRevokedError,
)
from celeriac.protocol.compression import compress_result, decompress_result
from celeriac.protocol.result_meta import (
    build_meta,
    decode_exception,
    decode_meta,
    encode_exception,
    encode_meta,
)
from celeriac.request import Context

if TYPE_CHECKING:
    from celeriac._app_protocol import AppLike

__all__ = ["ResultStore"]

_PENDING: dict[str, Any] = {
    "status": states.PENDING,
    "result": None,
    "traceback": None,
    "children": [],
    "date_done": None,
}


def _children(request: Context | None) -> list[Any]:
    """The tasks sent by this one, as Celery stores them: ``[[id, None], None]`` per task
    (``request.children`` holds ids) and ``[[group_id, None], [members]]`` per group
    (it holds the group's tuple)."""
    if request is None:
        return []
    return [
        child if isinstance(child, (list, tuple)) else [[child, None], None]
        for child in request.children
    ]


class ResultStore:
    """Stores and reads task meta for one app."""

    def __init__(self, app: AppLike, backend: Callable[[], ResultBackend | None]) -> None:
        self._app = app
        self._backend = backend

    @property
    def backend(self) -> ResultBackend:
        backend = self._backend()
        if backend is None:
            raise ImproperlyConfigured(
                "No result backend is configured: set result_backend (e.g. "
                "Celery(..., backend='sqlite:///celeriac.sqlite') or 'redis://...') to store "
                "and read task results."
            )
        return backend

    @property
    def enabled(self) -> bool:
        return self._backend() is not None

    @property
    def readable(self) -> bool:
        """Whether stored results can be read back here: a backend that keeps them (with
        rpc:// only the client that sent a task receives its result)."""
        backend = self._backend()
        return backend is not None and backend.capabilities.stores_results

    @property
    def serializer(self) -> str:
        return str(self._app.conf.result_serializer)

    @property
    def accept(self) -> list[str]:
        """What stored results may be decoded as: ``result_accept_content``, defaulting to
        ``accept_content`` (as Celery)."""
        conf = self._app.conf
        chosen = conf.result_accept_content
        return list(conf.accept_content if chosen is None else chosen)

    #: The setting a refusal names.
    ACCEPT_SETTING = "result_accept_content (which defaults to accept_content)"

    # -- writing ----------------------------------------------------------------------------

    def store(
        self,
        task_id: str,
        state: str,
        result: Any,
        *,
        request: Context | None = None,
        traceback: str | None = None,
        reply_to: str | None = None,
    ) -> None:
        """Store ``state`` with ``result`` (an exception for failure states).

        Through an outage of the store, retried per ``result_backend_always_retry``
        (``celeriac.app._result_retry``): this blocks until the store answers.

        ``reply_to`` (default: the request's) is where a message-based backend (rpc://)
        sends it: the queue the task's sender named.
        """
        if self.serializer != "pickle" and _is_result(result):
            result = result.as_tuple()  # a task returning a result: kept as its tuple (Celery)
        if isinstance(result, BaseException):
            if traceback is None and result.__traceback__ is not None:
                traceback = "".join(tb_module.format_exception(result))
            result = encode_exception(result, serializer=self.serializer)
        conf = self._app.conf
        extended = None
        if request is not None and conf.result_extended:
            extended = {
                "name": request.task,
                "args": list(request.args),
                "kwargs": request.kwargs,
                "worker": request.hostname,
                "retries": request.retries,
                "queue": request.delivery_info.get("routing_key"),
            }
        meta = build_meta(
            task_id=task_id,
            status=state,
            result=result,
            traceback=traceback,
            children=_children(request),
            date_done=self._app.now() if state in states.READY_STATES else None,
            group_id=request.group if request is not None else None,
            parent_id=request.parent_id if request is not None else None,
            extended=extended,
        )
        ttl = as_seconds(conf.result_expires)
        if state == states.FAILURE and conf.result_failure_expires is not None:
            ttl = as_seconds(conf.result_failure_expires, setting="result_failure_expires")
        if reply_to is None and request is not None:
            reply_to = request.reply_to
        backend = self.backend  # first: making it validates the settings
        payload = self._encode(meta)
        retrying(
            self._app,
            backend,
            f"store the {state} state of task {task_id}",
            lambda: backend.store(
                task_id, payload, state=state, ttl=ttl or None, reply_to=reply_to
            ),
        )

    def _encode(self, meta: dict[str, Any]) -> bytes:
        """``meta`` serialized, and compressed in Celery's format with ``result_compression``."""
        payload = encode_meta(meta, self.serializer)
        compression = self._app.conf.result_compression
        return compress_result(payload, compression) if compression else payload

    def mark_as_revoked(self, task_id: str, reason: str = "revoked", request: Any = None) -> None:
        self.store(task_id, states.REVOKED, TaskRevokedError(reason), request=request)

    def log_revoked(self, task_ids: Sequence[str]) -> None:
        """Add revoked ids to the backend's revocation log, where it keeps one (kept as long
        as results, ``result_expires``), so workers that were down honour them too."""
        backend = self.backend
        if backend.capabilities.revocation_log:
            backend.log_revoked(task_ids, ttl=as_seconds(self._app.conf.result_expires) or None)

    # -- reading ----------------------------------------------------------------------------

    def decode(self, payload: bytes) -> dict[str, Any]:
        try:
            return decode_meta(
                decompress_result(payload),
                self.serializer,
                accept=self.accept,
                accept_setting=self.ACCEPT_SETTING,
            )
        except (DecodeError, ContentDisallowed):
            raise
        except Exception as exc:
            raise DecodeError(f"Stored result meta does not decode: {exc!r}") from exc

    def get_meta(self, task_id: str) -> dict[str, Any]:
        """The task's decoded meta; PENDING meta when nothing is stored."""
        payload = self.backend.fetch(task_id)
        if payload is None:
            return {**_PENDING, "task_id": task_id}
        return self.decode(payload)

    def is_ready_payload(self, payload: bytes) -> bool:
        return self.decode(payload).get("status") in states.READY_STATES

    def wait_for(
        self, task_id: str, *, timeout: float | None, interval: float = 0.5
    ) -> dict[str, Any]:
        """Block until the task is ready; its decoded meta."""
        found = self.backend.wait_for(
            [task_id], self.is_ready_payload, timeout=timeout, interval=interval
        )
        return self.decode(found[task_id])

    def value_of(self, meta: dict[str, Any]) -> Any:
        """The result of a meta: the value, or the exception object for exception states."""
        result = meta.get("result")
        exceptional = meta.get("status") in states.EXCEPTION_STATES
        if exceptional and isinstance(result, dict) and "exc_type" in result:
            return decode_exception(result, meta.get("traceback"))
        return result

    def forget(self, task_id: str) -> None:
        self.backend.forget(task_id)

    # -- groups -----------------------------------------------------------------------------

    def save_group(self, group_id: str, result_tuple: Any, *, ttl: float | None = None) -> None:
        """Store a group as Celery does: ``{"result": <GroupResult.as_tuple()>}``, for
        ``ttl`` seconds (default ``result_expires``)."""
        if ttl is None:
            ttl = as_seconds(self._app.conf.result_expires) or None
        payload = self._encode({"result": result_tuple})
        self.backend.save_group(group_id, payload, ttl=ttl)

    def restore_group(self, group_id: str) -> Any:
        """The tuple ``save_group`` stored for ``group_id``, or None."""
        payload = self.backend.fetch_group(group_id)
        if payload is None:
            return None
        return self.decode(payload).get("result")

    def forget_group(self, group_id: str) -> None:
        self.backend.forget_group(group_id)


def _is_result(value: Any) -> bool:
    """Whether ``value`` is an ``AsyncResult`` or a ``GroupResult``."""
    from celeriac.result import AsyncResult, GroupResult

    return isinstance(value, (AsyncResult, GroupResult))
