"""Schedule entries: what ``beat_schedule`` and the schedule store describe.

An entry is Celery's: a name, the task to send, when (a schedule), and the ``args``,
``kwargs`` and ``options`` (``apply_async``'s: queue, priority, expires, ...) to send it
with::

    app.conf.beat_schedule = {
        "add-every-30s": {"task": "proj.tasks.add", "schedule": 30.0, "args": (16, 16)},
        "nightly": {"task": "proj.tasks.report", "schedule": crontab(hour=3, minute=0),
                    "options": {"queue": "reports", "expires": 3600}, "missed": "skip"},
    }

``schedule`` is seconds, a ``timedelta`` (``relative`` rounds it, as Celery's), a
``crontab``, a ``solar`` or any ``BaseSchedule``. Two keys are Celeriac's own, for runs
missed while no beat was running (or while a leader was being replaced):

- ``missed``: ``"run_once"`` (the default, Celery's behaviour) sends one run on catch-up
  however many were missed; ``"skip"`` sends nothing for a run missed by more than
  ``missed_grace`` seconds (default 60) and waits for the next one.
- ``missed_grace``: how late a run may be and still count as on time (with ``"skip"``).

``app.add_periodic_task`` is ``add_periodic_task`` here; it writes ``beat_schedule``.
Entries added at run time (``celeriac beat add``) are kept in the schedule store as JSON
definitions, read back with ``entry_from_definition``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from celeriac.app.producer import CALL_OPTIONS
from celeriac.exceptions import ImproperlyConfigured, UnknownSettingWarning
from celeriac.periodic.clocked import clocked
from celeriac.periodic.schedules import BaseSchedule, crontab, maybe_schedule, schedule, solar

if TYPE_CHECKING:
    from celeriac._app_protocol import AppLike

__all__ = [
    "MISSED_POLICIES",
    "ScheduleEntry",
    "add_periodic_task",
    "entry_from_config",
    "entry_from_definition",
    "parse_beat_schedule",
    "schedule_from_dict",
]

logger = logging.getLogger("celeriac.beat")

#: What to do about a run missed while no beat ran: send it once, or skip it.
MISSED_POLICIES = ("run_once", "skip")
DEFAULT_MISSED_GRACE = 60.0
_KEYS = frozenset(
    {"task", "schedule", "args", "kwargs", "options", "relative", "missed", "missed_grace"}
)


@dataclass(frozen=True)
class ScheduleEntry:
    """One periodic task: send ``task(*args, **kwargs)`` with ``options`` on ``schedule``."""

    name: str
    task: str
    schedule: BaseSchedule
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    missed: str = "run_once"
    missed_grace: float = DEFAULT_MISSED_GRACE
    source: str = "config"  # "config": beat_schedule; "store": added at run time

    def is_due(self, last_run_at: dt.datetime) -> tuple[bool, float]:
        return self.schedule.is_due(last_run_at)

    def definition(self) -> dict[str, Any]:
        """The entry as JSON-able data (what the schedule store keeps for added entries)."""
        data = self.schedule.to_dict()
        if data is None:
            raise ValueError(
                f"entry {self.name!r}: a {type(self.schedule).__name__} schedule cannot be "
                "stored; define it in beat_schedule instead"
            )
        return {
            "task": self.task,
            "schedule": data,
            "args": list(self.args),
            "kwargs": self.kwargs,
            "options": self.options,
            "missed": self.missed,
            "missed_grace": self.missed_grace,
        }

    @property
    def fingerprint(self) -> str:
        """Changes when the task, schedule, arguments or options change (run times reset)."""
        text = json.dumps(
            [
                self.task,
                self.schedule.to_dict() or repr(self.schedule),
                list(self.args),
                self.kwargs,
                self.options,
            ],
            sort_keys=True,
            default=repr,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def entry_from_config(name: str, spec: Mapping[str, Any], app: AppLike) -> ScheduleEntry:
    """The entry ``beat_schedule[name]`` describes; ``ImproperlyConfigured`` says what is wrong."""
    where = f"beat_schedule[{name!r}]"
    if not isinstance(spec, Mapping):
        raise ImproperlyConfigured(f"{where} must be a dict with 'task' and 'schedule'")
    unknown = sorted(set(spec) - _KEYS)
    if unknown:
        raise ImproperlyConfigured(
            f"{where} has unknown key(s) {', '.join(map(repr, unknown))}; the keys are "
            f"{', '.join(sorted(_KEYS))}"
        )
    if not isinstance(spec.get("task"), str) or not spec["task"]:
        raise ImproperlyConfigured(f"{where} needs 'task': the name of the task to send")
    if "schedule" not in spec:
        raise ImproperlyConfigured(f"{where} needs 'schedule': seconds, a timedelta, a crontab")
    try:
        when = maybe_schedule(spec["schedule"], bool(spec.get("relative", False)), app=app)
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"{where}['schedule']: {exc}") from exc
    return _entry(where, name, spec, when, "config")


def _entry(
    where: str, name: str, spec: Mapping[str, Any], when: BaseSchedule, source: str
) -> ScheduleEntry:
    args, kwargs = spec.get("args") or (), spec.get("kwargs") or {}
    if isinstance(args, (str, bytes)) or not isinstance(args, (list, tuple)):
        raise ImproperlyConfigured(f"{where}['args'] must be a list or tuple, got {args!r}")
    if not isinstance(kwargs, Mapping):
        raise ImproperlyConfigured(f"{where}['kwargs'] must be a dict, got {kwargs!r}")
    options = dict(spec.get("options") or {})
    unknown = sorted(set(options) - CALL_OPTIONS)
    if unknown:
        warnings.warn(
            f"{where}['options'] has option(s) apply_async does not know: {', '.join(unknown)}; "
            "they are not sent",
            UnknownSettingWarning,
            stacklevel=4,
        )
        options = {key: value for key, value in options.items() if key in CALL_OPTIONS}
    missed = spec.get("missed", "run_once")
    if missed not in MISSED_POLICIES:
        raise ImproperlyConfigured(
            f"{where}['missed'] must be one of {', '.join(MISSED_POLICIES)}, got {missed!r}"
        )
    grace = spec.get("missed_grace", DEFAULT_MISSED_GRACE)
    if isinstance(grace, bool) or not isinstance(grace, (int, float)) or grace < 0:
        raise ImproperlyConfigured(f"{where}['missed_grace'] must be seconds >= 0, got {grace!r}")
    return ScheduleEntry(
        name, spec["task"], when, tuple(args), dict(kwargs), options, missed, float(grace), source
    )


def parse_beat_schedule(
    beat_schedule: Mapping[str, Any] | None, app: AppLike
) -> dict[str, ScheduleEntry]:
    """Every entry of ``beat_schedule`` (``CELERYBEAT_SCHEDULE``), by name."""
    items = (beat_schedule or {}).items()
    return {str(name): entry_from_config(str(name), spec, app) for name, spec in items}


def schedule_from_dict(data: Mapping[str, Any], app: AppLike | None = None) -> BaseSchedule:
    """The schedule a stored definition names (``BaseSchedule.to_dict``'s output)."""
    kind = data.get("type")
    if kind == "interval":
        return schedule(float(data["every"]), bool(data.get("relative", False)), app=app)
    if kind == "crontab":
        minute, hour, day_of_week, day_of_month, month_of_year = (
            str(data.get(name, "*"))
            for name in ("minute", "hour", "day_of_week", "day_of_month", "month_of_year")
        )
        tz = data.get("tz")
        return crontab(
            minute,
            hour,
            day_of_week,
            day_of_month,
            month_of_year,
            app=app,
            tz=str(tz) if tz else None,
        )
    if kind == "clocked":
        return clocked(dt.datetime.fromisoformat(str(data["at"])), app=app)
    if kind == "solar":
        return solar(str(data["event"]), float(data["lat"]), float(data["lon"]), app=app)
    raise ValueError(f"unknown schedule type {kind!r} in the schedule store")


def entry_from_definition(name: str, definition: Mapping[str, Any], app: AppLike) -> ScheduleEntry:
    """The entry a stored definition describes (an entry added with ``celeriac beat add``)."""
    where = f"stored entry {name!r}"
    try:
        when = schedule_from_dict(definition.get("schedule") or {}, app)
    except (KeyError, TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"{where} has a bad schedule: {exc}") from exc
    if not isinstance(definition.get("task"), str):
        raise ImproperlyConfigured(f"{where} names no task")
    return _entry(where, name, definition, when, "store")


def _describe_call(task: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
    parts = [repr(arg) for arg in args] + [f"{key}={value!r}" for key, value in kwargs.items()]
    return f"{task}({', '.join(parts)})"


def _signature_parts(sig: Any) -> tuple[str, tuple[Any, ...], dict[str, Any], dict[str, Any]]:
    """(task name, args, kwargs, options) of a task, a signature-like object, a dict or a name."""
    fields: dict[str, Any]
    if isinstance(sig, str):
        fields = {"task": sig}
    elif isinstance(sig, Mapping):
        fields = dict(sig)
    elif isinstance(getattr(sig, "task", None), str):  # a signature-like object
        fields = {key: getattr(sig, key, None) for key in ("task", "args", "kwargs", "options")}
    else:  # a task
        fields = {"task": getattr(sig, "name", None)}
    name = fields.get("task")
    if not isinstance(name, str) or not name:
        raise TypeError(
            f"add_periodic_task needs a task, a signature or a dict with 'task', got {sig!r}"
        )
    args, kwargs, options = fields.get("args"), fields.get("kwargs"), fields.get("options")
    return name, tuple(args or ()), dict(kwargs or {}), dict(options or {})


def add_periodic_task(
    app: AppLike,
    schedule: float | dt.timedelta | BaseSchedule,
    sig: Any,
    args: tuple[Any, ...] | list[Any] = (),
    kwargs: Mapping[str, Any] | tuple[()] = (),
    name: str | None = None,
    **opts: Any,
) -> str:
    """Add ``sig`` to ``beat_schedule``; return its key (``name``, else a repr of the call).

    ``sig`` is a task, a signature-like object (``.task``, ``.args``, ``.kwargs``,
    ``.options``) or a dict with those keys. ``args`` go before the signature's, ``kwargs``
    over its; ``opts`` are sending options, plus ``missed``/``missed_grace``/``relative``.
    """
    task, sig_args, sig_kwargs, sig_options = _signature_parts(sig)
    call_args = (*tuple(args), *sig_args)
    call_kwargs = {**sig_kwargs, **dict(kwargs or {})}
    entry: dict[str, Any] = {
        "task": task,
        "schedule": schedule,
        "args": call_args,
        "kwargs": call_kwargs,
    }
    for key in ("missed", "missed_grace", "relative"):
        if key in opts:
            entry[key] = opts.pop(key)
    entry["options"] = {**sig_options, **opts}
    key = name or _describe_call(task, call_args, call_kwargs)
    current = dict(app.conf.beat_schedule or {})
    if name is None and key in current and current[key] != entry:
        logger.warning(
            "Periodic task %r shadowed a previous unnamed one; pass name= to keep both", key
        )
    entry_from_config(key, entry, app)  # fail now, at the caller, if it is wrong
    current[key] = entry
    app.conf["beat_schedule"] = current
    return key
