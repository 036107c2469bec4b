"""Which command lines monkey-patch for gevent before anything else is imported."""

from __future__ import annotations

import sys

import pytest

from celeriac._gevent_patch import patch_if_requested, requested_pool


@pytest.mark.parametrize(
    "argv",
    [
        ["-A", "proj", "worker", "-P", "gevent", "-c", "100"],
        ["-A", "proj", "worker", "--pool", "gevent"],
        ["-A", "proj", "worker", "--pool=gevent"],
        ["-A", "proj", "worker", "-Pgevent"],
        ["worker", "-l", "info", "-P", "gevent"],
    ],
)
def test_a_worker_asking_for_gevent(argv: list[str]) -> None:
    assert requested_pool(argv) == "gevent"


@pytest.mark.parametrize(
    "argv",
    [
        ["-A", "proj", "worker"],  # worker_pool in the settings cannot be seen this early
        ["-A", "proj", "worker", "-P", "threads"],
        ["-A", "proj", "multi", "start", "w1", "worker", "-P", "gevent"],  # its workers patch
        ["-A", "proj", "call", "proj.add"],
        ["-A", "proj", "worker", "--", "-P", "gevent"],
        ["-A", "proj", "worker", "-P"],  # click reports the missing value
    ],
)
def test_command_lines_that_do_not_patch(argv: list[str]) -> None:
    assert requested_pool(argv) != "gevent"
    assert patch_if_requested(argv) is False


def test_missing_gevent_exits_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gevent", None)  # import gevent raises ImportError
    with pytest.raises(SystemExit) as exited:
        patch_if_requested(["worker", "-P", "gevent"])
    assert 'pip install "celeriac[gevent]"' in str(exited.value.code)
