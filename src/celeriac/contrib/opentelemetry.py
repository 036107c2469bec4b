"""OpenTelemetry tracing for Celeriac: ``pip install "celeriac[otel]"``, then::

    from celeriac.contrib.opentelemetry import CeleriacInstrumentor
    CeleriacInstrumentor().instrument()        # in clients and in workers

Spans, in the names and attributes of ``opentelemetry-instrumentation-celery`` (so a trace
reads the same whichever side is Celery)::

    apply_async/<task name>   PRODUCER  one per publish; its context goes into the message
                                        headers as W3C ``traceparent`` (and ``tracestate``)
    run/<task name>           CONSUMER  one per execution, child of the producer span read
                                        from the headers; current while the task runs, so
                                        what the task (or its callbacks and chain steps)
                                        sends is a child of it

Attributes: ``celery.action`` (apply_async / run), ``celery.task_name``,
``messaging.message.id`` (the task id), ``messaging.destination.name`` (the routing key),
``celery.state`` and ``celery.hostname`` on runs. A failed run records the exception and
ends with status ERROR; a retry is an event on the run's span.

Everything hangs off Celeriac's signals (``before_task_publish``/``after_task_publish``,
``task_prerun``/``task_postrun``, ``task_failure``, ``task_retry``), which fire in clients,
in every pool, and in eager ``apply()``. With the prefork pool, configure the tracer
provider in each child (``worker_process_init``), as for Celery.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from celeriac import signals

__all__ = ["CeleriacInstrumentor"]

_MAX_PENDING = 10_000  # publishes whose after_task_publish never came (the publish failed)
_numbers = itertools.count(1)


class CeleriacInstrumentor:
    """Connects the tracing handlers to Celeriac's signals; ``uninstrument`` disconnects."""

    def __init__(self) -> None:
        self._uid = f"celeriac-otel-{next(_numbers)}"
        self._tracer: trace.Tracer | None = None
        self._lock = threading.Lock()
        self._publishing: OrderedDict[str, Span] = OrderedDict()
        self._running: dict[str, tuple[Span, object]] = {}

    def instrument(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        """Start tracing (with ``tracer_provider``, else the global one)."""
        from importlib.metadata import version

        self._tracer = trace.get_tracer("celeriac", version("celeriac"), tracer_provider)
        for signal, handler in self._handlers():
            signal.connect(handler, dispatch_uid=self._uid)

    def uninstrument(self) -> None:
        for signal, _ in self._handlers():
            signal.disconnect(dispatch_uid=self._uid)
        self._tracer = None

    def _handlers(self) -> list[tuple[signals.Signal, Any]]:
        return [
            (signals.before_task_publish, self._before_publish),
            (signals.after_task_publish, self._after_publish),
            (signals.task_prerun, self._prerun),
            (signals.task_failure, self._failure),
            (signals.task_retry, self._retry),
            (signals.task_postrun, self._postrun),
        ]

    # -- publishing --------------------------------------------------------------------------

    def _before_publish(
        self,
        sender: Any = None,
        headers: dict[str, Any] | None = None,
        routing_key: str | None = None,
        **_: Any,
    ) -> None:
        tracer = self._tracer
        if tracer is None or headers is None or not headers.get("id"):
            return
        name = str(getattr(sender, "name", sender) or headers.get("task") or "unknown")
        span = tracer.start_span(
            f"apply_async/{name}",
            kind=SpanKind.PRODUCER,
            attributes={
                "celery.action": "apply_async",
                "celery.task_name": name,
                "messaging.message.id": str(headers["id"]),
                "messaging.destination.name": str(routing_key or ""),
            },
        )
        propagate.inject(headers, context=trace.set_span_in_context(span))
        with self._lock:
            self._publishing[str(headers["id"])] = span
            while len(self._publishing) > _MAX_PENDING:
                stale = self._publishing.popitem(last=False)[1]
                stale.end()

    def _after_publish(self, headers: dict[str, Any] | None = None, **_: Any) -> None:
        with self._lock:
            span = self._publishing.pop(str((headers or {}).get("id")), None)
        if span is not None:
            span.end()

    # -- running -----------------------------------------------------------------------------

    def _prerun(self, task_id: str | None = None, task: Any = None, **_: Any) -> None:
        tracer = self._tracer
        if tracer is None or task_id is None or task is None:
            return
        request = task.request
        parent = propagate.extract(dict(getattr(request, "headers", None) or {}))
        span = tracer.start_span(
            f"run/{task.name}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "celery.action": "run",
                "celery.task_name": str(task.name),
                "messaging.message.id": str(task_id),
                "messaging.destination.name": str(
                    (getattr(request, "delivery_info", None) or {}).get("routing_key") or ""
                ),
            },
        )
        token = context.attach(trace.set_span_in_context(span, parent))
        with self._lock:
            self._running[task_id] = (span, token)

    def _failure(self, task_id: str | None = None, exception: Any = None, **_: Any) -> None:
        with self._lock:
            running = self._running.get(str(task_id))
        if running is not None and isinstance(exception, BaseException):
            span = running[0]
            span.record_exception(exception)
            span.set_status(Status(StatusCode.ERROR, f"{type(exception).__name__}: {exception}"))

    def _retry(self, request: Any = None, reason: Any = None, **_: Any) -> None:
        with self._lock:
            running = self._running.get(str(getattr(request, "id", None)))
        if running is not None:
            running[0].add_event("retry", {"reason": str(reason)})

    def _postrun(
        self, task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any
    ) -> None:
        with self._lock:
            running = self._running.pop(str(task_id), None)
        if running is None:
            return
        span, token = running
        if state:
            span.set_attribute("celery.state", state)
        hostname = getattr(getattr(task, "request", None), "hostname", None)
        if hostname:
            span.set_attribute("celery.hostname", str(hostname))
        context.detach(token)  # type: ignore[arg-type]
        span.end()
