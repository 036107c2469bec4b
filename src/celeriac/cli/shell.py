"""``celeriac shell``: an interactive Python with the app, the canvas and the tasks at hand.

As Celery's: the locals are ``app`` and ``celery`` (the app), ``Task``, ``chord``, ``group``,
``chain``, ``chunks``, ``xmap``, ``xstarmap``, ``subtask``, ``signature``, and every task by
its function name (not the built-in ``celery.*`` ones unless ``-T``). IPython, then bpython,
is used when installed, unless ``--python``; ``-I``/``-B`` insist on one.
"""

from __future__ import annotations

import code
import contextlib
import importlib
import importlib.util
import os
import sys
from typing import Any

import click

__all__ = ["shell"]


def _locals(app: Any, with_tasks: bool) -> dict[str, Any]:
    import celeriac

    found: dict[str, Any] = {"app": app, "celery": app}
    for name in (
        "Task",
        "chord",
        "group",
        "chain",
        "chunks",
        "xmap",
        "xstarmap",
        "subtask",
        "signature",
    ):
        found[name] = getattr(celeriac, name)
    if with_tasks:
        for task in app.tasks.values():
            if not task.name.startswith(("celery.", "celeriac.")):
                found[_function_name(task)] = task
    return found


def _function_name(task: Any) -> str:
    """The name a task is known by in the shell: its function's, as Celery's ``__name__``."""
    run = getattr(task, "run", None)
    name = getattr(run, "__name__", None)
    if isinstance(name, str) and name.isidentifier() and name != "run":
        return name
    return str(task.name).rsplit(".", 1)[-1]


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _run(kind: str, names: dict[str, Any]) -> None:
    if kind == "ipython":
        from IPython import start_ipython  # type: ignore[import-not-found,unused-ignore]

        start_ipython(argv=[], user_ns=names)
    elif kind == "bpython":
        import bpython  # type: ignore[import-not-found,unused-ignore]

        bpython.embed(names)
    else:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401 - line editing for the plain shell
        code.interact(local=names, banner=f"Python {sys.version.split()[0]} (celeriac shell)")


@click.command()
@click.option("-I", "--ipython", is_flag=True, help="Use IPython (it must be installed).")
@click.option("-B", "--bpython", is_flag=True, help="Use bpython (it must be installed).")
@click.option("--python", "plain", is_flag=True, help="Use the plain Python shell.")
@click.option("-T", "--without-tasks", is_flag=True, help="Do not add the tasks to the locals.")
@click.option("--eventlet", is_flag=True, help="Refused: Celeriac has no eventlet support.")
@click.option("--gevent", is_flag=True, help="Monkey-patch with gevent first.")
@click.pass_obj
def shell(
    ctx: Any,
    ipython: bool,
    bpython: bool,
    plain: bool,
    without_tasks: bool,
    eventlet: bool,
    gevent: bool,
) -> None:
    """Start a Python shell with the app, the canvas primitives and the tasks as locals."""
    if eventlet:
        raise click.UsageError("--eventlet: Celeriac has no eventlet pool; use --gevent.")
    if gevent:
        if not _installed("gevent"):
            raise click.UsageError('--gevent needs gevent: pip install "celeriac[gevent]"')
        importlib.import_module("gevent.monkey").patch_all()
    sys.path.insert(0, os.getcwd())
    app = ctx.app
    app.import_default_modules()
    names = _locals(app, not without_tasks)
    for flag, kind in ((ipython, "ipython"), (bpython, "bpython")):
        if flag:
            if not _installed("IPython" if kind == "ipython" else kind):
                raise click.UsageError(f"--{kind}: {kind} is not installed")
            _run(kind, names)
            return
    if not plain:
        for kind, module in (("ipython", "IPython"), ("bpython", "bpython")):
            if _installed(module) and sys.stdin.isatty():
                _run(kind, names)
                return
    _run("python", names)
