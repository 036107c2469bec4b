"""Shell completion as docs/guide/shell-completion.md documents it (Click's mechanism)."""

from __future__ import annotations

import os
import subprocess
import sys


def _complete(words: str, cword: int) -> list[str]:
    env = dict(os.environ, COMP_WORDS=words, COMP_CWORD=str(cword))
    env["_CELERIAC_COMPLETE"] = "bash_complete"
    code = "from celeriac.cli.main import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    return [line.split(",", 1)[1] for line in done.stdout.splitlines() if "," in line]


def test_bash_completion_offers_subcommands() -> None:
    assert _complete("celeriac wor", 1) == ["worker"]
    assert {"inspect", "control", "beat", "worker"} <= set(_complete("celeriac ", 1))


def test_bash_completion_offers_worker_options() -> None:
    assert "--concurrency" in _complete("celeriac worker --conc", 2)


def test_bash_source_script_names_the_command() -> None:
    env = dict(os.environ, _CELERIAC_COMPLETE="bash_source")
    code = "from celeriac.cli.main import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert "_celeriac_completion()" in done.stdout
