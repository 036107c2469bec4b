"""examples/fastapi end to end: HTTP requests through FastAPI, tasks run by a real worker."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from celeriac.contrib.testing import start_worker
from tests.support import amqp_support, redis_support

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fastapi"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def example(monkeypatch: pytest.MonkeyPatch, broker: str, backend: str) -> Iterator[ModuleType]:
    """The example's modules, imported afresh for this broker (and unimported after)."""
    monkeypatch.setenv("CELERIAC_BROKER_URL", broker)
    monkeypatch.setenv("CELERIAC_RESULT_BACKEND", backend)
    saved = {name: sys.modules.pop(name, None) for name in ("tasks", "main")}
    try:
        _load("tasks")
        yield _load("main")
    finally:
        for name, module in saved.items():
            sys.modules.pop(name, None)
            if module is not None:
                sys.modules[name] = module


@pytest.fixture(params=["redis", "amqp"])
def service(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with contextlib.ExitStack() as stack:
        if request.param == "redis":
            redis_support.require_redis()
            prefix = redis_support.unique_prefix()
            stack.callback(redis_support.delete_prefix, redis_support.BACKEND_DB, prefix)
            url = f"redis://{redis_support.HOST}:{redis_support.PORT}/{redis_support.BACKEND_DB}"
            main = stack.enter_context(example(monkeypatch, url, url))
            main.app.conf.broker_transport_options = {"global_keyprefix": prefix}
            main.app.conf.result_backend_transport_options = {"global_keyprefix": prefix}
        else:
            vhost = stack.enter_context(amqp_support.vhost())
            main = stack.enter_context(example(monkeypatch, amqp_support.url(vhost), "rpc://"))
        stack.callback(main.app.close)
        stack.enter_context(
            start_worker(main.app, pool="threads", concurrency=4, hostname="fastapi@%h")
        )
        yield main


def test_the_fastapi_example_end_to_end(service: Any) -> None:
    import httpx2

    async def main() -> None:
        transport = httpx2.ASGITransport(app=service.api)
        async with httpx2.AsyncClient(transport=transport, base_url="http://example") as http:
            submitted = await http.post("/add", json={"x": 2, "y": 40})
            assert submitted.status_code == 200
            task_id = submitted.json()["task_id"]
            status = (await http.get(f"/tasks/{task_id}", params={"wait": 10})).json()
            assert status == {"task_id": task_id, "state": "SUCCESS", "result": 42}
            many = (await http.post("/add/many", json={"pairs": [[1, 1], [2, 2], [3, 3]]})).json()
            assert sorted(many["finished"]) == [2, 4, 6]
            workers = (await http.get("/workers")).json()
            assert [name for name in workers["workers"] if name.startswith("fastapi@")]

    asyncio.run(main())
