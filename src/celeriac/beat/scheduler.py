"""The beat loop: the leader among the beats sends each entry when it is due, once.

``Scheduler.tick()`` is one pass and returns how long to wait before the next; it is a plain
method, so tests call it with an app whose clock is a ``ManualClock``. One pass:

1. Leadership: renew the lease every ``ttl / 3``, or, not leading, try to take it (every
   ``poll_interval`` at most). A follower does nothing else.
2. Read the store; merge the configured entries (``beat_schedule``) with those added at
   run time (configured ones win a name clash); start the clock of new or changed entries.
3. For each enabled entry: resend a send whose beat died before confirming it (same task
   id, once the claim is a lease ``ttl`` old); send a ``run-now`` request; and if the
   schedule says it is due, claim the run in the store (compare-and-set on its last run,
   with the fencing token) and send it, or skip it when it was missed and the entry's
   ``missed`` policy is ``"skip"``.

``run()`` repeats ticks, waiting ``min(next due, max_interval)`` in slices of
``poll_interval`` so that edits to the store (``celeriac beat add`` ...) are seen at once.
Tasks are sent as Celery's beat sends them: ``apply_async`` of the registered task (or
``send_task`` by name) with the entry's options and the header ``celery_beat_task: true``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING

from celeriac._time import SystemClock
from celeriac.app._cleanup import default_beat_entries
from celeriac.beat.lease import LeaderLease
from celeriac.beat.store import Claim, EntryState, ScheduleStore
from celeriac.exceptions import CeleryError, OperationalError
from celeriac.periodic.entries import ScheduleEntry, entry_from_definition, parse_beat_schedule
from celeriac.periodic.schedules import schedule

if TYPE_CHECKING:
    from celeriac.app.base import Celery

__all__ = ["DEFAULT_MAX_INTERVAL", "Scheduler"]

logger = logging.getLogger("celeriac.beat")

#: Celery's longest sleep between ticks when ``beat_max_loop_interval`` is 0.
DEFAULT_MAX_INTERVAL = 300.0


class _Deposed(Exception):
    """A newer leader has written to the store: stop this pass."""


def _utc(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC)


def _stale(entry: ScheduleEntry, last: dt.datetime) -> bool:
    """Whether the due run is later than ``missed_grace`` (so a ``"skip"`` entry skips it).

    An interval runs relative to its last run, so that run is late by how overdue it is;
    other schedules are on time if any of their runs fell within the grace period.
    """
    when = entry.schedule
    if isinstance(when, schedule):
        return -when.remaining_estimate(last).total_seconds() > entry.missed_grace
    since = when.now() - dt.timedelta(seconds=entry.missed_grace)
    return when.remaining_estimate(max(since, last)).total_seconds() > 0


class Scheduler:
    """Sends the due entries of ``app``'s schedule while it leads the beats sharing ``store``."""

    def __init__(
        self,
        app: Celery,
        *,
        store: ScheduleStore,
        lease: LeaderLease,
        max_interval: float | None = None,
        poll_interval: float = 1.0,
        holder: str | None = None,
    ) -> None:
        self.app = app
        self.clock = app.clock
        self.store = store
        self.lease = lease
        self.max_interval = float(
            max_interval or app.conf.get("beat_max_loop_interval") or DEFAULT_MAX_INTERVAL
        )
        self.poll_interval = poll_interval
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.config_entries = parse_beat_schedule(default_beat_entries(app), app)
        self._token: int | None = None
        self._lease_until = 0.0
        self._renew_at = 0.0
        self._next_attempt = 0.0
        self._stored: dict[str, tuple[str, ScheduleEntry | None]] = {}

    @property
    def is_leader(self) -> bool:
        return self._token is not None and self.clock.time() < self._lease_until

    @property
    def token(self) -> int | None:
        """The fencing token of this beat's current term as leader, or None."""
        return self._token if self.is_leader else None

    # -- one pass ---------------------------------------------------------------------------

    def tick(self) -> float:
        """Do one pass; return the seconds to wait before the next."""
        now = self.clock.time()
        try:
            if not self._lead(now):
                return max(0.0, min(self._next_attempt - now, self.max_interval))
            wait = self._run_entries(now)
        except _Deposed:
            return 0.0
        except OperationalError as exc:
            logger.error("beat: %s; trying again in %.1f s", exc, self.poll_interval)
            return self.poll_interval
        return max(0.0, min(wait, self.max_interval, self._renew_at - self.clock.time()))

    def _lead(self, now: float) -> bool:
        ttl = self.lease.ttl
        if self._token is not None and now >= self._renew_at:
            if self.lease.renew(self.holder, self._token):
                self._lease_until, self._renew_at = now + ttl, now + ttl / 3
            else:
                self._step_down("its lease expired or another beat took it")
        if self._token is None and now >= self._next_attempt:
            self._next_attempt = now + min(self.poll_interval, ttl / 3)
            token = self.lease.acquire(self.holder)
            if token is not None:
                self._token, self._lease_until, self._renew_at = token, now + ttl, now + ttl / 3
                logger.info("beat %s: now leading the schedule (token %d)", self.holder, token)
        return self._token is not None and now < self._lease_until

    def _step_down(self, why: str) -> None:
        logger.warning("beat %s: no longer leading: %s", self.holder, why)
        self._token, self._lease_until, self._renew_at = None, 0.0, 0.0

    def _checked(self, claim: Claim) -> bool:
        if claim is Claim.DEPOSED:
            self._step_down("a beat with a newer fencing token has written to the store")
            raise _Deposed
        return claim is Claim.CLAIMED

    def entries(self, states: Mapping[str, EntryState] | None = None) -> dict[str, ScheduleEntry]:
        """The configured entries and the stored ones (configured win a name clash)."""
        merged = dict(self.config_entries)
        for name, state in (self.store.entries() if states is None else states).items():
            if state.definition is None:
                continue
            text = json.dumps(state.definition, sort_keys=True, default=repr)
            cached = self._stored.get(name)
            if cached is None or cached[0] != text:
                cached = (text, self._parse_stored(name, state, merged))
                self._stored[name] = cached
            if cached[1] is not None and name not in merged:
                merged[name] = cached[1]
        return merged

    def _parse_stored(
        self, name: str, state: EntryState, merged: Mapping[str, ScheduleEntry]
    ) -> ScheduleEntry | None:
        if name in merged:
            logger.warning("beat: stored entry %r is shadowed by beat_schedule's", name)
            return None
        try:
            return entry_from_definition(name, state.definition or {}, self.app)
        except CeleryError as exc:
            logger.error("beat: ignoring stored entry %r: %s", name, exc)
            return None

    def _run_entries(self, now: float) -> float:
        token = self._token
        assert token is not None
        states = self.store.entries()
        entries = self.entries(states)
        started = False
        for name, entry in entries.items():
            state = states.get(name)
            if state and state.fingerprint == entry.fingerprint and state.last_run_at is not None:
                continue
            claim = self.store.start_entry(name, entry.fingerprint, now, token=token)
            started |= self._checked(claim)
        if started:
            states = self.store.entries()
        wait = self.max_interval
        for name, entry in entries.items():
            state = states.get(name)
            if state is None or not state.enabled:
                continue
            if self.clock.time() >= self._lease_until:  # a long pass: stop before it is stale
                return 0.0
            try:
                wait = min(wait, self._run_entry(entry, state, now, token))
            except (_Deposed, OperationalError):
                raise
            except Exception:
                logger.exception("beat: entry %r failed; its schedule is skipped this time", name)
        return wait

    def _run_entry(self, entry: ScheduleEntry, state: EntryState, now: float, token: int) -> float:
        """Send what is due of one entry; return the seconds until it needs looking at again."""
        if state.pending_task_id is not None and state.pending_since is not None:
            retry_at = state.pending_since + self.lease.ttl
            if now < retry_at:
                return retry_at - now
            if self._checked(
                self.store.retake_pending(
                    entry.name, token=token, since=state.pending_since, now=now
                )
            ):
                logger.warning(
                    "beat: resending %s (task id %s): its send was not confirmed (a beat died "
                    "or the broker failed); a worker may see it twice",
                    entry.name,
                    state.pending_task_id,
                )
                self._publish(entry, state.pending_task_id)
            return 0.0
        if state.run_requested:
            self._claim_and_send(entry, state, now, token, requested=True)
            return 0.0
        last = _utc(state.last_run_at or now)
        due, next_check = entry.is_due(last)
        if not due:
            return float(next_check)
        if entry.missed == "skip" and _stale(entry, last):
            if self._checked(
                self.store.claim_run(
                    entry.name, token=token, last_run_at=state.last_run_at, run_at=now, task_id=None
                )
            ):
                late = -entry.schedule.remaining_estimate(last).total_seconds()
                logger.info("beat: skipped %s: its run was missed by %.0f s", entry.name, late)
        else:
            self._claim_and_send(entry, state, now, token)
        return float(next_check)

    def _claim_and_send(
        self,
        entry: ScheduleEntry,
        state: EntryState,
        now: float,
        token: int,
        requested: bool = False,
    ) -> None:
        task_id = str(uuid.uuid4())
        claim = self.store.claim_run(
            entry.name,
            token=token,
            last_run_at=state.last_run_at,
            run_at=now,
            task_id=task_id,
            requested=requested,
        )
        if self._checked(claim):
            logger.info("Scheduler: Sending due task %s (%s)", entry.name, entry.task)
            self._publish(entry, task_id)

    def _publish(self, entry: ScheduleEntry, task_id: str) -> None:
        """Send, then confirm; a broker failure leaves the send pending, to be sent again."""
        try:
            self.send(entry, task_id)
        except OperationalError as exc:
            logger.error(
                "beat: could not send %s (%s); will retry it: %s", entry.name, task_id, exc
            )
            return
        except Exception as exc:
            logger.error("beat: couldn't apply scheduled task %s: %r", entry.name, exc)
        self.store.confirm_sent(entry.name, task_id)

    def send(self, entry: ScheduleEntry, task_id: str) -> None:
        """Publish one run of ``entry`` as Celery's beat does."""
        options = dict(entry.options)
        headers = {**dict(options.pop("headers", None) or {}), "celery_beat_task": True}
        task = self.app.tasks.get(entry.task)
        if task is not None:
            task.apply_async(entry.args, entry.kwargs, task_id=task_id, headers=headers, **options)
        else:
            self.app.send_task(
                entry.task, entry.args, entry.kwargs, task_id=task_id, headers=headers, **options
            )

    # -- the loop ---------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> None:
        """Tick until ``stop`` is set; then give the lease up so another beat leads at once."""
        stop = stop or threading.Event()
        seen = -1
        try:
            while not stop.is_set():
                seen = self._idle(self.tick(), stop, seen)
        finally:
            self.close()

    def _idle(self, seconds: float, stop: threading.Event, seen: int) -> int:
        """Wait up to ``seconds``, or until the store is edited; return the store's version."""
        deadline = self.clock.monotonic() + seconds
        while not stop.is_set():
            left = deadline - self.clock.monotonic()
            if left <= 0:
                break
            if isinstance(self.clock, SystemClock):
                stop.wait(min(left, self.poll_interval))  # wakes at once when stopped
            else:
                self.clock.sleep(min(left, self.poll_interval))
            try:
                version = self.store.version()
            except OperationalError:
                continue
            if version != seen:
                return version
        return seen

    def close(self) -> None:
        """Release the lease if this beat holds it. Idempotent."""
        token, self._token = self._token, None
        if token is not None:
            try:
                self.lease.release(self.holder, token)
            except OperationalError as exc:
                logger.warning("beat: could not release the leader lease: %s", exc)
