"""Crontab fields: parsing cron expressions, and finding the next matching wall-clock time.

A field is written as in cron(5) and Celery: ``*``, a number, a name (``mon``, ``january``),
a range ``a-b`` (which wraps past the end: ``fri-mon``, ``22-2``), a step over a range or
``*`` (``*/15``, ``8-18/2``), or a comma-separated list of those. An int or an iterable of
ints is taken as the values themselves. Day of week runs 0-6 from Sunday (7 is also Sunday).

``matching_times`` yields every wall-clock minute (a naive datetime) from a start onward on
which all five fields match, in order. Days must match day of month, month *and* day of
week (Celery's rule, unlike cron(5), which ORs the two day fields when both are set).
``next_after`` turns those wall times into instants in a timezone, with the daylight-saving
rules that ``celeriac.periodic.schedules`` describes.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = [
    "FIELDS",
    "CronField",
    "ParseException",
    "check_days_exist",
    "expand",
    "matching_times",
    "next_after",
]

#: Any form a crontab field may be given in.
Cronspec = int | str | Iterable[int]

_DAY_NAMES = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_MONTH_NAMES = {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February at its longest
_YEARS_SEARCHED = 40  # a 29 February that is also a given weekday recurs every 28 years


class ParseException(ValueError):
    """A crontab field that does not parse; the message names the field and the bad part."""


@dataclass(frozen=True, slots=True)
class CronField:
    """One of the five fields: its name and the range of its values."""

    name: str
    low: int
    high: int
    names: dict[str, int] | None = None

    def number(self, token: str, spec: str) -> int:
        """The value of one token (digits or a name), checked against the field's range."""
        word = token.strip().lower()
        if word.isdigit():
            value = int(word)
        elif self.names is not None and word[:3] in self.names and len(word) >= 3:
            value = self.names[word[:3]]
        else:
            kind = "a number or a name" if self.names else "a number"
            raise ParseException(
                f"crontab {self.name}: {token!r} in {spec!r} is not {kind} "
                f"(expected {self.low}-{self.high})"
            )
        if self.name == "day_of_week" and value == 7:
            return 0  # cron's other spelling of Sunday
        if not self.low <= value <= self.high:
            raise ParseException(
                f"crontab {self.name}: {value} in {spec!r} is out of range {self.low}-{self.high}"
            )
        return value


MINUTE = CronField("minute", 0, 59)
HOUR = CronField("hour", 0, 23)
DAY_OF_WEEK = CronField("day_of_week", 0, 6, _DAY_NAMES)
DAY_OF_MONTH = CronField("day_of_month", 1, 31)
MONTH_OF_YEAR = CronField("month_of_year", 1, 12, _MONTH_NAMES)
FIELDS = {f.name: f for f in (MINUTE, HOUR, DAY_OF_WEEK, DAY_OF_MONTH, MONTH_OF_YEAR)}


def _part(field: CronField, part: str, spec: str) -> list[int]:
    """The values of one comma-separated part: ``*``, ``n``, ``a-b``, each with ``/step``."""
    base, slash, step_text = part.partition("/")
    step = 1
    if slash:
        if not step_text.strip().isdigit() or int(step_text) == 0:
            raise ParseException(
                f"crontab {field.name}: step {step_text!r} in {spec!r} must be a positive number"
            )
        step = int(step_text)
    base = base.strip()
    if base == "*":
        return list(range(field.low, field.high + 1))[::step]
    first, dash, last = base.partition("-")
    if not dash:
        if slash:
            raise ParseException(
                f"crontab {field.name}: {part!r} in {spec!r} steps from a single value; "
                f"write a range or '*' before the '/', e.g. '{base}-{field.high}/{step}'"
            )
        return [field.number(base, spec)]
    start, end = field.number(first, spec), field.number(last, spec)
    span = field.high - field.low + 1
    values = [field.low + (start - field.low + i) % span for i in range((end - start) % span + 1)]
    return values[::step]


def expand(field: CronField, spec: Cronspec) -> frozenset[int]:
    """The set of values ``spec`` stands for in ``field``; ``ValueError`` names what is wrong."""
    if isinstance(spec, bool):
        raise TypeError(f"crontab {field.name}: expected an int, a string or ints, got {spec!r}")
    if isinstance(spec, int):
        return frozenset({field.number(str(spec), str(spec))})
    if isinstance(spec, str):
        if not spec.strip():
            raise ParseException(f"crontab {field.name}: the field is empty")
        values: set[int] = set()
        for part in spec.split(","):
            if not part.strip():
                raise ParseException(f"crontab {field.name}: empty item in {spec!r}")
            values.update(_part(field, part, spec))
        return frozenset(values)
    if isinstance(spec, Iterable):
        items = list(spec)
        if not items or not all(isinstance(i, int) and not isinstance(i, bool) for i in items):
            raise TypeError(
                f"crontab {field.name}: expected a non-empty list of ints, got {spec!r}"
            )
        return frozenset(field.number(str(i), str(items)) for i in items)
    raise TypeError(f"crontab {field.name}: expected an int, a string or ints, got {spec!r}")


def check_days_exist(days_of_month: frozenset[int], months: frozenset[int], text: str) -> None:
    """Refuse a day of month that no chosen month has (``30`` of February)."""
    if not any(day <= _DAYS_IN_MONTH[month - 1] for month in months for day in days_of_month):
        raise ValueError(f"crontab day_of_month: {text} never occurs in the chosen months")


def matching_times(
    start: dt.datetime,
    *,
    minutes: frozenset[int],
    hours: frozenset[int],
    days_of_week: frozenset[int],
    days_of_month: frozenset[int],
    months: frozenset[int],
) -> Iterator[dt.datetime]:
    """Every matching naive wall-clock minute at or after ``start`` (a naive datetime), in order.

    Stops after searching ``_YEARS_SEARCHED`` years (only reached for a 29 February that must
    also be a given weekday, which no year in that span has).
    """
    start = start.replace(second=0, microsecond=0)
    sorted_minutes, sorted_hours = sorted(minutes), sorted(hours)
    for year in range(start.year, start.year + _YEARS_SEARCHED):
        for month in sorted(months):
            if (year, month) < (start.year, start.month):
                continue
            last_day = calendar.monthrange(year, month)[1]
            for day in sorted(d for d in days_of_month if d <= last_day):
                date = dt.date(year, month, day)
                if date < start.date() or (date.isoweekday() % 7) not in days_of_week:
                    continue
                for hour in sorted_hours:
                    for minute in sorted_minutes:
                        moment = dt.datetime(year, month, day, hour, minute)
                        if moment >= start:
                            yield moment


def _instants(wall: dt.datetime, tz: dt.tzinfo, both_folds: bool) -> list[dt.datetime]:
    """The UTC instants at which wall-clock time ``wall`` happens in ``tz`` (see schedules)."""
    early = wall.replace(tzinfo=tz, fold=0).astimezone(dt.UTC)
    late = wall.replace(tzinfo=tz, fold=1).astimezone(dt.UTC)
    if early == late:
        return [early]
    if early.astimezone(tz).replace(tzinfo=None) != wall:
        return [early]  # skipped by a jump forward: by the offset before the jump
    return [early, late] if both_folds else [early]  # happens twice: first, or both


def next_after(
    last: dt.datetime, tz: dt.tzinfo, values: dict[str, frozenset[int]]
) -> dt.datetime | None:
    """The first instant (UTC) strictly after ``last`` (aware) whose wall time in ``tz`` matches.

    ``values`` maps each of the five field names to its values. Wall times are scanned from a
    few hours before ``last``'s, since clocks going back repeat earlier wall times.
    """
    both_folds = len(values["hour"]) == 24
    start = last.astimezone(tz).replace(tzinfo=None) - dt.timedelta(hours=3)
    best: dt.datetime | None = None
    stop_at: dt.datetime | None = None
    for wall in matching_times(
        start,
        minutes=values["minute"],
        hours=values["hour"],
        days_of_week=values["day_of_week"],
        days_of_month=values["day_of_month"],
        months=values["month_of_year"],
    ):
        if stop_at is not None and wall > stop_at:
            break
        for instant in _instants(wall, tz, both_folds):
            if instant > last and (best is None or instant < best):
                best = instant
                stop_at = stop_at or wall + dt.timedelta(hours=3)
    return best
