"""``celeriac upgrade settings FILE``: rewrite old uppercase setting names to the new ones.

As Celery's command: each line gets at most one old name replaced (the longest that occurs, as
a whole word), ``CELERY_RESULT_BACKEND`` becoming ``result_backend``, or, with ``--django``
or ``--compat``, ``CELERY_RESULT_BACKEND`` (the new name, upper-cased, behind the
``CELERY_`` namespace Django settings use). The original is kept as ``FILE.orig`` unless
``--no-backup``. Progress goes to stderr, so the command is quiet on stdout.
"""

from __future__ import annotations

import re
from pathlib import Path

import click

from celeriac.app._setting_names import OLD_TO_NEW

__all__ = ["rewrite_line", "upgrade"]

# Longest first, so BROKER_TRANSPORT_OPTIONS wins over BROKER_TRANSPORT.
_OLD_NAMES = sorted(OLD_TO_NEW, key=len, reverse=True)
_PATTERNS = {
    old: re.compile(rf"(?<![A-Za-z0-9_]){re.escape(old)}(?![A-Za-z0-9_])") for old in _OLD_NAMES
}


def _namespaced(new: str, namespace: str = "CELERY") -> str:
    key = new.upper()
    return key if key.startswith(namespace) else f"{namespace}_{key}"


def rewrite_line(line: str, *, namespaced: bool = False) -> tuple[bool, str]:
    """(changed, line) with the longest old setting name in ``line`` renamed."""
    for old in _OLD_NAMES:
        new = OLD_TO_NEW[old]
        if namespaced:
            new = _namespaced(new)
        pattern = _PATTERNS[old]
        if new == old or not pattern.search(line):
            continue
        rewritten = pattern.sub(new, line)
        if "CELERY_CELERY" not in rewritten:
            return True, rewritten
    return False, line


@click.group()
def upgrade() -> None:
    """Upgrade a project from older Celery versions."""


@upgrade.command()
@click.argument("filename", type=click.Path(exists=True, dir_okay=False))
@click.option("--django", is_flag=True, help="A Django settings file: CELERY_-prefixed names.")
@click.option("--compat", is_flag=True, help="Keep CELERY_-prefixed upper-case names.")
@click.option("--no-backup", is_flag=True, help="Do not keep the original as FILENAME.orig.")
def settings(filename: str, django: bool, compat: bool, no_backup: bool) -> None:
    """Rewrite the old (Celery 3) setting names in FILENAME to the new lowercase ones."""
    path = Path(filename)
    click.echo(f"processing {filename}...", err=True)
    with path.open(encoding="utf-8", newline="") as source:
        lines = source.readlines()
    results = [rewrite_line(line, namespaced=django or compat) for line in lines]
    if not any(changed for changed, _ in results):
        click.echo("Does not seem to require any changes :-)")  # Celery's words, on stdout
        return
    if not no_backup:
        backup = path.with_name(path.name + ".orig")
        click.echo(f"writing backup to {backup}...", err=True)
        backup.write_text("".join(lines), encoding="utf-8", newline="")
    with path.open("w", encoding="utf-8", newline="") as target:
        target.write("".join(line for _, line in results))
    click.echo("Changes to your setting have been made!")
