"""Writes ``bench/results/celery-suite-<date>.md`` from one run's outcomes."""

from __future__ import annotations

import datetime
import json
import platform
import sys
from collections import Counter
from pathlib import Path

from tests.celery_suite.not_applicable import reason_for

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("passed", "failed", "error", "skipped")

Outcomes = dict[str, dict[str, dict[str, dict[str, str]]]]


def _counts(outcomes: dict[str, dict[str, str]], *, applicable: bool | None) -> Counter[str]:
    counts: Counter[str] = Counter()
    for nodeid, record in outcomes.items():
        is_na = reason_for(nodeid) is not None
        if applicable is None or applicable != is_na:
            counts[record["outcome"]] += 1
    return counts


def _cell(counts: Counter[str]) -> str:
    return " / ".join(str(counts[kind]) for kind in KINDS)


def load_runs(workdirs: list[Path]) -> tuple[Outcomes, dict[str, str], list[str], list[str]]:
    """The outcomes of one or more runs; a later run's outcome of a test replaces an earlier
    run's (a run of chosen tests, ``FILE::TEST``, updates those tests only)."""
    results: Outcomes = {}
    commits: dict[str, str] = {}
    files: list[str] = []
    argvs: list[str] = []
    for workdir in workdirs:
        run = json.loads((workdir / "outcomes.json").read_text())
        argvs.append(" ".join(run["argv"]))
        for target, per_file in run["results"].items():
            for test_file, tests in per_file.items():
                results.setdefault(target, {}).setdefault(test_file, {}).update(tests)
        for key, commit in run["commits"].items():
            base = key.split("::")[0]
            if base == key:
                commits[key] = commit
            elif f"{commit} (chosen tests)" not in commits.get(base, ""):
                commits[base] = f"{commits.get(base, '-')}, {commit} (chosen tests)"
        files += [f for f in (name.split("::")[0] for name in run["files"]) if f not in files]
    return results, commits, sorted(files), argvs


def write_report(workdirs: list[Path]) -> Path:
    results, commits, files, argvs = load_runs(workdirs)
    today = datetime.datetime.now(datetime.UTC)
    path = ROOT / "bench" / "results" / f"celery-suite-{today:%Y-%m-%d}.md"
    celeriac = results.get("celeriac", {})
    celery = results.get("celery", {})
    lines = [
        f"# Celery {5.7}.0's integration suite against Celeriac ({today:%Y-%m-%d %H:%M} UTC)",
        "",
        "Command: "
        + "; then ".join(f"`python -m tests.celery_suite {a}`".replace(" `", "`") for a in argvs)
        + (
            " (a later run's outcome of a test replaces the earlier one's)"
            if len(argvs) > 1
            else ""
        ),
        "",
        f"Machine: {platform.node()}, Python {platform.python_version()}, Redis on 127.0.0.1:6379 "
        "(broker and result backend, databases 14 and 15, a key prefix per file). Each file runs "
        "in its own pytest process, once with `celery` imported as `celeriac` and once with "
        "Celery 5.7.0; both targets run at the same time. No reruns (Celery's CI reruns "
        "`@flaky` tests up to 5 times); per-test timeout 90 s.",
        "",
        "Cells are passed / failed / errors / skipped. *Applicable* counts every test that is "
        "not in the not-applicable list (`tests/celery_suite/not_applicable.py`); the N/A "
        "tests ran too and are counted apart. A file that does not import counts as 1 error.",
        "",
        "| file | Celeriac (applicable) | Celeriac N/A | Celery 5.7 (all) | Celeriac commit |",
        "|---|---|---|---|---|",
    ]
    totals = [Counter[str](), Counter[str](), Counter[str]()]
    for test_file in files:
        row = [
            _counts(celeriac.get(test_file, {}), applicable=True),
            _counts(celeriac.get(test_file, {}), applicable=False),
            _counts(celery.get(test_file, {}), applicable=None),
        ]
        for total, counts in zip(totals, row, strict=True):
            total.update(counts)
        commit = commits.get(f"celeriac:{test_file}", "-")
        lines.append(f"| {test_file} | " + " | ".join(_cell(c) for c in row) + f" | {commit} |")
    lines.append("| **total** | " + " | ".join(f"**{_cell(c)}**" for c in totals) + " | |")
    lines += ["", "## Tests of public behaviour that fail on Celeriac", ""]
    for test_file in files:
        for nodeid, record in sorted(celeriac.get(test_file, {}).items()):
            if record["outcome"] in ("failed", "error") and reason_for(nodeid) is None:
                celery_outcome = celery.get(test_file, {}).get(nodeid, {}).get("outcome", "-")
                first = _first_error(record.get("message", ""))
                lines.append(
                    f"- `{nodeid}` ({record['outcome']}; Celery: {celery_outcome}): {first}"
                )
    lines += [
        "",
        "## Not applicable (ran, counted apart)",
        "",
        "| test | reason | Celeriac | Celery |",
        "|---|---|---|---|",
    ]
    for test_file in files:
        for nodeid, record in sorted(celeriac.get(test_file, {}).items()):
            reason = reason_for(nodeid)
            if reason is not None:
                celery_outcome = celery.get(test_file, {}).get(nodeid, {}).get("outcome", "-")
                lines.append(f"| `{nodeid}` | {reason} | {record['outcome']} | {celery_outcome} |")
    raw = ", ".join(f"`{w.relative_to(ROOT)}/outcomes.json`" for w in workdirs)
    lines += ["", f"Raw outcomes: {raw} (not committed).", ""]
    path.write_text("\n".join(lines))
    return path


def _first_error(message: str) -> str:
    for line in message.splitlines():
        if line.startswith("E "):
            return "`" + line[1:].strip()[:160].replace("`", "'").replace("|", "\\|") + "`"
    return ""


if __name__ == "__main__":
    # python -m tests.celery_suite.report RUNDIR [RUNDIR ...]: the report again, from runs kept
    # in build/celery-suite/runs (e.g. after the not-applicable list changed).
    print(write_report([Path(arg).resolve() for arg in sys.argv[1:]]))
