"""The command line users script against, Celery 5.7 and Celeriac side by side on one Redis:
``list bindings``, ``purge -Q/-X``, ``shell``, ``upgrade settings``, ``graph``, the global
``--config``/``-q``/``-C``/``--workdir``/``--skip-checks``, and the worker's ``-I/--include``,
``--pool-start-method`` and ``worker_log_format``/``worker_task_log_format``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import redis_support
from tests.support.redis_project import RedisProject, redis_project_fixture  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.compat]

APPS = {"celery": "celtasks", "celeriac": "rtasks"}


def run(project: RedisProject, system: str, *args: str, stdin: str = "") -> str:
    done = subprocess.run(
        [sys.executable, "-m", system, "-A", APPS[system], *args],
        cwd=project.root,
        env=project.env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_list_bindings_prints_celerys_table(redis_project: RedisProject) -> None:
    outputs = {system: run(redis_project, system, "list", "bindings") for system in APPS}
    assert outputs["celeriac"] == outputs["celery"]
    assert outputs["celery"].splitlines()[2].split() == ["celery", "celery", "celery"]


def _lengths(project: RedisProject, queues: list[str]) -> list[int]:
    conn = redis_support.client(project.db)
    try:
        return [int(conn.llen(f"{project.prefix}{queue}")) for queue in queues]
    finally:
        conn.close()


PUBLISH = """
import json
from rtasks import app
for queue in ("q1", "q2", "q3", "celery"):
    for _ in range(2):
        app.send_task("interop.add", (1, 1), queue=queue)
print(json.dumps("sent"))
"""


@pytest.mark.parametrize(
    "selection",
    [["-Q", "q1,q2", "-X", "q2"], ["-Q", "q1,q2,q3"], ["-X", "q1"], []],
    ids=["Q-and-X", "Q", "X-default", "default"],
)
def test_purge_selects_the_queues_celery_does(
    redis_project: RedisProject, selection: list[str]
) -> None:
    queues = ["q1", "q2", "q3", "celery"]
    left = {}
    for system in APPS:
        redis_project.run_script(PUBLISH)
        run(redis_project, system, "purge", "-f", *selection)
        left[system] = _lengths(redis_project, queues)
        run(redis_project, "celeriac", "purge", "-f", "-Q", ",".join(queues))
    assert left["celeriac"] == left["celery"]
    assert any(left["celery"]) and 0 in left["celery"]


def test_shell_offers_the_same_names(redis_project: RedisProject) -> None:
    code = "import json; print(json.dumps(sorted(k for k in dir() if not k.startswith('_'))))\n"
    names = {}
    for system in APPS:
        out = run(redis_project, system, "shell", "--python", stdin=code)
        names[system] = json.loads(next(line for line in out.splitlines() if "[" in line)[4:])
    assert names["celeriac"] == names["celery"]
    assert {"app", "celery", "chain", "group", "add", "record"} <= set(names["celery"])


OLD_SETTINGS = """\
BROKER_URL = "redis://localhost"
CELERY_RESULT_BACKEND = "redis://localhost"  # results
BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 60}
CELERYD_CONCURRENCY = 4
CELERY_TASK_SERIALIZER = "json"
CELERYBEAT_SCHEDULE = {}
unrelated = 1
"""


@pytest.mark.parametrize("flags", [[], ["--django"]], ids=["plain", "django"])
def test_upgrade_settings_rewrites_as_celery_does(tmp_path: Path, flags: list[str]) -> None:
    results, said = {}, {}
    for system in APPS:
        folder = tmp_path / system
        folder.mkdir()
        (folder / "settings.py").write_text(OLD_SETTINGS)
        command = [sys.executable, "-m", system, "upgrade", "settings", "settings.py", *flags]
        first = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=60)
        assert first.returncode == 0, first.stderr
        assert (folder / "settings.py.orig").read_text() == OLD_SETTINGS
        results[system] = (folder / "settings.py").read_text()
        # The second time there is nothing left to change.
        again = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=60)
        said[system] = [first.stdout, again.stdout]
    assert results["celeriac"] == results["celery"]
    assert said["celeriac"] == said["celery"]
    assert said["celery"][0] == "Changes to your setting have been made!\n"
    assert ("result_backend" if not flags else "CELERY_RESULT_BACKEND") in results["celery"]


GRAPH_ARGS = [
    ["nodes:w1,w2", "threads:2,1", "broker:B", "backend:R"],
    ["nodes:w1,w2,w3,w4,w5,w6", "threads:5,2,1,3,8,4", "broker:redis://h", "backend:redis://h"],
    [
        "nodes:a,b,c",
        "threads:4,1,2",
        "tmax:2",
        "enumerate",
        "generic",
        "broker:amqp://x",
        "backend:rpc://",
    ],
]


def test_graph_workers_prints_celerys_dot(redis_project: RedisProject) -> None:
    for args in GRAPH_ARGS:
        outputs = {system: run(redis_project, system, "graph", "workers", *args) for system in APPS}
        assert outputs["celeriac"] == outputs["celery"], args
    steps = run(redis_project, "celeriac", "graph", "bootsteps")
    assert steps.startswith("digraph dependencies {") and steps.rstrip().endswith("}")
    assert '"Consumer" -> "Queues"' in steps


LOG_CONFIG = """
worker_log_format = "W|%(levelname)s|%(message)s"
worker_task_log_format = "T|%(task_name)s|%(task_id)s|%(message)s"
"""

LOG_TASKS = """
import sys
system = __import__("celery" if "celery" in sys.modules else "celeriac")
logs = __import__(system.__name__ + ".utils.log", fromlist=["get_task_logger"])
logger = logs.get_task_logger(__name__)


@system.shared_task(name="interop.shout")
def shout(word):
    logger.warning("shouting %s", word)
    return word.upper()
"""


@pytest.mark.parametrize("system", list(APPS))
def test_include_config_and_log_formats(
    redis_project: RedisProject, system: str, rtasks_app: Any
) -> None:
    (redis_project.root / "logcfg.py").write_text(LOG_CONFIG)
    (redis_project.root / "logtasks.py").write_text(LOG_TASKS)
    argv = [
        sys.executable,
        "-m",
        system,
        "-A",
        APPS[system],
        "--config",
        "logcfg",
        "worker",
        "-l",
        "info",
        "-P",
        "solo",
        "-I",
        "logtasks",
        "-n",
        "w1@%h",
    ]
    argv += ["--without-mingle", "--without-gossip"] if system == "celery" else ["--without-mingle"]
    redis_project.start(argv, "w1", "ready.")
    result = rtasks_app.send_task("interop.shout", ("hi",))
    assert result.get(timeout=20) == "HI"
    redis_project.wait_for_log("w1", f"T|interop.shout|{result.id}|shouting hi")
    assert "\nW|INFO|" in redis_project.log("w1")


@pytest.fixture(name="rtasks_app")
def rtasks_app_fixture(redis_project: RedisProject) -> Any:
    import rtasks

    return rtasks.app


def test_quiet_hides_the_banner_and_spawn_is_refused(redis_project: RedisProject) -> None:
    for name, flags in (("loud", []), ("quiet", ["-q"])):
        argv = [
            sys.executable,
            "-m",
            "celeriac",
            "-A",
            "rtasks",
            *flags,
            "worker",
            "-P",
            "solo",
            "-l",
            "info",
            "--without-mingle",
            "-n",
            f"{name}@%h",
        ]
        redis_project.start(argv, name, "ready.")
    assert "[queues]" in redis_project.log("loud")
    assert "[queues]" not in redis_project.log("quiet")
    quiet = redis_project.celeriac("-q", "purge", "-f")
    assert quiet.returncode == 0 and quiet.stdout == ""
    refused = redis_project.celeriac("worker", "--pool-start-method", "spawn")
    assert refused.returncode != 0 and "spawn" in refused.stderr and "fork" in refused.stderr
    bad = redis_project.celeriac("worker", "--umask", "999")
    assert bad.returncode != 0 and "umask" in bad.stderr
    nobody = redis_project.celeriac("worker", "--uid", "no-such-user-for-celeriac")
    assert nobody.returncode != 0 and "no user named" in nobody.stderr


def test_workdir_and_skip_checks(tmp_path: Path) -> None:
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "wapp.py").write_text(
        "import os\nfrom celeriac import Celery\napp = Celery('w', broker='memory://')\n"
        "app.conf.task_default_queue = os.environ.get('CELERY_SKIP_CHECKS', 'unset')\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "celeriac",
            "--workdir",
            str(tmp_path / "proj"),
            "-A",
            "wapp",
            "--skip-checks",
            "list",
            "bindings",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[2].split()[0] == "true"


def test_log_format_json_writes_one_object_a_line(
    redis_project: RedisProject, rtasks_app: Any
) -> None:
    (redis_project.root / "logtasks.py").write_text(LOG_TASKS)
    redis_project.celeriac_worker("-P", "solo", "-I", "logtasks", "--log-format", "json")
    result = rtasks_app.send_task("interop.shout", ("hi",))
    assert result.get(timeout=20) == "HI"
    redis_project.wait_for_log("w1", "shouting hi")
    entries = [
        json.loads(line) for line in redis_project.log("w1").splitlines() if line.startswith("{")
    ]
    shouted = next(entry for entry in entries if entry["message"] == "shouting hi")
    assert shouted["task_id"] == result.id and shouted["task_name"] == "interop.shout"
    assert shouted["level"] == "WARNING" and shouted["time"].endswith("+00:00")
    assert any(entry["message"].endswith("ready.") for entry in entries)


HELP = {
    (): ["--config", "--workdir", "--no-color", "--quiet", "--skip-checks", "-C", "-q"],
    ("shell",): ["--ipython", "--bpython", "--python", "--without-tasks", "--gevent"],
    ("list", "bindings"): ["bindings of the app's task queues"],
    ("graph", "bootsteps"): ["parts a worker starts"],
    ("graph", "workers"): ["nodes:NAME"],
    ("upgrade", "settings"): ["--django", "--compat", "--no-backup"],
    ("purge",): ["--queues", "--exclude-queues", "-X", "--force"],
    ("worker",): [
        "--include",
        "-I",
        "--scheduler",
        "--uid",
        "--gid",
        "--umask",
        "--pool-start-method",
        "--log-format",
    ],
}


@pytest.mark.parametrize("command", list(HELP), ids=lambda c: "-".join(c) or "celeriac")
def test_every_command_and_option_has_help(command: tuple[str, ...]) -> None:
    from click.testing import CliRunner

    from celeriac.cli.main import cli

    done = CliRunner().invoke(cli, [*command, "--help"])
    assert done.exit_code == 0, done.output
    for text in HELP[command]:
        assert text in done.output, f"{text!r} missing from {' '.join(command)} --help"
