"""A worker's own Prometheus endpoint: ``celeriac worker --metrics-port 9808``.

The worker's parent process sees every job start and end (the pools report both), so it
counts here, with no events and no dashboard::

    celeriac_worker_tasks_received_total{name}       counter: messages handed to the pool
    celeriac_worker_tasks_total{name,state}          counter: jobs ended, by final state
    celeriac_worker_task_runtime_seconds{name}       histogram of run times (every end)
    celeriac_worker_task_latency_seconds{name}       histogram: from the message being due
                                                     (its ETA, else its arrival here) to
                                                     its start
    celeriac_worker_prefetched                       gauge: messages held, not started
    celeriac_worker_active                           gauge: jobs running
    celeriac_worker_pool_size                        gauge: pool slots (concurrency)
    celeriac_worker_pool_utilisation                 gauge: active / pool size (0..1)

Every sample carries ``worker="<hostname>"``. Celery's message carries no publish time, so a
wait in the broker before this worker took the message is not in the latency; the
dashboard's ``celeriac_task_*`` families (from events) complement these.

``MetricsServer`` serves ``GET /metrics`` from a daemon thread (stdlib ``http.server``).
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections import Counter, defaultdict
from collections.abc import Sized
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Protocol

from celeriac._prometheus import BUCKETS, CONTENT_TYPE, Family, histogram
from celeriac.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from celeriac.app.base import Celery
    from celeriac.worker.job import Job, JobResult

__all__ = ["MetricsServer", "WorkerMetrics"]

logger = logging.getLogger("celeriac.worker")


class _Snapshots(Protocol):
    def snapshot(self) -> tuple[list[tuple[Job, bool]], Sized]: ...


class _MeteredWorker(Protocol):
    """What the metrics read of the worker (the consumer imports this module, so the
    worker's ``WorkerLike``, which names the consumer, would loop back)."""

    @property
    def app(self) -> Celery: ...

    @property
    def hostname(self) -> str: ...

    @property
    def concurrency(self) -> int: ...

    @property
    def consumer(self) -> _Snapshots | None: ...


class _Histogram:
    def __init__(self) -> None:
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.buckets[bisect.bisect_left(BUCKETS, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[int]:
        running, out = 0, []
        for count in self.buckets:
            running += count
            out.append(running)
        return out


class WorkerMetrics:
    """Counts what one worker's pool did; ``render()`` is the exposition text."""

    def __init__(self, worker: _MeteredWorker) -> None:
        self.worker = worker
        self._lock = threading.Lock()
        self._received: Counter[str] = Counter()
        self._ended: Counter[tuple[str, str]] = Counter()
        self._runtime: defaultdict[str, _Histogram] = defaultdict(_Histogram)
        self._latency: defaultdict[str, _Histogram] = defaultdict(_Histogram)
        self._arrived: dict[int, float] = {}  # job key -> clock time it reached the pool

    # -- fed by the consumer -----------------------------------------------------------------

    def received(self, job: Job) -> None:
        with self._lock:
            self._received[job.name] += 1
            self._arrived[job.key] = self.worker.app.clock.time()

    def started(self, job: Job) -> None:
        start = job.started_at or self.worker.app.clock.time()
        with self._lock:
            due = self._arrived.pop(job.key, start)
        if job.message.eta is not None:
            due = max(due, job.message.eta.timestamp())
        with self._lock:
            self._latency[job.name].observe(max(0.0, start - due))

    def finished(self, job: Job, result: JobResult) -> None:
        with self._lock:
            self._arrived.pop(job.key, None)
            self._ended[(job.name, result.state)] += 1
            self._runtime[job.name].observe(max(0.0, result.runtime))

    # -- read by the endpoint ----------------------------------------------------------------

    def render(self) -> str:
        worker = self.worker
        node = worker.hostname
        lines: list[str] = []
        with self._lock:
            received = sorted(self._received.items())
            ended = sorted(self._ended.items())
            runtime = sorted(
                (n, h.cumulative(), h.total, h.count) for n, h in self._runtime.items()
            )
            latency = sorted(
                (n, h.cumulative(), h.total, h.count) for n, h in self._latency.items()
            )
        family = Family(
            lines,
            "celeriac_worker_tasks_received_total",
            "counter",
            "Task messages handed to the pool.",
        )
        for name, count in received:
            family.sample(count, worker=node, name=name)
        family = Family(
            lines, "celeriac_worker_tasks_total", "counter", "Jobs ended, by final state."
        )
        for (name, state), count in ended:
            family.sample(count, worker=node, name=name, state=state)
        for metric, rows, text in (
            ("celeriac_worker_task_runtime_seconds", runtime, "Run time of jobs."),
            (
                "celeriac_worker_task_latency_seconds",
                latency,
                "From a message being due (ETA, else arrival at this worker) to its start.",
            ),
        ):
            family = Family(lines, metric, "histogram", text)
            for name, cumulative, total, count in rows:
                histogram(family, BUCKETS, cumulative, total, count, worker=node, name=name)
        self._gauges(lines, node)
        return "\n".join(lines) + "\n"

    def _gauges(self, lines: list[str], node: str) -> None:
        consumer = self.worker.consumer
        active = prefetched = 0
        if consumer is not None:
            jobs, timer = consumer.snapshot()
            active = sum(1 for job, _ in jobs if job.started_at is not None)
            prefetched = len(jobs) - active + len(timer)
        size = max(1, int(self.worker.concurrency))
        for name, value, text in (
            ("celeriac_worker_prefetched", prefetched, "Messages held by the worker, not started."),
            ("celeriac_worker_active", active, "Jobs running."),
            ("celeriac_worker_pool_size", size, "Pool slots (concurrency)."),
            ("celeriac_worker_pool_utilisation", active / size, "Running jobs per pool slot."),
        ):
            Family(lines, name, "gauge", text).sample(value, worker=node)


class MetricsServer:
    """``GET /metrics`` for one worker, on ``host:port`` (port 0: any free port)."""

    def __init__(self, metrics: WorkerMetrics, host: str, port: int) -> None:
        self.metrics = metrics
        try:
            self._server = ThreadingHTTPServer((host, port), _handler(metrics))
        except OSError as exc:
            raise ImproperlyConfigured(
                f"Cannot serve worker metrics on {host}:{port}: {exc.strerror or exc}. "
                "Choose another --metrics-port (or --metrics-host)."
            ) from exc
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="MetricsServer", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()
        logger.info(
            "Metrics for Prometheus at http://%s:%d/metrics",
            self._server.server_address[0],
            self.port,
        )

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def _handler(metrics: WorkerMetrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != "/metrics":
                self.send_error(404, "Only /metrics is served here")
                return
            body = metrics.render().encode()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("metrics: " + format, *args)

    return Handler
