"""The fast pickling of the dataclasses that cross the prefork pipe keeps every field."""

from __future__ import annotations

import datetime as dt
import pickle
from dataclasses import dataclass, field

import pytest

from celeriac._pickling import fast_pickle
from celeriac.protocol.message import Embed, Message, TaskMessage
from celeriac.worker.job import Job, JobResult


def test_jobs_and_results_survive_the_pipe_unchanged() -> None:
    message = TaskMessage(
        task="t.add",
        id="i",
        args=(1, [2]),
        kwargs={"k": {"n": 3}},
        embed=Embed(callbacks=[{"task": "t.cb"}], chord={"task": "t.body"}),
        eta=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        retries=2,
        group="g",
        group_index=1,
        time_limit=5.0,
        reply_to="oid",
        priority=7,
        extra_headers={"x": 1},
    )
    job = Job(message=message, info={"routing_key": "celery"}, hostname="h", key=4)
    job.worker_pid = 99
    result = JobResult("FAILURE", runtime=0.5, requeue=True, detail="boom", terminated=15)
    raw = Message(
        body=b"{}", content_type="application/json", content_encoding="utf-8", headers={"id": "i"}
    )
    for value in (message, job, result, raw, message.embed):
        assert pickle.loads(pickle.dumps(value, protocol=5)) == value


def test_a_class_with_a_field_outside_init_is_refused() -> None:
    @dataclass
    class Hidden:
        shown: int
        hidden: int = field(default=0, init=False)

    with pytest.raises(TypeError, match="every field in __init__"):
        fast_pickle(Hidden)


@fast_pickle
@dataclass(frozen=True, slots=True)
class One:
    value: int


def test_a_single_field_class_pickles_too() -> None:
    assert pickle.loads(pickle.dumps(One(5))) == One(5)
