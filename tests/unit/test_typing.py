"""Static typing of tasks: mypy --strict checks ``delay`` arguments against the function and
knows what ``get()`` returns, for plain, bound and shared tasks."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

HEADER = """\
from typing import Any

from celeriac import Celery, Task, shared_task

app = Celery("typing_demo", broker="memory://typing-demo", backend="memory://typing-demo")


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task(bind=True, max_retries=3)
def greet(self: Task[Any, Any], name: str) -> str:
    return f"hello {name} from {self.request.id}"


@shared_task
def shout(text: str) -> str:
    return text.upper()
"""

GOOD = """
def use() -> None:
    total: int = add.delay(2, 2).get()
    reveal_type(add.delay(2, 2).get())
    reveal_type(greet.delay("ada").get(timeout=1))
    reveal_type(shout.delay("hey").get())
    reveal_type(add.apply_async((1, 2), countdown=1))
    reveal_type(add(1, 2))
    print(total)
"""

BAD = """
add.delay("x", 2)
greet.delay(3)
add.delay(1)
shout.delay(text=1)
"""


@pytest.fixture(scope="module")
def mypy_output(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Run mypy --strict once over both snippets; its output lines by snippet."""
    folder = tmp_path_factory.mktemp("typing")
    (folder / "good_calls.py").write_text(HEADER + textwrap.dedent(GOOD))
    (folder / "bad_calls.py").write_text(HEADER + textwrap.dedent(BAD))
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--cache-dir",
            str(folder / "cache"),
            "--no-error-summary",
            str(folder / "good_calls.py"),
            str(folder / "bad_calls.py"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.stderr == "", completed.stderr
    lines = completed.stdout.splitlines()
    return {
        name: [line for line in lines if Path(line.split(":", 1)[0]).name == f"{name}.py"]
        for name in ("good_calls", "bad_calls")
    }


def test_correct_calls_type_check_cleanly(mypy_output: dict[str, list[str]]) -> None:
    errors = [line for line in mypy_output["good_calls"] if ": error:" in line]
    assert errors == []


def test_get_is_revealed_as_the_task_return_type(mypy_output: dict[str, list[str]]) -> None:
    revealed = [
        line.split("Revealed type is ", 1)[1]
        for line in mypy_output["good_calls"]
        if "Revealed type is" in line
    ]
    assert revealed == [
        '"int"',  # add.delay(2, 2).get()
        '"str"',  # greet.delay("ada").get(timeout=1): bind=True drops self
        '"str"',  # shout.delay("hey").get(): shared_task
        '"celeriac.result.AsyncResult[int]"',
        '"int"',  # add(1, 2): a task is still callable as its function
    ]


def test_wrong_argument_types_are_errors(mypy_output: dict[str, list[str]]) -> None:
    errors = "\n".join(mypy_output["bad_calls"])
    assert 'Argument 1 to "delay" of "Task" has incompatible type "str"; expected "int"' in errors
    assert 'Argument 1 to "delay" of "Task" has incompatible type "int"; expected "str"' in errors
    assert 'Missing positional argument "y" in call to "delay" of "Task"' in errors
    assert (
        'Argument "text" to "delay" of "Task" has incompatible type "int"; expected "str"' in errors
    )


def test_each_bad_call_is_reported_on_its_line(mypy_output: dict[str, list[str]]) -> None:
    base = HEADER.count("\n") + 1  # BAD starts with a blank line
    reported = {int(line.split(":")[1]) for line in mypy_output["bad_calls"] if ": error:" in line}
    assert reported == {base + 1, base + 2, base + 3, base + 4}
