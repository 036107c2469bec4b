"""``celeriac beat list|add|remove|enable|disable|run-now`` on a project's SQLite store."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from celeriac.beat.store import SQLiteScheduleStore
from celeriac.cli.main import cli

PROJECT = """
from celeriac import Celery
from celeriac.schedules import crontab

app = Celery("beatcli", broker="sqlite:///{db}")
app.conf.beat_schedule = {{
    "nightly": {{"task": "beatcli.report", "schedule": crontab(hour=3, minute=0)}},
}}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    db = tmp_path / "celeriac.sqlite"
    (tmp_path / "beatcli.py").write_text(textwrap.dedent(PROJECT.format(db=db)))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("beatcli", None)
    try:
        yield db
    finally:
        module = sys.modules.pop("beatcli", None)
        if module is not None:
            module.app.close()


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["-A", "beatcli", "beat", *args], catch_exceptions=False)


def listed() -> dict[str, dict[str, Any]]:
    result = run("list", "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    return {row["name"]: row for row in rows}


def test_configured_and_added_entries_are_listed_together(project: Path) -> None:
    assert list(listed()) == ["nightly"]
    result = run(
        "add",
        "ping",
        "-t",
        "beatcli.ping",
        "--every",
        "30s",
        "--args",
        "[1, 2]",
        "--queue",
        "fast",
        "--missed",
        "skip",
    )
    assert result.exit_code == 0, result.output
    assert "Added ping" in result.output
    run("add", "tidy", "-t", "beatcli.tidy", "--cron", "*/5 * * * *")
    run("add", "dusk", "-t", "beatcli.lights", "--solar", "dusk_civil", "48.85", "2.35")
    rows = listed()
    assert sorted(rows) == ["dusk", "nightly", "ping", "tidy"]
    assert (rows["nightly"]["source"], rows["ping"]["source"]) == ("config", "store")
    assert rows["ping"]["schedule"] == "<freq: 30.00 seconds>"
    assert rows["tidy"]["schedule"] == "<crontab: */5 * * * * (m/h/dM/MY/d)>"
    stored = SQLiteScheduleStore(str(project))
    try:
        definition = stored.entries()["ping"].definition
    finally:
        stored.close()
    assert definition is not None
    assert (definition["args"], definition["options"], definition["missed"]) == (
        [1, 2],
        {"queue": "fast"},
        "skip",
    )
    text = run("list").output
    assert "ping  [store, enabled]  beatcli.ping" in text


def test_bad_input_is_refused_with_a_reason(project: Path) -> None:
    bad_cron = run("add", "x", "-t", "t", "--cron", "61 * * * *")
    assert bad_cron.exit_code == 2 and "minute" in bad_cron.output
    two = run("add", "x", "-t", "t", "--every", "5", "--cron", "* * * * *")
    assert two.exit_code == 2 and "exactly one" in two.output
    clash = run("add", "nightly", "-t", "t", "--every", "5")
    assert clash.exit_code == 1 and "beat_schedule" in clash.output
    assert run("remove", "nightly").exit_code == 1  # configured: disable it instead
    unknown = run("enable", "nope")
    assert unknown.exit_code == 1 and "no periodic task named 'nope'" in unknown.output
    assert list(listed()) == ["nightly"]


def test_disable_enable_run_now_and_remove(project: Path) -> None:
    run("add", "ping", "-t", "beatcli.ping", "--every", "10")
    assert run("disable", "nightly").exit_code == 0
    assert listed()["nightly"]["enabled"] is False
    refused = run("run-now", "nightly")
    assert refused.exit_code == 1 and "disabled" in refused.output
    assert run("enable", "nightly").exit_code == 0
    assert run("run-now", "nightly").exit_code == 0
    stored = SQLiteScheduleStore(str(project))
    try:
        assert stored.entries()["nightly"].run_requested
    finally:
        stored.close()
    assert run("remove", "ping").output.strip() == "Removed ping."
    assert list(listed()) == ["nightly"]


def test_schedule_option_picks_another_store(project: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    result = run("add", "ping", "-t", "t", "--every", "5", "-s", str(other))
    assert result.exit_code == 0, result.output
    assert list(listed()) == ["nightly"]  # not in the broker's file
    in_other = CliRunner().invoke(
        cli, ["-A", "beatcli", "beat", "-s", str(other), "list", "--json"]
    )
    assert sorted(json.loads(line)["name"] for line in in_other.output.splitlines()) == [
        "nightly",
        "ping",
    ]
