"""Reading the dashboard store: pages of tasks, one task, workers, charts and counters.

``Reads`` is the read half of ``DashboardStore`` (the schema is drawn in ``store``). Pages
of tasks use keyset pagination: a page ends with a cursor ``"<seen_at>:<id>"`` of its last
row, and the next page asks for rows strictly older than it, so a page is one index range
scan however deep into a million rows it is. ``query_plan`` shows SQLite's plan for a page
(tests check it walks an index rather than sorting or scanning the table).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from celeriac import states
from celeriac._sqlite import Database
from celeriac._time import Clock
from celeriac.dashboard.fold import RUNTIME_BUCKETS

__all__ = ["Reads", "TaskFilter", "TaskPage", "parse_cursor"]

_SUMMARY_TEXT_LIMIT = 200
_UNREADY = (states.STARTED, states.RECEIVED, states.PENDING, states.RETRY)


@dataclass(frozen=True)
class TaskFilter:
    """Which tasks a page shows; None means any. Times are Unix seconds of first sight."""

    state: str | None = None
    name: str | None = None
    worker: str | None = None
    since: float | None = None
    until: float | None = None


@dataclass(frozen=True)
class TaskPage:
    """Task summaries, newest first, and the cursor of the next page (None at the end)."""

    tasks: list[dict[str, Any]]
    next: str | None


def parse_cursor(cursor: str) -> tuple[float, int]:
    """``(seen_at, id)`` from a page cursor; ``ValueError`` when it is not one."""
    seen_at, sep, row_id = cursor.rpartition(":")
    if not sep:
        raise ValueError(f"not a page cursor: {cursor!r}")
    return float(seen_at), int(row_id)


def _page_sql(filt: TaskFilter, after: str | None, limit: int) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for column in ("state", "name", "worker"):
        value = getattr(filt, column)
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if filt.since is not None:
        clauses.append("seen_at >= ?")
        params.append(filt.since)
    if filt.until is not None:
        clauses.append("seen_at < ?")
        params.append(filt.until)
    if after is not None:
        seen_at, row_id = parse_cursor(after)
        clauses.append("seen_at <= ? AND (seen_at < ? OR id < ?)")
        params += [seen_at, seen_at, row_id]
    where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
    sql = f"SELECT * FROM celeriac_dashboard_tasks {where}ORDER BY seen_at DESC, id DESC LIMIT ?"
    return sql, [*params, limit]


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _SUMMARY_TEXT_LIMIT:
        return value[: _SUMMARY_TEXT_LIMIT - 1] + "…"
    return value


def summary(row: Mapping[str, Any]) -> dict[str, Any]:
    """A task as lists show it: long texts clipped, progress as ``{current, total}``."""
    item = {
        key: _clip(row[key])
        for key in (
            "uuid",
            "name",
            "state",
            "worker",
            "queue",
            "seen_at",
            "updated_at",
            "started_at",
            "finished_at",
            "runtime",
            "retries",
            "args",
            "kwargs",
            "result",
            "exception",
        )
    }
    item["progress"] = _progress(row)
    return item


def detail(row: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the store knows of a task."""
    item = {key: row[key] for key in _keys(row) if key not in ("progress_current", "id")}
    item["progress"] = _progress(row)
    return item


def _keys(row: Any) -> list[str]:
    """Column names of a row (``sqlite3.Row`` iterates its values, dicts their keys)."""
    return list(row.keys())


def _progress(row: Mapping[str, Any]) -> dict[str, float] | None:
    if row["progress_total"] is None:
        return None
    return {"current": row["progress_current"] or 0.0, "total": row["progress_total"]}


def worker_view(row: Mapping[str, Any], now: float) -> dict[str, Any]:
    """A worker as the API shows it; online while heartbeats arrive (within 2 x freq + 1 s)."""
    freq = float(row["freq"] or 2.0)
    last = float(row["last_heartbeat"] or 0.0)
    return {
        "hostname": row["hostname"],
        "online": bool(row["online"]) and now - last <= freq * 2 + 1.0,
        "last_heartbeat": last or None,
        "freq": freq,
        "active": row["active"],
        "processed": row["processed"],
        "loadavg": json.loads(row["loadavg"]) if row["loadavg"] else None,
        "pid": row["pid"],
        "sw_ident": row["sw_ident"],
        "sw_ver": row["sw_ver"],
        "sw_sys": row["sw_sys"],
        "pool": json.loads(row["pool"]) if row["pool"] else None,
        "queues": json.loads(row["queues"]) if row["queues"] else None,
    }


def task_row(conn: sqlite3.Connection, uuid: str) -> dict[str, Any] | None:
    found = conn.execute("SELECT * FROM celeriac_dashboard_tasks WHERE uuid = ?", (uuid,))
    row = found.fetchone()
    return None if row is None else {k: row[k] for k in _keys(row) if k != "id"}


def worker_row(conn: sqlite3.Connection, hostname: str) -> dict[str, Any] | None:
    found = conn.execute("SELECT * FROM celeriac_dashboard_workers WHERE hostname = ?", (hostname,))
    row = found.fetchone()
    return None if row is None else dict(zip(row.keys(), tuple(row), strict=True))


class Reads:
    """Queries over the dashboard store."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._reads_db = db
        self._reads_clock = clock

    def tasks(self, filt: TaskFilter, *, after: str | None = None, limit: int = 50) -> TaskPage:
        """A page of tasks matching ``filt``, newest first, older than cursor ``after``."""
        sql, params = _page_sql(filt, after, limit)
        with self._reads_db.using("read a page of tasks") as conn:
            rows = conn.execute(sql, params).fetchall()
        cursor = f"{rows[-1]['seen_at']!r}:{rows[-1]['id']}" if len(rows) == limit else None
        return TaskPage([summary(row) for row in rows], cursor)

    def query_plan(self, filt: TaskFilter, *, after: str | None = None) -> list[str]:
        """SQLite's ``EXPLAIN QUERY PLAN`` lines for the page query of ``filt``."""
        sql, params = _page_sql(filt, after, 50)
        with self._reads_db.using("explain a page query") as conn:
            return [str(row[3]) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]

    def task(self, uuid: str) -> dict[str, Any] | None:
        """Everything known of one task; None when it is not in the history."""
        with self._reads_db.using("read a task") as conn:
            row = conn.execute(
                "SELECT * FROM celeriac_dashboard_tasks WHERE uuid = ?", (uuid,)
            ).fetchone()
        return None if row is None else detail(row)

    def workers(self) -> list[dict[str, Any]]:
        """Every worker seen, by hostname, with whether it is online now."""
        now = self._reads_clock.time()
        with self._reads_db.using("read workers") as conn:
            rows = conn.execute("SELECT * FROM celeriac_dashboard_workers ORDER BY hostname")
            return [worker_view(row, now) for row in rows.fetchall()]

    def in_flight(self, limit: int = 100) -> list[str]:
        """Ids of the newest unfinished tasks (started ones first), to poll for progress."""
        found: list[str] = []
        with self._reads_db.using("find tasks in flight") as conn:
            for state in _UNREADY:
                rows = conn.execute(
                    "SELECT uuid FROM celeriac_dashboard_tasks WHERE state = ? "
                    "ORDER BY seen_at DESC LIMIT ?",
                    (state, limit - len(found)),
                ).fetchall()
                found += [row[0] for row in rows]
                if len(found) >= limit:
                    break
        return found

    def timeseries(self, since: float, step: int = 60) -> list[dict[str, Any]]:
        """Tasks entering each state per ``step`` seconds (a multiple of 60) since ``since``."""
        step = max(60, step - step % 60)
        first = int(since // step) * step
        last = int(self._reads_clock.time() // step) * step
        points: dict[int, dict[str, Any]] = {t: {"t": t} for t in range(first, last + 1, step)}
        with self._reads_db.using("read the charts") as conn:
            rows = conn.execute(
                "SELECT bucket, state, count FROM celeriac_dashboard_counts WHERE bucket >= ?",
                (first // 60,),
            ).fetchall()
        for bucket, state, count in rows:
            t = (bucket * 60) // step * step
            if t in points:
                points[t][state] = points[t].get(state, 0) + count
        return [points[t] for t in sorted(points)]

    def totals(self) -> list[tuple[str, str, int]]:
        """(task name, state, tasks that entered it ever), for Prometheus counters."""
        with self._reads_db.using("read totals") as conn:
            rows = conn.execute("SELECT name, state, count FROM celeriac_dashboard_totals")
            return [(str(n), str(s), int(c)) for n, s, c in rows.fetchall()]

    def runtimes(self) -> list[tuple[str, int, float, list[int]]]:
        """(task name, count, sum, cumulative counts per ``RUNTIME_BUCKETS`` and +Inf)."""
        with self._reads_db.using("read runtimes") as conn:
            rows = conn.execute("SELECT name, count, sum, buckets FROM celeriac_dashboard_runtimes")
            found = rows.fetchall()
        result = []
        for name, count, total, buckets in found:
            counts: list[int] = json.loads(buckets)[: len(RUNTIME_BUCKETS) + 1]
            cumulative = [sum(counts[: i + 1]) for i in range(len(counts))]
            result.append((str(name), int(count), float(total), cumulative))
        return result

    def task_names(self) -> list[str]:
        """Names of the tasks seen (for filters and rate limits)."""
        with self._reads_db.using("read task names") as conn:
            rows = conn.execute(
                "SELECT DISTINCT name FROM celeriac_dashboard_totals WHERE name != '' ORDER BY name"
            )
            return [str(row[0]) for row in rows.fetchall()]
