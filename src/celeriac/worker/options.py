"""``WorkerOptions``: everything a worker reads from its settings and its command line, read
once, checked, and frozen.

``WorkerOptions.from_settings(conf, **arguments)`` is the only place the worker reads the
``worker_*`` settings. Each value comes from the first of: the argument (a ``celeriac
worker`` flag, or the keyword of ``Worker(app, ...)``/``start_worker``), the setting, the
default. The edge (the CLI, ``start_worker``, ``Worker(app, **arguments)``) builds the
options; the worker and its parts receive them and never look at the settings for these.

=====================  ==============================  =====================================
field                  argument (flag)                 setting, then default
=====================  ==============================  =====================================
pool                   pool (-P)                       worker_pool, prefork
concurrency            concurrency (-c); autoscale     worker_concurrency, CPU count (solo
                       (--autoscale MAX,MIN) wins      1, asyncio 100)
prefetch_multiplier    prefetch_multiplier             worker_prefetch_multiplier, 4
max_tasks_per_child    max_tasks_per_child             worker_max_tasks_per_child, none
max_memory_per_child   max_memory_per_child (KiB)      worker_max_memory_per_child, none
fair                   fair (-O fair, default)         on with worker_disable_prefetch
task_events            task_events (-E)                worker_send_task_events, off
remote_control         remote_control                  worker_enable_remote_control, on
state_db               state_db (-S/--statedb)         worker_state_db, none
time_limit             time_limit (--time-limit)       task_time_limit, none
soft_time_limit        soft_time_limit                 task_soft_time_limit, none
eta_task_limit         (none)                          worker_eta_task_limit, none
rate_limits            (none)                          not worker_disable_rate_limits
include                include (-I), after include     (the app imports ``include`` itself)
autoscale_keepalive    autoscale_keepalive             30 s (the CLI reads
                                                       CELERIAC_AUTOSCALE_KEEPALIVE)
=====================  ==============================  =====================================

The settings the worker used to read as it starts (the time limits, ``worker_eta_task_limit``,
``worker_disable_rate_limits``) are read again then (``at_start``), after ``celeryd_init``
handlers and the task modules had their say, where no argument decided them.

As before these options existed, an argument of 0 for a count (``concurrency``,
``max_tasks_per_child``, ``max_memory_per_child``) or for ``heartbeat_interval`` means "not
given"; ``prefetch_multiplier=0`` is a value (no limit). A value that cannot be right raises
``ImproperlyConfigured`` naming the flag or the setting it came from.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict, Unpack

from celeriac.app.settings import as_seconds
from celeriac.exceptions import ImproperlyConfigured
from celeriac.worker.pool_factory import POOLS

__all__ = ["WorkerArguments", "WorkerOptions", "expand_hostname"]

#: How long extra autoscaled children may stay idle, in seconds (Celery's AUTOSCALE_KEEPALIVE).
DEFAULT_AUTOSCALE_KEEPALIVE = 30.0
DEFAULT_HEARTBEAT_INTERVAL = 2.0
#: How long a starting worker waits for its neighbours' replies, in seconds (Celery's).
MINGLE_TIMEOUT = 1.0

#: The flag of each argument, for error messages.
_FLAGS = {
    "pool": "-P/--pool",
    "concurrency": "-c/--concurrency",
    "autoscale": "--autoscale",
    "prefetch_multiplier": "--prefetch-multiplier",
    "max_tasks_per_child": "--max-tasks-per-child",
    "max_memory_per_child": "--max-memory-per-child",
    "heartbeat_interval": "--heartbeat-interval",
    "metrics_port": "--metrics-port",
    "time_limit": "--time-limit",
    "soft_time_limit": "--soft-time-limit",
    "autoscale_keepalive": "CELERIAC_AUTOSCALE_KEEPALIVE",
}


class WorkerArguments(TypedDict, total=False):
    """The keywords of ``Worker(app, ...)`` and ``WorkerOptions.from_settings``."""

    hostname: str | None
    concurrency: int | None
    pool: str | None
    queues: Sequence[str] | None
    exclude_queues: Sequence[str] | None
    prefetch_multiplier: int | None
    max_tasks_per_child: int | None
    fair: bool | None
    max_memory_per_child: int | None
    autoscale: tuple[int, int] | None
    autoscale_keepalive: float
    quiet: bool
    task_events: bool | None
    heartbeat: bool
    heartbeat_interval: float | None
    remote_control: bool | None
    mingle: bool
    mingle_timeout: float
    state_db: str | None
    metrics_port: int | None
    metrics_host: str
    time_limit: float | None
    soft_time_limit: float | None
    include: Sequence[str] | None


def expand_hostname(name: str | None) -> str:
    """Celery's ``-n`` expansion: ``%h`` host, ``%n`` short name, ``%d`` domain."""
    host = socket.gethostname()
    short, _, domain = host.partition(".")
    if not name:
        return f"celeriac@{host}"
    expanded = name.replace("%h", host).replace("%n", short).replace("%d", domain)
    return expanded if "@" in expanded else f"{expanded}@{host}"


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """One worker's options, resolved (see the module docstring for where each comes from)."""

    hostname: str
    pool: str = "prefork"
    concurrency: int = 1
    min_concurrency: int | None = None  # --autoscale's MIN; None: no autoscaling
    autoscale_keepalive: float = DEFAULT_AUTOSCALE_KEEPALIVE
    prefetch_multiplier: int = 4
    queues: tuple[str, ...] | None = None  # None: every queue the settings define
    exclude_queues: tuple[str, ...] = ()
    max_tasks_per_child: int | None = None
    max_memory_per_child: int | None = None  # KiB
    fair: bool = True
    quiet: bool = True
    task_events: bool = False
    heartbeat: bool = True
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    remote_control: bool = True
    mingle: bool = False
    mingle_timeout: float = MINGLE_TIMEOUT
    state_db: str | None = None
    metrics_address: tuple[str, int] | None = None  # (host, port) of --metrics-port
    time_limit: float | None = None
    soft_time_limit: float | None = None
    eta_task_limit: int | None = None  # early ETAs held in the worker before it stops fetching
    rate_limits: bool = True
    include: tuple[str, ...] = ()  # -I: imported after the app's imports and include
    #: The arguments ``from_settings`` was given (None: made directly), for ``at_start``.
    given: frozenset[str] | None = field(default=None, repr=False, compare=False)

    @property
    def prefetch_limit(self) -> int:
        """Messages held at once (0: no limit): the multiplier times the concurrency."""
        return self.prefetch_multiplier * self.concurrency

    def at_start(self, conf: Mapping[str, Any]) -> WorkerOptions:
        """The options once the worker starts: the settings it has always read then rather
        than when it was made (after ``celeryd_init`` handlers and the task modules, which
        may set them) read again where no argument decided them: the time limits,
        ``worker_eta_task_limit`` and ``worker_disable_rate_limits``. Options made directly
        (not by ``from_settings``) are kept as they are."""
        given = self.given
        if given is None:
            return self
        return dataclasses.replace(
            self,
            time_limit=(
                self.time_limit
                if "time_limit" in given
                else _seconds("time_limit", None, conf, "task_time_limit")
            ),
            soft_time_limit=(
                self.soft_time_limit
                if "soft_time_limit" in given
                else _seconds("soft_time_limit", None, conf, "task_soft_time_limit")
            ),
            eta_task_limit=_count("eta_task_limit", None, conf, "worker_eta_task_limit"),
            rate_limits=not conf["worker_disable_rate_limits"],
        )

    @classmethod
    def from_settings(
        cls, conf: Mapping[str, Any], **args: Unpack[WorkerArguments]
    ) -> WorkerOptions:
        """The options from ``args`` (the flags or keywords given), else ``conf``, else the
        defaults; ``ImproperlyConfigured`` names the flag or setting of a wrong value."""
        unknown = sorted(set(args) - set(WorkerArguments.__annotations__))
        if unknown:
            raise TypeError(f"unexpected worker option(s): {', '.join(unknown)}")
        pool = _pool(args.get("pool"), conf)
        concurrency, min_concurrency = _concurrency(args, conf, pool)
        multiplier = args.get("prefetch_multiplier")
        return cls(
            hostname=expand_hostname(args.get("hostname")),
            pool=pool,
            concurrency=concurrency,
            min_concurrency=min_concurrency,
            autoscale_keepalive=_seconds_given(
                "autoscale_keepalive",
                args.get("autoscale_keepalive", DEFAULT_AUTOSCALE_KEEPALIVE),
                zero=True,
            ),
            prefetch_multiplier=_count(
                "prefetch_multiplier", multiplier, conf, "worker_prefetch_multiplier", zero=True
            )
            or 0,
            queues=tuple(args.get("queues") or ()) or None,
            exclude_queues=tuple(args.get("exclude_queues") or ()),
            max_tasks_per_child=_count(
                "max_tasks_per_child",
                args.get("max_tasks_per_child"),
                conf,
                "worker_max_tasks_per_child",
            ),
            max_memory_per_child=_count(
                "max_memory_per_child",
                args.get("max_memory_per_child"),
                conf,
                "worker_max_memory_per_child",
            ),
            # worker_disable_prefetch (Celery 5.6) asks for what fair scheduling does already.
            fair=_fair(args.get("fair"), conf),
            quiet=bool(args.get("quiet", True)),
            task_events=_flag(args.get("task_events"), conf["worker_send_task_events"]),
            heartbeat=bool(args.get("heartbeat", True)),
            heartbeat_interval=_heartbeat_interval(args.get("heartbeat_interval")),
            remote_control=_flag(args.get("remote_control"), conf["worker_enable_remote_control"]),
            mingle=bool(args.get("mingle", False)),
            mingle_timeout=float(args.get("mingle_timeout", MINGLE_TIMEOUT)),
            state_db=args.get("state_db") or conf["worker_state_db"] or None,
            metrics_address=_metrics_address(args),
            time_limit=_seconds("time_limit", args.get("time_limit"), conf, "task_time_limit"),
            soft_time_limit=_seconds(
                "soft_time_limit", args.get("soft_time_limit"), conf, "task_soft_time_limit"
            ),
            eta_task_limit=_count("eta_task_limit", None, conf, "worker_eta_task_limit"),
            rate_limits=not conf["worker_disable_rate_limits"],
            include=tuple(args.get("include") or ()),
            given=frozenset(name for name, value in args.items() if value is not None),
        )


def _invalid(name: str, value: Any, expected: str, *, setting: str | None) -> ImproperlyConfigured:
    if setting is not None:
        return ImproperlyConfigured(
            f"Setting {setting} = {value!r} is not valid; expected {expected}."
        )
    flag = _FLAGS.get(name, name)
    return ImproperlyConfigured(f"{flag} ({name}={value!r}) is not valid; expected {expected}.")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _pool(given: str | None, conf: Mapping[str, Any]) -> str:
    pool = given or conf["worker_pool"] or "prefork"
    if pool not in POOLS:
        raise _invalid(
            "pool", pool, f"one of {', '.join(POOLS)}", setting=None if given else "worker_pool"
        )
    return str(pool)


def _concurrency(
    args: WorkerArguments, conf: Mapping[str, Any], pool: str
) -> tuple[int, int | None]:
    """(concurrency, min_concurrency): ``autoscale`` (max, min), as Celery's --autoscale
    MAX,MIN, wins over ``concurrency``, which wins over ``worker_concurrency``."""
    autoscale = args.get("autoscale")
    if autoscale is not None:
        high, low = autoscale
        if not (_is_int(high) and _is_int(low) and high >= 1 and 0 <= low <= high):
            raise _invalid("autoscale", autoscale, "(MAX, MIN) with MAX >= MIN >= 0", setting=None)
        return high, low
    given = args.get("concurrency")
    if given is not None and not (_is_int(given) and given >= 0):
        raise _invalid("concurrency", given, "an int >= 0", setting=None)
    setting = conf["worker_concurrency"]
    if isinstance(setting, str) and setting.strip().lower() == "auto":
        setting = None  # the default, as validate() accepts it
    if setting is not None and not (_is_int(setting) and setting >= 0):
        raise _invalid(
            "concurrency", setting, "an int >= 0, 'auto' or None", setting="worker_concurrency"
        )
    default = {"solo": 1, "asyncio": 100}.get(pool, os.cpu_count() or 1)
    return int(given or setting or default), None


def _count(
    name: str, given: int | None, conf: Mapping[str, Any], setting: str, *, zero: bool = False
) -> int | None:
    """An int >= 0. Without ``zero``, 0 means "not given" (the setting, then None)."""
    if given is not None and not (_is_int(given) and given >= 0):
        raise _invalid(name, given, "an int >= 0", setting=None)
    if zero and given is not None:
        return given
    if given:
        return given
    value = conf[setting]
    if value is not None and not (_is_int(value) and value >= 0):
        raise _invalid(name, value, "an int >= 0 or None", setting=setting)
    return int(value) if (value or (zero and value is not None)) else None


def _seconds(name: str, given: float | None, conf: Mapping[str, Any], setting: str) -> float | None:
    """A time limit: the argument, else the setting (seconds or a timedelta); 0 is none."""
    if given is not None:
        if isinstance(given, bool) or not isinstance(given, (int, float)) or given < 0:
            raise _invalid(name, given, "a number of seconds >= 0", setting=None)
        return float(given) or None
    value = as_seconds(conf[setting], setting=setting)
    return float(value) if value else None


def _seconds_given(name: str, value: Any, *, zero: bool = False) -> float:
    """A number of seconds > 0 (>= 0 with ``zero``)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or value < 0 or (value == 0 and not zero):
        raise _invalid(name, value, f"a number of seconds {'>=' if zero else '>'} 0", setting=None)
    return float(value)


def _heartbeat_interval(given: float | None) -> float:
    if not given:
        return DEFAULT_HEARTBEAT_INTERVAL
    return _seconds_given("heartbeat_interval", given)


def _fair(given: bool | None, conf: Mapping[str, Any]) -> bool:
    return True if given is None or conf["worker_disable_prefetch"] else bool(given)


def _flag(given: bool | None, setting: Any) -> bool:
    return bool(setting if given is None else given)


def _metrics_address(args: WorkerArguments) -> tuple[str, int] | None:
    port = args.get("metrics_port")
    if port is None:
        return None
    if not (_is_int(port) and 0 <= port <= 65535):
        raise _invalid("metrics_port", port, "a port from 0 to 65535", setting=None)
    return str(args.get("metrics_host", "127.0.0.1")), port
