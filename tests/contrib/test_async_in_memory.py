"""The async API on the in-memory stores of a test app, and in eager mode."""

from __future__ import annotations

import asyncio

import pytest

from celeriac.contrib.testing import start_worker
from celeriac.contrib.testing.app import TestApp
from celeriac.result import EagerResult


def test_eager_tasks_run_in_place() -> None:
    with TestApp(config={"task_always_eager": True}) as app:

        @app.task
        def double(x: int) -> int:
            return 2 * x

        @app.task
        def broken() -> None:
            raise KeyError("nope")

        async def main() -> None:
            result = await double.adelay(21)
            assert isinstance(result, EagerResult)
            assert await result.astate() == "SUCCESS"
            assert await result.aget() == 42
            with pytest.raises(KeyError):
                await (await broken.aapply_async()).aget()

        asyncio.run(main())


def test_async_api_against_an_in_process_worker_with_memory_stores() -> None:
    with TestApp() as app:

        @app.task
        def square(x: int) -> int:
            return x * x

        async def main() -> list[int]:
            sent = [await square.adelay(n) for n in range(5)]
            group_like = app.GroupResult(None, sent)
            finished = sorted([done.result async for done in group_like])
            assert await group_like.aget(timeout=10) == [0, 1, 4, 9, 16]
            return finished

        with start_worker(app, pool="threads", concurrency=2):
            assert asyncio.run(main()) == [0, 1, 4, 9, 16]
