"""The Celery-suite harness (``tests/celery_suite``): the import hook and the N/A list.

The suite itself is downloaded and run by ``python -m tests.celery_suite`` (not in CI: it
takes about 40 minutes); these checks of its parts need neither the download nor Redis.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.celery_suite.not_applicable import NOT_APPLICABLE, reason_for

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "tests" / "celery_suite" / "site"

PROBE = """
import celery, celery.canvas, celeriac, celeriac.canvas
from celery import chain, signature
from celery.contrib.testing.manager import Manager
assert celery is celeriac and celery.canvas is celeriac.canvas
assert chain is celeriac.chain and Manager.__module__ == "celeriac.contrib.testing.manager"
assert celeriac.__spec__.name == "celeriac"  # the alias leaves the module's own spec
try:
    import celery.backends.azureblockblob
except ModuleNotFoundError as exc:
    assert exc.name == "celery.backends.azureblockblob", exc.name
else:
    raise AssertionError("a module Celeriac lacks must not import")
print("ok")
"""


def _python(code: str, target: str) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": f"{SITE}:{ROOT}", "CELERY_SUITE_TARGET": target, "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )


def test_the_hook_maps_celery_to_celeriac() -> None:
    done = _python(PROBE, "celeriac")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_without_the_celeriac_target_celery_is_celery() -> None:
    done = _python("import celery; print(celery.__name__, celery.__version__)", "celery")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["celery", "5.7.0"]


def test_python_m_celery_runs_celeriacs_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "celery", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": f"{SITE}:{ROOT}", "CELERY_SUITE_TARGET": "celeriac"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: celeriac")


def test_not_applicable_reasons_are_given_and_matched() -> None:
    assert all(reason.strip() for reason in NOT_APPLICABLE.values())
    base = "t/integration/test_group_chains.py::test_group_chains::"
    assert reason_for(base + "test_group_results_reach_the_next_group[True-False-True-1]")
    assert reason_for(base + "test_group_results_reach_the_next_group[True-False-True-2]") is None
    assert reason_for("t/integration/test_backend.py::test_AzureBlockBlobBackend::test_crud")
    assert reason_for("t/integration/test_canvas.py::test_chain::test_simple_chain") is None
