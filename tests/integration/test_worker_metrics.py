"""``worker --metrics-port``: a real worker process serves its Prometheus metrics."""

from __future__ import annotations

import re
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery
from celeriac.contrib.testing.app import TestApp
from celeriac.worker.lifecycle import Worker

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return str(reply.read().decode())


def _scrape_until(port: int, sample: str, value: float) -> str:
    """Scrape until ``sample`` reads ``value``: a job's end is counted when the pool reports
    it, just after its result is stored (which is when the test's ``get`` returns)."""
    for _ in range(100):
        text = _scrape(port)
        match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
        if match and float(match.group(1)) == value:
            break
        time.sleep(0.1)
    return text


def _value(text: str, sample: str) -> float:
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    assert match, f"{sample} not in:\n{text}"
    return float(match.group(1))


def test_the_metrics_endpoint_counts_what_the_pool_did(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'metrics.sqlite'}"
    app = Celery("metrics", broker=url, backend=url, set_as_current=False)

    @app.task(name="m.ok")
    def ok() -> None:
        pass

    @app.task(name="m.boom")
    def boom() -> None:
        raise ValueError("boom")

    port = _free_port()
    worker = Worker(app, hostname="m1@test", pool="threads", concurrency=2, metrics_port=port)
    worker.start()
    try:
        for result in [ok.delay() for _ in range(3)]:
            result.get(timeout=10)
        with pytest.raises(ValueError):
            boom.delay().get(timeout=10)
        node = 'worker="m1@test"'
        _scrape_until(port, f'celeriac_worker_tasks_total{{{node},name="m.ok",state="SUCCESS"}}', 3)
        text = _scrape_until(port, f"celeriac_worker_active{{{node}}}", 0)
    finally:
        worker.stop()
        app.close()
    assert _value(text, f'celeriac_worker_tasks_total{{{node},name="m.ok",state="SUCCESS"}}') == 3
    assert _value(text, f'celeriac_worker_tasks_total{{{node},name="m.boom",state="FAILURE"}}') == 1
    assert _value(text, f'celeriac_worker_tasks_received_total{{{node},name="m.ok"}}') == 3
    assert _value(text, f'celeriac_worker_task_runtime_seconds_count{{{node},name="m.ok"}}') == 3
    assert _value(text, f'celeriac_worker_task_latency_seconds_count{{{node},name="m.ok"}}') == 3
    assert _value(text, f"celeriac_worker_pool_size{{{node}}}") == 2
    assert _value(text, f"celeriac_worker_active{{{node}}}") == 0
    assert "# TYPE celeriac_worker_task_runtime_seconds histogram" in text


def test_the_latency_counts_from_the_eta_in_virtual_time() -> None:
    with TestApp() as app:

        @app.task(name="m.later")
        def later() -> None:
            pass

        port = _free_port()
        worker = Worker(app, hostname="m2@test", pool="threads", metrics_port=port)
        worker.start()
        try:
            result = later.apply_async(countdown=3600)
            app.clock.advance(3600)  # type: ignore[attr-defined]
            result.get(timeout=10)
            node = 'worker="m2@test"'
            text = _scrape_until(port, f"celeriac_worker_active{{{node}}}", 0)
        finally:
            worker.stop()
    # Due at its ETA, started within a few seconds of it: nowhere near the hour it waited.
    assert (
        _value(
            text, f'celeriac_worker_task_latency_seconds_bucket{{{node},name="m.later",le="30.0"}}'
        )
        == 1
    )


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    from celeriac.exceptions import ImproperlyConfigured

    url = f"sqlite:///{tmp_path / 'taken.sqlite'}"
    app = Celery("taken", broker=url, backend=url, set_as_current=False)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        worker = Worker(app, hostname="m3@test", pool="solo", metrics_port=port)
        with pytest.raises(ImproperlyConfigured, match="--metrics-port"):
            worker.start()
    app.close()


def test_a_prefork_cli_worker_serves_metrics(project: Any, tasks: Any) -> None:
    port = _free_port()
    project.start_worker("-P", "prefork", "-c", "2", "--metrics-port", str(port), name="mw")
    assert tasks.add.delay(2, 2).get(timeout=20) == 4
    node = 'worker="mw@' + socket.gethostname() + '"'
    ended = f'celeriac_worker_tasks_total{{{node},name="tasks.add",state="SUCCESS"}}'
    text = _scrape_until(port, ended, 1)
    assert (
        _value(text, f'celeriac_worker_tasks_total{{{node},name="tasks.add",state="SUCCESS"}}') == 1
    )
    assert _value(text, f"celeriac_worker_pool_size{{{node}}}") == 2
