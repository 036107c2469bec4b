"""``/metrics``: the dashboard's numbers in Prometheus' text exposition format (version 0.0.4).

    celeriac_tasks_total{name,state}           counter: tasks that entered each state
    celeriac_task_runtime_seconds{name}        histogram of successful tasks' runtimes
    celeriac_queue_length{queue}               gauge: messages waiting
    celeriac_queue_consumers{queue}            gauge: workers consuming (with remote control)
    celeriac_workers_online                    gauge: workers sending heartbeats
    celeriac_worker_online{worker}             gauge: 1 online, 0 offline
    celeriac_worker_active_tasks{worker}       gauge: tasks running (from heartbeats)
    celeriac_worker_processed_total{worker}    counter: tasks the worker finished

Counters come from the store, so they survive a restart of the dashboard and are not cut
by the history's retention.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from celeriac._prometheus import CONTENT_TYPE, histogram
from celeriac._prometheus import Family as _Family
from celeriac.dashboard.fold import RUNTIME_BUCKETS

__all__ = ["CONTENT_TYPE", "render"]


def render(
    totals: Iterable[tuple[str, str, int]],
    runtimes: Iterable[tuple[str, int, float, list[int]]],
    queues: Iterable[Mapping[str, Any]],
    workers: Iterable[Mapping[str, Any]],
) -> str:
    """The exposition text for the store's counters, queue samples and workers."""
    lines: list[str] = []
    tasks = _Family(lines, "celeriac_tasks_total", "counter", "Tasks that entered each state.")
    for name, state, count in sorted(totals):
        tasks.sample(count, name=name, state=state)
    runtime = _Family(
        lines, "celeriac_task_runtime_seconds", "histogram", "Runtime of successful tasks."
    )
    for name, count, total, cumulative in sorted(runtimes):
        histogram(runtime, RUNTIME_BUCKETS, cumulative, total, count, name=name)
    queue_list = list(queues)
    length = _Family(lines, "celeriac_queue_length", "gauge", "Messages waiting in the queue.")
    for queue in queue_list:
        if queue.get("length") is not None:
            length.sample(queue["length"], queue=str(queue["name"]))
    consumers = _Family(
        lines, "celeriac_queue_consumers", "gauge", "Workers consuming from the queue."
    )
    for queue in queue_list:
        if queue.get("consumers") is not None:
            consumers.sample(queue["consumers"], queue=str(queue["name"]))
    _worker_families(lines, list(workers))
    return "\n".join(lines) + "\n"


def _worker_families(lines: list[str], workers: list[Mapping[str, Any]]) -> None:
    online = [w for w in workers if w.get("online")]
    _Family(lines, "celeriac_workers_online", "gauge", "Workers sending heartbeats.").sample(
        len(online)
    )
    up = _Family(lines, "celeriac_worker_online", "gauge", "1 if the worker is online.")
    active = _Family(lines, "celeriac_worker_active_tasks", "gauge", "Tasks the worker runs.")
    processed = _Family(
        lines, "celeriac_worker_processed_total", "counter", "Tasks the worker finished."
    )
    for worker in workers:
        hostname = str(worker["hostname"])
        up.sample(1 if worker.get("online") else 0, worker=hostname)
        if worker.get("active") is not None:
            active.sample(worker["active"], worker=hostname)
        if worker.get("processed") is not None:
            processed.sample(worker["processed"], worker=hostname)
