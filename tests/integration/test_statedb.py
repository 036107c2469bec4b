"""``worker -S/--statedb``: a restarted worker still knows the ids revoked while it ran.

The ids are revoked by a bare ``revoke`` broadcast, which reaches only the running worker's
memory; the restarted worker runs ``--without-mingle`` and alone, so the state file is the
only way it can list them in ``inspect revoked``. The revoking client pushes its Lamport
clock past ``CLOCK`` first, so the restarted worker's clock is past it only if it was kept.
"""

from __future__ import annotations

import json
import signal
import socket
import uuid
from typing import Any

import pytest

from .conftest import Project

pytestmark = pytest.mark.integration

HOST = socket.gethostname()
CLOCK = 10_000


def inspect(project: Project, name: str, what: str) -> Any:
    done = project.celeriac(
        "-A", "tasks", "inspect", what, "-d", f"{name}@{HOST}", "--json", "-t", "5"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)[f"{name}@{HOST}"]


def revoke_by_broadcast(app: Any, name: str) -> str:
    task_id = str(uuid.uuid4())  # never sent: no stored state for it
    app.lamport_clock.adjust(CLOCK)
    [reply] = app.control.broadcast(
        "revoke",
        arguments={"task_id": task_id},
        destination=[f"{name}@{HOST}"],
        reply=True,
        timeout=5,
    )
    assert "ok" in reply[f"{name}@{HOST}"], reply
    return task_id


def test_revoked_ids_and_the_clock_survive_a_restart(project: Project, tasks: Any) -> None:
    statedb = ("--statedb", "%n.state")  # %n: the node's short name, as Celery expands it
    first = project.start_worker("-P", "threads", "-c", "1", *statedb, name="w1")
    warm = revoke_by_broadcast(tasks.app, "w1")
    first.send_signal(signal.SIGTERM)  # warm shutdown
    assert first.wait(timeout=20) == 0
    assert (project.root / "w1.state").exists()

    second = project.start_worker("-P", "threads", "-c", "1", *statedb, name="w1")
    assert inspect(project, "w1", "revoked") == [warm]
    assert inspect(project, "w1", "clock")["clock"] > CLOCK
    cold = revoke_by_broadcast(tasks.app, "w1")
    second.send_signal(signal.SIGQUIT)  # cold shutdown
    second.wait(timeout=20)

    project.start_worker("-P", "threads", "-c", "1", *statedb, name="w1")
    assert inspect(project, "w1", "revoked") == [warm, cold]
    # Without --statedb, a worker started alone knows nothing of either.
    project.start_worker("-P", "threads", "-c", "1", name="w2")
    assert inspect(project, "w2", "revoked") == []
    assert inspect(project, "w2", "clock")["clock"] < CLOCK


def test_a_state_file_that_is_not_ours_is_moved_aside(project: Project) -> None:
    (project.root / "celery.state").write_bytes(b"\x00\x06\x15\x61 a Celery shelve, say")
    project.start_worker("-P", "threads", "-c", "1", "-S", "celery.state", name="w1")
    assert "celery.state is not a Celeriac state file" in project.log("w1")
    assert (project.root / "celery.state.unreadable").exists()
    assert inspect(project, "w1", "revoked") == []
