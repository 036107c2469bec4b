"""``before_task_publish``/``after_task_publish`` give handlers the body as Celery does:
``(args, kwargs, embed)`` before serialization, not the encoded bytes (side by side)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import celery
import pytest
from celery import signals as celery_signals

import celeriac
from celeriac import signals

pytestmark = [pytest.mark.compat]


def _bodies(app: Any, signal_module: Any) -> list[Any]:
    seen: list[Any] = []

    @app.task(name="pub.add")
    def add(x: int, y: int) -> int:
        return x + y

    def before(sender: Any = None, body: Any = None, **kwargs: Any) -> None:
        if sender == "pub.add":
            seen.append(("before", json.loads(json.dumps(body))))

    def after(sender: Any = None, body: Any = None, **kwargs: Any) -> None:
        if sender == "pub.add":
            seen.append(("after", json.loads(json.dumps(body))))

    signal_module.before_task_publish.connect(before, weak=False)
    signal_module.after_task_publish.connect(after, weak=False)
    try:
        add.apply_async((1, 2), link=add.s(10))
    finally:
        signal_module.before_task_publish.disconnect(before)
        signal_module.after_task_publish.disconnect(after)
    return seen


def test_publish_signals_get_the_body_before_serialization() -> None:
    theirs = celery.Celery("pub", broker="memory://", backend="cache+memory://")
    theirs.conf.task_default_queue = f"pub-{uuid.uuid4().hex}"
    url = f"memory://{uuid.uuid4().hex}"
    ours = celeriac.Celery("pub", broker=url, backend=url, set_as_current=False)
    try:
        celery_seen, ours_seen = _bodies(theirs, celery_signals), _bodies(ours, signals)
    finally:
        theirs.close()
        ours.close()
    assert [kind for kind, _ in celery_seen] == ["before", "after"]
    (_, args_kwargs_embed) = celery_seen[0]
    assert args_kwargs_embed[:2] == [[1, 2], {}]
    assert args_kwargs_embed[2]["callbacks"][0]["task"] == "pub.add"
    assert ours_seen == celery_seen
