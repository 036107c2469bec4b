"""A FastAPI service that hands work to Celeriac without blocking its event loop.

    POST /add {"x": 2, "y": 3}          -> {"task_id": ...}        (await add.adelay)
    GET  /tasks/{task_id}?wait=5        -> {"state": ..., "result": ...} (await result.aget)
    POST /add/many {"pairs": [[1, 2]]}  -> results in the order they finish (async for)
    GET  /workers                       -> the workers' ping replies (await ainspect().ping())

Run it with ``uvicorn main:api`` from this folder, beside a worker
(``celeriac -A tasks worker -P threads``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from tasks import add, app

import celeriac.aio
from celeriac import group
from celeriac.exceptions import TimeoutError as ResultTimeout
from celeriac.states import READY_STATES


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
    await celeriac.aio.close()  # the idle Redis connections of this loop


api = FastAPI(title="Celeriac FastAPI example", lifespan=lifespan)


class Pair(BaseModel):
    x: int
    y: int


class Pairs(BaseModel):
    pairs: list[tuple[int, int]]


@api.post("/add")
async def submit(pair: Pair) -> dict[str, str]:
    result = await add.adelay(pair.x, pair.y)
    return {"task_id": result.id}


@api.get("/tasks/{task_id}")
async def status(task_id: str, wait: float = 0.0) -> dict[str, Any]:
    result = app.AsyncResult(task_id)
    if wait:
        with suppress(ResultTimeout):
            await result.aget(timeout=wait, propagate=False)
    state = await result.astate()  # once ready, result.result reads no further
    ready = state in READY_STATES
    return {"task_id": task_id, "state": state, "result": result.result if ready else None}


@api.post("/add/many")
async def submit_many(body: Pairs) -> dict[str, list[int]]:
    signatures = [add.s(x, y) for x, y in body.pairs]
    results = await celeriac.aio.run_blocking(app, group(signatures).apply_async)
    finished = [done.result async for done in results.as_completed(timeout=30)]
    return {"finished": finished}


@api.get("/workers")
async def workers() -> dict[str, Any]:
    replies = await app.control.ainspect(timeout=1.0).ping()
    return {"workers": sorted(replies or {})}
