"""The Redis result backend, as Celery's: results that Celery clients and workers read as theirs.

URLs: ``redis://``, ``rediss://``, ``redis+socket://``, ``sentinel://`` (see
``celeriac._redis.connection``). Options (``result_backend_transport_options``):
``global_keyprefix`` (Celery adds ``_`` unless it ends in one of ``:_-.``), ``retry_policy``
(Celery's: max_retries 20, interval_start 0, interval_step 1, interval_max 1),
``master_name`` and ``sentinel_kwargs`` for Sentinel, ``max_connections``, ``socket_timeout``,
``socket_connect_timeout``, and ``redis_backend_use_ssl`` (Celery's setting of that name).

Keys (wire.md §3)::

    celery-task-meta-<task id>       STRING  the encoded meta; SETEX with result_expires,
                                             plain SET when results never expire
    celery-taskset-meta-<group id>   STRING  a saved group's meta (GroupResult.save)
    <counter key>                    STRING  ``incr`` counters (INCR, then EXPIRE)
    celeriac-revoked                 STREAM  the revocation log (Celeriac's own): entries
                                             ``id <task id> expires <unix time>``, trimmed
                                             by age (MINID) on every append
    Pub/Sub channel = the key name   every write of a meta is also PUBLISHed there

Atomic steps: ``store`` and ``save_group`` are one MULTI (SETEX + PUBLISH), ``incr`` one MULTI
(INCR + EXPIRE); the rest are single commands. ``wait_for`` never polls: it SUBSCRIBEs to the
channels of the results not yet ready, then reads them with MGET (a result written between
the two is seen either way), then waits for messages. Redis expires keys on its own, so
``cleanup`` has nothing to do.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from celeriac._redis.client import Connection, RedisError, pack
from celeriac._redis.connection import RedisConnector, RetryPolicy
from celeriac._time import Clock, system_clock
from celeriac.backends._redis_chord import RedisChordJoin
from celeriac.backends.base import BackendCapabilities, BaseKeyValueStoreBackend
from celeriac.exceptions import BackendError, TimeoutError

__all__ = ["RedisBackend"]

_CELERY_RETRY = RetryPolicy(max_retries=20, interval_start=0.0, interval_step=1.0, interval_max=1.0)
_READ_SLICE = 1.0  # longest single socket wait while a wait_for has no deadline
_IDLE_SUBSCRIBERS = 4  # connections kept for the next wait_for
_REVOKED_KEEP = 86400.0  # seconds a revocation is logged when no ttl is given


class RedisBackend(BaseKeyValueStoreBackend):
    """Task results in Redis, in Celery's keys and format (module docstring)."""

    #: Redis deletes expired keys itself; chords are joined in Celery 5.7's keys.
    capabilities = BackendCapabilities(
        notifies=True, expires_on_its_own=True, celery_chord_keys=True, revocation_log=True
    )

    def __init__(
        self, url: str, *, options: Mapping[str, Any] | None = None, clock: Clock = system_clock
    ) -> None:
        opts = dict(options or {})
        self.connector = RedisConnector(
            url,
            opts,
            what="result backend",
            error=BackendError,
            retry=RetryPolicy.from_options(opts.get("retry_policy") or {}, _CELERY_RETRY),
            ssl_options=opts.get("redis_backend_use_ssl"),
        )
        prefix = str(opts.get("global_keyprefix") or "")
        if prefix and prefix[-1] not in ":_-.":
            prefix += "_"
        self.task_keyprefix = f"{prefix}celery-task-meta-"
        self.group_keyprefix = f"{prefix}celery-taskset-meta-"
        self.counter_keyprefix = prefix
        self.revoked_key = f"{prefix}celeriac-revoked"
        self._clock = clock
        self._idle: list[Connection] = []
        self._lock = threading.Lock()

    # -- writing and reading ----------------------------------------------------------------

    def _execute(self, doing: str, commands: list[tuple[Any, ...]], **options: Any) -> list[Any]:
        return self.connector.run(doing, lambda: self.connector.execute(commands, **options))

    def _set_and_publish(self, key: str, payload: bytes, ttl: float | None, doing: str) -> None:
        if not ttl:
            write: tuple[Any, ...] = ("SET", key, payload)
        elif float(ttl).is_integer():
            write = ("SETEX", key, int(ttl), payload)
        else:
            write = ("PSETEX", key, max(1, int(ttl * 1000)), payload)
        self._execute(doing, [write, ("PUBLISH", key, payload)], transaction=True)

    def exception_safe_to_retry(self, exc: BaseException) -> bool:
        """Connection lost or refused, timeouts, a replica or a loading server: the
        connector's own retries gave up, but the server may well come back."""
        cause = exc.__cause__
        return (
            isinstance(exc, BackendError)
            and cause is not None
            and RedisConnector.is_retryable(cause)
        )

    def store(
        self,
        task_id: str,
        payload: bytes,
        *,
        state: str,
        ttl: float | None,
        reply_to: str | None = None,
    ) -> None:
        key = self.task_keyprefix + task_id
        self._set_and_publish(key, payload, ttl, f"store the result of task {task_id}")

    def fetch(self, task_id: str) -> bytes | None:
        key = self.task_keyprefix + task_id
        [value] = self._execute(f"read the result of task {task_id}", [("GET", key)])
        return None if value is None else bytes(value)

    def fetch_many(self, task_ids: Sequence[str]) -> dict[str, bytes]:
        ids = list(dict.fromkeys(task_ids))
        if not ids:
            return {}
        keys = [self.task_keyprefix + task_id for task_id in ids]
        [values] = self._execute(f"read {len(ids)} results", [("MGET", *keys)])
        return {tid: bytes(v) for tid, v in zip(ids, values, strict=True) if v is not None}

    def forget(self, task_id: str) -> None:
        self._execute(f"forget task {task_id}", [("DEL", self.task_keyprefix + task_id)])

    def save_group(self, group_id: str, payload: bytes, *, ttl: float | None) -> None:
        key = self.group_keyprefix + group_id
        self._set_and_publish(key, payload, ttl, f"store group {group_id}")

    def fetch_group(self, group_id: str) -> bytes | None:
        key = self.group_keyprefix + group_id
        [value] = self._execute(f"read group {group_id}", [("GET", key)])
        return None if value is None else bytes(value)

    def forget_group(self, group_id: str) -> None:
        self._execute(f"forget group {group_id}", [("DEL", self.group_keyprefix + group_id)])

    def incr(self, key: str, *, ttl: float | None) -> int:
        name = self.counter_keyprefix + key
        commands: list[tuple[Any, ...]] = [("INCR", name)]
        if ttl:
            commands.append(("PEXPIRE", name, max(1, int(ttl * 1000))))
        replies = self._execute(f"increment counter {key}", commands, transaction=True)
        return int(replies[0])

    def log_revoked(self, task_ids: Sequence[str], *, ttl: float | None) -> None:
        keep = float(ttl or _REVOKED_KEEP)
        now = self._clock.time()
        oldest = f"{max(0, int((now - keep) * 1000))}-0"
        expires = repr(now + keep)
        key = self.revoked_key
        commands: list[tuple[Any, ...]] = [
            ("XADD", key, "MINID", "~", oldest, "*", "id", task_id, "expires", expires)
            for task_id in task_ids
        ]
        commands.append(("PEXPIRE", key, max(1, int(keep * 1000))))
        self._execute("log revoked tasks", commands, transaction=True)

    def revoked_since(self, cursor: str | None) -> tuple[list[str], str]:
        start = "-"
        if cursor:
            ms, _, seq = cursor.partition("-")
            start = f"{ms}-{int(seq or 0) + 1}"  # just after the cursor (no "(" before 6.2)
        [entries] = self._execute(
            "read the revocation log", [("XRANGE", self.revoked_key, start, "+")]
        )
        now = self._clock.time()
        ids: list[str] = []
        for entry_id, fields in entries or ():
            values = dict(zip(fields[::2], fields[1::2], strict=True))
            if float(values.get(b"expires", b"inf")) > now:
                ids.append(values[b"id"].decode())
            cursor = entry_id.decode()
        return ids, cursor or "0-0"

    def cleanup(self) -> int:
        return 0

    # -- waiting ----------------------------------------------------------------------------

    def wait_for(
        self,
        task_ids: Sequence[str],
        is_ready: Callable[[bytes], bool],
        *,
        timeout: float | None,
        interval: float = 0.5,
    ) -> dict[str, bytes]:
        wanted = list(dict.fromkeys(task_ids))
        deadline = None if timeout is None else time.monotonic() + timeout
        ready = {t: p for t, p in self.fetch_many(wanted).items() if is_ready(p)}
        attempt = 0
        while len(ready) < len(wanted):
            if deadline is not None and time.monotonic() >= deadline:
                pending = len(wanted) - len(ready)
                raise TimeoutError(
                    f"{pending} of {len(wanted)} results were not ready within {timeout} s"
                )
            pending_ids = [task_id for task_id in wanted if task_id not in ready]
            try:
                self._wait_subscribed(pending_ids, is_ready, ready, deadline)
            except RedisError as exc:
                # The connection dropped while waiting: resubscribe after a pause, as the
                # retry policy allows (the results already seen are kept).
                if (
                    not self.connector.is_retryable(exc)
                    or attempt >= self.connector.retry.max_retries
                ):
                    raise self.connector.describe(exc, "wait for results") from exc
                time.sleep(self.connector.retry.pause(attempt))
                attempt += 1
        return {task_id: ready[task_id] for task_id in wanted}

    def _wait_subscribed(
        self,
        task_ids: list[str],
        is_ready: Callable[[bytes], bool],
        ready: dict[str, bytes],
        deadline: float | None,
    ) -> None:
        """Subscribe, read what is stored, then take published results until all are ready."""
        channels = {(self.task_keyprefix + task_id).encode(): task_id for task_id in task_ids}
        conn = self._subscriber()
        healthy = False
        try:
            conn.send(pack(("SUBSCRIBE", *channels)))
            confirmed: set[bytes] = set()
            while len(confirmed) < len(channels):  # subscribed to all before reading values
                reply = self._read(conn, deadline)
                if reply is None:
                    healthy = True
                    return
                self._take_message(reply, channels, is_ready, ready)
                if reply[0] == b"subscribe" and reply[1] in channels:
                    confirmed.add(reply[1])
            rest = [t for t in task_ids if t not in ready]
            ready.update((t, p) for t, p in self.fetch_many(rest).items() if is_ready(p))
            while any(task_id not in ready for task_id in task_ids):
                reply = self._read(conn, deadline)
                if reply is None:
                    break
                self._take_message(reply, channels, is_ready, ready)
            healthy = True
        finally:
            self._release(conn, healthy)

    @staticmethod
    def _take_message(
        reply: list[Any],
        channels: dict[bytes, str],
        is_ready: Callable[[bytes], bool],
        ready: dict[str, bytes],
    ) -> None:
        if reply[0] == b"message" and reply[1] in channels and is_ready(bytes(reply[2])):
            ready[channels[reply[1]]] = bytes(reply[2])

    @staticmethod
    def _read(conn: Connection, deadline: float | None) -> list[Any] | None:
        """The next Pub/Sub reply, or None when ``deadline`` passes first."""
        while True:
            wait = _READ_SLICE if deadline is None else deadline - time.monotonic()
            if wait <= 0:
                return None
            if conn.can_read(min(wait, _READ_SLICE)):
                reply: list[Any] = conn.read()
                return reply

    def _subscriber(self) -> Connection:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        conn = self.connector.dedicated()
        self.connector.run("connect for results", conn.connect)
        return conn

    def _release(self, conn: Connection, healthy: bool) -> None:
        """Unsubscribe (no need to wait for the reply) and keep the connection for later."""
        if healthy:
            try:
                conn.send(pack(("UNSUBSCRIBE",)))
            except RedisError:
                healthy = False
        with self._lock:
            if healthy and len(self._idle) < _IDLE_SUBSCRIBERS:
                self._idle.append(conn)
                return
        conn.disconnect()

    def chord_join(self) -> RedisChordJoin:
        """Celery 5.7's native chord join on this backend's keys (see ``_redis_chord``)."""
        return RedisChordJoin(self.connector, self.group_keyprefix)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.disconnect()
        self.connector.close()
