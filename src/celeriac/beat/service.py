"""Running beat: where the schedule store lives, the service, and beat inside a worker.

Where the store (and the leader lease beside it) lives, first match wins:

1. ``-s PATH`` (``schedule=``): an SQLite file at PATH;
2. ``beat_schedule_filename`` when set explicitly: an SQLite file there;
3. an SQLite broker (the embedded default): the broker's own file, so every beat and
   ``celeriac beat list`` of the project share it with no setting at all;
4. a ``redis://`` or ``rediss://`` broker: that Redis (the URL's database), under the key
   prefix ``celeriac-beat:<app main name>:`` (behind the broker's ``global_keyprefix``;
   ``broker_transport_options["beat_key_prefix"]`` replaces it), so beats on several
   machines share one schedule;
5. a ``memory://`` broker: memory (one process only);
6. otherwise ``celerybeat-schedule`` in the working directory (Celery's default name; an
   old Celery shelve file there is refused, with advice).

Every beat pointed at one store shares one schedule: one leads and sends, the others wait
to take over (``celeriac.beat.lease``). ``EmbeddedBeat`` runs the same loop in a thread for
``worker -B``; ``run_embedded_beat(app, stop_event)`` is its blocking form.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from celeriac.backends.sqlite import database_path
from celeriac.beat._redis import default_prefix
from celeriac.beat.lease import DEFAULT_LEASE_TTL, LeaderLease, MemoryLease, SQLiteLease
from celeriac.beat.options import BeatOptions
from celeriac.beat.redis_lease import RedisLease
from celeriac.beat.redis_store import RedisScheduleStore
from celeriac.beat.scheduler import Scheduler
from celeriac.beat.store import MemoryScheduleStore, ScheduleStore, SQLiteScheduleStore
from celeriac.exceptions import ImproperlyConfigured

_REDIS_SCHEMES = ("redis", "rediss")
#: ``beat_scheduler`` values meaning beat's own store (Celery's default and its kin).
_BUILTIN_SCHEDULERS = (
    "celery.beat:PersistentScheduler",
    "celery.beat.PersistentScheduler",
    "celeriac.beat:PersistentScheduler",
    "celery.beat:Scheduler",
    "celeriac.beat:Scheduler",
)
#: ``beat_scheduler`` values selecting celeriac.contrib.django.schedulers (-S django).
_DJANGO_SCHEDULERS = (
    "django",
    "celeriac.contrib.django.schedulers:DatabaseScheduler",
    "celeriac.contrib.django.schedulers.DatabaseScheduler",
    "django_celery_beat.schedulers:DatabaseScheduler",
    "django_celery_beat.schedulers.DatabaseScheduler",
)

if TYPE_CHECKING:
    from celeriac.app.base import Celery

__all__ = [
    "Beat",
    "EmbeddedBeat",
    "EntryView",
    "database_scheduler",
    "describe_entries",
    "open_store",
    "prepare_app",
    "run_embedded_beat",
    "store_location",
]

logger = logging.getLogger("celeriac.beat")


class StoreOpener(Protocol):
    """A scheduler named by ``beat_scheduler`` that keeps beat's store elsewhere."""

    location: str

    def open(self, app: Celery, *, lease_ttl: float) -> tuple[ScheduleStore, LeaderLease]: ...


def database_scheduler(app: Celery, scheduler: str | None = None) -> StoreOpener | None:
    """The Django database scheduler when ``scheduler`` (``-S``, else ``beat_scheduler``)
    names it, else None (beat's own store, chosen as the module docstring says). Any other
    value is refused."""
    name = str(scheduler or app.conf.beat_scheduler or _BUILTIN_SCHEDULERS[0]).strip()
    if name in _BUILTIN_SCHEDULERS:
        return None
    if name in _DJANGO_SCHEDULERS:
        # lazy: Django is optional; only a Django beat_scheduler setting loads it
        from celeriac.contrib.django.schedulers import DatabaseScheduler

        opener: StoreOpener = DatabaseScheduler()
        return opener
    supported = ", ".join(repr(n) for n in (*_BUILTIN_SCHEDULERS, *_DJANGO_SCHEDULERS))
    raise ImproperlyConfigured(
        f"beat_scheduler {name!r} is not a scheduler Celeriac has; use one of {supported} "
        "(the Django ones keep periodic tasks in the Django admin: docs/django.md)"
    )


def _redis_store(app: Celery, schedule: str | None) -> tuple[str, str] | None:
    """The Redis URL and key prefix of ``app``'s schedule store, if it lives in Redis."""
    if schedule or "beat_schedule_filename" in app.conf.changes:
        return None
    if app.broker_url.partition("://")[0].lower() not in _REDIS_SCHEMES:
        return None
    return app.broker_url, default_prefix(app.main, app.conf.broker_transport_options)


def store_location(
    app: Celery, schedule: str | None = None, *, scheduler: str | None = None
) -> str | None:
    """Where ``app``'s schedule store is: an SQLite path, a Redis URL (no password) and key
    prefix, or None for memory (see the module doc)."""
    database = database_scheduler(app, scheduler)
    if database is not None:
        return str(database.location)
    if schedule:
        return schedule
    if "beat_schedule_filename" in app.conf.changes:
        return str(app.conf.beat_schedule_filename)
    redis = _redis_store(app, schedule)
    if redis is not None:
        url = urlsplit(redis[0])
        shown = url._replace(netloc=url.netloc.rpartition("@")[2], query="").geturl()
        return f"{shown} (keys {redis[1]}*)"
    scheme = app.broker_url.partition("://")[0].lower()
    if scheme in ("sqlite", "db+sqlite"):
        return database_path(app.broker_url)
    if scheme == "memory":
        return None
    return str(app.conf.beat_schedule_filename)


def open_store(
    app: Celery,
    schedule: str | None = None,
    *,
    scheduler: str | None = None,
    lease_ttl: float = DEFAULT_LEASE_TTL,
) -> tuple[ScheduleStore, LeaderLease]:
    """The schedule store and leader lease of ``app`` (see ``store_location``)."""
    database = database_scheduler(app, scheduler)
    if database is not None:
        return database.open(app, lease_ttl=lease_ttl)
    redis = _redis_store(app, schedule)
    if redis is not None:
        url, prefix = redis
        redis_store = RedisScheduleStore(url, prefix=prefix)
        try:
            return redis_store, RedisLease(url, prefix=prefix, ttl=lease_ttl, clock=app.clock)
        except BaseException:
            redis_store.close()
            raise
    path = store_location(app, schedule, scheduler=scheduler)
    if path is None:
        return MemoryScheduleStore(), MemoryLease(ttl=lease_ttl, clock=app.clock)
    store = SQLiteScheduleStore(path)
    try:
        return store, SQLiteLease(path, ttl=lease_ttl, clock=app.clock)
    except BaseException:
        store.close()
        raise


def prepare_app(app: Celery, *, import_modules: bool = True) -> None:
    """Import the task modules and fire ``on_after_configure`` if nothing has yet.

    Celery fires ``on_after_configure`` when the configuration is first read, so handlers
    calling ``add_periodic_task`` run even without ``config_from_object``; ``app.configured``
    says whether it was sent, so it is sent once.
    """
    if import_modules:
        app.import_default_modules()
    if app.configured:
        return
    app.configured = True
    app.on_after_configure.send(sender=app, source=app.conf)


@dataclass(frozen=True, slots=True)
class EntryView:
    """One entry as ``celeriac beat list`` shows it."""

    name: str
    source: str  # "config" or "store"
    task: str
    schedule: str
    enabled: bool
    last_run_at: dt.datetime | None
    total_run_count: int
    next_run_at: dt.datetime | None


def describe_entries(app: Celery, store: ScheduleStore) -> list[EntryView]:
    """Configured and stored entries together, with their state, sorted by name."""
    scheduler = Scheduler(app, store=store, lease=MemoryLease(clock=app.clock))
    states = store.entries()
    views = []
    for name, entry in sorted(scheduler.entries(states).items()):
        state = states.get(name)
        last = None
        if state is not None and state.last_run_at is not None:
            last = dt.datetime.fromtimestamp(state.last_run_at, dt.UTC)
        next_run = None
        if last is not None and (state is None or state.enabled):
            exact = getattr(entry.schedule, "next_run", None)  # ours have it; custom ones may not
            next_run = exact(last) if exact else app.now() + entry.schedule.remaining_estimate(last)
        enabled = state.enabled if state else True
        count = state.total_run_count if state else 0
        views.append(
            EntryView(
                name, entry.source, entry.task, repr(entry.schedule), enabled, last, count, next_run
            )
        )
    return views


class Beat:
    """The beat service: ``Beat(app).run(stop)`` sends due tasks until ``stop`` is set.

    It takes the keywords of ``BeatOptions.from_settings`` (``schedule``, ``scheduler``,
    ``max_interval``, ``lease_ttl``, ...) or ``options`` built already.
    """

    def __init__(
        self, app: Celery, *, options: BeatOptions | None = None, **arguments: Any
    ) -> None:
        if options is None:
            options = BeatOptions.from_settings(app.conf, **arguments)
        elif arguments:
            raise TypeError("Beat() takes options or keyword arguments, not both")
        self.app = app
        self.options = options
        prepare_app(app, import_modules=options.import_modules)
        where = {"schedule": options.schedule, "scheduler": options.scheduler}
        self.location = store_location(app, **where)
        self.store, self.lease = open_store(app, **where, lease_ttl=options.lease_ttl)
        try:
            self.scheduler = Scheduler(
                app,
                store=self.store,
                lease=self.lease,
                max_interval=options.max_interval,
                poll_interval=min(options.poll_interval, options.lease_ttl / 3),
            )
        except BaseException:
            self.close()
            raise

    def run(self, stop: threading.Event | None = None) -> None:
        """Run until ``stop`` is set (or forever); releases the lease and the store after."""
        scheduler = self.scheduler
        logger.info(
            "beat %s: schedule store %s, %d configured entries, checking at most every %.0f s",
            scheduler.holder,
            self.location or "in memory",
            len(scheduler.config_entries),
            scheduler.max_interval,
        )
        try:
            scheduler.run(stop)
        finally:
            self.close()

    def close(self) -> None:
        self.store.close()
        self.lease.close()


def run_embedded_beat(
    app: Celery,
    stop_event: threading.Event,
    *,
    options: BeatOptions | None = None,
    **arguments: Any,
) -> None:
    """Run beat in this thread until ``stop_event`` is set (``worker -B``).

    ``options``, or ``arguments`` for ``BeatOptions.from_settings`` (``schedule``,
    ``max_interval``, ``lease_ttl``, ...); the worker has already imported the task modules,
    so by default they are not imported again.
    """
    if options is None:
        arguments.setdefault("import_modules", False)
        options = BeatOptions.from_settings(app.conf, **arguments)
    elif arguments:
        raise TypeError("run_embedded_beat() takes options or keyword arguments, not both")
    Beat(app, options=options).run(stop_event)


class EmbeddedBeat:
    """Beat in a daemon thread of another process: ``start()``, later ``stop()``.

    ``options`` (a ``BeatOptions``), else ``arguments`` as ``run_embedded_beat`` takes them.
    """

    def __init__(
        self, app: Celery, *, options: BeatOptions | None = None, **arguments: Any
    ) -> None:
        self.app = app
        if options is None:
            arguments.setdefault("import_modules", False)
            options = BeatOptions.from_settings(app.conf, **arguments)
        elif arguments:
            raise TypeError("EmbeddedBeat() takes options or keyword arguments, not both")
        self.options = options
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread; returns at once."""
        self._thread = threading.Thread(target=self._main, name="celeriac-beat", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            run_embedded_beat(self.app, self._stop, options=self.options)
        except Exception:
            logger.exception("beat: the embedded beat stopped on an error")

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop the loop, give the lease up, and wait for the thread. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
