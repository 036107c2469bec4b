"""``BeatOptions``: what a beat service reads from its settings and its command line, read
once, checked, and frozen.

Each value comes from the first of: the argument (a ``celeriac beat`` or ``worker -B`` flag,
or the keyword of ``Beat(app, ...)``/``EmbeddedBeat(app, ...)``), the setting, the default.

==============  ==========================  =========================================
field           argument (flag)             setting, then default
==============  ==========================  =========================================
schedule        schedule (-s)               where the store is: celeriac.beat.service
scheduler       scheduler (-S/--scheduler)  beat_scheduler, Celery's PersistentScheduler
max_interval    max_interval                beat_max_loop_interval, 300 s
lease_ttl       lease_ttl (--lease-ttl)     15 s
poll_interval   poll_interval               1 s (at most a third of the lease TTL)
import_modules  import_modules              on (beat in a worker: off, the worker did)
==============  ==========================  =========================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from celeriac.beat.lease import DEFAULT_LEASE_TTL
from celeriac.beat.scheduler import DEFAULT_MAX_INTERVAL
from celeriac.exceptions import ImproperlyConfigured

__all__ = ["DEFAULT_SCHEDULER", "BeatOptions"]

#: ``beat_scheduler``'s default: beat's own store, as Celery's default names it.
DEFAULT_SCHEDULER = "celery.beat:PersistentScheduler"


@dataclass(frozen=True, slots=True)
class BeatOptions:
    """One beat service's options, resolved (see the module docstring)."""

    schedule: str | None = None
    scheduler: str = DEFAULT_SCHEDULER
    max_interval: float = DEFAULT_MAX_INTERVAL
    lease_ttl: float = DEFAULT_LEASE_TTL
    poll_interval: float = 1.0
    import_modules: bool = True

    @classmethod
    def from_settings(
        cls,
        conf: Mapping[str, Any],
        *,
        schedule: str | None = None,
        scheduler: str | None = None,
        max_interval: float | None = None,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        poll_interval: float = 1.0,
        import_modules: bool = True,
    ) -> BeatOptions:
        """The options from the arguments given, else ``conf``, else the defaults."""
        loop = max_interval or conf.get("beat_max_loop_interval") or DEFAULT_MAX_INTERVAL
        return cls(
            schedule=schedule or None,
            scheduler=str(scheduler or conf.get("beat_scheduler") or DEFAULT_SCHEDULER).strip(),
            max_interval=_seconds(
                "max_interval", "--max-interval" if max_interval else "beat_max_loop_interval", loop
            ),
            lease_ttl=_seconds("lease_ttl", "--lease-ttl", lease_ttl),
            poll_interval=_seconds("poll_interval", None, poll_interval),
            import_modules=bool(import_modules),
        )


def _seconds(name: str, flag: str | None, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        where = f"{flag} ({name}={value!r})" if flag else f"{name}={value!r}"
        raise ImproperlyConfigured(f"beat {where} is not valid; expected seconds > 0.")
    return float(value)
