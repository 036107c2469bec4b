"""Run Celery 5.7's own integration suite against Celeriac and against Celery, side by side.

    python -m tests.celery_suite [FILE ...] [--target celeriac|celery|both] [--no-report]

The suite's files are not in this repository: the runner downloads Celery's source
distribution with pip into ``build/celery-suite/`` (gitignored), keeps only ``t/``, and runs
each ``t/integration/test_*.py`` in its own pytest process, once with the ``celery`` imports
mapped to ``celeriac`` (``_hook.py``, installed by ``site/sitecustomize.py``) and once with the
real Celery installed in the venv. Broker and result backend are the machine's Redis, database
``CELERY_SUITE_REDIS_DB`` (14) under a key prefix of the run; the keys are deleted after.
The figures go to ``bench/results/celery-suite-<date>.md``: per file passed / failed / errors /
skipped, and the not-applicable tests (``not_applicable.py``) counted apart, with reasons.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

from tests.celery_suite.not_applicable import reason_for

CELERY_VERSION = "5.7.0"
ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "build" / "celery-suite"
SUITE = CACHE / f"celery-{CELERY_VERSION}"
SITE = Path(__file__).resolve().parent / "site"
#: Each target has its own database, so the two runs may go at the same time.
REDIS_DBS = {"celeriac": 14, "celery": 15}
PER_TEST_TIMEOUT = 90
KINDS = ("passed", "failed", "error", "skipped")
LONG_FILES = ("test_inspect.py", "test_tasks.py", "test_canvas.py")

INI = """\
[pytest]
addopts = --strict-markers -p no:cacheprovider -p no:celeriac
markers =
    flaky: Celery's rerun marker (pytest-rerunfailures is not installed: no reruns)
    timeout: per-test timeout
    amqp: needs RabbitMQ
timeout = {timeout}
python_classes = test_*
xfail_strict = true
"""


def fetch_suite() -> Path:
    """Download Celery's sdist with pip (once) and unpack its ``t/`` beside it."""
    if (SUITE / "t" / "integration" / "conftest.py").exists():
        return SUITE
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"celery=={CELERY_VERSION}",
            "--dest",
            str(CACHE),
        ],
        check=True,
    )
    with tarfile.open(CACHE / f"celery-{CELERY_VERSION}.tar.gz") as archive:
        members = [
            m for m in archive.getmembers() if m.name.startswith(f"celery-{CELERY_VERSION}/t/")
        ]
        archive.extractall(CACHE, members=members, filter="data")
    return SUITE


def write_config(suite: Path) -> None:
    (suite / "pytest.ini").write_text(INI.format(timeout=PER_TEST_TIMEOUT))
    # Celery's conftest merges this file (from the rootdir) into the app's configuration; the
    # key prefix comes from the environment of each run (CELERY_SUITE_KEY_PREFIX).
    (suite / "integration-tests-config.json").write_text(json.dumps({}))


def run_file(suite: Path, target: str, test_file: str, prefix: str, out: Path) -> float:
    db = REDIS_DBS[target]
    url = f"redis://127.0.0.1:6379/{db}"
    env = dict(
        os.environ,
        CELERY_SUITE_TARGET=target,
        TEST_BROKER=url,
        TEST_BACKEND=url,
        CELERY_SUITE_REDIS_DB=str(db),
        CELERY_SUITE_KEY_PREFIX=prefix,
        CELERY_SUITE_OUTCOMES=str(out),
        CELERY_SUITE_TIMEOUT=str(PER_TEST_TIMEOUT),
        PYTHONPATH=os.pathsep.join([str(SITE), str(ROOT), str(suite)]),
    )
    env.pop("PYTEST_ADDOPTS", None)
    # Tests run the `celery` command: the venv's (its script imports celery, hooked or not).
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-c",
        str(suite / "pytest.ini"),
        "--rootdir",
        str(suite),
        "-p",
        "tests.celery_suite.plugin",
        "-p",
        "celery.contrib.pytest",
        "-q",
        f"t/integration/{test_file}",
    ]
    started = time.monotonic()
    log = out.with_suffix(".log")
    with log.open("a") as stream:
        subprocess.run(
            command, cwd=suite, env=env, stdout=stream, stderr=subprocess.STDOUT, check=False
        )
    return time.monotonic() - started


def redis_keys(db: int) -> set[bytes]:
    import redis

    return set(redis.Redis(db=db).scan_iter(count=1000))


def delete_new_keys(db: int, before: set[bytes]) -> None:
    """Delete what the run left in its database: its prefix, and the suite's own helper keys."""
    import redis

    client = redis.Redis(db=db)
    for key in redis_keys(db) - before:
        client.delete(key)


def read_outcomes(path: Path) -> dict[str, dict[str, str]]:
    outcomes: dict[str, dict[str, str]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            record = json.loads(line)
            outcomes[record["nodeid"]] = record
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.celery_suite")
    parser.add_argument(
        "files", nargs="*", help="test files of t/integration, or FILE::TEST (default: all)"
    )
    parser.add_argument("--target", choices=["celeriac", "celery", "both"], default="both")
    parser.add_argument("--no-report", action="store_true", help="do not write bench/results")
    parser.add_argument(
        "--dbs", default="14,15", help="Redis databases of the Celeriac and Celery runs (9-15)"
    )
    args = parser.parse_args(argv)
    REDIS_DBS.update(
        zip(("celeriac", "celery"), (int(db) for db in args.dbs.split(",")), strict=True)
    )
    if not all(9 <= db <= 15 for db in REDIS_DBS.values()):
        parser.error("the suite may use Redis databases 9-15 only")
    suite = fetch_suite()
    found = sorted(p.name for p in (suite / "t" / "integration").glob("test_*.py"))
    # The long files last, so that a run's first figures come early.
    files = args.files or sorted(found, key=lambda name: (name in LONG_FILES, name))
    targets = ["celeriac", "celery"] if args.target == "both" else [args.target]
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S")
    workdir = CACHE / "runs" / stamp
    workdir.mkdir(parents=True)
    results: dict[str, dict[str, dict[str, dict[str, str]]]] = {t: {} for t in targets}
    durations: dict[tuple[str, str], float] = {}
    commits: dict[tuple[str, str], str] = {}

    def run_target(target: str) -> None:
        for test_file in files:
            prefix = f"celery-suite-{uuid.uuid4().hex[:8]}:"
            out = workdir / f"{target}-{test_file}.jsonl"
            before = redis_keys(REDIS_DBS[target])
            commits[target, test_file] = source_state()
            try:
                durations[target, test_file] = run_file(suite, target, test_file, prefix, out)
            finally:
                delete_new_keys(REDIS_DBS[target], before)
            outcomes = read_outcomes(out)
            results[target].setdefault(test_file.split("::")[0], {}).update(outcomes)
            print(f"{target:9} {test_file:45} {summary(outcomes)}", flush=True)

    write_config(suite)
    threads = [threading.Thread(target=run_target, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run = {
        "argv": argv if argv is not None else sys.argv[1:],
        "files": files,
        "results": results,
        "durations": {f"{t}:{f}": d for (t, f), d in durations.items()},
        "commits": {f"{t}:{f}": c for (t, f), c in commits.items()},
    }
    (workdir / "outcomes.json").write_text(json.dumps(run, indent=1))
    if not args.no_report:
        from tests.celery_suite.report import write_report

        print(f"wrote {write_report([workdir]).relative_to(ROOT)}")
    return 0


def source_state() -> str:
    """The Celeriac commit a file ran against (``+dirty`` with uncommitted changes)."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain", "src"], capture_output=True, text=True)
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def summary(outcomes: dict[str, dict[str, str]]) -> str:
    counts = Counter(record["outcome"] for record in outcomes.values())
    na = sum(1 for nodeid in outcomes if reason_for(nodeid) is not None)
    return " ".join(f"{kind} {counts[kind]}" for kind in KINDS) + f" (n/a {na})"


if __name__ == "__main__":
    sys.exit(main())
