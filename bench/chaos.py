"""The long chaos soak: worker kills, broker restarts and bad input, on every broker.

    python bench/chaos.py                        # the sizes of issue 11 (about 15 minutes)
    python bench/chaos.py --kill-tasks 2000 --restart-tasks 1000 --bad 200 --brokers redis

Scenarios (``tests/chaos/harness.py`` and ``bad_input.py``, the same code the CI tests run
with small sizes):

- kills: ``--kill-tasks`` acks_late tasks (0-50 ms) through 2 prefork workers (-c 2), one
  worker's process group ``kill -9``'d every ``--kill-every`` seconds and restarted;
- restarts: ``--restart-tasks`` tasks sent over ``--restart-duration`` s while the broker
  (a private redis-server with appendonly, a private RabbitMQ node) is stopped cleanly,
  then killed with ``kill -9``, each time down ``--down-for`` s; workers never restarted;
- bad: ``--bad`` malformed entries pushed raw into the queue among as many good tasks;
- store-outage (only when asked: ``--scenarios store-outage``): the Redis restart soak with
  the results on the restarted server too, down ``--long-down`` s, longer than the result
  store's retries (defect 3 of issue 11 until its fix is merged).

Prints the report table and writes it, with the command, to
``bench/results/chaos-<date>.md``. Exits 1 when a target is missed (anything lost,
unexplained duplicates, missing results, crashes, bad entries not dead-lettered).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import shlex
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402  (the test helpers skip with pytest's exception)
from tests.chaos import bad_input, harness  # noqa: E402
from tests.support import amqp_support, redis_support  # noqa: E402

Scenario = Callable[[Path], harness.Report]
DEFAULT_SCENARIOS = "kills,restarts,bad"


def _redis_url(db: int) -> str:
    return f"redis://{redis_support.HOST}:{redis_support.PORT}/{db}"


@contextlib.contextmanager
def _private_rabbit(folder: Path) -> Iterator[amqp_support.PrivateNode]:
    with amqp_support.private_node(folder / "rabbit") as node:
        yield node


def _scenarios(args: argparse.Namespace) -> list[tuple[str, str, Scenario]]:
    every = tuple(float(v) for v in args.kill_every.split(","))
    assert len(every) == 2, "--kill-every takes two numbers: 3,6"
    timeout = args.timeout

    def kills(make_broker: Callable[[Path], harness.Broker]) -> Scenario:
        def run(folder: Path) -> harness.Report:
            with harness.soak_in(folder, make_broker(folder)) as soak:
                return harness.worker_kills(
                    soak, args.kill_tasks, every=every, seed=args.seed, timeout=timeout
                )

        return run

    def redis_restarts(folder: Path) -> harness.Report:
        with redis_support.RedisServer(folder, appendonly=True) as server:
            (folder / "project").mkdir()
            broker = harness.redis_broker(server.url, 0, server.port, lease_timeout=10)
            with harness.soak_in(folder / "project", broker) as soak:
                return harness.broker_restarts(
                    soak,
                    harness.redis_restartable(server),
                    args.restart_tasks,
                    duration=args.restart_duration,
                    down_for=args.down_for,
                    timeout=timeout,
                )

    def store_outage(folder: Path) -> harness.Report:
        """Results on the restarted server too, down longer than the store's retries."""
        with redis_support.RedisServer(folder, appendonly=True) as server:
            (folder / "project").mkdir()
            broker = harness.redis_broker(
                server.url, 0, server.port, same_results=True, lease_timeout=10
            )
            with harness.soak_in(folder / "project", broker) as soak:
                report = harness.broker_restarts(
                    soak,
                    harness.redis_restartable(server),
                    args.restart_tasks // 10,
                    duration=30,
                    down_for=args.long_down,
                    timeout=timeout,
                )
                report.scenario = f"broker + result store down {args.long_down:g} s"
                return report

    def amqp_kills(folder: Path) -> harness.Report:
        with (
            _private_rabbit(folder) as node,
            harness.soak_in(folder, harness.amqp_broker(node.url(), folder)) as soak,
        ):
            return harness.worker_kills(
                soak, args.kill_tasks, every=every, seed=args.seed, timeout=timeout
            )

    def amqp_restarts(folder: Path) -> harness.Report:
        with (
            _private_rabbit(folder) as node,
            harness.soak_in(folder, harness.amqp_broker(node.url(), folder)) as soak,
        ):
            return harness.broker_restarts(
                soak,
                harness.amqp_restartable(node),
                args.restart_tasks,
                duration=args.restart_duration,
                down_for=args.down_for,
                timeout=timeout,
            )

    def bad(broker: str) -> Scenario:
        def run(folder: Path) -> harness.Report:
            if broker == "redis":
                made = harness.redis_broker(
                    _redis_url(redis_support.TRANSPORT_DB), redis_support.TRANSPORT_DB
                )
            else:
                made = harness.sqlite_broker(folder)
            with harness.soak_in(folder, made) as soak:
                if broker == "redis":
                    kinds, push = bad_input.REDIS_KINDS, bad_input.redis_pusher(soak)
                    good: Callable[[str], object] = lambda t: bad_input.envelope(  # noqa: E731
                        bad_input.good_message(t)
                    )
                else:
                    kinds, push = bad_input.SQLITE_KINDS, bad_input.sqlite_inserter(soak)
                    good = lambda t: bad_input.row(bad_input.good_message(t))  # noqa: E731
                return bad_input.bad_input(
                    soak,
                    kinds,
                    push,
                    good,
                    bad=args.bad,
                    good=args.bad,
                    seed=args.seed,
                    timeout=timeout,
                )

        return run

    db = redis_support.TRANSPORT_DB
    return [
        ("redis", "kills", kills(lambda _f: harness.redis_broker(_redis_url(db), db))),
        ("redis", "restarts", redis_restarts),
        ("redis", "bad", bad("redis")),
        ("redis", "store-outage", store_outage),
        ("amqp", "kills", amqp_kills),
        ("amqp", "restarts", amqp_restarts),
        ("sqlite", "kills", kills(harness.sqlite_broker)),
        ("sqlite", "bad", bad("sqlite")),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--brokers", default="redis,amqp,sqlite")
    parser.add_argument("--scenarios", default=DEFAULT_SCENARIOS)
    parser.add_argument("--kill-tasks", type=int, default=20_000)
    parser.add_argument("--kill-every", default="3,6", help="seconds between kills: low,high")
    parser.add_argument("--restart-tasks", type=int, default=10_000)
    parser.add_argument("--restart-duration", type=float, default=60.0)
    parser.add_argument("--down-for", type=float, default=3.0)
    parser.add_argument("--bad", type=int, default=1000)
    parser.add_argument(
        "--long-down", type=float, default=25.0, help="store-outage: seconds down (twice)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=900.0, help="per scenario, seconds")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    brokers, wanted = set(args.brokers.split(",")), set(args.scenarios.split(","))
    reports: list[harness.Report] = []
    skipped: list[str] = []
    for broker, scenario, run in _scenarios(args):
        if broker not in brokers or scenario not in wanted:
            continue
        print(f"== {broker} {scenario} ...", flush=True)
        with tempfile.TemporaryDirectory(prefix=f"chaos-{broker}-") as folder:
            try:
                report = run(Path(folder))
            except pytest.skip.Exception as exc:
                skipped.append(f"{broker} {scenario}: skipped ({exc})")
                continue
        reports.append(report)
        print(harness.table([report]), flush=True)
        for line in report.details[:10]:
            print("   ", line)
    _write(args, reports, skipped)
    return 0 if all(r.ok for r in reports) else 1


def _write(args: argparse.Namespace, reports: list[harness.Report], skipped: list[str]) -> None:
    command = "python bench/chaos.py " + shlex.join(sys.argv[1:])
    now = dt.datetime.now(dt.UTC)
    lines = [
        f"# Chaos soak, {now:%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `{command.strip()}`",
        "",
        f"Machine: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
        " (shared with other jobs).",
        "",
        harness.table(reports),
        "",
        "Targets: lost, results_missing, duplicates_unexplained, crashes and misfiled all 0.",
        "Duplicates explained: the earlier run's worker was killed (or the broker was down)",
        "after it started, so its acks_late acknowledgement may not have reached the broker.",
    ]
    for report in reports:
        if report.details:
            lines += ["", f"{report.broker} {report.scenario}:", ""]
            lines += [f"- {line}" for line in report.details[:20]]
    if skipped:
        lines += ["", *[f"- {line}" for line in skipped]]
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    scenarios = (
        "" if args.scenarios == DEFAULT_SCENARIOS else "-" + args.scenarios.replace(",", "+")
    )
    path = args.out / f"chaos-{now:%Y-%m-%d}{scenarios}.md"
    path.write_text(text)
    print(text)
    print(f"written to {path}")


if __name__ == "__main__":
    sys.exit(main())
