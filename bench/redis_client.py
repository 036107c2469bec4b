"""Celeriac's own RESP client against redis-py (and redis-py with hiredis, when installed).

Client CPU per command: N calls each of SET, GET, LPUSH, BRPOP (on a list that is never
empty, so it returns at once) and EVALSHA, timed with ``time.process_time()`` (this process's
CPU only: the server's work and the network wait are not counted), on the machine's Redis
(DB 15, a key prefix of its own, deleted after). RSS: a fresh interpreter that imports the
client, connects and sends one PING, read from /proc/self/status, beside a bare interpreter.

    .venv/bin/python bench/redis_client.py [--calls 100000] [--out bench/results/...md]

Celeriac's client is timed as the transports call it (``RedisConnector.execute``, which
finds this thread's connection, packs, sends, reads and checks the replies) and as a bare
``Connection.call``. Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

URL = "redis://127.0.0.1:6379/15"
SCRIPT = "return redis.call('GET', KEYS[1])"

RSS_PROGRAMS = {
    "python only": "pass",
    "celeriac._redis": (
        "from celeriac._redis.connection import RedisConnector\n"
        "from celeriac.exceptions import OperationalError\n"
        "from celeriac._redis.connection import RetryPolicy\n"
        f"c = RedisConnector({URL!r}, {{}}, what='bench', error=OperationalError,"
        " retry=RetryPolicy())\n"
        "c.execute([('PING',)])"
    ),
    "redis-py": f"import redis\nredis.Redis.from_url({URL!r}).ping()",
}


def rss_kib(program: str) -> int:
    code = program + (
        "\nfor line in open('/proc/self/status'):\n"
        "    if line.startswith('VmRSS'): print(line.split()[1])"
    )
    return int(subprocess.check_output([sys.executable, "-c", code], text=True).strip())


def cpu_per_call(call: Callable[[], Any], calls: int) -> float:
    """Microseconds of this process's CPU per call (the best of three runs)."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for _ in range(calls):
            call()
        best = min(best, time.process_time() - start)
    return best / calls * 1e6


def own_client(prefix: str) -> dict[str, Callable[[], Any]]:
    from celeriac._redis.connection import RedisConnector, RetryPolicy
    from celeriac.exceptions import OperationalError

    connector = RedisConnector(URL, {}, what="bench", error=OperationalError, retry=RetryPolicy())
    key, lst = f"{prefix}k", f"{prefix}l"
    connector.execute([("SET", key, b"x" * 100), ("RPUSH", lst, b"y" * 100)])
    sha = connector.execute([("SCRIPT", "LOAD", SCRIPT)])[0]
    execute = connector.execute
    conn = connector.dedicated()
    return {
        "SET": lambda: execute([("SET", key, b"x" * 100)]),
        "GET": lambda: execute([("GET", key)]),
        "LPUSH": lambda: execute([("LPUSH", lst, b"y" * 100)]),
        "BRPOP": lambda: execute([("BRPOP", lst, 1)]),
        "EVALSHA": lambda: execute([("EVALSHA", sha, 1, key)]),
        "GET (bare Connection.call)": lambda: conn.call([("GET", key)]),
    }


def redis_py(prefix: str) -> dict[str, Callable[[], Any]]:
    import redis

    client = redis.Redis.from_url(URL)
    key, lst = f"{prefix}k", f"{prefix}l"
    client.set(key, b"x" * 100)
    client.rpush(lst, b"y" * 100)
    sha = client.script_load(SCRIPT)
    return {
        "SET": lambda: client.set(key, b"x" * 100),
        "GET": lambda: client.get(key),
        "LPUSH": lambda: client.lpush(lst, b"y" * 100),
        "BRPOP": lambda: client.brpop([lst], timeout=1),
        "EVALSHA": lambda: client.evalsha(sha, 1, key),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import redis

    try:
        import hiredis  # noqa: F401

        parser_name = f"redis-py {redis.__version__} + hiredis"
    except ImportError:
        parser_name = f"redis-py {redis.__version__} (pure-Python parser)"
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    results: dict[str, dict[str, float]] = {}
    try:
        for name, make in (("celeriac._redis", own_client), (parser_name, redis_py)):
            calls = make(prefix)
            results[name] = {cmd: cpu_per_call(call, args.calls) for cmd, call in calls.items()}
            print(name, {k: round(v, 2) for k, v in results[name].items()}, flush=True)
    finally:
        client = redis.Redis.from_url(URL)
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
    rss = {name: rss_kib(program) for name, program in RSS_PROGRAMS.items()}
    lines = [
        f"`{' '.join([Path(sys.executable).name, *sys.argv])}` on {dt.date.today()}, "
        f"{args.calls} calls per command, best of 3, Python {sys.version.split()[0]}",
        "",
        "Client CPU per command (µs, `time.process_time()`):",
        "",
        "| command | celeriac._redis | " + parser_name + " | ratio |",
        "|---|---|---|---|",
    ]
    ours, theirs = results["celeriac._redis"], results[parser_name]
    for cmd, value in ours.items():
        peer = theirs.get(cmd)
        ratio = f"{peer / value:.1f}x" if peer else "-"
        lines.append(
            f"| {cmd} | {value:.2f} | {peer:.2f} | {ratio} |"
            if peer
            else f"| {cmd} | {value:.2f} | - | - |"
        )
    lines += ["", "RSS of a process that imported the client and sent one PING (KiB):", ""]
    lines += ["| process | RSS |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rss.items()]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with args.out.open("a") as out:
            out.write(text + "\n")


if __name__ == "__main__":
    main()
