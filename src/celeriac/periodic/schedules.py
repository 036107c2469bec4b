"""When a periodic task is due: Celery's ``schedule``, ``crontab`` and ``solar``.

Each schedule answers two questions about an entry that last ran at ``last_run_at``:
``remaining_estimate(last_run_at)`` is the time from now until its next run (negative when
overdue), and ``is_due(last_run_at)`` is ``(is_due, seconds_until_next_check)``, as Celery's.
"Now" is ``nowfun()`` when given, else the app's injected clock; naive datetimes are UTC.

A ``crontab`` is matched in the app's timezone (``timezone``; UTC when unset, or the local
zone when ``enable_utc`` is off), so ``crontab(hour=9)`` runs at 09:00 local time in summer
and in winter. Across daylight-saving changes (close to cron(8)'s rules):

- a wall-clock time skipped when clocks go forward runs at the same time by the old offset
  (02:30 runs at 03:30 after a one-hour jump), once;
- a wall-clock time that happens twice when clocks go back runs once, at its first
  occurrence, unless the crontab runs every hour (``hour='*'``), which then runs in both.

``solar`` computes sun events with a pure NOAA-style method (``celeriac.periodic._solar``):
no ``ephem`` needed, accurate to about a minute. The module is longer than most because it
keeps Celery's three schedule classes together, as ``celery.schedules`` does; the parsing and
the calendar search live in ``_cron`` and the astronomy in ``_solar``.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from celeriac import _state
from celeriac.exceptions import ImproperlyConfigured
from celeriac.periodic import _cron, _solar
from celeriac.periodic._cron import Cronspec, ParseException

if TYPE_CHECKING:
    from celeriac._app_protocol import AppLike

__all__ = [
    "BaseSchedule",
    "ParseException",
    "app_timezone",
    "crontab",
    "maybe_schedule",
    "schedstate",
    "schedule",
    "solar",
]

_FAR_FUTURE = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)
_SHORTHANDS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class schedstate(NamedTuple):
    """``is_due`` and the seconds until the schedule should be checked again."""

    is_due: bool
    next: float


def _zone(name: str) -> dt.tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"timezone {name!r} is not a known IANA zone name") from exc


def app_timezone(app: AppLike) -> dt.tzinfo:
    """The zone crontabs are read in: ``timezone``, else UTC, else local without ``enable_utc``."""
    name = app.conf.get("timezone")
    if isinstance(name, dt.tzinfo):
        return name
    if name:
        try:
            return ZoneInfo(str(name))
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ImproperlyConfigured(
                f"timezone {name!r} is not a known IANA zone name (e.g. 'Europe/Paris'); "
                "on systems without a zone database, pip install tzdata"
            ) from exc
    if app.conf.get("enable_utc", True):
        return dt.UTC
    return _local_zone()


def _local_zone() -> dt.tzinfo:
    key = os.environ.get("TZ", "").lstrip(":")
    try:
        if key:
            return ZoneInfo(key)
        with open("/etc/localtime", "rb") as data:
            return ZoneInfo.from_file(data, key="localtime")
    except (OSError, ValueError, ZoneInfoNotFoundError):
        return dt.datetime.now().astimezone().tzinfo or dt.UTC


def _between(start: dt.datetime, end: dt.datetime) -> dt.timedelta:
    """Elapsed time, in UTC (subtracting two times of one zone ignores a DST change)."""
    return end.astimezone(dt.UTC) - start.astimezone(dt.UTC)


class BaseSchedule:
    """A schedule: subclasses define ``remaining_estimate`` and ``is_due``."""

    def __init__(
        self, nowfun: Callable[[], dt.datetime] | None = None, app: AppLike | None = None
    ) -> None:
        self.nowfun = nowfun
        self._app = app

    @property
    def app(self) -> AppLike:
        if self._app is None:
            return _state.current_app()
        return self._app

    @app.setter
    def app(self, app: AppLike | None) -> None:
        self._app = app

    @property
    def tz(self) -> dt.tzinfo:
        return app_timezone(self.app)

    @property
    def utc_enabled(self) -> bool:
        return bool(self.app.conf.get("enable_utc", True))

    def now(self) -> dt.datetime:
        return self.maybe_make_aware(self.nowfun() if self.nowfun else self.app.now())

    def maybe_make_aware(self, value: dt.datetime, naive_as_utc: bool = True) -> dt.datetime:
        """``value`` made aware: a naive one is UTC (local time if not ``naive_as_utc``)."""
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC if naive_as_utc else self.tz)
        return value

    def to_local(self, value: dt.datetime) -> dt.datetime:
        return self.maybe_make_aware(value).astimezone(self.tz)

    def remaining_estimate(self, last_run_at: dt.datetime) -> dt.timedelta:
        raise NotImplementedError

    def is_due(self, last_run_at: dt.datetime) -> schedstate:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any] | None:
        """The schedule as JSON-able data for the schedule store; None if it cannot be."""
        return None

    def _due_then(self, last_run_at: dt.datetime, rem: dt.timedelta) -> schedstate:
        """Celery's rule for event schedules: when due, check again at the run after now."""
        if rem.total_seconds() > 0:
            return schedstate(False, rem.total_seconds())
        after_now = self.remaining_estimate(self.now()).total_seconds()
        return schedstate(True, max(after_now, 0.0))


class schedule(BaseSchedule):
    """Every ``run_every`` (seconds or a timedelta) after the last run.

    With ``relative=True`` the run is rounded down to the interval's unit (second, minute,
    hour or day) in the app's timezone, so ``schedule(timedelta(hours=1), relative=True)``
    runs on the hour.
    """

    def __init__(
        self,
        run_every: float | dt.timedelta,
        relative: bool = False,
        nowfun: Callable[[], dt.datetime] | None = None,
        app: AppLike | None = None,
    ) -> None:
        if not isinstance(run_every, dt.timedelta):
            run_every = dt.timedelta(seconds=float(run_every))
        if run_every <= dt.timedelta(0):
            raise ValueError(f"schedule: run_every must be positive, got {run_every}")
        self.run_every = run_every
        self.relative = relative
        super().__init__(nowfun, app)

    @property
    def seconds(self) -> float:
        return self.run_every.total_seconds()

    @property
    def human_seconds(self) -> str:
        return _humanize(self.seconds)

    def next_run(self, last_run_at: dt.datetime) -> dt.datetime:
        """When the entry runs next after a run at ``last_run_at``."""
        last = self.maybe_make_aware(last_run_at).astimezone(dt.UTC)
        due = last + self.run_every
        if not self.relative:
            return due
        local = due.astimezone(self.tz)
        if self.run_every >= dt.timedelta(days=1):
            wall = (last.astimezone(self.tz).replace(tzinfo=None) + self.run_every).date()
            return dt.datetime.combine(wall, dt.time(), self.tz).astimezone(dt.UTC)
        unit = 3600 if self.seconds >= 3600 else 60 if self.seconds >= 60 else 1
        into_unit = (local.minute * 60 + local.second) % unit if unit > 1 else 0
        return (due - dt.timedelta(seconds=into_unit, microseconds=local.microsecond)).astimezone(
            dt.UTC
        )

    def remaining_estimate(self, last_run_at: dt.datetime) -> dt.timedelta:
        return _between(self.now(), self.next_run(last_run_at))

    def is_due(self, last_run_at: dt.datetime) -> schedstate:
        rem = self.remaining_estimate(last_run_at).total_seconds()
        if rem > 0:
            return schedstate(False, rem)
        if self.relative:
            after_now = self.remaining_estimate(self.now()).total_seconds()
            return schedstate(True, after_now if after_now > 0 else self.seconds)
        return schedstate(True, self.seconds)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "interval", "every": self.seconds, "relative": self.relative}

    def __repr__(self) -> str:
        return f"<freq: {self.human_seconds}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, schedule):
            return self.run_every == other.run_every and self.relative == other.relative
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.run_every, self.relative))


def _humanize(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            amount = seconds / size
            return f"{amount:.2f} {unit}{'s' if amount != 1 else ''}"
    return f"{seconds:.2f} second{'s' if seconds != 1 else ''}"


class crontab(BaseSchedule):
    """Runs at the minutes matching all five cron fields, in the app's timezone.

    ``crontab(minute=0, hour='*/3')``, ``crontab(hour=7, minute=30, day_of_week='mon-fri')``,
    ``crontab.from_string('*/5 * * * *')``. A bad field raises ``ValueError`` naming it.
    The value sets are ``minute``, ``hour``, ``day_of_week`` (0 is Sunday), ``day_of_month``
    and ``month_of_year``.
    """

    def __init__(
        self,
        minute: Cronspec = "*",
        hour: Cronspec = "*",
        day_of_week: Cronspec = "*",
        day_of_month: Cronspec = "*",
        month_of_year: Cronspec = "*",
        nowfun: Callable[[], dt.datetime] | None = None,
        app: AppLike | None = None,
        *,
        tz: str | dt.tzinfo | None = None,
    ) -> None:
        self._tz = _zone(tz) if isinstance(tz, str) else tz
        self._orig = {
            "minute": minute,
            "hour": hour,
            "day_of_week": day_of_week,
            "day_of_month": day_of_month,
            "month_of_year": month_of_year,
        }
        self._values = {
            name: _cron.expand(_cron.FIELDS[name], spec) for name, spec in self._orig.items()
        }
        _cron.check_days_exist(
            self._values["day_of_month"], self._values["month_of_year"], repr(day_of_month)
        )
        self._next_cache: dict[tuple[dt.datetime, str], dt.datetime] = {}
        super().__init__(nowfun, app)

    @classmethod
    def from_string(cls, crontab: str, **kwargs: Any) -> crontab:
        """``'minute hour day-of-month month day-of-week'``, or ``@daily`` and its kin."""
        text = _SHORTHANDS.get(crontab.strip().lower(), crontab)
        fields = text.split()
        if len(fields) != 5:
            raise ParseException(
                f"crontab {crontab!r} has {len(fields)} fields; expected 5: "
                "minute hour day-of-month month day-of-week (e.g. '*/5 * * * *')"
            )
        minute, hour, day_of_month, month_of_year, day_of_week = fields
        return cls(minute, hour, day_of_week, day_of_month, month_of_year, **kwargs)

    @property
    def tz(self) -> dt.tzinfo:
        """The zone the fields match in: ``tz`` when given (django-celery-beat's per-entry
        crontab timezone), else the app's."""
        return self._tz if self._tz is not None else app_timezone(self.app)

    minute = property(lambda self: set(self._values["minute"]))
    hour = property(lambda self: set(self._values["hour"]))
    day_of_week = property(lambda self: set(self._values["day_of_week"]))
    day_of_month = property(lambda self: set(self._values["day_of_month"]))
    month_of_year = property(lambda self: set(self._values["month_of_year"]))

    def next_run(self, last_run_at: dt.datetime) -> dt.datetime:
        """The first matching time strictly after ``last_run_at``, in the app's timezone."""
        last = self.maybe_make_aware(last_run_at)
        tz = self.tz
        key = (last.astimezone(dt.UTC), str(tz))
        found = self._next_cache.get(key)
        if found is None:
            found = _cron.next_after(last, tz, self._values) or _FAR_FUTURE
            if len(self._next_cache) > 16:
                self._next_cache.clear()
            self._next_cache[key] = found
        return found.astimezone(tz)

    def remaining_estimate(self, last_run_at: dt.datetime) -> dt.timedelta:
        return _between(self.now(), self.next_run(last_run_at))

    def is_due(self, last_run_at: dt.datetime) -> schedstate:
        """Celery's rule, with ``beat_cron_starting_deadline``: a run missed by more than that
        many seconds is not made up (the next one is awaited instead)."""
        rem = self.remaining_estimate(last_run_at)
        deadline = self.app.conf.get("beat_cron_starting_deadline")
        if deadline is not None and rem.total_seconds() < 0:
            since = self.now() - dt.timedelta(seconds=float(deadline), microseconds=1)
            if self.remaining_estimate(since).total_seconds() > 0:
                return schedstate(
                    False, max(self.remaining_estimate(self.now()).total_seconds(), 0)
                )
        return self._due_then(last_run_at, rem)

    def to_dict(self) -> dict[str, Any]:
        data = {"type": "crontab", **{name: _spec_text(v) for name, v in self._orig.items()}}
        if self._tz is not None:
            data["tz"] = str(self._tz)
        return data

    def __repr__(self) -> str:
        o = {name: _spec_text(v) for name, v in self._orig.items()}
        fields = (o["minute"], o["hour"], o["day_of_month"], o["month_of_year"], o["day_of_week"])
        return f"<crontab: {' '.join(fields)} (m/h/dM/MY/d)>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, crontab):
            return self._values == other._values
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(sorted((k, tuple(sorted(v))) for k, v in self._values.items())))


def _spec_text(spec: Cronspec) -> str:
    if isinstance(spec, (int, str)):
        return str(spec)
    return ",".join(str(v) for v in sorted(spec))


class solar(BaseSchedule):
    """Runs at a sun event at a place: ``solar('sunset', -33.87, 151.21)``.

    Events: ``dawn_astronomical``, ``dawn_nautical``, ``dawn_civil``, ``sunrise``,
    ``solar_noon``, ``sunset``, ``dusk_civil``, ``dusk_nautical``, ``dusk_astronomical``.
    Latitude is north-positive, longitude east-positive, in degrees.
    """

    def __init__(
        self,
        event: str,
        lat: float,
        lon: float,
        nowfun: Callable[[], dt.datetime] | None = None,
        app: AppLike | None = None,
    ) -> None:
        if event not in _solar.EVENTS:
            raise ValueError(
                f"solar: unknown event {event!r}; use one of {', '.join(sorted(_solar.EVENTS))}"
            )
        if not -90 <= lat <= 90:
            raise ValueError(f"solar: latitude {lat} is not between -90 and 90")
        if not -180 <= lon <= 180:
            raise ValueError(f"solar: longitude {lon} is not between -180 and 180")
        self.event, self.lat, self.lon = event, lat, lon
        super().__init__(nowfun, app)

    def next_run(self, last_run_at: dt.datetime) -> dt.datetime | None:
        """The first event after ``last_run_at`` (UTC); None if none comes within a year."""
        return _solar.next_event(self.event, self.maybe_make_aware(last_run_at), self.lat, self.lon)

    def remaining_estimate(self, last_run_at: dt.datetime) -> dt.timedelta:
        """Time until the next event; a day (not an event: nothing runs) when none is near."""
        found = self.next_run(last_run_at)
        return _between(self.now(), found) if found is not None else dt.timedelta(days=1)

    def is_due(self, last_run_at: dt.datetime) -> schedstate:
        return self._due_then(last_run_at, self.remaining_estimate(last_run_at))

    def to_dict(self) -> dict[str, Any]:
        return {"type": "solar", "event": self.event, "lat": self.lat, "lon": self.lon}

    def __repr__(self) -> str:
        return f"<solar: {self.event} at latitude {self.lat}, longitude: {self.lon}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, solar):
            return (self.event, self.lat, self.lon) == (other.event, other.lat, other.lon)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.event, self.lat, self.lon))


def maybe_schedule(
    value: float | dt.timedelta | BaseSchedule, relative: bool = False, app: AppLike | None = None
) -> BaseSchedule:
    """A schedule from seconds, a timedelta, or a schedule (given ``app``), as Celery's."""
    if isinstance(value, BaseSchedule):
        if app is not None:
            value.app = app
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, dt.timedelta)):
        raise TypeError(
            f"a schedule must be seconds, a timedelta, or a schedule (crontab, solar, ...), "
            f"not {type(value).__name__}"
        )
    return schedule(value, relative, app=app)
