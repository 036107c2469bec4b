"""Side by side on Redis: one scenario, a Celery 5.7 worker and a Celeriac worker, one answer.

Each scenario is a client script run twice in a fresh interpreter: once with Celery's client
against a Celery worker, once with Celeriac's against a Celeriac worker, on the same Redis
(each system under its own key prefix). The two JSON answers must be equal: a chord whose
header fails, ``get()`` of an ignored result, ``Reject(requeue=False)``, and a base task
class whose ``__call__`` wraps every run (Flask's ``celery_init_app``) in every pool.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.support import redis_support
from tests.support.redis_project import RedisProject, open_project

pytestmark = [pytest.mark.integration, pytest.mark.compat]

# Appended to both project apps (rtasks.py, celtasks.py): KIND says which library is used.
EXTRA_TASKS = """

if KIND == "celery":
    from celery.exceptions import Reject
else:
    from celeriac.exceptions import Reject


@app.task(name="sbs.body", bind=True)
def body(self, results):
    _record(self.request.id)
    return results


@app.task(name="sbs.reject_for_good", bind=True)
def reject_for_good(self):
    _record(self.request.id)
    raise Reject("not for me", requeue=False)


@app.task(name="sbs.identity")
def identity(x):
    return x


@app.task(name="sbs.add_to_all", bind=True)
def add_to_all(self, nums, val=0):
    for num in nums:
        self.add_to_chord(add.s(num, val))
    return 0


@app.task(name="sbs.replace_with_chain", bind=True)
def replace_with_chain(self, *args):
    chain = __import__(KIND).chain
    return self.replace(chain(identity.si(*args), identity.s()))


@app.task(name="sbs.nesting", bind=True)
def nesting(self):
    return self.request.replaced_task_nesting


@app.task(name="sbs.replace_twice", bind=True)
def replace_twice(self):
    return self.replace(replace_once.si())


@app.task(name="sbs.replace_once", bind=True)
def replace_once(self):
    return self.replace(nesting.si())


@app.task(name="sbs.properties", bind=True)
def properties(self):
    request = self.request
    return {
        "app_id": request.properties.get("app_id"),
        "delivery_info": sorted(request.delivery_info),
        "routing_key": request.delivery_info.get("routing_key"),
    }


@app.task(name="sbs.stamps", bind=True)
def stamps(self):
    return {"stamps": self.request.stamps, "names": sorted(self.request.stamped_headers or [])}


@app.task(name="sbs.write_and_return")
def write_and_return(path, value):
    with open(path, "a") as out:
        out.write(f"{value}\\n")
    return value


@app.task(name="sbs.tsum")
def tsum(values):
    return sum(values)


@app.task(name="sbs.quiet", bind=True, ignore_result=True)
def quiet(self):
    _record(self.request.id)
    return "never stored"
"""

# Flask's documented celery_init_app, verbatim but for the library and the Redis settings.
FLASK_PROJECT = """
import os

from flask import Flask, current_app
from {lib} import Celery, Task, shared_task


def celery_init_app(app):
    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(app.config["CELERY"])
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


URL = os.environ["TEST_REDIS_URL"]
OPTIONS = {{"global_keyprefix": os.environ["TEST_PREFIX"] + "{lib}."}}
flask_app = Flask("flaskproj")
flask_app.config.from_mapping(
    CELERY=dict(
        broker_url=URL, result_backend=URL, broker_transport_options=OPTIONS,
        result_backend_transport_options=OPTIONS, broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    ),
)
celery_app = celery_init_app(flask_app)


@shared_task(name="flaskproj.in_context", bind=True)
def in_context(self, x):
    # current_app is Flask's: only inside the app context FlaskTask.__call__ enters.
    classes = [cls.__name__ for cls in type(self).__mro__]
    return [current_app.name, x, self.request.id is not None, "FlaskTask" in classes]
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    redis_support.require_redis()
    db = redis_support.INTEROP_DB
    url = f"redis://{redis_support.HOST}:{redis_support.PORT}/{db}"
    with open_project(tmp_path, monkeypatch, url, db) as opened:
        for name in ("rtasks.py", "celtasks.py"):
            path = opened.root / name
            path.write_text(path.read_text() + textwrap.dedent(EXTRA_TASKS))
        yield opened


def _answer(project: RedisProject, kind: str, script: str) -> Any:
    """``script`` run with ``{mod}`` the project app of ``kind`` and ``{lib}`` its library."""
    mod, lib = ("rtasks", "celeriac") if kind == "celeriac" else ("celtasks", "celery")
    return project.run_script(textwrap.dedent(script).format(mod=mod, lib=lib))


def _worker(project: RedisProject, kind: str, *args: str) -> None:
    if kind == "celeriac":
        project.celeriac_worker("-P", "threads", "-c", "2", *args)
    else:
        project.celery_worker(*args, pool="threads")


def _both(project: RedisProject, script: str) -> tuple[Any, Any]:
    """The answers of a Celery worker and then a Celeriac worker (one stopped first)."""
    answers = []
    for kind in ("celery", "celeriac"):
        _worker(project, kind)
        answers.append(_answer(project, kind, script))
        project.stop_all()
        project.workers.clear()
    return answers[0], answers[1]


CHORD_HEADER_FAILS = """
import json, time
from {mod} import app, add, fail, body
from {lib} import chord

result = chord([add.s(1, 1), fail.s("boom")])(body.s())
member = result.parent.results[1].id
try:
    result.get(timeout=30)
    raised = None
except Exception as exc:
    raised = [type(exc).__name__, repr(exc)]
stored = app.AsyncResult(result.id)
deadline = time.monotonic() + 30
while stored.state != "FAILURE" and time.monotonic() < deadline:
    time.sleep(0.1)
    stored = app.AsyncResult(result.id)
print(json.dumps({{
    "raised": raised, "body_state": stored.state,
    "body_error": type(stored.result).__name__,
    "names_member": member in str(stored.result), "body_id": result.id,
}}))
"""


def test_a_chord_whose_header_fails(project: RedisProject) -> None:
    theirs, ours = _both(project, CHORD_HEADER_FAILS)
    assert theirs["raised"] == ["KeyError", "KeyError('boom')"]
    assert theirs["body_state"] == "FAILURE" and theirs["body_error"] == "ChordError"
    assert theirs["names_member"] is True
    ran = {task_id for task_id, _ in project.runs()}
    assert theirs["body_id"] not in ran and ours["body_id"] not in ran  # no body ran
    for key in ("raised", "body_state", "body_error", "names_member"):
        assert ours[key] == theirs[key], key


IGNORED_RESULT = """
import json, time
from {mod} import quiet, add

sent = [quiet.delay(), add.apply_async((1, 2), ignore_result=True)]
got = [result.get(timeout=30) for result in sent]
print(json.dumps({{"got": got, "ids": [result.id for result in sent]}}))
"""


def test_get_of_an_ignored_result(project: RedisProject) -> None:
    theirs, ours = _both(project, IGNORED_RESULT)
    assert theirs["got"] == ours["got"] == [None, None]
    project.wait_for_runs(2)  # the quiet tasks did run (twice: once per system)


REJECT_FOR_GOOD = """
import json, time
from {mod} import reject_for_good

result = reject_for_good.delay()
try:
    result.get(timeout=30)
    raised = None
except Exception as exc:
    raised = type(exc).__name__
print(json.dumps({{"raised": raised, "state": result.state}}))
"""


def test_reject_without_requeue_stores_failure(project: RedisProject) -> None:
    theirs, ours = _both(project, REJECT_FOR_GOOD)
    assert theirs == {"raised": "Reject", "state": "FAILURE"}
    assert ours == theirs


FLASK_CLIENT = """
import json
from flaskproj_{lib} import celery_app, in_context

results = [in_context.apply_async((n,), queue=queue) for n, queue in enumerate({queues!r})]
print(json.dumps([result.get(timeout=30) for result in results]))
"""

CELERIAC_POOLS = ("prefork", "threads", "solo", "asyncio", "gevent")


def _flask_worker(project: RedisProject, lib: str, pool: str) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable,
        "-m",
        lib,
        "-A",
        f"flaskproj_{lib}:celery_app",
        "worker",
        "-l",
        "info",
        "-P",
        pool,
        "-Q",
        f"q_{pool}",
        "-n",
        f"{lib}-{pool}@%h",
        "--without-mingle",
    ]
    if pool in ("prefork", "threads", "gevent"):
        argv += ["-c", "2"]
    if lib == "celery":
        argv += ["--without-gossip", "--without-heartbeat"]
    return project.start(argv, f"{lib}-{pool}", ready=None)  # appends to the log, as before


def test_flasks_task_class_wraps_every_run_in_every_pool(project: RedisProject) -> None:
    """Flask's celery_init_app: each pool runs tasks through FlaskTask.__call__."""
    for lib in ("celery", "celeriac"):
        (project.root / f"flaskproj_{lib}.py").write_text(FLASK_PROJECT.format(lib=lib))
    started = [("celery", "prefork", _flask_worker(project, "celery", "prefork"))]
    started += [
        (lib, pool, _flask_worker(project, lib, pool))
        for lib, pool in [("celeriac", pool) for pool in CELERIAC_POOLS]
    ]
    for lib, pool, proc in started:  # started together, waited for one by one
        project.wait_for_log(f"{lib}-{pool}", "ready.", proc, timeout=60)
    theirs = project.run_script(FLASK_CLIENT.format(lib="celery", queues=["q_prefork"]))
    queues = [f"q_{pool}" for pool in CELERIAC_POOLS]
    ours = project.run_script(FLASK_CLIENT.format(lib="celeriac", queues=queues))
    assert theirs == [["flaskproj", 0, True, True]]
    assert ours == [["flaskproj", n, True, True] for n in range(len(CELERIAC_POOLS))]


SUBSCRIPTIONS_AFTER_GET = """
import json, os, time
import redis
from {mod} import add

conn = redis.Redis.from_url(os.environ["TEST_REDIS_URL"])


def subscribed(task_id):
    # Every channel (any key prefix) naming the task: what is left subscribed for it.
    deadline = time.monotonic() + 10  # an UNSUBSCRIBE is sent without waiting for its reply
    while True:
        channels = conn.pubsub_channels(f"*{{task_id}}*")
        if not channels or time.monotonic() > deadline:
            return len(channels)
        time.sleep(0.05)


first = add.delay(1, 1)
value = first.get(timeout=30)
after_get = subscribed(first.id)
second = add.delay(2, 2)
second.get(timeout=30)
second.forget()
print(json.dumps({{"value": value, "after_get": after_get,
                  "after_forget": subscribed(second.id)}}))
"""


def test_get_and_forget_leave_no_subscription(project: RedisProject) -> None:
    theirs, ours = _both(project, SUBSCRIPTIONS_AFTER_GET)
    assert theirs == {"value": 2, "after_get": 0, "after_forget": 0}
    assert ours == theirs


CHORD_GROWS = """
import json
from {mod} import add_to_all, identity, replace_with_chain, replace_twice
from {lib} import chord, group

added = (group([add_to_all.s([1, 2, 3], 4)]) | identity.s())()
replaced = chord(replace_with_chain.si(42), identity.s()).delay()
print(json.dumps({{
    "added": sorted(added.get(timeout=30)),
    "replaced_in_header": replaced.get(timeout=30),
    "nesting": replace_twice.delay().get(timeout=30),
}}))
"""


def test_add_to_chord_and_replace_inside_a_chord(project: RedisProject) -> None:
    theirs, ours = _both(project, CHORD_GROWS)
    assert theirs == {"added": [0, 5, 6, 7], "replaced_in_header": [42], "nesting": 2}
    assert ours == theirs


MESSAGE_PROPERTIES = """
import json
from {mod} import properties

print(json.dumps(properties.apply_async(app_id="1234").get(timeout=30)))
"""


def test_message_properties_reach_the_request(project: RedisProject) -> None:
    theirs, ours = _both(project, MESSAGE_PROPERTIES)
    assert theirs["app_id"] == "1234" and theirs["routing_key"] == "celery"
    assert ours == theirs


STAMPED = """
import json
from {mod} import app, stamps

seen = stamps.s().stamp(mark="kept", tags=["a", "b"]).apply_async().get(timeout=30)
reply = app.control.revoke_by_stamped_headers({{"mark": "doomed"}}, reply=True, timeout=2)
doomed = stamps.s().stamp(mark="doomed").apply_async()
try:
    doomed.get(timeout=30)
    raised = None
except Exception as exc:
    raised = type(exc).__name__
answers = [answer for node in reply for answer in node.values()]
print(json.dumps({{"seen": seen, "raised": raised, "state": doomed.state, "answers": answers}}))
"""


def test_stamps_reach_the_worker_and_revoke_by_them(project: RedisProject) -> None:
    theirs, ours = _both(project, STAMPED)
    assert theirs["seen"] == {
        "stamps": {"mark": "kept", "tags": ["a", "b"]},
        "names": ["mark", "tags"],
    }
    assert (theirs["raised"], theirs["state"]) == ("TaskRevokedError", "REVOKED")
    assert theirs["answers"] == [
        {"ok": "headers {'mark': 'doomed'} flagged as revoked, but not terminated"}
    ]
    assert ours == theirs


GENERATOR_HEADER = """
import json, os, time
from {mod} import tsum, write_and_return
from {lib} import chord

path = os.path.join(os.getcwd(), "{lib}-header.txt")
seen = []


def header():
    for i in range(3):
        if i == 2:  # read lazily: the first member has been sent, and runs meanwhile
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not os.path.exists(path):
                time.sleep(0.05)
            with open(path) as written:
                seen.extend(written.read().splitlines())
        yield write_and_return.s(path, i)


result = chord(header(), tsum.s())()
print(json.dumps({{"sum": result.get(timeout=30), "before_the_third": seen[:1]}}))
"""


def test_a_generator_header_is_read_as_it_is_sent(project: RedisProject) -> None:
    theirs, ours = _both(project, GENERATOR_HEADER)
    assert theirs == {"sum": 3, "before_the_third": ["0"]}
    assert ours == theirs
