"""The result-backend interface: a small store of encoded task meta.

The store never interprets what it keeps: the app encodes each task's meta (Celery's layout,
wire.md §3.2) with the result serializer and hands the bytes in with the state, so a
backend can index by state without decoding. Groups are kept the same way, and an atomic
counter with expiry is all a chord needs. Waiting is the one place a backend must be clever:
``wait_for`` blocks by notification where the store can notify (Redis pub/sub) and by
bounded polling elsewhere.

What a backend can do it declares in one frozen ``BackendCapabilities`` (its class
attribute ``capabilities``); the app, the canvas and the worker read those flags and never
probe for methods. The defaults are what the abstract methods promise (results kept, with
expiry, groups, counters, chords); a backend turns on what it adds and off what it cannot
keep, and a call it cannot serve raises ``BackendCapabilityError`` naming the flag. Celery's
attribute names (``supports_native_join``, ``supports_autoexpire``, ``implements_incr``,
``ensure_chords_allowed``) are read-only views of the flags.

Errors: every method may raise ``BackendError`` (store unreachable or failed), translated
from the driver's exception. All methods are safe to call from any thread. ``store``,
``forget`` and ``save_group`` are idempotent. Only ``wait_for`` blocks beyond one round trip.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from celeriac import states
from celeriac.backends.chord import ChordJoin
from celeriac.exceptions import BackendCapabilityError, OperationalError

__all__ = ["BackendCapabilities", "BaseKeyValueStoreBackend", "ResultBackend", "states"]

_STORING = "Use a result backend that stores results (sqlite:///..., redis://...)."
_NO_LOG = "Workers look up the stored state of each task they take instead."


@dataclass(frozen=True, slots=True)
class BackendCapabilities:
    """What a result backend can do; the app, canvas and worker adapt to these flags."""

    #: Any client reads results back. False: each result is a message to the client that
    #: sent the task, and nothing is kept (rpc).
    stores_results: bool = True
    #: ``wait_for`` is woken by the store, not by polling.
    notifies: bool = False
    #: An entry stored with a ``ttl`` reads as absent once that passed.
    expiry: bool = True
    #: The store drops expired entries itself: ``cleanup`` has nothing to do, returns 0.
    expires_on_its_own: bool = False
    #: ``save_group``, ``fetch_group``, ``forget_group`` work.
    groups: bool = True
    #: ``incr`` works.
    counters: bool = True
    #: A chord's header members can meet here: in ``chord_join()``'s join, or by counters
    #: (which need ``groups`` and ``counters``).
    chords: bool = True
    #: ``chord_join()`` keeps each chord in Celery's own keys, where Celery's workers join
    #: it too; the client then saves no header GroupResult, as Celery's does there.
    celery_chord_keys: bool = False
    #: ``log_revoked`` and ``revoked_since`` work.
    revocation_log: bool = False


class _AppResults(Protocol):
    """What the Celery-named methods need of the app (``celeriac.app.results.ResultStore``)."""

    def store(
        self,
        task_id: str,
        state: str,
        result: Any,
        *,
        request: Any = None,
        traceback: str | None = None,
    ) -> None: ...
    def get_meta(self, task_id: str) -> dict[str, Any]: ...
    def value_of(self, meta: dict[str, Any]) -> Any: ...


class ResultBackend(ABC):
    """Where task results and states are kept."""

    #: What this backend can do (module docstring); each implementation declares its own.
    capabilities: BackendCapabilities = BackendCapabilities()

    #: The app's encoder and decoder of task meta, set when an app makes this backend; the
    #: Celery-named methods below (``store_result``, ``get_task_meta``...) go through it.
    app_results: _AppResults | None = None

    #: The queue this backend's client receives results on (rpc); producers put it in the
    #: message's ``reply_to`` property. None for backends that store results.
    reply_to: str | None = None

    def exception_safe_to_retry(self, exc: BaseException) -> bool:
        """Whether an error raised by a method means "the store could not be reached, try
        again later" (Celery's name), so ``result_backend_always_retry`` retries it."""
        return isinstance(exc, OperationalError)

    @abstractmethod
    def store(
        self,
        task_id: str,
        payload: bytes,
        *,
        state: str,
        ttl: float | None,
        reply_to: str | None = None,
    ) -> None:
        """Keep ``payload`` as the meta of ``task_id``, replacing any before.

        ``ttl`` seconds until it expires (None: never). ``reply_to`` is the queue a sender
        named for its results (the task message's ``reply_to``); only message-based backends
        use it.
        """

    @abstractmethod
    def fetch(self, task_id: str) -> bytes | None:
        """The stored meta of ``task_id``, or None when there is none (PENDING) or it expired."""

    @abstractmethod
    def fetch_many(self, task_ids: Sequence[str]) -> dict[str, bytes]:
        """The stored meta of each id that has one."""

    @abstractmethod
    def wait_for(
        self,
        task_ids: Sequence[str],
        is_ready: Callable[[bytes], bool],
        *,
        timeout: float | None,
        interval: float = 0.5,
    ) -> dict[str, bytes]:
        """Block until every id's stored meta satisfies ``is_ready``; return them all.

        ``interval`` bounds the polling period of backends that poll. Raises
        ``celeriac.exceptions.TimeoutError`` when ``timeout`` seconds pass first.
        """

    @abstractmethod
    def forget(self, task_id: str) -> None:
        """Delete the meta of ``task_id``."""

    @abstractmethod
    def save_group(self, group_id: str, payload: bytes, *, ttl: float | None) -> None:
        """Keep a group's meta (the list of its members' ids). This and the two group calls
        below raise ``BackendCapabilityError`` without ``capabilities.groups``."""

    @abstractmethod
    def fetch_group(self, group_id: str) -> bytes | None:
        """A group's stored meta, or None."""

    @abstractmethod
    def forget_group(self, group_id: str) -> None:
        """Delete a group's meta."""

    @abstractmethod
    def incr(self, key: str, *, ttl: float | None) -> int:
        """Atomically add one to the counter ``key`` (created at 0) and return the new value.

        Each call sets the counter's expiry to ``ttl`` seconds from now. Raises
        ``BackendCapabilityError`` without ``capabilities.counters``.
        """

    def log_revoked(self, task_ids: Sequence[str], *, ttl: float | None) -> None:
        """Append ``task_ids`` to the revocation log, each kept ``ttl`` seconds (None: the
        backend's longest). Only with ``capabilities.revocation_log``: workers then read
        revocations as they are logged instead of looking up every message's state."""
        raise self.lacks("revocation_log", "log revocations", _NO_LOG)

    def revoked_since(self, cursor: str | None) -> tuple[list[str], str]:
        """The ids logged after ``cursor`` (None: every live entry) in log order, and the
        cursor to pass next time. Only with ``capabilities.revocation_log``."""
        raise self.lacks("revocation_log", "read a revocation log", _NO_LOG)

    def chord_join(self) -> ChordJoin | None:
        """This backend's own chord join (``celeriac.backends.chord``), or None: the canvas
        then joins chords with counters (``incr`` and ``fetch_many``). Raises
        ``BackendCapabilityError`` without ``capabilities.chords``."""
        self.ensure_chords_allowed()
        return None

    def ensure_chords_allowed(self) -> None:
        """Raise ``BackendCapabilityError`` (a ``NotImplementedError``, Celery's error) when
        this backend cannot join a chord (``capabilities.chords`` is False)."""
        if not self.capabilities.chords:
            raise self.lacks("chords", "join a chord", _STORING)

    def lacks(self, capability: str, doing: str, instead: str) -> BackendCapabilityError:
        """The error for a call this backend cannot serve: it names what the call was
        ``doing``, the ``capability`` flag that is False, and what to do ``instead``."""
        return BackendCapabilityError(
            f"{type(self).__name__} cannot {doing}: it lacks the {capability!r} capability "
            f"(BackendCapabilities.{capability} is False). {instead}",
            capability,
        )

    # -- Celery's names for these flags, read-only ------------------------------------------

    @property
    def notifies(self) -> bool:
        """``capabilities.notifies``."""
        return self.capabilities.notifies

    @property
    def sends_results(self) -> bool:
        """Not ``capabilities.stores_results``: results go to the sending client only."""
        return not self.capabilities.stores_results

    @property
    def logs_revocations(self) -> bool:
        """``capabilities.revocation_log``."""
        return self.capabilities.revocation_log

    @property
    def supports_native_join(self) -> bool:
        """Celery's name: many results are read in one call (``fetch_many``, which every
        backend has), so ``ResultSet.join_native`` works everywhere."""
        return True

    @property
    def supports_autoexpire(self) -> bool:
        """Celery's name for ``capabilities.expires_on_its_own``."""
        return self.capabilities.expires_on_its_own

    @property
    def implements_incr(self) -> bool:
        """Celery's name for ``capabilities.counters``."""
        return self.capabilities.counters

    # -- Celery's Backend methods, for code written against them (``app.backend``) ----------

    def _app_results(self) -> _AppResults:
        if self.app_results is None:
            raise RuntimeError(f"{type(self).__name__} was made outside an app: no serializer")
        return self.app_results

    def store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: str | None = None,
        request: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Store ``state`` with ``result`` (an exception for failure states), as Celery's."""
        self._app_results().store(task_id, state, result, request=request, traceback=traceback)
        return result

    def get_task_meta(self, task_id: str, cache: bool = True) -> dict[str, Any]:
        """The decoded meta of ``task_id`` (PENDING meta when nothing is stored)."""
        return self._app_results().get_meta(task_id)

    def get_state(self, task_id: str) -> str:
        """The state of ``task_id`` (``PENDING`` when nothing is stored)."""
        return str(self.get_task_meta(task_id)["status"])

    get_status = get_state

    def get_result(self, task_id: str) -> Any:
        """The result of ``task_id``: its value, or its exception for failure states."""
        results = self._app_results()
        return results.value_of(results.get_meta(task_id))

    @abstractmethod
    def cleanup(self) -> int:
        """Delete expired entries now; return how many. Stores that expire on their own return 0."""

    @abstractmethod
    def close(self) -> None:
        """Release connections. Idempotent."""


class BaseKeyValueStoreBackend(ResultBackend, ABC):
    """The backends that keep each task's meta under a key (Redis, memory), as in Celery.

    Celery's key-value backends share this base class and code written for Celery tests it
    with ``isinstance``; it adds nothing to ``ResultBackend``.
    """
