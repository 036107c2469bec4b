"""The async client API on SQLite, Redis and RabbitMQ, against an in-process worker."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery, group
from celeriac.contrib.testing import start_worker
from celeriac.exceptions import TimeoutError as ResultTimeout
from tests.support import amqp_support, redis_support

pytestmark = pytest.mark.integration

GATES: dict[str, threading.Event] = {}


def make_app(kind: str, tmp: Path, stack: Any) -> Celery:
    if kind == "sqlite":
        url = f"sqlite:///{tmp / 'async.sqlite'}"
        return Celery("aio", broker=url, backend=url, set_as_current=False)
    if kind == "redis":
        redis_support.require_redis()
        prefix = redis_support.unique_prefix()
        stack.callback(redis_support.delete_prefix, redis_support.TRANSPORT_DB, prefix)
        base = f"redis://{redis_support.HOST}:{redis_support.PORT}"
        return Celery(
            "aio",
            broker=f"{base}/{redis_support.TRANSPORT_DB}",
            backend=f"{base}/{redis_support.TRANSPORT_DB}",
            set_as_current=False,
            broker_transport_options={"global_keyprefix": prefix},
            result_backend_transport_options={"global_keyprefix": prefix},
        )
    vhost = stack.enter_context(amqp_support.vhost())
    return Celery("aio", broker=amqp_support.url(vhost), backend="rpc://", set_as_current=False)


@pytest.fixture(scope="module", params=["sqlite", "redis", "amqp"])
def app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Celery]:
    import contextlib

    with contextlib.ExitStack() as stack:
        app = make_app(request.param, tmp_path_factory.mktemp(request.param), stack)

        @app.task(name="aio.add")
        def add(x: int, y: int) -> int:
            return x + y

        @app.task(name="aio.fail")
        def fail(message: str) -> None:
            raise ValueError(message)

        @app.task(name="aio.gated")
        def gated(name: str) -> str:
            GATES[name].wait(30)
            return name

        stack.callback(app.close)
        with start_worker(app, pool="threads", concurrency=4, hostname=f"aio-{request.param}@%h"):
            yield app


def test_adelay_and_aget(app: Celery) -> None:
    add = app.tasks["aio.add"]

    async def main() -> tuple[int, int]:
        first = await add.adelay(2, 3)
        second = await add.aapply_async((10,), {"y": 5}, countdown=0.1)
        return await first.aget(timeout=10), await second.aget(timeout=10)

    assert asyncio.run(main()) == (5, 15)


def test_aget_raises_the_tasks_exception_and_times_out(app: Celery) -> None:
    GATES["never"] = threading.Event()

    async def main() -> None:
        failed = await app.tasks["aio.fail"].adelay("boom")
        with pytest.raises(ValueError, match="boom"):
            await failed.aget(timeout=10)
        assert isinstance(await failed.aget(timeout=10, propagate=False), ValueError)
        stuck = await app.tasks["aio.gated"].adelay("never")
        with pytest.raises(ResultTimeout):
            await stuck.aget(timeout=0.3)
        assert await stuck.aready() is False
        assert await failed.astate() == "FAILURE"

    try:
        asyncio.run(main())
    finally:
        GATES["never"].set()


def test_async_for_yields_group_members_as_they_finish(app: Celery) -> None:
    names = ["a", "b", "c"]
    for name in names:
        GATES[name] = threading.Event()
    gated = app.tasks["aio.gated"]

    async def main() -> list[str]:
        result = await asyncio.to_thread(group(gated.s(n) for n in names).apply_async)
        GATES["c"].set()  # finish in the order c, a, b: each release follows a yield
        order: list[str] = []
        async for done in result.as_completed(timeout=10):
            order.append(done.result)
            if done.result == "c":
                GATES["a"].set()
            elif done.result == "a":
                GATES["b"].set()
        assert await result.aget(timeout=10) == names  # in the members' order
        return order

    assert asyncio.run(main()) == ["c", "a", "b"]


def test_ainspect_asks_the_worker(app: Celery) -> None:
    async def main() -> Any:
        return await app.control.ainspect(timeout=5.0, limit=1).ping()

    replies = asyncio.run(main())
    assert replies and all(reply == {"ok": "pong"} for reply in replies.values())


def test_on_redis_concurrent_sends_and_waits_start_no_thread(tmp_path: Path) -> None:
    import contextlib

    with contextlib.ExitStack() as stack:
        app = make_app("redis", tmp_path, stack)
        stack.callback(app.close)
        add = app.task(name="aio.add")(lambda x, y: x + y)
        with start_worker(app, pool="threads", concurrency=4, hostname="aio-threads@%h"):
            before = {t.ident for t in threading.enumerate()}

            async def main() -> list[int]:
                sent = await asyncio.gather(*(add.adelay(i, i) for i in range(50)))
                return list(await asyncio.gather(*(r.aget(timeout=10) for r in sent)))

            assert asyncio.run(main()) == [2 * i for i in range(50)]
            started = [t.name for t in threading.enumerate() if t.ident not in before]
    assert not [name for name in started if name.startswith("celeriac-aio")]
