"""autodiscover_tasks, Celery 5.7 and Celeriac side by side: which package shapes are
ignored (no ``tasks`` module), found, or an error, eagerly and lazily (at worker start)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.compat]

SHAPES = [
    "notasks",  # a package without a tasks module: ignored
    "withtasks",  # found
    "notasks.Config",  # a Django AppConfig path: one level up, no tasks module: ignored
    "plainmodule",  # a module, not a package: ignored
    "outer.missing",  # a missing subpackage: one level up, ignored
    "outer.missing.deeper",  # two levels missing: an error
    "nonexistent",  # a top-level package that does not exist: an error
]

SCRIPT = """
import json, sys
from {system} import Celery

app = Celery("x", broker="memory://")
outcomes = {{}}
for shape in {shapes!r}:
    try:
        app.autodiscover_tasks([shape], force=True)
        outcomes[shape] = "found" if shape + ".tasks" in sys.modules else "ignored"
    except Exception as exc:
        outcomes[shape] = "error"
lazy = Celery("y", broker="memory://")
lazy.autodiscover_tasks(["notasks", "withtasks", "notasks.Config"])
importer = lazy.loader if "{system}" == "celery" else lazy
importer.import_default_modules()
outcomes["lazy"] = sorted(name for name in lazy.tasks if name.startswith("withtasks"))
print(json.dumps(outcomes))
"""


def _outcomes(system: str, root: Path) -> dict[str, object]:
    code = SCRIPT.format(system=system, shapes=SHAPES)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_autodiscover_ignores_and_refuses_what_celery_does(tmp_path: Path) -> None:
    for package in ("notasks", "withtasks", "outer"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "withtasks" / "tasks.py").write_text(  # a shared task of whichever is loaded
        "import sys\n"
        "shared = __import__('celery' if 'celery' in sys.modules else 'celeriac').shared_task\n"
        "@shared\ndef ping():\n    return 'pong'\n"
    )
    (tmp_path / "plainmodule.py").write_text("X = 1\n")
    celery, celeriac = _outcomes("celery", tmp_path), _outcomes("celeriac", tmp_path)
    assert celeriac == celery
    assert celery["notasks"] == "ignored" and celery["withtasks"] == "found"
    assert celery["lazy"] == ["withtasks.tasks.ping"]


def test_a_missing_package_raises_module_not_found_as_celery() -> None:
    """Celery raises ``ModuleNotFoundError`` naming the missing top-level package; Celeriac's
    error is that and ``ImproperlyConfigured``."""
    import celery

    import celeriac
    from celeriac.exceptions import ImproperlyConfigured

    theirs = celery.Celery("x", broker="memory://")
    ours = celeriac.Celery("x", broker="memory://", set_as_current=False)
    for app in (theirs, ours):
        for package in ("nonexistent_pkg", "nonexistent_pkg.sub.deeper"):
            with pytest.raises(ModuleNotFoundError) as raised:
                app.autodiscover_tasks(["json", package], "tasks", force=True)
            assert raised.value.name == "nonexistent_pkg"
    with pytest.raises(ImproperlyConfigured):
        ours.autodiscover_tasks(["nonexistent_pkg"], force=True)
