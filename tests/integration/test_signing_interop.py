"""Signed tasks (the auth serializer) between Celery 5.7 and Celeriac on Redis, both ways, and
signed messages that must never run: unsigned, unknown signer, missing signature, tampered."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import pki_support, redis_support
from tests.support.redis_project import RedisProject, open_project

pytestmark = [pytest.mark.integration, pytest.mark.compat]

# Both apps of redis_project.py, made to sign and check every task (Celery's guide's settings).
_SECURE = """
import os
from {base} import *  # noqa: F403 - the tasks
from {base} import app

app.conf.update(
    task_serializer="auth",
    accept_content=["auth"],
    result_accept_content=["json"],
    security_key=os.environ["SEC_KEY"],
    security_certificate=os.environ["SEC_CERT"],
    security_cert_store=os.environ["SEC_STORE"],
    security_key_password=os.environ.get("SEC_PASSWORD") or None,
    security_digest="sha256",
)
app.setup_security()
"""

CELERY_CLIENT = """
import json
from scel import add
print(json.dumps(add.delay(2, 3).get(timeout=20)))
"""

CELERIAC_CLIENT = """
import json
from srt import add
print(json.dumps(add.delay(20, 22).get(timeout=20)))
"""

# Four messages a worker must refuse, sent by a Celeriac client; prints their ids.
CELERIAC_BAD_CLIENT = """
import base64, json, os
from celeriac.protocol import serializers
from celeriac.protocol.signing import Certificate, CertStore, Signer
from srt import record

good = serializers._signer
SEP = b"\\x00\\x01"


class Rewrite:
    def __init__(self, change):
        self.change = change

    def seal(self, value):
        fields = base64.b64decode(good.seal(value)).split(SEP, 4)
        return base64.b64encode(SEP.join(self.change(fields)))

    def open(self, body):
        return good.open(body)


ids = {"unsigned": record.apply_async((0,), serializer="json").id}
serializers.use_signer(Rewrite(lambda f: [f[0], b"", *f[2:]]))
ids["missing"] = record.apply_async((0,)).id
serializers.use_signer(Rewrite(lambda f: [*f[:4], f[4].replace(b"[[0]", b"[[0.0]")]))
ids["tampered"] = record.apply_async((0,)).id
pem = open(os.environ["MALLORY_CERT"], "rb").read()
serializers.use_signer(Signer(
    key=open(os.environ["MALLORY_KEY"], "rb").read(), certificate=Certificate(pem),
    store=CertStore([Certificate(pem)]),
))
ids["unknown"] = record.apply_async((0,)).id
print(json.dumps(ids))
"""


@pytest.fixture(name="project")
def project_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisProject]:
    redis_support.require_redis()
    db = redis_support.INTEROP_DB
    url = f"redis://{redis_support.HOST}:{redis_support.PORT}/{db}"
    with open_project(tmp_path, monkeypatch, url, db) as project:
        pki = tmp_path / "pki"
        store = pki / "store"
        store.mkdir(parents=True)
        alice = pki_support.self_signed(pki, "alice", password=b"pw")
        mallory = pki_support.self_signed(pki, "mallory")
        (store / "alice.pem").write_bytes(alice.cert.read_bytes())
        (tmp_path / "scel.py").write_text(_SECURE.format(base="celtasks"))
        (tmp_path / "srt.py").write_text(_SECURE.format(base="rtasks"))
        project.env.update(
            SEC_KEY=str(alice.key),
            SEC_CERT=str(alice.cert),
            SEC_STORE=str(store),
            SEC_PASSWORD="pw",
            MALLORY_KEY=str(mallory.key),
            MALLORY_CERT=str(mallory.cert),
        )
        yield project


def _worker(project: RedisProject, program: str, module: str, name: str) -> None:
    argv = [sys.executable, "-m", program, "-A", module, "worker", "-l", "info", "-P", "solo"]
    argv += ["-n", f"{name}@%h", "--without-mingle"]
    if program == "celery":
        argv += ["--without-gossip", "--without-heartbeat"]
    project.start(argv, name, "ready.")


def test_celery_client_signs_for_a_celeriac_worker(project: RedisProject) -> None:
    _worker(project, "celeriac", "srt", "w1")
    assert project.run_script(CELERY_CLIENT) == 5
    # Remote control is signed too (task_serializer / accept_content), both ways.
    ping = project_cli(project, "celery", "scel", "inspect", "ping", "-t", "2")
    assert "w1@" in ping and "pong" in ping
    assert "refus" not in project.log("w1").lower()


def test_celeriac_client_signs_for_a_celery_worker(project: RedisProject) -> None:
    _worker(project, "celery", "scel", "c1")
    assert project.run_script(CELERIAC_CLIENT) == 42
    ping = project_cli(project, "celeriac", "srt", "inspect", "ping", "-t", "2")
    assert "c1@" in ping and "pong" in ping


def project_cli(project: RedisProject, program: str, module: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", program, "-A", module, *args],
        cwd=project.root,
        env=project.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_refused_messages_are_dead_lettered_and_never_run(project: RedisProject) -> None:
    _worker(project, "celeriac", "srt", "w1")
    ids = project.run_script(CELERIAC_BAD_CLIENT)
    assert project.run_script(CELERIAC_CLIENT) == 42  # the worker goes on with good ones
    import rtasks

    deadline = time.monotonic() + 20
    while len(letters := rtasks.app.transport.dead_letters("celery")) < 4:
        assert time.monotonic() < deadline, letters
        time.sleep(0.05)
    reasons = {letter.message.headers["id"]: letter.reason for letter in letters}
    assert "ContentDisallowed" in reasons[ids["unsigned"]]
    assert "accept_content" in reasons[ids["unsigned"]]
    assert "bad signature" in reasons[ids["missing"]]
    assert "bad signature" in reasons[ids["tampered"]]
    assert "unknown certificate" in reasons[ids["unknown"]]
    assert "mallory" in reasons[ids["unknown"]]
    assert project.runs() == []  # none of them ran
