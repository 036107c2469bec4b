"""OpenTelemetry: one trace from a client span through the worker's run to a callback's run,
and across a Celery peer instrumented by opentelemetry-instrumentation-celery."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from celeriac import Celery
from celeriac.contrib.opentelemetry import CeleriacInstrumentor
from celeriac.contrib.testing import start_worker
from tests.support import redis_support

pytestmark = pytest.mark.integration


@pytest.fixture
def traced() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = CeleriacInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield provider, exporter
    finally:
        instrumentor.uninstrument()


def _by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, list[ReadableSpan]]:
    found: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        found.setdefault(span.name, []).append(span)
    return found


def _parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def test_a_trace_crosses_client_worker_and_callback(
    tmp_path: Path, traced: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = traced
    url = f"sqlite:///{tmp_path / 'otel.sqlite'}"
    app = Celery("otel", broker=url, backend=url, set_as_current=False)

    @app.task(name="otel.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="otel.fail")
    def fail() -> None:
        raise ValueError("boom")

    with start_worker(app, pool="threads", perform_ping_check=False), app:
        tracer = provider.get_tracer("test")
        callback = add.s(100)
        callback_result = callback.freeze()
        with tracer.start_as_current_span("request") as request_span:
            result = add.apply_async((1, 2), link=callback)
        assert result.get(timeout=10) == 3
        assert callback_result.get(timeout=10) == 103
        with pytest.raises(ValueError):
            fail.delay().get(timeout=10)
    spans = _by_name(exporter.get_finished_spans())
    trace_id = request_span.get_span_context().trace_id
    first_publish, callback_publish = sorted(
        spans["apply_async/otel.add"], key=lambda s: s.start_time or 0
    )
    runs = {s.attributes["messaging.message.id"]: s for s in spans["run/otel.add"]}  # type: ignore[index]
    first_run, callback_run = runs[result.id], runs[callback_result.id]
    chain_of_spans = [first_publish, first_run, callback_publish, callback_run]
    assert {s.context.trace_id for s in chain_of_spans} == {trace_id}  # type: ignore[union-attr]
    assert _parent_id(first_publish) == request_span.get_span_context().span_id
    assert _parent_id(first_run) == first_publish.context.span_id  # type: ignore[union-attr]
    assert _parent_id(callback_publish) == first_run.context.span_id  # type: ignore[union-attr]
    assert _parent_id(callback_run) == callback_publish.context.span_id  # type: ignore[union-attr]
    assert first_publish.kind is SpanKind.PRODUCER and first_run.kind is SpanKind.CONSUMER
    assert first_run.attributes["celery.state"] == "SUCCESS"  # type: ignore[index]
    [failed] = spans["run/otel.fail"]
    assert failed.status.status_code is StatusCode.ERROR
    assert [e.name for e in failed.events] == ["exception"]


@contextlib.contextmanager
def _celery_instrumented(provider: TracerProvider) -> Iterator[None]:
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    instrumentor = CeleryInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield
    finally:
        instrumentor.uninstrument()


def test_a_celery_clients_trace_continues_in_a_celeriac_worker(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    import celery

    redis_support.require_redis()
    provider, exporter = traced
    prefix = redis_support.unique_prefix()
    url = f"redis://{redis_support.HOST}:{redis_support.PORT}/{redis_support.INTEROP_DB}"
    options: dict[str, Any] = {"global_keyprefix": prefix}
    app = Celery(
        "otel-peer",
        broker=url,
        backend=url,
        set_as_current=False,
        broker_transport_options=options,
        result_backend_transport_options=options,
    )
    app.task(name="peer.mul")(lambda x, y: x * y)
    peer = celery.Celery("peer", broker=url, backend=url, set_as_current=False)
    peer.conf.broker_transport_options = options
    peer.conf.result_backend_transport_options = options
    try:
        with (
            start_worker(app, pool="threads", perform_ping_check=False),
            _celery_instrumented(provider),
        ):
            sent = peer.send_task("peer.mul", (6, 7))
            assert sent.get(timeout=10) == 42
    finally:
        app.close()
        peer.close()
        redis_support.delete_prefix(redis_support.INTEROP_DB, prefix)
    spans = _by_name(exporter.get_finished_spans())
    [published] = spans["apply_async/peer.mul"]  # by Celery's instrumentation
    [ran] = spans["run/peer.mul"]  # by Celeriac's
    assert ran.context.trace_id == published.context.trace_id  # type: ignore[union-attr]
    assert _parent_id(ran) == published.context.span_id  # type: ignore[union-attr]


def test_a_celeriac_clients_trace_continues_in_a_celery_worker(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    import celery
    from celery.contrib.testing.worker import start_worker as start_celery_worker

    redis_support.require_redis()
    provider, exporter = traced
    prefix = redis_support.unique_prefix()
    url = f"redis://{redis_support.HOST}:{redis_support.PORT}/{redis_support.INTEROP_DB}"
    options: dict[str, Any] = {"global_keyprefix": prefix}
    peer = celery.Celery("peer", broker=url, backend=url, set_as_current=False)
    peer.conf.broker_transport_options = options
    peer.conf.result_backend_transport_options = options

    @peer.task(name="peer.sub")
    def sub(x: int, y: int) -> int:
        return x - y

    app = Celery(
        "otel-client",
        broker=url,
        backend=url,
        set_as_current=False,
        broker_transport_options=options,
        result_backend_transport_options=options,
    )
    try:
        with (
            _celery_instrumented(provider),
            start_celery_worker(peer, pool="solo", perform_ping_check=False, shutdown_timeout=20),
        ):
            assert app.send_task("peer.sub", (50, 8)).get(timeout=10) == 42
    finally:
        app.close()
        peer.close()
        redis_support.delete_prefix(redis_support.INTEROP_DB, prefix)
    spans = _by_name(exporter.get_finished_spans())
    [published] = spans["apply_async/peer.sub"]  # by Celeriac's instrumentation
    [ran] = spans["run/peer.sub"]  # by Celery's
    assert ran.context.trace_id == published.context.trace_id  # type: ignore[union-attr]
    assert _parent_id(ran) == published.context.span_id  # type: ignore[union-attr]
