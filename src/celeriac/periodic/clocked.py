"""``clocked``: a schedule that is due once, from a fixed time on (django-celery-beat's
clocked schedule, which the admin's one-off periodic tasks use).

It stays due from ``at`` on, so a beat that was down at that moment still sends it when it
comes back; whoever stores the entry disables it after its run (a one-off periodic task),
so it is sent once.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from celeriac.periodic.schedules import BaseSchedule, schedstate

if TYPE_CHECKING:
    from celeriac._app_protocol import AppLike

__all__ = ["clocked"]

_IDLE = 3600.0  # seconds to the next look once due (the entry is disabled after its run)


class clocked(BaseSchedule):
    """Due from ``at`` (naive means UTC) on."""

    def __init__(self, at: dt.datetime, *, app: AppLike | None = None) -> None:
        super().__init__(None, app)
        self.at = self.maybe_make_aware(at)

    def remaining_estimate(self, last_run_at: dt.datetime) -> dt.timedelta:
        return self.at - self.now()

    def is_due(self, last_run_at: dt.datetime) -> schedstate:
        remaining = self.remaining_estimate(last_run_at).total_seconds()
        if remaining > 0:
            return schedstate(False, remaining)
        return schedstate(True, _IDLE)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "clocked", "at": self.at.isoformat()}

    def __repr__(self) -> str:
        return f"<clocked: {self.at.isoformat()}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, clocked) and self.at == other.at

    def __hash__(self) -> int:
        return hash(self.at)
