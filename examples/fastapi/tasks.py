"""The Celeriac side of the FastAPI example: an app and two tasks.

The broker comes from ``CELERIAC_BROKER_URL`` (default: the embedded SQLite file), and
results go to ``CELERIAC_RESULT_BACKEND`` (default: the broker's own store). Run a worker
with ``celeriac -A tasks worker -P threads`` from this folder.
"""

from __future__ import annotations

import os

from celeriac import Celery

broker = os.environ.get("CELERIAC_BROKER_URL", "sqlite:///celeriac.sqlite")
app = Celery("fastapi_example", broker=broker, backend=os.environ.get("CELERIAC_RESULT_BACKEND"))


@app.task(name="example.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="example.wordcount", bind=True)
def wordcount(self: object, text: str) -> dict[str, int]:
    """Count words, reporting PROGRESS per line (as a long task would)."""
    counts: dict[str, int] = {}
    lines = text.splitlines() or [text]
    for number, line in enumerate(lines, 1):
        for word in line.split():
            counts[word.lower()] = counts.get(word.lower(), 0) + 1
        self.update_state(state="PROGRESS", meta={"current": number, "total": len(lines)})  # type: ignore[attr-defined]
    return counts
