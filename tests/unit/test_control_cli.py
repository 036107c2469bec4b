"""The monitoring commands' pure parts: argument parsing, reply and event formatting, help."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from celeriac._time import ManualClock
from celeriac.cli.control import compile_arguments, pretty
from celeriac.cli.events import format_event, render
from celeriac.cli.main import cli
from celeriac.events.state import State

T0 = 1_700_000_000.0


def test_arguments_follow_each_commands_signature() -> None:
    assert compile_arguments("rate_limit", ("tasks.add", "10/m")) == {
        "task_name": "tasks.add",
        "rate_limit": "10/m",
    }
    assert compile_arguments("time_limit", ("tasks.add", "1.5")) == {
        "task_name": "tasks.add",
        "soft": 1.5,
    }
    assert compile_arguments("revoke", ("a", "b")) == {"task_id": ["a", "b"]}
    assert compile_arguments("terminate", ("SIGKILL", "a")) == {
        "signal": "SIGKILL",
        "task_id": ["a"],
    }
    assert compile_arguments("pool_grow", ()) == {}
    assert compile_arguments("conf", ("true",)) == {"with_defaults": True}
    with pytest.raises(click.BadParameter):
        compile_arguments("pool_grow", ("many",))
    with pytest.raises(click.UsageError):
        compile_arguments("ping", ("extra",))


def test_replies_print_as_celery_prints_them() -> None:
    assert pretty({"ok": "pong"}) == ("OK", "pong")
    assert pretty({"error": "unknown task"}) == ("ERROR", "unknown task")
    assert pretty([]) == ("OK", "- empty -")
    assert pretty(["tasks.add", "tasks.mul"]) == ("OK", "* tasks.add\n* tasks.mul")
    request = {"id": "i", "name": "tasks.add", "args": [1], "kwargs": {}, "worker_pid": 7}
    assert pretty([request]) == ("OK", "* tasks.add[i] args=[1] kwargs={} pid=7")
    assert pretty({"clock": 3}) == ("OK", '{\n    "clock": 3\n}')


def test_an_event_dumps_on_one_line() -> None:
    line = format_event(
        {
            "type": "task-succeeded",
            "hostname": "w1@h",
            "timestamp": T0,
            "uuid": "u",
            "result": "4",
            "local_received": T0,
        }
    )
    assert line == "w1@h [2023-11-14T22:13:20+00:00] task-succeeded: result=4, uuid=u"


def test_the_live_view_shows_workers_and_the_latest_tasks() -> None:
    clock = ManualClock(T0)
    state = State(clock=clock)
    state.event(
        {
            "type": "worker-heartbeat",
            "hostname": "w1@h",
            "timestamp": T0,
            "freq": 2.0,
            "active": 1,
            "processed": 9,
            "loadavg": [0.5, 0.25, 0.0],
        }
    )
    for n, kind in enumerate(["received", "succeeded"]):
        fields = {"name": "tasks.add", "result": "4", "runtime": 0.25}
        state.event(
            {
                "type": f"task-{kind}",
                "uuid": "t1",
                "hostname": "w1@h",
                "timestamp": T0 + n,
                **fields,
            }
        )
    state.event(
        {
            "type": "task-failed",
            "uuid": "t2",
            "hostname": "w1@h",
            "timestamp": T0 + 5,
            "exception": "KeyError('k')",
        }
    )
    frame = render(state, now=T0 + 1, width=200, height=20).splitlines()
    assert frame[0].startswith("celeriac events: 1 of 1 workers online, 4 events, 2 tasks")
    [worker] = [line for line in frame if line.startswith("w1@h")]
    assert "ONLINE" in worker and "0.50 0.25 0.00" in worker and "1.0s ago" in worker
    rows = [line for line in frame if line.startswith(("t1", "t2"))]
    assert rows[0].startswith("t2") and "FAILURE" in rows[0] and "KeyError('k')" in rows[0]
    assert "SUCCESS" in rows[1] and "0.250s" in rows[1] and rows[1].rstrip().endswith("4")
    clock.advance(10)
    assert "OFFLINE" in render(state, now=T0 + 11)


@pytest.mark.parametrize("command", ["inspect", "control", "status", "events"])
def test_every_command_has_help(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output


def test_worker_help_lists_the_event_options() -> None:
    output = CliRunner().invoke(cli, ["worker", "--help"]).output
    assert "--task-events" in output and "--without-heartbeat" in output
