"""Beat's schedule in the Django database: periodic tasks edited in the admin.

``beat_scheduler = 'celeriac.contrib.django.schedulers:DatabaseScheduler'`` (also
``'django'``, ``-S django``, and django-celery-beat's
``'django_celery_beat.schedulers:DatabaseScheduler'``) makes ``celeriac beat`` keep its
schedule here: ``DatabaseScheduler.open(app)`` gives beat's usual scheduler a
``DjangoScheduleStore`` and a ``DjangoLease``, so it runs as it does on any store — one
beat leads and sends, the others stand by, fencing tokens keep a deposed leader from
sending, and each run is claimed in one transaction before it is sent.

The store's entries are the enabled ``PeriodicTask`` rows (plus ``beat_schedule``'s, which
beat merges in), each turned into a stored definition: its schedule, task, args and kwargs
(JSON), and sending options (queue, exchange, routing key, priority, headers, and
``expire_seconds`` as ``expires``). A task past its ``expires`` or before its
``start_time`` counts as disabled; a one-off task is disabled in the transaction that
claims its run. Beat's own state (clock, claimed send, fence, version) lives in
``celeriac_beat_state``/``celeriac_beat_meta``; each claim also copies ``last_run_at`` and
``total_run_count`` to the ``PeriodicTask`` for the admin. ``version()`` combines
``PeriodicTasks.last_update`` (bumped by every admin edit) with the store's own, so edits
are seen within beat's ``poll_interval``, without a restart. Every write transaction first
locks the ``lock`` row of ``celeriac_beat_meta`` (``SELECT ... FOR UPDATE``), so the
store's read-check-write steps serialize across beats. Database errors become
``OperationalError``, which beat logs and retries.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from celeriac._time import Clock, system_clock
from celeriac.beat.lease import DEFAULT_LEASE_TTL, LeaderLease, LeaseState
from celeriac.beat.store import EntryState, Rows, RowStore
from celeriac.exceptions import ImproperlyConfigured, OperationalError

if TYPE_CHECKING:
    from celeriac.app.base import Celery

__all__ = ["DatabaseScheduler", "DjangoLease", "DjangoScheduleStore", "definition_of"]


@contextmanager
def _db(action: str) -> Iterator[None]:
    from django.db import DatabaseError, close_old_connections

    close_old_connections()  # a long-lived beat meets dropped connections: reconnect
    try:
        yield
    except DatabaseError as exc:
        raise OperationalError(f"could not {action} in the Django database: {exc}") from exc


def _timestamp(value: dt.datetime | None) -> float | None:
    if value is None:
        return None
    from django.utils import timezone

    aware = value if timezone.is_aware(value) else timezone.make_aware(value)
    return float(aware.timestamp())


def _schedule_of(task: Any) -> dict[str, Any]:
    if task.interval_id:
        return {"type": "interval", "every": task.interval.seconds}
    if task.crontab_id:
        cron = task.crontab
        fields = ("minute", "hour", "day_of_week", "day_of_month", "month_of_year")
        return {
            "type": "crontab",
            **{f: getattr(cron, f) for f in fields},
            "tz": str(cron.timezone),
        }
    if task.solar_id:
        solar = task.solar
        return {
            "type": "solar",
            "event": solar.event,
            "lat": float(solar.latitude),
            "lon": float(solar.longitude),
        }
    if task.clocked_id:
        at = _timestamp(task.clocked.clocked_time)
        assert at is not None
        return {"type": "clocked", "at": dt.datetime.fromtimestamp(at, dt.UTC).isoformat()}
    raise ValueError("it has no schedule (choose an interval, crontab, solar or clocked one)")


def definition_of(task: Any) -> dict[str, Any]:
    """The stored definition (``celeriac.periodic.entries.entry_from_definition``) of a
    ``PeriodicTask``; its JSON fields must be valid (the admin's form checks them)."""
    options: dict[str, Any] = {}
    for field in ("queue", "exchange", "routing_key", "priority"):
        value = getattr(task, field)
        if value not in (None, ""):
            options[field] = value
    headers = json.loads(task.headers or "{}")
    if headers:
        options["headers"] = headers
    if task.expire_seconds is not None:
        options["expires"] = task.expire_seconds
    return {
        "task": task.task,
        "schedule": _schedule_of(task),
        "args": json.loads(task.args or "[]"),
        "kwargs": json.loads(task.kwargs or "{}"),
        "options": options,
    }


def _enabled(task: Any, now: float) -> bool:
    expires, start = _timestamp(task.expires), _timestamp(task.start_time)
    live = (expires is None or now < expires) and (start is None or now >= start)
    return bool(task.enabled) and live


class _DjangoRows:
    """``celeriac.beat.store.Rows`` over the models, inside one locked transaction."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def get(self, name: str) -> EntryState | None:
        # lazy: Django models import only once Django's app registry is ready
        from celeriac.contrib.django.models import BeatState, PeriodicTask

        task = PeriodicTask.objects.filter(name=name).first()
        state = BeatState.objects.filter(name=name).first()
        if task is None and state is None:
            return None
        return _entry_state(name, task, state, self._clock.time())

    def put(self, state: EntryState) -> None:
        from django.utils import timezone

        # lazy: Django models import only once Django's app registry is ready
        from celeriac.contrib.django.models import BeatState, PeriodicTask

        old = BeatState.objects.filter(name=state.name).first()
        if (
            old is None
            and state.definition is not None
            and not PeriodicTask.objects.filter(name=state.name).exists()
        ):
            raise ImproperlyConfigured(
                f"cannot add {state.name!r} here: with the Django database scheduler, "
                "periodic tasks are added in the Django admin (or as PeriodicTask rows)"
            )
        fields = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
        for key in ("name", "definition", "enabled"):
            fields.pop(key)
        BeatState.objects.update_or_create(name=state.name, defaults=fields)
        ran = old is None or state.total_run_count > old.total_run_count
        if state.last_run_at is None or not ran:
            return
        shown = dt.datetime.fromtimestamp(state.last_run_at, dt.UTC)
        update: dict[str, Any] = {
            "last_run_at": shown
            if timezone.is_aware(timezone.now())
            else timezone.make_naive(shown),
            "total_run_count": state.total_run_count,
        }
        task = PeriodicTask.objects.filter(name=state.name)
        if state.pending_task_id is not None:  # a run was claimed: a one-off is done
            task.filter(one_off=True).update(enabled=False, **update)
        task.update(**update)  # .update(): no signal, so beat's own writes are not "edits"

    def delete(self, name: str) -> bool:
        # lazy: Django models import only once Django's app registry is ready
        from celeriac.contrib.django.models import BeatState, PeriodicTask

        deleted = PeriodicTask.objects.filter(name=name).delete()[0]
        return bool(deleted + BeatState.objects.filter(name=name).delete()[0])

    def meta(self, key: str) -> int:
        # lazy: Django models import only once Django's app registry is ready
        from celeriac.contrib.django.models import BeatMeta

        row = BeatMeta.objects.filter(key=key).first()
        return 0 if row is None else int(row.value)

    def set_meta(self, key: str, value: int) -> None:
        # lazy: Django models import only once Django's app registry is ready
        from celeriac.contrib.django.models import BeatMeta

        BeatMeta.objects.update_or_create(key=key, defaults={"value": value})


def _entry_state(name: str, task: Any, state: Any, now: float) -> EntryState:
    definition: Mapping[str, Any] | None = None
    enabled = True
    if task is not None:
        enabled = _enabled(task, now)
        try:
            definition = definition_of(task)
        except ValueError:
            enabled = False  # a row the admin left incomplete: nothing to send
    if state is None:
        return EntryState(name, definition, enabled)
    return EntryState(
        name,
        definition,
        enabled,
        state.fingerprint,
        state.last_run_at,
        state.total_run_count,
        state.run_requested,
        state.pending_task_id,
        state.pending_since,
    )


class DjangoScheduleStore(RowStore):
    """Beat's schedule store in the Django database (module docstring)."""

    def __init__(self, clock: Clock = system_clock) -> None:
        self._clock = clock
        # lazy: Django models import only once Django's app registry is ready
        from celeriac.contrib.django.models import BeatMeta

        with _db("prepare the schedule store"):
            BeatMeta.objects.get_or_create(key="lock", defaults={"value": 0})

    @contextmanager
    def transaction(self, action: str) -> Iterator[Rows]:
        from django.db import transaction

        # lazy: Django models import only once Django's app registry is ready
        from celeriac.contrib.django.models import BeatMeta

        with _db(action), transaction.atomic():
            BeatMeta.objects.select_for_update().get(key="lock")
            yield _DjangoRows(self._clock)

    def entries(self) -> dict[str, EntryState]:
        # lazy: Django models import only once Django's app registry is ready
        from celeriac.contrib.django.models import BeatState, PeriodicTask

        now = self._clock.time()
        with _db("read the schedule"):
            tasks = {
                t.name: t
                for t in PeriodicTask.objects.select_related(
                    "interval", "crontab", "solar", "clocked"
                )
            }
            states = {s.name: s for s in BeatState.objects.all()}
        names = set(tasks) | set(states)
        return {name: _entry_state(name, tasks.get(name), states.get(name), now) for name in names}

    def version(self) -> int:
        # lazy: Django models import only once Django's app registry is ready
        from celeriac.contrib.django.models import BeatMeta, PeriodicTasks

        with _db("read the schedule's version"):
            changed = PeriodicTasks.last_change()
            row = BeatMeta.objects.filter(key="version").first()
        edits = int((_timestamp(changed) or 0) * 1_000_000)
        return edits * 1000 + (0 if row is None else int(row.value) % 1000)


class DjangoLease(LeaderLease):
    """The leader lease in the Django database (``celeriac_beat_lease``): ``acquire`` locks
    the lease row (``SELECT ... FOR UPDATE``); ``renew``/``release`` are one guarded UPDATE."""

    def __init__(
        self, *, name: str = "beat", ttl: float = DEFAULT_LEASE_TTL, clock: Clock = system_clock
    ) -> None:
        super().__init__(ttl=ttl, clock=clock)
        self.name = name
        # lazy: Django models import only once Django's app registry is ready
        from celeriac.contrib.django.models import BeatLease

        with _db("prepare the leader lease"):
            BeatLease.objects.get_or_create(name=name)

    def acquire(self, holder: str) -> int | None:
        from django.db import transaction

        # lazy: Django models import only once Django's app registry is ready
        from celeriac.contrib.django.models import BeatLease

        now = self.clock.time()
        with _db("take the beat leader lease"), transaction.atomic():
            row = BeatLease.objects.select_for_update().get(name=self.name)
            if row.holder == holder and row.expires_at > now:
                token = int(row.token)
            elif row.holder is None or row.expires_at <= now:
                token = int(row.token) + 1
            else:
                return None
            row.holder, row.token, row.expires_at = holder, token, now + self.ttl
            row.save()
            return token

    def renew(self, holder: str, token: int) -> bool:
        # lazy: Django models import only once Django's app registry is ready
        from celeriac.contrib.django.models import BeatLease

        now = self.clock.time()
        with _db("renew the beat leader lease"):
            live = BeatLease.objects.filter(
                name=self.name, holder=holder, token=token, expires_at__gt=now
            )
            return bool(live.update(expires_at=now + self.ttl))

    def release(self, holder: str, token: int) -> None:
        # lazy: Django models import only once Django's app registry is ready
        from celeriac.contrib.django.models import BeatLease

        with _db("release the beat leader lease"):
            BeatLease.objects.filter(name=self.name, holder=holder, token=token).update(
                holder=None, expires_at=self.clock.time()
            )

    def current(self) -> LeaseState | None:
        # lazy: Django models import only once Django's app registry is ready
        from celeriac.contrib.django.models import BeatLease

        with _db("read the beat leader lease"):
            row = BeatLease.objects.filter(name=self.name).first()
        if row is None or (row.holder is None and not row.token):
            return None
        return LeaseState(row.holder, int(row.token), float(row.expires_at))


class DatabaseScheduler:
    """What ``beat_scheduler`` names: beat's store and lease in the Django database."""

    location = "the Django database (periodic tasks in the admin)"

    def open(
        self, app: Celery, *, lease_ttl: float = DEFAULT_LEASE_TTL
    ) -> tuple[RowStore, LeaderLease]:
        """The store and lease for ``app``'s beat; sets Django up if nobody has yet."""
        from django.apps import apps

        if not apps.ready:
            import django

            django.setup()
        return DjangoScheduleStore(app.clock), DjangoLease(ttl=lease_ttl, clock=app.clock)
