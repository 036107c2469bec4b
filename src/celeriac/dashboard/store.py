"""The dashboard's history: tasks, workers and counters folded from events, in one SQLite file.

By default the file is ``celeriac-dashboard.sqlite`` beside the SQLite broker's file (in the
working directory for other brokers), so a restart of the dashboard loses nothing. Schema::

    celeriac_dashboard_tasks        one row per task id
      id            INTEGER PRIMARY KEY       order of first sight; breaks ties in pages
      uuid          TEXT UNIQUE               the task id
      name, state, worker, queue   TEXT      '' until an event names them
      seen_at       REAL                      time of the first event seen (never changes)
      updated_at    REAL                      time of the latest event
      sent_at, received_at, started_at, finished_at     REAL NULL
      args, kwargs, result, exception, traceback, eta, expires, root_id, parent_id TEXT NULL
      runtime REAL NULL, retries INTEGER, progress_current REAL NULL, progress_total REAL NULL
      INDEX (seen_at), (state, seen_at), (name, seen_at), (worker, seen_at)
    celeriac_dashboard_workers      hostname PRIMARY KEY, online, freq, last_heartbeat, active,
                                    processed, loadavg (JSON), pid, sw_ident, sw_ver, sw_sys,
                                    pool (JSON, from inspect stats), queues (JSON list)
    celeriac_dashboard_counts       (bucket, state) PRIMARY KEY, count: tasks entering each
                                    state per minute (bucket = Unix minute), for the charts
    celeriac_dashboard_totals       (name, state) PRIMARY KEY, count: tasks entering each state
                                    ever; the Prometheus counters (kept past retention)
    celeriac_dashboard_runtimes     name PRIMARY KEY, count, sum, buckets (JSON list of counts
                                    per ``fold.RUNTIME_BUCKETS``): the runtime histogram

Pages of tasks are newest first, ordered by ``(seen_at, id)``, and continue from a cursor
(keyset pagination: ``seen_at <= s AND (seen_at < s OR id < i)``), so a page costs the same
at the millionth row as at the first; each filter column leads an index that ends in
``seen_at`` (and the implicit rowid), so a filtered page is one index range scan.

Atomic steps, one ``BEGIN IMMEDIATE`` transaction each: ``apply`` (a batch of events:
tasks, workers, counts, totals, runtimes together), ``apply_metas``, ``set_worker_info``, and
each chunk of ``trim`` (retention: tasks older than ``retention_days`` or past ``max_tasks``
go, in chunks of 5,000 so readers never wait long; chart counts and workers unheard of for
``retention_days`` go with the last chunk). Reads live in ``queries``.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from celeriac import states
from celeriac._sqlite import Database
from celeriac._time import Clock, system_clock
from celeriac.dashboard import queries as _queries
from celeriac.dashboard.fold import (
    RUNTIME_BUCKETS,
    fold_task_event,
    fold_worker_event,
    meta_to_event,
    new_task_row,
    runtime_bucket,
)

__all__ = ["DEFAULT_FILENAME", "Changes", "DashboardStore", "default_path"]

DEFAULT_FILENAME = "celeriac-dashboard.sqlite"
_CHUNK = 5000

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS celeriac_dashboard_tasks (
        id INTEGER PRIMARY KEY, uuid TEXT NOT NULL UNIQUE, name TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL, worker TEXT NOT NULL DEFAULT '', queue TEXT NOT NULL DEFAULT '',
        seen_at REAL NOT NULL, updated_at REAL NOT NULL, sent_at REAL, received_at REAL,
        started_at REAL, finished_at REAL, args TEXT, kwargs TEXT, result TEXT,
        exception TEXT, traceback TEXT, runtime REAL, retries INTEGER NOT NULL DEFAULT 0,
        eta TEXT, expires TEXT, root_id TEXT, parent_id TEXT, progress_current REAL,
        progress_total REAL)""",
    "CREATE INDEX IF NOT EXISTS celeriac_dashboard_tasks_seen "
    "ON celeriac_dashboard_tasks (seen_at)",
    "CREATE INDEX IF NOT EXISTS celeriac_dashboard_tasks_state "
    "ON celeriac_dashboard_tasks (state, seen_at)",
    "CREATE INDEX IF NOT EXISTS celeriac_dashboard_tasks_name "
    "ON celeriac_dashboard_tasks (name, seen_at)",
    "CREATE INDEX IF NOT EXISTS celeriac_dashboard_tasks_worker "
    "ON celeriac_dashboard_tasks (worker, seen_at)",
    """CREATE TABLE IF NOT EXISTS celeriac_dashboard_workers (
        hostname TEXT PRIMARY KEY, online INTEGER NOT NULL DEFAULT 0, freq REAL NOT NULL
        DEFAULT 2.0, last_heartbeat REAL NOT NULL DEFAULT 0, active INTEGER, processed INTEGER,
        loadavg TEXT, pid INTEGER, sw_ident TEXT, sw_ver TEXT, sw_sys TEXT, pool TEXT,
        queues TEXT)""",
    """CREATE TABLE IF NOT EXISTS celeriac_dashboard_counts (
        bucket INTEGER NOT NULL, state TEXT NOT NULL, count INTEGER NOT NULL,
        PRIMARY KEY (bucket, state))""",
    """CREATE TABLE IF NOT EXISTS celeriac_dashboard_totals (
        name TEXT NOT NULL, state TEXT NOT NULL, count INTEGER NOT NULL,
        PRIMARY KEY (name, state))""",
    """CREATE TABLE IF NOT EXISTS celeriac_dashboard_runtimes (
        name TEXT PRIMARY KEY, count INTEGER NOT NULL, sum REAL NOT NULL, buckets TEXT NOT NULL)""",
]

_TASK_COLUMNS = tuple(new_task_row("", 0.0))
_UPSERT_TASK = (
    f"INSERT INTO celeriac_dashboard_tasks ({', '.join(_TASK_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _TASK_COLUMNS)}) ON CONFLICT (uuid) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _TASK_COLUMNS if c not in ("uuid", "seen_at"))
)


def default_path(broker_url: str) -> str:
    """Where the history goes by default: beside the SQLite broker's file, else here."""
    scheme, _, rest = broker_url.partition("://")
    if scheme == "sqlite" and rest.startswith("/") and rest.strip("/"):
        broker_file = rest[1:]  # sqlite:///relative or sqlite:////absolute
        return os.path.join(os.path.dirname(os.path.abspath(broker_file)), DEFAULT_FILENAME)
    return os.path.abspath(DEFAULT_FILENAME)


@dataclass(frozen=True)
class Changes:
    """What a batch changed: task summaries and worker rows, for the live view."""

    tasks: list[dict[str, Any]] = field(default_factory=list)
    workers: list[dict[str, Any]] = field(default_factory=list)


class DashboardStore(_queries.Reads):
    """Task history, workers and counters in an SQLite file; any thread may call."""

    def __init__(
        self,
        path: str,
        *,
        clock: Clock = system_clock,
        retention_days: float = 7.0,
        max_tasks: int = 1_000_000,
    ) -> None:
        self.clock = clock
        self.retention_days = retention_days
        self.max_tasks = max_tasks
        self._db = Database(
            path,
            _SCHEMA,
            what="dashboard store",
            rows=True,
            not_sqlite="the file is not a dashboard store: move it away, or choose another "
            "with --db",
        )
        self.path = self._db.path
        super().__init__(self._db, clock)

    def close(self) -> None:
        self._db.close()

    # -- writes -----------------------------------------------------------------------------

    def apply(self, events: Sequence[Mapping[str, Any]]) -> Changes:
        """Fold a batch of Celery events (task-* and worker-*) in, in one transaction."""
        now = self.clock.time()
        rows: dict[str, dict[str, Any]] = {}
        counts: Counter[tuple[int, str]] = Counter()
        totals: Counter[tuple[str, str]] = Counter()
        runtimes: dict[str, list[float]] = {}
        workers: dict[str, dict[str, Any]] = {}
        with self._db.using("record events", write=True) as conn:
            for event in events:
                kind = str(event.get("type", ""))
                stamp = event.get("timestamp")
                ts = float(stamp) if isinstance(stamp, int | float) else now
                uuid = event.get("uuid")
                if kind.startswith("task-") and isinstance(uuid, str) and uuid:
                    row = rows.get(uuid) or _queries.task_row(conn, uuid) or new_task_row(uuid, ts)
                    row, entered = fold_task_event(row, event, ts)
                    rows[uuid] = row
                    if entered is not None:
                        counts[(int(ts // 60), entered)] += 1
                        totals[(str(row["name"]), entered)] += 1
                    if entered == states.SUCCESS and row["runtime"] is not None:
                        runtimes.setdefault(str(row["name"]), []).append(float(row["runtime"]))
                elif kind.startswith("worker-") and isinstance(event.get("hostname"), str):
                    hostname = str(event["hostname"])
                    base = workers.get(hostname) or _queries.worker_row(conn, hostname)
                    workers[hostname] = fold_worker_event(base, hostname, event, ts)
            self._write(conn, rows, counts, totals, runtimes, workers)
        return Changes(
            tasks=[_queries.summary(row) for row in rows.values()],
            workers=[_queries.worker_view(row, now) for row in workers.values()],
        )

    def _write(
        self,
        conn: sqlite3.Connection,
        rows: Mapping[str, Mapping[str, Any]],
        counts: Counter[tuple[int, str]],
        totals: Counter[tuple[str, str]],
        runtimes: Mapping[str, list[float]],
        workers: Mapping[str, Mapping[str, Any]],
    ) -> None:
        conn.executemany(_UPSERT_TASK, [[r[c] for c in _TASK_COLUMNS] for r in rows.values()])
        conn.executemany(
            "INSERT INTO celeriac_dashboard_counts VALUES (?, ?, ?) ON CONFLICT (bucket, state) "
            "DO UPDATE SET count = count + excluded.count",
            [(bucket, state, n) for (bucket, state), n in counts.items()],
        )
        conn.executemany(
            "INSERT INTO celeriac_dashboard_totals VALUES (?, ?, ?) ON CONFLICT (name, state) "
            "DO UPDATE SET count = count + excluded.count",
            [(name, state, n) for (name, state), n in totals.items()],
        )
        for name, samples in runtimes.items():
            found = conn.execute(
                "SELECT count, sum, buckets FROM celeriac_dashboard_runtimes WHERE name = ?",
                (name,),
            ).fetchone()
            count, total = (found[0], found[1]) if found else (0, 0.0)
            buckets = json.loads(found[2]) if found else [0] * (len(RUNTIME_BUCKETS) + 1)
            for runtime in samples:
                buckets[runtime_bucket(runtime)] += 1
            conn.execute(
                "INSERT OR REPLACE INTO celeriac_dashboard_runtimes VALUES (?, ?, ?, ?)",
                (name, count + len(samples), total + sum(samples), json.dumps(buckets)),
            )
        for row in workers.values():
            conn.execute(
                "INSERT OR REPLACE INTO celeriac_dashboard_workers (hostname, online, freq, "
                "last_heartbeat, active, processed, loadavg, pid, sw_ident, sw_ver, sw_sys, "
                "pool, queues) VALUES (:hostname, :online, :freq, :last_heartbeat, :active, "
                ":processed, :loadavg, :pid, :sw_ident, :sw_ver, :sw_sys, :pool, :queues)",
                dict(row),
            )

    def apply_metas(self, metas: Mapping[str, Mapping[str, Any]]) -> Changes:
        """Fold in what the result store says of tasks in flight: progress, or an outcome.

        A ``{'current': n, 'total': m}`` result (``update_state(state='PROGRESS', ...)``)
        sets the task's progress; a SUCCESS, FAILURE or REVOKED meta finishes the task when
        its event was missed.
        """
        now = self.clock.time()
        events: list[dict[str, Any]] = []
        progress: list[tuple[float, float, str]] = []
        for uuid, meta in metas.items():
            event = meta_to_event(uuid, meta, now)
            if event is not None:
                events.append(event)
                continue
            result = meta.get("result")
            if meta.get("status") not in states.READY_STATES and isinstance(result, Mapping):
                current, total = result.get("current"), result.get("total")
                if isinstance(current, int | float) and isinstance(total, int | float):
                    progress.append((float(current), float(total), uuid))
        changed = self.apply(events) if events else Changes()
        if not progress:
            return changed
        with self._db.using("record progress", write=True) as conn:
            conn.executemany(
                "UPDATE celeriac_dashboard_tasks SET progress_current = ?, progress_total = ? "
                "WHERE uuid = ?",
                progress,
            )
            rows = [_queries.task_row(conn, uuid) for _, _, uuid in progress]
        summaries = [_queries.summary(row) for row in rows if row is not None]
        return Changes(tasks=changed.tasks + summaries, workers=changed.workers)

    def set_worker_info(
        self, hostname: str, *, pool: Mapping[str, Any] | None, queues: Sequence[str] | None
    ) -> None:
        """Record what remote control told of a worker: its pool and the queues it consumes."""
        with self._db.using("record a worker's pool", write=True) as conn:
            conn.execute(
                "INSERT INTO celeriac_dashboard_workers (hostname, pool, queues) VALUES (?, ?, ?) "
                "ON CONFLICT (hostname) DO UPDATE SET pool = excluded.pool, "
                "queues = excluded.queues",
                (hostname, json.dumps(pool), json.dumps(list(queues or []))),
            )

    def trim(self) -> int:
        """Apply retention: drop tasks older than ``retention_days`` or past ``max_tasks``."""
        cutoff = self.clock.time() - self.retention_days * 86400
        with self._db.using("find the oldest task to keep") as conn:
            found = conn.execute(
                "SELECT seen_at FROM celeriac_dashboard_tasks ORDER BY seen_at DESC, id DESC "
                "LIMIT 1 OFFSET ?",
                (max(self.max_tasks - 1, 0),),
            ).fetchone()
        if found is not None:
            cutoff = max(cutoff, float(found[0]))
        dropped = 0
        while True:
            with self._db.using("drop old tasks", write=True) as conn:
                gone = conn.execute(
                    "DELETE FROM celeriac_dashboard_tasks WHERE id IN (SELECT id FROM "
                    "celeriac_dashboard_tasks WHERE seen_at < ? ORDER BY seen_at LIMIT ?)",
                    (cutoff, _CHUNK),
                ).rowcount
                if gone < _CHUNK:
                    oldest = self.clock.time() - self.retention_days * 86400
                    conn.execute(
                        "DELETE FROM celeriac_dashboard_counts WHERE bucket < ?",
                        (int(oldest // 60),),
                    )
                    conn.execute(
                        "DELETE FROM celeriac_dashboard_workers WHERE last_heartbeat < ?",
                        (oldest,),
                    )
            dropped += gone
            if gone < _CHUNK:
                return dropped
