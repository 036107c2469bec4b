"""Result backends in the Django project's own stores: ``result_backend='django-db'`` (the
``TaskResult`` and ``GroupResult`` models, django-celery-results' tables) and
``'django-cache'`` (a Django cache, ``cache_backend`` naming its alias, ``default`` if unset).

``django-db`` lays each meta out in the columns django-celery-results uses (the result,
args, kwargs and meta serialized as text with the result serializer, ``children``,
``group_id``, ``parent_id``, ``retries`` and ``queue`` in ``meta``), so the admin shows
them and rows written by django-celery-results read back. Rows do not expire on their own:
``cleanup`` (the ``celeriac.backend_cleanup`` task beat sends daily) deletes those done
more than ``result_expires`` ago, as django-celery-results does. ``incr`` locks its
``Counter`` row (``SELECT ... FOR UPDATE``) in one transaction. Database errors become
``BackendStoreError`` / ``BackendGetMetaError``. Both need Django set up (the worker's
fixup does it; a web process has it).
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from celeriac import states
from celeriac._time import Clock, system_clock
from celeriac.backends.base import BackendCapabilities, ResultBackend
from celeriac.exceptions import (
    BackendError,
    BackendGetMetaError,
    BackendStoreError,
    DecodeError,
    TimeoutError,
)
from celeriac.protocol.result_meta import decode_meta, encode_meta
from celeriac.protocol.serializers import content_type_of, dumps, loads

__all__ = ["DjangoCacheBackend", "DjangoDBBackend"]

_OPAQUE = "application/x-celeriac-payload"  # a payload that is not a meta, kept verbatim
_BINARY = ("pickle", "msgpack")
_FIRST_POLL = 0.005
_META_KEYS = ("group_id", "parent_id", "retries", "queue")


class _Text:
    """Values to and from django-celery-results' text columns."""

    def __init__(self, serializer: str) -> None:
        self.serializer = serializer
        self.content_type = content_type_of(serializer)
        self.encoding = "binary" if serializer in _BINARY else "utf-8"

    def dump(self, value: Any) -> str:
        body = dumps(value, self.serializer)[0]
        return base64.b64encode(body).decode() if self.encoding == "binary" else body.decode()

    def load(self, text: str | None, content_type: str | None = None) -> Any:
        if text is None:
            return None
        kind = content_type or self.content_type
        encoding = "binary" if kind in (content_type_of(s) for s in _BINARY) else "utf-8"
        body = base64.b64decode(text) if encoding == "binary" else text.encode()
        return loads(body, kind, encoding, accept=[kind])


def _poll(
    fetch_many: Callable[[Sequence[str]], dict[str, bytes]],
    clock: Clock,
    task_ids: Sequence[str],
    is_ready: Callable[[bytes], bool],
    timeout: float | None,
    interval: float,
) -> dict[str, bytes]:
    """``ResultBackend.wait_for`` by polling, from a few milliseconds up to ``interval``."""
    wanted = list(dict.fromkeys(task_ids))
    deadline = None if timeout is None else clock.monotonic() + timeout
    ready: dict[str, bytes] = {}
    delay = _FIRST_POLL
    while True:
        found = fetch_many([tid for tid in wanted if tid not in ready])
        ready.update((tid, payload) for tid, payload in found.items() if is_ready(payload))
        if len(ready) == len(wanted):
            return {tid: ready[tid] for tid in wanted}
        if deadline is not None and clock.monotonic() >= deadline:
            missing = len(wanted) - len(ready)
            raise TimeoutError(
                f"{missing} of {len(wanted)} results were not ready within {timeout} s"
            )
        pause = delay if deadline is None else min(delay, deadline - clock.monotonic())
        clock.sleep(max(pause, 0.0))
        delay = min(delay * 1.5, max(interval, _FIRST_POLL))


def _opaque(payload: bytes) -> dict[str, str]:
    raw = base64.b64encode(payload).decode()
    return {"result": raw, "content_type": _OPAQUE, "content_encoding": "binary"}


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    from django.utils import timezone

    if value is None or timezone.is_aware(value):
        return value
    aware: dt.datetime = timezone.make_aware(value)
    return aware


def _for_django(value: dt.datetime) -> dt.datetime:
    """An aware datetime as Django's ``USE_TZ`` wants it stored."""
    from django.conf import settings
    from django.utils import timezone

    return value if settings.USE_TZ else timezone.make_naive(value)


class DjangoDBBackend(ResultBackend):
    """Results in the Django database (module docstring)."""

    capabilities = BackendCapabilities()  # polls; cleanup deletes what expired

    def __init__(
        self, url: str, *, options: Mapping[str, Any] | None = None, clock: Clock = system_clock
    ) -> None:
        options = dict(options or {})
        self._text = _Text(str(options.get("result_serializer") or "json"))
        self._expires = options.get("result_expires")
        self._clock = clock

    @contextmanager
    def _db(self, error: type[BackendError], action: str) -> Iterator[None]:
        from django.db import DatabaseError

        try:
            yield
        except DatabaseError as exc:
            raise error(f"could not {action} in the Django database: {exc}") from exc

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._clock.time(), dt.UTC)

    # -- tasks ------------------------------------------------------------------------------

    def _columns(self, payload: bytes, state: str) -> dict[str, Any]:
        text = self._text
        try:
            meta = decode_meta(payload, text.serializer)
        except DecodeError:
            meta = None
        if meta is None or "status" not in meta:
            return {"status": state, **_opaque(payload), "meta": None}
        extra = {key: meta[key] for key in _META_KEYS if meta.get(key) is not None}
        columns = {
            "status": meta["status"],
            "result": text.dump(meta.get("result")),
            "content_type": text.content_type,
            "content_encoding": text.encoding,
            "traceback": meta.get("traceback"),
            "meta": text.dump({"children": meta.get("children") or [], **extra}),
            "task_name": meta.get("name"),
            "worker": meta.get("worker"),
            "task_args": text.dump(meta["args"]) if "args" in meta else None,
            "task_kwargs": text.dump(meta["kwargs"]) if "kwargs" in meta else None,
        }
        if meta["status"] == states.STARTED:
            columns["date_started"] = _for_django(self._now())
        return columns

    def store(
        self,
        task_id: str,
        payload: bytes,
        *,
        state: str,
        ttl: float | None,
        reply_to: str | None = None,
    ) -> None:
        from django.db import IntegrityError

        # lazy: Django models import only once Django's app registry is ready
        from celeriac.contrib.django.models import TaskResult

        columns = self._columns(payload, state)
        with self._db(BackendStoreError, f"store the result of task {task_id}"):
            try:
                TaskResult.objects.update_or_create(task_id=task_id, defaults=columns)
            except IntegrityError:  # created by another process meanwhile: update it
                TaskResult.objects.update_or_create(task_id=task_id, defaults=columns)

    def _payload(self, row: Any) -> bytes:
        if row.content_type == _OPAQUE:
            return base64.b64decode(row.result)
        text = self._text
        extra = text.load(row.meta, row.content_type) or {}
        status = row.status
        done = _aware(row.date_done) if status in states.READY_STATES else None
        meta: dict[str, Any] = {
            "status": status,
            "result": text.load(row.result, row.content_type),
            "traceback": row.traceback,
            "children": extra.get("children") or [],
            "date_done": None if done is None else done.astimezone(dt.UTC).isoformat(),
        }
        meta.update((key, extra[key]) for key in ("group_id", "parent_id") if key in extra)
        if row.task_name is not None or row.task_args is not None:
            meta.update(
                name=row.task_name,
                args=text.load(row.task_args, row.content_type),
                kwargs=text.load(row.task_kwargs, row.content_type),
                worker=row.worker,
                retries=extra.get("retries"),
                queue=extra.get("queue"),
            )
        meta["task_id"] = row.task_id
        return encode_meta(meta, text.serializer)

    def fetch(self, task_id: str) -> bytes | None:
        return self.fetch_many([task_id]).get(task_id)

    def fetch_many(self, task_ids: Sequence[str]) -> dict[str, bytes]:
        # lazy: Django models import only once Django's app registry is ready
        from celeriac.contrib.django.models import TaskResult

        ids = list(dict.fromkeys(task_ids))
        found: dict[str, bytes] = {}
        with self._db(BackendGetMetaError, "read results"):
            for start in range(0, len(ids), 500):
                for row in TaskResult.objects.filter(task_id__in=ids[start : start + 500]):
                    found[row.task_id] = self._payload(row)
        return found

    def wait_for(
        self,
        task_ids: Sequence[str],
        is_ready: Callable[[bytes], bool],
        *,
        timeout: float | None,
        interval: float = 0.5,
    ) -> dict[str, bytes]:
        return _poll(self.fetch_many, self._clock, task_ids, is_ready, timeout, interval)

    def forget(self, task_id: str) -> None:
        # lazy: Django models import only once Django's app registry is ready
        from celeriac.contrib.django.models import TaskResult

        with self._db(BackendError, f"forget task {task_id}"):
            TaskResult.objects.filter(task_id=task_id).delete()

    # -- groups, counters, cleanup ----------------------------------------------------------

    def save_group(self, group_id: str, payload: bytes, *, ttl: float | None) -> None:
        # lazy: Django models import only once Django's app registry is ready
        from celeriac.contrib.django.models import GroupResult

        text = self._text
        try:
            value = decode_meta(payload, text.serializer)["result"]
        except (DecodeError, KeyError):
            columns = _opaque(payload)
        else:
            columns = {
                "result": text.dump(value),
                "content_type": text.content_type,
                "content_encoding": text.encoding,
            }
        with self._db(BackendStoreError, f"store group {group_id}"):
            GroupResult.objects.update_or_create(group_id=group_id, defaults=columns)

    def fetch_group(self, group_id: str) -> bytes | None:
        # lazy: Django models import only once Django's app registry is ready
        from celeriac.contrib.django.models import GroupResult

        with self._db(BackendGetMetaError, f"read group {group_id}"):
            row = GroupResult.objects.filter(group_id=group_id).first()
        if row is None:
            return None
        if row.content_type == _OPAQUE:
            return base64.b64decode(row.result)
        value = self._text.load(row.result, row.content_type)
        return encode_meta({"result": value}, self._text.serializer)

    def forget_group(self, group_id: str) -> None:
        # lazy: Django models import only once Django's app registry is ready
        from celeriac.contrib.django.models import GroupResult

        with self._db(BackendError, f"forget group {group_id}"):
            GroupResult.objects.filter(group_id=group_id).delete()

    def incr(self, key: str, *, ttl: float | None) -> int:
        from django.db import transaction

        # lazy: Django models import only once Django's app registry is ready
        from celeriac.contrib.django.models import Counter

        now = self._clock.time()
        with self._db(BackendStoreError, f"increment counter {key}"), transaction.atomic():
            Counter.objects.get_or_create(key=key, defaults={"value": 0})
            row = Counter.objects.select_for_update().get(key=key)
            expired = row.expires_at is not None and row.expires_at <= now
            row.value = 1 if expired else row.value + 1
            row.expires_at = None if ttl is None else now + ttl
            row.save(update_fields=["value", "expires_at"])
            return int(row.value)

    def cleanup(self) -> int:
        # lazy: Django models import only once Django's app registry is ready
        from celeriac.contrib.django.models import Counter, GroupResult, TaskResult

        removed: int = 0
        with self._db(BackendError, "delete expired results"):
            if self._expires:
                cutoff = _for_django(self._now() - dt.timedelta(seconds=float(self._expires)))
                done = TaskResult.objects.filter(
                    status__in=states.READY_STATES, date_done__lt=cutoff
                )
                removed += int(done.delete()[0])
                removed += int(GroupResult.objects.filter(date_done__lt=cutoff).delete()[0])
            expired = Counter.objects.filter(expires_at__lte=self._clock.time())
            removed += int(expired.delete()[0])
        return removed

    def close(self) -> None:
        return None  # Django owns the connections (the fixup closes old ones)


class DjangoCacheBackend(ResultBackend):
    """Results in a Django cache, under Celery's keys (``celery-task-meta-<id>``)."""

    capabilities = BackendCapabilities(expires_on_its_own=True)  # the cache expires entries

    def __init__(
        self, url: str, *, options: Mapping[str, Any] | None = None, clock: Clock = system_clock
    ) -> None:
        self._alias = str((options or {}).get("cache_backend") or "default")
        self._clock = clock

    @property
    def _cache(self) -> Any:
        from django.core.cache import caches

        return caches[self._alias]

    def store(
        self,
        task_id: str,
        payload: bytes,
        *,
        state: str,
        ttl: float | None,
        reply_to: str | None = None,
    ) -> None:
        self._cache.set(f"celery-task-meta-{task_id}", payload, ttl)

    def fetch(self, task_id: str) -> bytes | None:
        value = self._cache.get(f"celery-task-meta-{task_id}")
        return None if value is None else bytes(value)

    def fetch_many(self, task_ids: Sequence[str]) -> dict[str, bytes]:
        keys = {f"celery-task-meta-{tid}": tid for tid in task_ids}
        return {keys[key]: bytes(value) for key, value in self._cache.get_many(list(keys)).items()}

    def wait_for(
        self,
        task_ids: Sequence[str],
        is_ready: Callable[[bytes], bool],
        *,
        timeout: float | None,
        interval: float = 0.5,
    ) -> dict[str, bytes]:
        return _poll(self.fetch_many, self._clock, task_ids, is_ready, timeout, interval)

    def forget(self, task_id: str) -> None:
        self._cache.delete(f"celery-task-meta-{task_id}")

    def save_group(self, group_id: str, payload: bytes, *, ttl: float | None) -> None:
        self._cache.set(f"celery-taskset-meta-{group_id}", payload, ttl)

    def fetch_group(self, group_id: str) -> bytes | None:
        value = self._cache.get(f"celery-taskset-meta-{group_id}")
        return None if value is None else bytes(value)

    def forget_group(self, group_id: str) -> None:
        self._cache.delete(f"celery-taskset-meta-{group_id}")

    def incr(self, key: str, *, ttl: float | None) -> int:
        """The cache's own ``incr`` (atomic in Redis, Memcached and the local-memory cache)."""
        cache = self._cache
        if cache.add(key, 1, ttl):
            return 1
        try:
            value: int = int(cache.incr(key))
        except ValueError:  # expired between add and incr
            cache.add(key, 1, ttl)
            return 1
        cache.touch(key, ttl)
        return value

    def cleanup(self) -> int:
        return 0  # the cache expires entries itself

    def close(self) -> None:
        return None
